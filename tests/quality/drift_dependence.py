"""False drift alarms and detection delays on serially dependent series: reverify beside river's ADWIN and PageHinkley.

Run ``python tests/quality/drift_dependence.py [--seeds 100] [--values 10000] [--anchors 20]``. Not collected by
pytest (the suite runs a smaller grid in ``tests/unit/test_drift_dependence.py``).

Streams: a baseline of 1,000 values, then ``--values`` stationary values, of an AR(1) with lag-1 correlation
``phi`` in {0, 0.2, 0.5, 0.8, 0.95} and marginal N(50, 10) (Gaussian innovations), or a skewed marginal (an AR(1)
with exponential innovations, mean 50); false alarms are counted per 10,000 values per series (budget 0.1 at the
defaults), beside ``dependence="independent"`` (the calibration before serial dependence was accounted for).
Delays: independent N(50, 10), 2,000 values then a shift of 0.5 or 1 sd; the median delay over seeds.
The anchors run on the first ``--anchors`` seeds of the same streams (they cost ~20 us a value).
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
from reverify.processors.drift import DriftMonitor, DriftSettings
from reverify.processors.drift.calibration import alarm_threshold

T0 = 1_700_000_000_000


def ar1(seed: int, phi: float, length: int, skewed: bool = False) -> np.ndarray:
    """A stationary AR(1) with lag-1 correlation ``phi``: N(50, 10) marginal, or exponential innovations (skewed)."""
    rng = np.random.default_rng(seed)
    if skewed:
        e = rng.exponential(1.0, length + 500)
        x = np.empty_like(e)
        x[0] = e[0] / (1 - phi)
        for t in range(1, len(e)):
            x[t] = phi * x[t - 1] + e[t]
        return 50.0 * (1 - phi) * x[500:]
    e = rng.standard_normal(length)
    e[0] /= math.sqrt(1 - phi * phi)
    x = np.empty(length)
    x[0] = e[0]
    for t in range(1, length):
        x[t] = phi * x[t - 1] + e[t]
    return 50.0 + 10.0 * math.sqrt(1 - phi * phi) * x


def ours(values: np.ndarray, settings: DriftSettings) -> tuple[list[int], DriftMonitor]:
    """Indices at which the monitor's alarm fired, and the monitor."""
    m = DriftMonitor(settings, agent_name="a", feature="f")
    fired = []
    update = m.update
    for i, x in enumerate(values.tolist()):
        if update(x, T0 + i) is not None and m.transition == "fired":  # a transition always makes a report
            fired.append(i)
    return fired, m


def river(name: str, values: np.ndarray) -> list[int]:
    from river import drift

    det = drift.ADWIN() if name == "adwin" else drift.PageHinkley()
    out = []
    for i, x in enumerate(values.tolist()):
        det.update(x)
        if det.drift_detected:
            out.append(i)
    return out


def false_alarms(phi: float, skewed: bool, seeds: int, values: int, anchors: int) -> dict[str, float]:
    n = DriftSettings().baseline_size
    row: dict[str, float] = {}
    counts = {"ours": 0, "independent": 0, "adwin": 0, "page_hinkley": 0}
    uncalibrated = 0
    for seed in range(seeds):
        x = ar1(seed, phi, n + values, skewed)
        fired, m = ours(x, DriftSettings())
        counts["ours"] += len(fired)
        uncalibrated += not m.calibrated
        counts["independent"] += len(ours(x, DriftSettings(dependence="independent"))[0])
        if seed < anchors:
            counts["adwin"] += sum(i >= n for i in river("adwin", x))
            counts["page_hinkley"] += sum(i >= n for i in river("page_hinkley", x))
    for name, c in counts.items():
        k = anchors if name in ("adwin", "page_hinkley") else seeds
        row[name] = c / (k * values) * 10_000 if k else float("nan")
    row["uncalibrated"] = uncalibrated / seeds
    return row


def delays(shift_sd: float, seeds: int, settings: DriftSettings) -> tuple[float, int]:
    pre = 2000
    out, missed = [], 0
    for seed in range(seeds):
        rng = np.random.default_rng(10_000 + seed)
        x = np.concatenate([rng.normal(50, 10, pre), rng.normal(50 + 10 * shift_sd, 10, 1000)])
        after = [i - pre for i in ours(x, settings)[0] if i >= pre]
        if after:
            out.append(after[0] + 1)
        else:
            missed += 1
    return float(np.median(out)) if out else float("nan"), missed


def fleet_table(seeds: int) -> None:
    """What a fleet of n series gets when the whole fleet may raise 0.1 false alarms per 10,000 values of each
    series: ``fleet_false_alarm_budget = 0.1 / n`` (spent by values), the threshold and delays that costs."""
    print("\nfleet of n series, 0.1 false alarms per 10,000 values of each series for the whole fleet")
    print(f"{'n series':>9} {'rate per value':>15} {'threshold':>10} {'0.5 sd':>7} {'1 sd':>6}")
    for n in (1, 10, 1_000, 100_000):
        settings = DriftSettings(fleet_false_alarm_budget=0.1 / n)
        h = alarm_threshold(settings)
        d05, _ = delays(0.5, seeds, settings)
        d1, _ = delays(1.0, seeds, settings)
        print(f"{n:>9,} {settings.rate_per_value:>15.0e} {h:>10.2f} {d05:>7.0f} {d1:>6.0f}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=100)
    ap.add_argument("--values", type=int, default=10_000)
    ap.add_argument("--anchors", type=int, default=20)
    ap.add_argument("--fleet", action="store_true", help="only the fleet table for 1, 10, 1,000, 100,000 series")
    args = ap.parse_args()
    t = time.perf_counter()
    if args.fleet:
        fleet_table(args.seeds)
        return
    print(f"false alarms per 10,000 values per series (budget 0.1); {args.seeds} seeds x {args.values} values")
    print(f"{'stream':<22} {'ours':>7} {'indep.':>7} {'ADWIN':>7} {'PH':>7} {'uncalibrated':>13}")
    for skewed in (False, True):
        for phi in (0.0, 0.2, 0.5, 0.8, 0.95):
            r = false_alarms(phi, skewed, args.seeds, args.values, args.anchors)
            name = f"AR(1) {phi:.2f} {'skewed' if skewed else 'normal'}"
            print(
                f"{name:<22} {r['ours']:>7.2f} {r['independent']:>7.2f} {r['adwin']:>7.2f} {r['page_hinkley']:>7.2f} "
                f"{r['uncalibrated']:>12.0%}",
                flush=True,
            )
    print("median detection delay, independent N(50, 10), shift after 2,000 values (values; missed within 1,000)")
    for shift in (0.5, 1.0):
        d, missed = delays(shift, args.seeds, DriftSettings())
        d0, missed0 = delays(shift, args.seeds, DriftSettings(dependence="independent"))
        print(f"  {shift} sd: ours {d:.0f} ({missed} missed), independent calibration {d0:.0f} ({missed0} missed)")
    print(f"{time.perf_counter() - t:.0f} s")


if __name__ == "__main__":
    main()
