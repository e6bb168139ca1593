"""The success CUSUM's threshold by baseline success rate: simulates ``SUCCESS_THRESHOLD_KNOTS``.

Run ``python -m tests.quality.rollback_calibration [--runs 40000]``. For each knot ``p0`` it runs
``runs`` stationary arms of 2,000 binary outcomes (the worst case for every reward law: see
:mod:`reverify.processors.degradation`) through the success channel's recursion, vectorised over runs, and
records the peak of each run's statistic once armed. The path up to a first crossing does not depend on the
threshold, so the false-rollback rate at threshold ``h`` is the share of peaks above ``h``, for every ``h`` at
once; the knot is the ``1 - rate`` quantile, rounded up to 0.05 nat, never below ``SUCCESS_THRESHOLD``.
"""

from __future__ import annotations

import argparse
import math

import numpy as np
from reverify.processors.degradation import SUCCESS_THRESHOLD, SUCCESS_THRESHOLD_KNOTS

HORIZON = 2_000
RATE = 0.004  # false rollbacks per 2,000 stationary invocations the success channel may spend


def success_peaks(
    p: float, runs: int, seed: int, shift: float = 0.25, horizon: int = HORIZON, min_baseline: int = 50
) -> np.ndarray:
    """Peak of the predictive success CUSUM of each run (``DegradationDetector``'s channel, binary outcomes)."""
    rng = np.random.default_rng(seed)
    good, bad, pending_good, pending_bad, stat, peak = (np.zeros(runs) for _ in range(6))
    for _ in range(horizon):
        x = rng.random(runs) < p
        armed = good + bad >= min_baseline
        a, b = 1.0 + good, 1.0 + bad
        p1 = np.clip(a / (a + b) * (1.0 - shift), 1e-6, 1.0 - 1e-6)
        n = a + b + pending_good + pending_bad
        stat = stat + np.where(x, np.log(p1 * n / (a + pending_good)), np.log((1.0 - p1) * n / (b + pending_bad)))
        pending_good, pending_bad = pending_good + x, pending_bad + ~x
        peak = np.maximum(peak, np.where(armed, stat, 0.0))
        settled = (stat <= 0.0) | ~armed
        good = np.where(settled, good + pending_good, good)
        bad = np.where(settled, bad + pending_bad, bad)
        pending_good, pending_bad = np.where(settled, 0.0, pending_good), np.where(settled, 0.0, pending_bad)
        stat = np.where(settled, 0.0, stat)
    return peak


def rate_at(p: float) -> float | None:
    """The false-rollback rate a knot is simulated for: 0.25 %, but 0.4 % from 0.93 to 0.97 (the 0.95 -> 0.5
    delays) and 0.55 % at 0.91; None from 0.85 to 0.9: the reference threshold, which the 0.9 -> 0.7 delay needs."""
    if 0.85 <= p <= 0.9:
        return None
    if p == 0.91:
        return 0.0055
    return RATE if 0.93 <= p <= 0.97 else 0.0025


def knot(p: float, runs: int) -> float:
    """The threshold at which :func:`rate_at` ``p`` of the runs alarm, rounded up to 0.05, floored at the reference."""
    rate = rate_at(p)
    if rate is None:
        return SUCCESS_THRESHOLD
    return threshold_for(success_peaks(p, runs, seed=int(p * 1e6)), rate)


def threshold_for(peaks: np.ndarray, rate: float) -> float:
    """The threshold that ``rate`` of ``peaks`` exceed, rounded up to 0.05 nat, never below the reference."""
    return max(SUCCESS_THRESHOLD, math.ceil(float(np.quantile(peaks, 1.0 - rate)) * 20) / 20)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=40_000)
    args = parser.parse_args()
    print(f"{'p0':>6s} {'simulated h':>12s} {'table h':>8s} {'rate at h = 10':>15s}")
    for p, table in SUCCESS_THRESHOLD_KNOTS[1:-1]:
        peaks = success_peaks(p, args.runs, seed=int(p * 1e6))
        rate = rate_at(p)
        h = SUCCESS_THRESHOLD if rate is None else threshold_for(peaks, rate)
        print(f"{p:>6g} {h:>12.2f} {table:>8.2f} {(peaks > SUCCESS_THRESHOLD).mean():>15.3%}")


if __name__ == "__main__":
    main()
