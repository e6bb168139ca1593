"""The rollback trigger over issue 15's grid of success rates and reward laws, beside a plain Bernoulli CUSUM.

Run ``python -m tests.quality.rollback_grid [--runs 400] [--budget 5.0]``. Not collected by pytest; the unit test
``tests/unit/test_degradation.py`` runs the same functions with fewer runs per cell.

Every invocation succeeds with probability p, its reward follows one of five laws on [0, 1] given the outcome,
and 30 % of failures also report an AgentError naming the variant. The rule under test is the real
:class:`~reverify.processors.degradation.DegradationDetector` with the thresholds that
:class:`~reverify.processors.learning.LearningSettings` derives from the fleet budget. Printed:

* false rollbacks per 2,000 stationary invocations, per (law, p) cell;
* median (p95) detection delay after a change, counted from the first changed invocation (1 = caught on it),
  for 0.95 -> 0.5 and 0.9 -> 0.7 after 1,000 healthy invocations and 0.95 -> 0.5 after 100;

each beside the anchor on the same streams: a Bernoulli CUSUM on success alone that knows the true baseline
rate p0, tuned to the same 25 % relative drop, with the success threshold calibrated for p0 (what a CUSUM can do
at best when nothing has to be learned).
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from collections.abc import Callable

import numpy as np
from reverify.processors.degradation import DegradationDetector, success_threshold_at
from reverify.processors.learning import LearningSettings

P_GRID = (0.5, 0.7, 0.9, 0.95, 0.99, 0.995)
LAWS = ("binary", "continuous", "levels", "constant", "skewed")
ERROR_SHARE = 0.3  # failures that also report an AgentError naming the variant
HORIZON = 2_000
CHANGES = ((0.95, 0.5, 1_000), (0.9, 0.7, 1_000), (0.95, 0.5, 100))  # (before, after, healthy invocations)
DELAY_TARGETS = (15, 60, 25)
NEVER = 10**6  # delay of a change never detected


def rewards(law: str, ok: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The reward of each invocation given its outcome ``ok``, under ``law``.

    binary: 1 on success, 0 on failure; continuous: 0.7 + 0.3 U on success, 0.3 U on failure; levels: a rating
    in {0.5, 0.75, 1} on success, {0, 0.25} on failure; constant: 0.8 whatever happens; skewed: U^6 on success
    (mostly near 0, now and then large), 0 on failure.
    """
    u = rng.random(ok.shape)
    if law == "binary":
        return ok.astype(float)
    if law == "continuous":
        return np.where(ok, 0.7 + 0.3 * u, 0.3 * u)
    if law == "levels":
        return np.where(ok, rng.choice([0.5, 0.75, 1.0], ok.shape), rng.choice([0.0, 0.25], ok.shape))
    if law == "constant":
        return np.full(ok.shape, 0.8)
    if law == "skewed":
        return np.where(ok, u**6, 0.0)
    raise ValueError(f"unknown reward law {law!r}")


def streams(
    law: str, p_before: float, p_after: float, change: int, length: int, runs: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``runs`` x ``length`` outcomes, rewards and error flags; the success rate is ``p_after`` from ``change``."""
    rng = np.random.default_rng(seed)
    p = np.where(np.arange(length) < change, p_before, p_after)
    ok = rng.random((runs, length)) < p
    return ok, rewards(law, ok, rng), ~ok & (rng.random((runs, length)) < ERROR_SHARE)


def detector_factory(budget: float | None = None) -> Callable[[], DegradationDetector]:
    """The detector a LearningLoop builds, at the default fleet budget or at ``budget``."""
    settings = LearningSettings() if budget is None else LearningSettings(fleet_false_rollbacks=budget)
    params = settings.detector_params()
    return lambda: DegradationDetector(**params)


def first_alarms(
    ok: np.ndarray, reward: np.ndarray, err: np.ndarray, make: Callable[[], DegradationDetector]
) -> list[int | None]:
    """Index of the first invocation whose outcome (or error) raised an alarm, per run; None if none did."""
    out: list[int | None] = []
    for run_ok, run_reward, run_err in zip(ok.tolist(), reward.tolist(), err.tolist(), strict=True):
        det, first = make(), None
        update, record_error = det.update, det.record_error
        for t, (success, r, e) in enumerate(zip(run_ok, run_reward, run_err, strict=True)):
            if update(success, r) is not None or (e and record_error() is not None):
                first = t
                break
        out.append(first)
    return out


def anchor_first_alarms(ok: np.ndarray, p0: float, threshold: float, shift: float = 0.25) -> list[int | None]:
    """A Bernoulli CUSUM on success that knows p0 (Reynolds & Stoumbos 1999), vectorised over runs."""
    p1 = p0 * (1.0 - shift)
    up, down = math.log((1.0 - p1) / (1.0 - p0)), math.log(p1 / p0)
    steps = np.where(ok, down, up)
    stat = np.zeros(ok.shape[0])
    first = np.full(ok.shape[0], -1)
    for t in range(ok.shape[1]):
        stat = np.maximum(stat + steps[:, t], 0.0)
        fired = (stat > threshold) & (first < 0)
        first[fired] = t
    return [int(t) if t >= 0 else None for t in first]


def false_rate(alarms: list[int | None]) -> float:
    return sum(a is not None for a in alarms) / len(alarms)


def delays(alarms: list[int | None], change: int) -> tuple[list[int], int]:
    """Delays of the runs that did not alarm before the change (NEVER if missed), and how many did."""
    early = sum(a is not None and a < change for a in alarms)
    return [NEVER if a is None else a - change + 1 for a in alarms if a is None or a >= change], early


def cell_seed(*key: object) -> int:
    """A stable seed per cell (``hash`` of a str is salted per process)."""
    return sum((i + 1) * ord(c) for i, c in enumerate(repr(key))) * 7919 % 2**32


def false_alarm_grid(runs: int, budget: float | None = None) -> dict[tuple[str, float], tuple[float, float]]:
    """(law, p) -> (false rollbacks of the detector, of the anchor) per 2,000 stationary invocations."""
    make = detector_factory(budget)
    extra = make().threshold_nats
    out = {}
    for law in LAWS:
        for p in P_GRID:
            ok, reward, err = streams(law, p, p, HORIZON, HORIZON, runs, cell_seed(law, p, budget))
            out[law, p] = (
                false_rate(first_alarms(ok, reward, err, make)),
                false_rate(anchor_first_alarms(ok, p, success_threshold_at(p, extra))),
            )
    return out


def delay_grid(
    runs: int, laws: tuple[str, ...] = LAWS, budget: float | None = None
) -> dict[tuple[str, int], tuple[list[int], int, list[int]]]:
    """(law, scenario index) -> (delays, early alarms, anchor delays) over the CHANGES scenarios."""
    make = detector_factory(budget)
    extra = make().threshold_nats
    out = {}
    for law in laws:
        for i, (before, after, change) in enumerate(CHANGES):
            ok, reward, err = streams(law, before, after, change, change + 1_000, runs, cell_seed(law, i))
            got, early = delays(first_alarms(ok, reward, err, make), change)
            anchor, _ = delays(anchor_first_alarms(ok, before, success_threshold_at(before, extra)), change)
            out[law, i] = (got, early, anchor)
    return out


def p95(xs: list[int]) -> int:
    return sorted(xs)[int(0.95 * len(xs))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=400, help="runs per cell")
    parser.add_argument("--budget", type=float, default=None, help="fleet_false_rollbacks (default: the setting's)")
    parser.add_argument("--fleet", action="store_true", help="also the fleet table for 10, 1,000, 100,000 arms")
    parser.add_argument("--law", action="store_true", help="only: a 10x smaller budget gives ~10x fewer false alarms")
    args = parser.parse_args()
    started = time.perf_counter()
    if args.law:
        budget_law(args.runs)
        return
    print_false_alarms(false_alarm_grid(args.runs, args.budget), args.runs)
    print_delays(delay_grid(args.runs, budget=args.budget))
    if args.fleet:
        fleet_table(args.runs)
    print(f"\n{time.perf_counter() - started:.0f} s")


def print_false_alarms(grid: dict[tuple[str, float], tuple[float, float]], runs: int) -> None:
    print(f"false rollbacks per {HORIZON:,} stationary invocations, {runs} runs per cell: detector (anchor)")
    print(f"{'law':12s}" + "".join(f"{f'p = {p}':>18s}" for p in P_GRID))
    for law in LAWS:
        print(f"{law:12s}" + "".join(f"{f'{grid[law, p][0]:.2%} ({grid[law, p][1]:.2%})':>18s}" for p in P_GRID))
    print(f"worst cell {max(v[0] for v in grid.values()):.2%} (target <= 1 %)")


def print_delays(table: dict[tuple[str, int], tuple[list[int], int, list[int]]]) -> None:
    print("\nmedian (p95) detection delay, invocations: detector | anchor; early = false alarms before the change")
    for law in LAWS:
        cells = []
        for i, (before, after, change) in enumerate(CHANGES):
            got, early, anchor = table[law, i]
            cells.append(
                f"{before}->{after}@{change}: {statistics.median(got):.0f} ({p95(got)}) | "
                f"{statistics.median(anchor):.0f} ({p95(anchor)}) early {early}"
            )
        print(f"{law:12s}" + "   ".join(cells))
    print(f"targets: medians <= {DELAY_TARGETS}")


def budget_law(runs: int) -> None:
    """False rollbacks at the default budget (``runs`` runs) and at a tenth of it (10 x ``runs``), binary rewards."""
    base = LearningSettings().fleet_false_rollbacks
    print(f"false rollbacks per {HORIZON:,} stationary invocations, binary rewards")
    for p in (0.9, 0.95):
        rates = []
        for budget, n in ((base, runs), (base / 10, 10 * runs)):
            ok, reward, err = streams("binary", p, p, HORIZON, HORIZON, n, cell_seed("law", p, budget))
            rates.append(false_rate(first_alarms(ok, reward, err, detector_factory(budget))))
        print(
            f"p = {p}: budget {base:g}: {rates[0]:.3%} ({runs} runs), budget {base / 10:g}: {rates[1]:.3%} ({10 * runs} runs)"
        )


def fleet_table(runs: int) -> None:
    """What a fleet of n arms gets: at the default budget, and at one false rollback per fleet per 2,000
    invocations of each arm (a budget of 500 / n per million), with the delays that threshold costs."""
    print("\nfleet of n arms, 2,000 stationary invocations each (continuous rewards for the delays)")
    print(f"{'n arms':>8s} {'default: false/fleet':>21s} {'budget for 1/fleet':>19s} {'h at 0.9':>10s}  medians")
    for n in (10, 1_000, 100_000):
        budget = 1e6 / (HORIZON * n)
        h = success_threshold_at(0.9, detector_factory(budget)().threshold_nats)
        table = delay_grid(runs, ("continuous",), budget)
        medians = ", ".join(f"{statistics.median(table['continuous', i][0]):.0f}" for i in range(len(CHANGES)))
        default_total = LearningSettings().fleet_false_rollbacks * HORIZON * n / 1e6
        print(f"{n:>8,} {default_total:>21,.1f} {budget:>19.4g} {h:>10.2f}  {medians}")
    print(f"medians of {', '.join(f'{b}->{a}@{c}' for b, a, c in CHANGES)}")


if __name__ == "__main__":
    main()
