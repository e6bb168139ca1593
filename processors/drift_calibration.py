"""Calibrating the drift alarm to a false-alarm budget, and exact KS p-values without re-sorting.

The alarm of :mod:`processors.drift` watches standardised *placement* statistics:
the placement of a value ``x`` against a baseline of ``n`` values is its midrank
``p = (#{b < x} + #{b <= x}) / 2n`` in ``[0, 1]``. Summed over a window, the centred
placements are the Mann-Whitney U statistic (location); the squared deviations
``(p - 1/2)^2`` are a Mood-type scale statistic (spread). Both are rank statistics,
so for continuous data their joint law under "no drift" does not depend on the
data's distribution: the threshold for a budget can be simulated once with
uniform numbers and reused for every series with the same sizes (``rank``
calibration, cached per process). For data with ties the baseline itself is
resampled instead (``bootstrap`` calibration, a fresh baseline and stream drawn
from the empirical baseline, so the baseline's own sampling error is included).

The simulation runs the real alarm rule -- several windows, a look every
``every`` values, an episode counted once and closed after a quiet window -- on
long stationary streams and picks the smallest threshold whose expected number
of alarm episodes per value stays within the budget: the look-by-look
correction of Alibi Detect's expected-run-time (ERT) calibration, by direct
simulation rather than a union bound, so correlated looks and windows are not
over-penalised.

References
----------
Mann, H. B. and Whitney, D. R. (1947). On a test of whether one of two random variables is
stochastically larger than the other. *Ann. Math. Statist.* 18(1).
Mood, A. M. (1954). On the asymptotic efficiency of certain nonparametric two-sample tests.
*Ann. Math. Statist.* 25(3).
Cobb, O. and Van Looveren, A. (2022). Context-aware drift detection / Alibi Detect online
detectors calibrated to an expected run time (ERT). https://docs.seldon.io/projects/alibi-detect

>>> import numpy as np
>>> v1, mu2, v2 = placement_moments(np.arange(1000.0))
>>> round(v1 * 12, 3), round(mu2 * 12, 3)
(1.0, 1.0)
>>> h = calibrate_threshold(1000, (50, 100, 200, 500), 50, 1e-5, 10)
>>> 3.5 < h < 5.0
True
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from scipy import stats

__all__ = ["KS_MEMO", "calibrate_threshold", "ks_pvalue", "placement_moments", "simulate_max_statistic"]


def placement_moments(sorted_baseline: np.ndarray) -> tuple[float, float, float]:
    """Variance of the centred placement, mean and variance of its square, from the baseline's own midranks.

    Taking them from the baseline (not from the uniform law) makes the
    standardisation right for tied data too: a two-valued baseline has far
    smaller placement variance than 1/12.
    """
    n = len(sorted_baseline)
    left = np.searchsorted(sorted_baseline, sorted_baseline, "left")
    right = np.searchsorted(sorted_baseline, sorted_baseline, "right")
    p = (left + right) / (2.0 * n) - 0.5
    sq = p * p
    return float(p.var()), float(sq.mean()), float(sq.var())


def _window_z(
    block_sums: np.ndarray, windows: tuple[int, ...], every: int, n: int, moments: tuple[float, float, float]
) -> np.ndarray:
    """Max |z| over windows and the two statistics at every look; ``block_sums`` is (looks, 2)."""
    v1, mu2, v2 = moments
    looks = block_sums.shape[0]
    csum = np.vstack([np.zeros((1, 2)), np.cumsum(block_sums, axis=0)])
    best = np.zeros(looks)
    for w in windows:
        k = w // every
        if k > looks:
            continue
        s = csum[k:] - csum[:-k]  # window sums at looks k-1 .. looks-1
        inflation = w * (n + w + 1) / n  # Var(U)/n^2 of Mann-Whitney: the baseline's own noise included
        z1 = np.abs(s[:, 0]) / math.sqrt(max(v1 * inflation, 1e-300))
        z2 = np.abs(s[:, 1] - w * mu2) / math.sqrt(max(v2 * inflation, 1e-300))
        np.maximum(best[k - 1 :], np.maximum(z1, z2), out=best[k - 1 :])
    return best


def simulate_max_statistic(
    n_baseline: int,
    windows: tuple[int, ...],
    every: int,
    *,
    values: np.ndarray | None = None,
    replicates: int = 250,
    length: int = 40_000,
    seed: int = 0,
) -> np.ndarray:
    """The alarm statistic at every look of ``replicates`` stationary streams, shape (replicates, looks).

    ``values=None`` simulates continuous data (uniforms: rank statistics are
    distribution-free); otherwise baseline and stream are resampled from ``values``.
    """
    rng = np.random.default_rng(seed)
    looks = length // every
    out = np.empty((replicates, looks))
    for i in range(replicates):
        if values is None:
            base = np.sort(rng.random(n_baseline))
            x = rng.random(looks * every)
            left = right = np.searchsorted(base, x)
        else:
            base = np.sort(rng.choice(values, n_baseline))
            x = rng.choice(values, looks * every)
            left = np.searchsorted(base, x, "left")
            right = np.searchsorted(base, x, "right")
        moments = placement_moments(base)
        p = (left + right) / (2.0 * n_baseline) - 0.5
        blocks = np.stack([p.reshape(looks, every).sum(1), (p * p).reshape(looks, every).sum(1)], axis=1)
        out[i] = _window_z(blocks, windows, every, n_baseline, moments)
    return out


def _threshold_for(m: np.ndarray, quiet_looks: int, allowed: float) -> float:
    """Smallest threshold h with at most ``allowed`` episodes in ``m``; an episode starts at a look above h
    after ``quiet_looks`` looks at or below h (the monitor's fire / resolve rule)."""
    reps, looks = m.shape
    padded = np.concatenate([np.full((reps, quiet_looks), -np.inf), m], axis=1)
    prev = np.lib.stride_tricks.sliding_window_view(padded, quiet_looks, axis=1)[:, :looks].max(axis=2)
    lo, hi = prev.ravel(), m.ravel()
    keep = lo < hi  # look t opens an episode for every h in [prev_t, m_t)
    lo, hi = lo[keep], hi[keep]
    lo = np.where(np.isfinite(lo), lo, 0.0)
    points = np.concatenate([lo, hi])
    steps = np.concatenate([np.ones(len(lo)), -np.ones(len(hi))])
    order = np.argsort(points, kind="stable")
    points, count = points[order], np.cumsum(steps[order])
    over = np.nonzero(count > allowed)[0]
    if len(over) == 0:
        return float(points[0]) if len(points) else 0.0
    last = over[-1]
    return float(points[last + 1]) if last + 1 < len(points) else float(points[last])


@lru_cache(maxsize=64)
def _rank_threshold(
    n_baseline: int,
    windows: tuple[int, ...],
    every: int,
    rate: float,
    quiet_looks: int,
    replicates: int,
    length: int,
    seed: int,
) -> float:
    m = simulate_max_statistic(n_baseline, windows, every, replicates=replicates, length=length, seed=seed)
    return _threshold_for(m, quiet_looks, rate * m.size * every)


def calibrate_threshold(
    n_baseline: int,
    windows: tuple[int, ...],
    every: int,
    rate_per_value: float,
    quiet_looks: int,
    *,
    values: np.ndarray | None = None,
    replicates: int = 250,
    length: int = 40_000,
    seed: int = 0,
) -> float:
    """Threshold on the max standardised placement statistic for ``rate_per_value`` false-alarm episodes per value.

    Deterministic for a given seed, so a replayed partition re-derives the same threshold.
    """
    if values is None:
        return _rank_threshold(n_baseline, tuple(windows), every, rate_per_value, quiet_looks, replicates, length, seed)
    m = simulate_max_statistic(
        n_baseline, tuple(windows), every, values=values, replicates=replicates, length=length, seed=seed
    )
    return _threshold_for(m, quiet_looks, rate_per_value * m.size * every)


KS_MEMO: dict[tuple[int, int, int], tuple[float, float]] = {}
"""Process-wide memo of exact KS results keyed by ``(n1, n2, round(D * lcm(n1, n2)))``."""


def ks_pvalue(sorted_baseline: np.ndarray, left: np.ndarray, right: np.ndarray, d: float) -> tuple[float, float]:
    """``(statistic, pvalue)`` of ``scipy.stats.ks_2samp`` (default method) for a window known by its placements.

    The p-value depends only on the two sizes and on D, which lives on the
    lattice ``h / lcm(n1, n2)``; it is memoised on ``(n1, n2, h)`` process-wide, so
    after a warm-up an evaluation costs a dict lookup. On a miss, scipy's public
    ``ks_2samp`` is called on the baseline and a *surrogate* window -- one value
    per window value with the same position among the baseline values -- which
    has exactly the same D, hence exactly scipy's p-value.
    """
    n1, n2 = len(sorted_baseline), len(left)
    lcm = n1 // math.gcd(n1, n2) * n2
    key = (n1, n2, round(d * lcm))
    hit = KS_MEMO.get(key)
    if hit is None:
        b = sorted_baseline
        lo = b[0] - (abs(b[0]) + 1.0)
        hi = b[-1] + (abs(b[-1]) + 1.0)
        ext = np.concatenate([[lo], b, [hi]])
        k = np.asarray(left)
        equal = np.asarray(right) > k
        # strictly inside a gap: midway between the neighbours (ext is shifted by one)
        surrogate = np.where(equal, ext[np.minimum(k + 1, n1)], (ext[k] + ext[k + 1]) / 2.0)
        res = stats.ks_2samp(b, surrogate)
        hit = (float(res.statistic), float(res.pvalue))
        KS_MEMO[key] = hit
    return hit
