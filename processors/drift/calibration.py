"""Calibrating the drift alarm to a false-alarm budget, and exact KS p-values without re-sorting.

The alarm of :mod:`processors.drift` (:mod:`.numeric`) watches standardised *placement* statistics:
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
over-penalised. Replicates are simulated side by side (one exact bucketed search
per chunk of replicates, rows kept apart by an offset), which keeps the first,
shared simulation and each AR(1) grid point near a third of a second and a
bootstrap of a tied baseline well under one. The default settings' thresholds
are not simulated at all: :mod:`.presimulated` holds them.

References
----------
Mann, H. B. and Whitney, D. R. (1947). On a test of whether one of two random variables is
stochastically larger than the other. *Ann. Math. Statist.* 18(1).
Mood, A. M. (1954). On the asymptotic efficiency of certain nonparametric two-sample tests.
*Ann. Math. Statist.* 25(3).
Hodges, J. L. (1958). The significance probability of the Smirnov two-sample test. *Arkiv for Matematik* 3(43).
Cobb, O. and Van Looveren, A. (2022). Context-aware drift detection / Alibi Detect online
detectors calibrated to an expected run time (ERT). https://docs.seldon.io/projects/alibi-detect

>>> import numpy as np
>>> v1, mu2, v2 = placement_moments(np.arange(1000.0))
>>> round(v1 * 12, 3), round(mu2 * 12, 3)
(1.0, 1.0)
>>> h = calibrate_threshold(1000, (25, 50, 75, 100, 150, 200, 300, 500), 25, 1e-5, 20)
>>> 3.5 < h < 5.0
True
>>> d, p = ks_exact(1000, 500, 45)  # (D, p) of scipy.stats.ks_2samp for D = 45 / lcm(1000, 500)
>>> d, round(p, 4)
(0.045, 0.505)
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from functools import lru_cache

import numpy as np
from reverify.processors.drift import presimulated
from reverify.processors.drift.settings import DriftSettings
from scipy import stats

try:  # the exact two-sample routine behind ks_2samp's default method: same numbers, without its ~1 ms of overhead
    from scipy.stats._stats_py import _attempt_exact_2kssamp
except ImportError:  # pragma: no cover - a scipy that moved it: ks_pvalue falls back to ks_2samp itself
    _attempt_exact_2kssamp = None

__all__ = [
    "KS_MEMO",
    "alarm_threshold",
    "calibrate_threshold",
    "ks_exact",
    "ks_pvalue",
    "placement_moments",
    "serial_correlation",
    "simulate_max_statistic",
    "tie_ranks",
    "warm_caches",
]

_CHUNK_VALUES = 1_000_000  # values simulated per batch of replicates: bounded memory (~30 MB), few numpy calls


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


def window_scales(
    windows: np.ndarray, n: int, moments: tuple[float, float, float], spread_weight: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-window factors turning the window sums of ``p`` and ``p^2`` into the alarm's two |z| statistics.

    Returns ``(s1, mu2w, s2)`` with ``z_location = |sum p| * s1`` and ``z_spread = |sum p^2 - mu2w| * s2``;
    ``s2`` carries ``spread_weight``. The variance of a window sum is inflated by ``(n + w + 1) / n``: the
    Mann-Whitney variance, so the baseline's own sampling noise is part of the null.
    """
    v1, mu2, v2 = moments
    w = np.asarray(windows, dtype=float)
    inflation = w * (n + w + 1) / n
    s1 = 1.0 / np.sqrt(np.maximum(v1 * inflation, 1e-300))
    s2 = spread_weight / np.sqrt(np.maximum(v2 * inflation, 1e-300))
    return s1, w * mu2, s2


def _window_z(
    p_sums: np.ndarray,
    q_sums: np.ndarray,
    windows: tuple[int, ...],
    every: int,
    n: int,
    moments: np.ndarray,
    spread_weight: float,
) -> np.ndarray:
    """Alarm statistic at every look: max |z| over windows and both statistics.

    ``p_sums`` / ``q_sums`` are per-block sums of ``p`` and ``p^2``, shape (replicates, looks); ``moments`` is
    (replicates, 3), one baseline per replicate.
    """
    reps, looks = p_sums.shape
    zero = np.zeros((reps, 1))
    cp = np.concatenate([zero, np.cumsum(p_sums, axis=1)], axis=1)
    cq = np.concatenate([zero, np.cumsum(q_sums, axis=1)], axis=1)
    best = np.zeros((reps, looks))
    for w in windows:
        k = w // every
        if k > looks:
            continue
        s1, mu2w, s2 = window_scales(np.array([w]), n, (moments[:, 0], moments[:, 1], moments[:, 2]), spread_weight)
        z1 = np.abs(cp[:, k:] - cp[:, :-k]) * s1[:, None]
        z2 = np.abs(cq[:, k:] - cq[:, :-k] - mu2w[:, None]) * s2[:, None]
        np.maximum(best[:, k - 1 :], np.maximum(z1, z2), out=best[:, k - 1 :])
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
    spread_weight: float = 1.0,
    phi: float = 0.0,
) -> np.ndarray:
    """The alarm statistic at every look of ``replicates`` stationary streams, shape (replicates, looks).

    ``values=None`` simulates continuous data (uniforms: rank statistics are
    distribution-free); otherwise baseline and stream are resampled from ``values``.
    ``phi > 0``: baseline and stream are one path of a Gaussian AR(1) with that
    coefficient (mapped onto ``values``' tie pattern when given), see :func:`_ar1_cells`.
    """
    rng = np.random.default_rng(seed)
    looks = length // every
    total = looks * every
    n = n_baseline
    if values is not None:
        uniq, codes = np.unique(np.asarray(values, dtype=float), return_inverse=True)
        u = len(uniq)
    out = np.empty((replicates, looks))
    chunk = max(1, min(replicates, _CHUNK_VALUES // max(total, 1)))
    for start in range(0, replicates, chunk):
        r = min(chunk, replicates - start)
        if phi > 0.0:
            cells, base_cells = _ar1_cells(rng, r, n, total, phi, None if values is None else np.bincount(codes))
        elif values is None:
            # one searchsorted for all rows: row i lives in [2i, 2i + 1)
            offset = np.arange(r)[:, None] * 2.0
            flat = (np.sort(rng.random((r, n)), axis=1) + offset).ravel()
            row0 = (np.arange(r) * n)[:, None]
            stream = rng.random((r, total))
            stream += offset
            cells = 2 * (_count_below(flat, stream.ravel()).reshape(r, total) - row0)
            base_cells = 2 * np.arange(n)[None, :]  # continuous: a baseline value's midrank cell, every row alike
        else:
            # resampled codes: placements come from each replicate's cumulative code counts, a gather (no search)
            row_u = (np.arange(r) * u)[:, None]
            b = codes[rng.integers(0, n, (r, n))] + row_u
            counts = np.bincount(b.ravel(), minlength=r * u).reshape(r, u)
            right_of = np.cumsum(counts, axis=1)
            cell_of = (2 * right_of - counts).ravel()  # #below + #at-or-below, per (row, code)
            cells = cell_of[codes[rng.integers(0, n, (r, total))] + row_u]
            base_cells = cell_of[b]
        p = cells / (2.0 * n)
        p -= 0.5
        pb = np.broadcast_to(base_cells / (2.0 * n) - 0.5, (r, n))
        sq = pb * pb
        moments = np.stack([pb.var(axis=1), sq.mean(axis=1), sq.var(axis=1)], axis=1)
        p_sums = p.reshape(r, looks, every).sum(axis=2)
        q_sums = np.multiply(p, p, out=p).reshape(r, looks, every).sum(axis=2)  # p is not needed after this
        out[start : start + r] = _window_z(p_sums, q_sums, windows, every, n, moments, spread_weight)
    return out


_MAX_BUCKETS = 1 << 21  # _count_below's index: at most 16 MB whatever the baseline's size
_MAX_BUCKET_STEPS = 64  # values in one bucket compared one step at a time, at most


def _count_below(sorted_values: np.ndarray, keys: np.ndarray, per_value: int = 8) -> np.ndarray:
    """``sorted_values.searchsorted(keys)`` (how many values lie strictly below each key), exactly, ~4-8x faster
    for many keys in values without many ties.

    Values and keys go into ``per_value * len(sorted_values)`` equal buckets between the extreme values by a
    monotone map (subtract, scale, clip, truncate: each step is monotone in floating point), so every value in
    a lower bucket is below the key and none in a higher one is; the few values sharing the key's bucket are
    compared one step at a time. The result never depends on rounding, only on the order of the numbers.

    >>> v = np.array([0.1, 0.2, 0.2, 0.7])
    >>> k = np.array([-1.0, 0.1, 0.2, 0.5, 0.7, 2.0])
    >>> _count_below(v, k).tolist() == v.searchsorted(k).tolist() == [0, 0, 1, 3, 3, 4]
    True
    """
    buckets = min(per_value * len(sorted_values), _MAX_BUCKETS)
    lo, hi = float(sorted_values[0]), float(sorted_values[-1])
    scale = buckets / (hi - lo) if hi > lo else 0.0
    if not 0.0 < scale < math.inf:
        return sorted_values.searchsorted(keys)

    def bucket(x: np.ndarray) -> np.ndarray:
        t = x - lo
        t *= scale
        np.clip(t, 0, buckets - 1, out=t)
        return t.astype(np.intp)

    counts = np.bincount(bucket(sorted_values), minlength=buckets)
    if counts.max() > _MAX_BUCKET_STEPS:  # crowded (an outlier stretched the range, or ties): search instead
        return sorted_values.searchsorted(keys)
    first = np.zeros(buckets + 1, dtype=np.intp)  # first[k]: values in buckets below k
    np.cumsum(counts, out=first[1:])
    k = bucket(keys)
    pos, end = first[k], first[k + 1]
    todo = np.flatnonzero(pos < end)
    while len(todo):
        todo = todo[sorted_values[pos[todo]] < keys[todo]]
        pos[todo] += 1
        todo = todo[pos[todo] < end[todo]]
    return pos


def _ar1_cells(
    rng: np.random.Generator, r: int, n: int, total: int, phi: float, counts: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """Cells of ``r`` stationary Gaussian AR(1) paths (coefficient ``phi``): the first ``n`` values of a path are
    its baseline, the next ``total`` its stream; ``counts`` (occurrences of each distinct baseline value) maps
    the path's uniforms onto that tie pattern (a Gaussian copula with the baseline's own marginal).

    Rank statistics see a series only through its copula, so an AR(1) of any continuous marginal obtained by a
    monotone map of a Gaussian AR(1) is simulated exactly.
    """
    from scipy.signal import lfilter  # 0.4 s to import: only custom settings simulate

    noise = rng.standard_normal((r, n + total))
    noise[:, 0] /= math.sqrt(1.0 - phi * phi)  # stationary start
    path = lfilter([1.0], [1.0, -phi], noise, axis=1)
    if counts is not None:
        right = np.cumsum(counts) / counts.sum()
        path = np.minimum(np.searchsorted(right, stats.norm.cdf(path), "right"), len(counts) - 1)
    base = np.sort(path[:, :n], axis=1)
    stream = path[:, n:]
    cells = np.empty((r, total), dtype=np.int64)
    base_cells = np.empty((r, n), dtype=np.int64)
    untied = 2 * np.arange(n) + 1  # a value's own cell in a baseline without ties: #below + #at-or-below
    for i in range(r):
        b = base[i]
        if counts is None and bool((b[1:] != b[:-1]).all()):
            # continuous paths (almost surely no ties): one search instead of two, the baseline's cells known
            left = _count_below(b, stream[i])
            at = b[np.minimum(left, n - 1)] == stream[i]  # 'right' differs from 'left' only where a value is equal
            cells[i] = 2 * left if not at.any() else left + b.searchsorted(stream[i], "right")
            base_cells[i] = untied
        else:
            cells[i] = b.searchsorted(stream[i]) + b.searchsorted(stream[i], "right")
            base_cells[i] = b.searchsorted(b) + b.searchsorted(b, "right")
    return cells, base_cells


def serial_correlation(values: np.ndarray) -> float:
    """The AR(1) coefficient of a Gaussian copula with the lag-1 rank autocorrelation of ``values`` (arrival order).

    Ranks make it blind to the marginal; for a Gaussian AR(1) the lag-1 Spearman correlation is
    ``(6 / pi) arcsin(phi / 2)``, inverted here (Kruskal, 1958).

    >>> rng = np.random.default_rng(0)
    >>> x = np.zeros(5000)
    >>> for t in range(1, 5000):
    ...     x[t] = 0.5 * x[t - 1] + rng.standard_normal()
    >>> round(serial_correlation(np.exp(x)), 2)  # a lognormal AR(1): the coefficient of its Gaussian copula
    0.5
    """
    ranks = stats.rankdata(values)
    if len(ranks) < 3 or ranks.min() == ranks.max():
        return 0.0
    r = float(np.corrcoef(ranks[:-1], ranks[1:])[0, 1])
    return 2.0 * math.sin(math.pi * r / 6.0)


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
    spread_weight: float = 1.0,
    phi: float = 0.0,
) -> float:
    """Threshold on the max standardised placement statistic for ``rate_per_value`` false-alarm episodes per value.

    Deterministic for a given seed, so a replayed partition re-derives the same threshold. ``values`` (a baseline
    with ties) asks for the bootstrap calibration; only its tie pattern matters, and each pattern is simulated once
    per process: a fleet whose cost is one constant pays for one simulation, not one per agent.
    """
    # placements depend on the baseline's ranks only, hence a bootstrap on its tie pattern alone
    ties = None if values is None else coarse_ties(np.unique(np.asarray(values, dtype=float), return_counts=True)[1])
    return _threshold(
        n_baseline,
        ties,
        tuple(windows),
        every,
        rate_per_value,
        quiet_looks,
        replicates,
        length,
        seed,
        spread_weight,
        phi,
    )


TIE_GRID_RATIO = 1.05
"""Counts above 10 are calibrated at the nearest point of a geometric grid of this ratio (:func:`coarse_ties`)."""


def coarse_ties(counts: Iterable[int]) -> tuple[int, ...]:
    """The tie pattern a baseline is calibrated at: counts up to 10 as they are, larger ones at the nearest point of
    a geometric grid (``10 * 1.05^j``: at most 2.5 % off); the longest run of untied values, or else the largest
    count, takes up the difference.

    Each distinct pattern costs a simulation (~0.15 s), and the counts of a discrete series vary from one
    baseline to the next: binary rewards at p = 0.9 give ~60 patterns, ~5 on the grid; a zero-inflated series
    (zero for most calls, untied otherwise) gives one per count of zeros. Thresholds move slowly with the counts
    (1.5 % for a minority of 100 instead of 110, at the defaults), and not at all with the largest; they move
    fast with small counts (10.6 for a minority of 5, 8.0 for 10), which are kept.

    >>> coarse_ties((5, 103, 892))
    (5, 104, 891)
    >>> coarse_ties((103, 1, 1, 1, 1, 2, 1))  # 104 zeros: the run of four untied values gives one up
    (104, 1, 1, 1, 2, 1)
    """
    counts = [int(c) for c in counts]
    out = [c if c <= 10 else round(10 * TIE_GRID_RATIO ** round(math.log(c / 10, TIE_GRID_RATIO))) for c in counts]
    excess = sum(out) - sum(counts)
    start, length = _longest_untied_run(out)
    if excess and length > 0 and excess < length:
        return tuple(out[:start] + [1] * (length - excess) + out[start + length :])
    largest = max(range(len(out)), key=out.__getitem__)
    out[largest] -= excess
    return tuple(out)


def _longest_untied_run(counts: list[int]) -> tuple[int, int]:
    """``(start, length)`` of the longest run of counts of 1 (``(0, 0)`` when there is none)."""
    best, start = (0, 0), None
    for i, c in enumerate([*counts, 0]):
        if c == 1 and start is None:
            start = i
        elif c != 1 and start is not None:
            best = max(best, (start, i - start), key=lambda run: run[1])
            start = None
    return best


def tie_ranks(counts: tuple[int, ...] | np.ndarray) -> np.ndarray:
    """The sorted ranks of a baseline whose sorted distinct values occur ``counts`` times: every baseline with
    these ties has the same placements as these.

    >>> tie_ranks((2, 1)).tolist()
    [0.0, 0.0, 1.0]
    """
    return np.repeat(np.arange(len(counts), dtype=float), counts)


@lru_cache(maxsize=256)
def _threshold(
    n_baseline: int,
    ties: tuple[int, ...] | None,
    windows: tuple[int, ...],
    every: int,
    rate: float,
    quiet_looks: int,
    replicates: int,
    length: int,
    seed: int,
    spread_weight: float,
    phi: float = 0.0,
) -> float:
    """:func:`calibrate_threshold` of a continuous baseline (``ties=None``) or of one with these ties, serially
    dependent as an AR(1) with coefficient ``phi`` (0: independent): from :mod:`.presimulated` for the default
    settings' points, else simulated."""
    args = (n_baseline, ties, windows, every, rate, quiet_looks, replicates, length, seed, spread_weight, phi)
    known = presimulated.lookup(*args)
    return known if known is not None else _simulated_threshold(*args)


def _simulated_threshold(
    n_baseline: int,
    ties: tuple[int, ...] | None,
    windows: tuple[int, ...],
    every: int,
    rate: float,
    quiet_looks: int,
    replicates: int,
    length: int,
    seed: int,
    spread_weight: float,
    phi: float = 0.0,
) -> float:
    """:func:`_threshold` simulated now, never looked up (what :mod:`.presimulated` holds is made by this)."""
    values = None if ties is None else tie_ranks(ties)
    m = simulate_max_statistic(
        n_baseline,
        windows,
        every,
        values=values,
        replicates=replicates,
        length=length,
        seed=seed,
        spread_weight=spread_weight,
        phi=phi,
    )
    return _threshold_for(m, quiet_looks, rate * m.size * every)


KS_MEMO: dict[tuple[int, int, int], tuple[float, float]] = {}
"""Process-wide memo of exact KS results keyed by ``(n1, n2, h)`` with ``D = h / lcm(n1, n2)``."""

_MAX_EXACT_N = 10_000  # ks_2samp's 'auto' is exact up to this sample size, asymptotic beyond


def ks_exact(n1: int, n2: int, h: int) -> tuple[float, float] | None:
    """``(statistic, pvalue)`` of ``scipy.stats.ks_2samp`` (two-sided, default method) for ``D = h / lcm(n1, n2)``.

    Calls the routine ``ks_2samp`` itself uses -- exact (Hodges) up to 10,000 values per
    sample, scipy's asymptotic ``kstwo`` law beyond or when the exact sum overflows -- so
    the numbers are scipy's to the last bit. ``None`` when that routine is not importable.
    Memoised process-wide on ``(n1, n2, h)``.
    """
    key = (n1, n2, h)
    hit = KS_MEMO.get(key)
    if hit is not None:
        return hit
    if _attempt_exact_2kssamp is None:  # pragma: no cover - depends on scipy's layout
        return None
    g = math.gcd(n1, n2)
    d = h / (n1 // g * n2)
    ok = False
    if max(n1, n2) <= _MAX_EXACT_N:
        with np.errstate(all="ignore"):
            ok, d, prob = _attempt_exact_2kssamp(n1, n2, g, d, "two-sided")
    if not ok:
        m, k = sorted([float(n1), float(n2)], reverse=True)
        prob = stats.kstwo.sf(d, np.round(m * k / (m + k)))
    hit = (float(d), float(np.clip(prob, 0.0, 1.0)))
    KS_MEMO[key] = hit
    return hit


def ks_pvalue(sorted_baseline: np.ndarray, left: np.ndarray, right: np.ndarray, d: float) -> tuple[float, float]:
    """``(statistic, pvalue)`` of ``scipy.stats.ks_2samp`` (default method) for a window known by its placements.

    The p-value depends only on the two sizes and on D, which lives on the lattice
    ``h / lcm(n1, n2)``: :func:`ks_exact` answers from ``(n1, n2, h)``. Should scipy's
    exact routine not be importable, scipy's public ``ks_2samp`` is called on the
    baseline and a *surrogate* window -- one value per window value with the same
    position among the baseline values -- which has exactly the same D, hence exactly
    scipy's p-value.
    """
    n1, n2 = len(sorted_baseline), len(left)
    lcm = n1 // math.gcd(n1, n2) * n2
    key = (n1, n2, round(d * lcm))
    hit = ks_exact(*key)
    if hit is None:  # pragma: no cover - depends on scipy's layout
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


def alarm_threshold(
    settings: DriftSettings,
    n: int | None = None,
    values: np.ndarray | None = None,
    *,
    phi: float = 0.0,
) -> float:
    """The calibrated alarm threshold of a baseline of ``n`` values (default ``baseline_size``) under ``settings``.

    ``values=None``: a tie-free baseline (the distribution-free rank calibration: presimulated for the default
    settings, else ~0.3 s the first time, then cached for the process: a worker calls this for every dependence
    grid point at start-up, see :func:`warm_caches`, so no input waits for it); else the baseline,
    whose ties are bootstrapped (see :func:`calibrate_threshold`). ``phi``: the baseline's serial dependence
    (an AR(1) coefficient on the grid of :meth:`DriftSettings.dependence_of`).

    >>> 3.5 < alarm_threshold(DriftSettings()) < 5.0
    True
    """
    s = settings
    return calibrate_threshold(
        s.baseline_size if n is None else n,
        s.windows,
        s.look_every,
        s.rate_per_value,
        s.window // s.look_every,
        values=values,
        replicates=s.calibration_replicates,
        length=s.calibration_length,
        seed=s.calibration_seed,
        spread_weight=s.spread_weight,
        phi=phi,
    )


def warm_caches(settings: DriftSettings, *, min_pvalue: float = 1e-8) -> int:
    """Compute ahead what monitoring under ``settings`` caches per process; returns the KS p-values computed.

    For ``settings`` and what each of its per-series overrides makes of them: the alarm threshold
    (:func:`alarm_threshold`) of a tie-free baseline at every point of the dependence grid
    (:meth:`DriftSettings.dependence_grid`; ~0.3 s each, nothing for the defaults, whose thresholds are in
    :mod:`.presimulated`) and of a constant one, and the exact KS p-value of every report window (full, or the
    configured one at each report look while it fills) for each statistic ``D`` a stationary window plausibly
    shows (down to ``min_pvalue``; each costs up to 0.2 ms, a few seconds for the default windows). A worker calls
    this while it joins its group, so the first looks of every series do not compute them in front of the inputs.

    >>> s = DriftSettings(windows=(100,), window=100, calibration_replicates=20, calibration_length=2_000,
    ...                   overrides={"*/latency_ms": {"window": 200, "windows": (200,)}})
    >>> _ = warm_caches(s)
    >>> (s.baseline_size, 100, 0) in KS_MEMO, (s.baseline_size, 200, 0) in KS_MEMO, warm_caches(s)
    (True, True, 0)
    >>> hits = _threshold.cache_info().hits
    >>> _ = alarm_threshold(s, phi=s.dependence_of(0.42)), alarm_threshold(s, values=np.full(1000, 0.002))
    >>> _threshold.cache_info().hits - hits  # calibrated while warming: cached
    2
    """
    computed = 0
    for each in _with_overrides(settings):
        n = each.baseline_size
        # as DriftMonitor calibrates them: rank unless told to bootstrap, whose tie-free pattern is any n distinct
        untied = np.arange(n, dtype=float) if each.calibration == "bootstrap" else None
        for phi in each.dependence_grid():
            alarm_threshold(each, values=untied, phi=phi)
        if each.calibration != "rank":
            alarm_threshold(each, values=np.zeros(n))  # a constant series (a fixed cost): its estimated phi is 0
        # the report windows, and the configured window's lengths at the report looks while it fills
        filling = range(each.evaluate_every, each.window, each.evaluate_every)
        for w in sorted({*each.windows, each.window, *filling}):
            lcm = n // math.gcd(n, w) * w
            for h in range(lcm + 1):
                computed += (n, w, h) not in KS_MEMO
                hit = ks_exact(n, w, h)
                if hit is None or hit[1] < min_pvalue:
                    break
    return computed


def _with_overrides(settings: DriftSettings) -> list[DriftSettings]:
    """``settings`` and what each of its override keys (``agent/feature``, ``*`` for any) makes of them, distinct."""
    variants = [settings]
    for key in settings.overrides:
        agent, _, feature = key.partition("/")
        variants.append(settings.for_series(agent, feature))
    return list(dict.fromkeys(variants))
