"""Drift of every monitored series against its baseline: PSI, KS, mean shift, variance ratio, and a calibrated alarm.

A series is ``(agent_name, feature[, variant_id])``. Its first ``baseline_size``
values (or values pinned by a person) are the baseline; after that, every
``evaluate_every`` values the monitor reports the seed's statistics on the last
``window`` values and decides its alarm. Pure: no clock (time is the events'
``ts``), no I/O.

The seed's grades (PSI < 0.1 none, < 0.2 low, < 0.25 medium, else high; mean
shift > 2 sd; sd ratio outside [0.5, 2]) are *reported*. They are not the
alarm: fixed thresholds re-tested on a sliding window alarm constantly on a
stationary stream. The alarm watches rank statistics (Mann-Whitney location
and a Mood-type spread statistic of the window's placements among the baseline
values) over windows 25/50/75/100/150/200/300/500 at once, looked at every
``look_every`` = 25 values, against one threshold simulated to the false-alarm
budget -- see :mod:`processors.drift_calibration`. Reports still go out every
``evaluate_every`` = 50 values, plus one at the alarm look where the alarm fires
or resolves. Measured on the unit tests' seeded N(50, 10) streams (river ADWIN
on the same streams beside): 6 false alarms over 100 seeds x 5,000 values (budget
5 expected, test bound 10); ADWIN 0 over 20 seeds. 0.5 sd shift: median delay
75 (max 300, every seed caught) vs ADWIN 80; 1 sd: 25 vs 48; doubled sd: 25,
ADWIN misses half the seeds within 1,000 values.

Cost: ``update`` only appends; the work is batched once per look with a few
numpy calls. Every window's sums (placement sums and PSI bin counts, integers
kept exactly in float64) are running sums -- the new block in, the leaving
block out -- so nothing grows with the window length. KS D of all alarm
windows comes from one radix sort of their concatenated *cells* (a value's
``#{b < x} + #{b <= x}``); a configured window longer than every alarm window
keeps cell counts instead (one pass over ``2n + 1`` cells). KS p-values are
scipy's own exact routine, memoised process-wide on ``(n1, n2, h)``. What depends only on the sizes (the cell
tables of a tie-free baseline, the ring's leaving-block index) is one read-only copy shared by every series, so
it stays in cache across a thousand series.

References
----------
Yurdakul, B. (2018). Statistical properties of population stability index. PhD thesis, Western Michigan University.
Kolmogorov-Smirnov two-sample test: Hodges, J. L. (1958). The significance probability of the Smirnov
two-sample test. *Arkiv for Matematik* 3; implemented as ``scipy.stats.ks_2samp``.
Bifet, A. and Gavalda, R. (2007). Learning from time-changing data with adaptive windowing (ADWIN). SDM.
Alibi Detect online detectors, calibrated to an expected run time: https://docs.seldon.io/projects/alibi-detect

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(7)
>>> m = DriftMonitor(DriftSettings(), agent_name="hunter", feature="reward")
>>> reports = [m.update(float(x), 1_700_000_000_000 + i) for i, x in enumerate(rng.normal(50, 10, 1500))]
>>> r = [x for x in reports if x][-1]
>>> r["baseline_size"], r["window_size"], r["severity"], r["alarm"]
(1000, 500, 'none', False)
>>> shifted = [m.update(float(x), 1_700_000_100_000 + i) for i, x in enumerate(rng.normal(65, 10, 100))]
>>> m.firing, m.fired_at - 1_700_000_100_000  # fired on the first alarm look after the shift
(True, 24)
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
from scipy import stats

from processors.base import Emission, derive_id, make_alert, pack_array, unpack_array
from processors.drift_calibration import (
    KS_MEMO,
    calibrate_threshold,
    ks_exact,
    ks_pvalue,
    placement_moments,
    window_scales,
)

__all__ = [
    "CategoricalDriftMonitor",
    "DriftMonitor",
    "DriftProcessor",
    "DriftSettings",
    "psi",
    "psi_grade",
]

OUTCOME_FIELDS = ("reward", "latency_ms", "cost_usd")
REPORT_TOPIC = "drift.reports"


@dataclass(frozen=True)
class DriftSettings:
    """Every number of the drift monitor; field names are the keys of ``[drift]`` in ``reverify.toml``.

    Parameters
    ----------
    baseline_size
        Values learned as the baseline (or the size of a pinned baseline, which may differ).
    bins
        Quantile bins of the baseline for PSI (numpy's default quantile method); outer bins are open.
    window
        The configured count window whose PSI / KS / mean shift / sd ratio head the report.
    evaluate_every
        A DriftReport every this many values (and on an alarm transition in between); a multiple of ``look_every``.
    look_every
        The alarm looks at its statistic every this many values: a look is a few numpy calls, so looking twice
        per report shortens the delay to an alarm by a quarter of a report period on average at no real cost.
    psi_epsilon
        Proportion used for an empty bin (both sides) so ``ln(c / b)`` stays finite.
    windows
        Window lengths the alarm watches at once (multiples of ``look_every``): short ones catch a large shift
        fast, long ones a small one surely; dense short lengths let a shift be judged on a window that just
        covers it. Each is also a row of the report.
    spread_weight
        Weight of the spread (Mood) statistic against the location (Mann-Whitney) one. Below 1 the spread
        statistic takes a smaller share of the false-alarm budget, which lowers the common threshold for
        location shifts; a variance change as large as the seed flags (sd ratio 2) is still caught in 25-50 values.
    false_alarm_budget
        Expected false alarm episodes per ``budget_values`` values of a stationary series.
    budget_values
        See ``false_alarm_budget`` (default 10,000).
    n_series
        Series sharing the budget. The per-series budget is ``false_alarm_budget / n_series`` (Bonferroni). For an
        expected count of false alarms this is exact by linearity; Holm's step-down has no fixed family of
        p-values to step through on a never-ending stream, so it would buy nothing here.
    psi_grades
        PSI cut points for low / medium / high (seed: 0.1, 0.2, 0.25).
    mean_shift_sd
        ``|mean shift|`` in baseline sds above which the seed flags a mean shift.
    variance_ratio_bounds
        Ratio of standard deviations outside which the seed flags a variance change.
    calibration
        ``"rank"``: threshold simulated once for continuous data and shared (rank statistics are distribution-free);
        ``"bootstrap"``: resample this baseline (use for tied / discrete data); ``"auto"``: bootstrap when the
        baseline has ties.
    calibration_replicates, calibration_length, calibration_seed
        Size and seed of the calibration simulation.
    detectors
        river detectors run beside, per series: any of ``"adwin"``, ``"kswin"``, ``"page_hinkley"``.
    categorical
        Outcome ``attributes`` keys monitored as categorical series.
    max_categories
        Baseline categories kept by frequency; the rest and unseen ones share an ``"other"`` bucket.
    per_variant
        Also keep a series per ``variant_id`` beside the agent-level one.
    overrides
        Per-series overrides: ``{"agent/feature": {"window": 1000}}``; ``"*"`` matches any agent or feature.
    """

    baseline_size: int = 1000
    bins: int = 10
    window: int = 500
    evaluate_every: int = 50
    look_every: int = 25
    psi_epsilon: float = 1e-4
    windows: tuple[int, ...] = (25, 50, 75, 100, 150, 200, 300, 500)
    spread_weight: float = 0.9
    false_alarm_budget: float = 0.1
    budget_values: int = 10_000
    n_series: int = 1
    psi_grades: tuple[float, float, float] = (0.1, 0.2, 0.25)
    mean_shift_sd: float = 2.0
    variance_ratio_bounds: tuple[float, float] = (0.5, 2.0)
    calibration: str = "auto"
    calibration_replicates: int = 250
    calibration_length: int = 40_000
    calibration_seed: int = 0
    detectors: tuple[str, ...] = ()
    categorical: tuple[str, ...] = ()
    max_categories: int = 20
    per_variant: bool = False
    overrides: Mapping[str, Mapping[str, Any]] = field(default_factory=dict, hash=False, compare=False)

    def __post_init__(self) -> None:
        for name in ("windows", "psi_grades", "variance_ratio_bounds", "detectors", "categorical"):
            object.__setattr__(self, name, tuple(getattr(self, name)))  # TOML gives lists
        e = self.look_every
        if e < 1 or self.baseline_size < 2 or self.bins < 1 or not self.windows:
            raise ValueError("look_every, baseline_size, bins and windows must be positive (baseline_size >= 2)")
        for w in (*self.windows, self.window, self.evaluate_every):
            if w < e or w % e:
                raise ValueError(f"window {w} and evaluate_every must be positive multiples of look_every={e}")
        if self.spread_weight <= 0:
            raise ValueError("spread_weight must be positive")
        if self.calibration not in ("rank", "bootstrap", "auto"):
            raise ValueError("calibration must be rank, bootstrap or auto")
        unknown = set(self.detectors) - set(_DETECTORS)
        if unknown:
            raise ValueError(f"unknown detectors {sorted(unknown)}; use {sorted(_DETECTORS)}")

    @property
    def rate_per_value(self) -> float:
        """False-alarm episodes allowed per value of one series."""
        return self.false_alarm_budget / self.budget_values / max(self.n_series, 1)

    def for_series(self, agent_name: str, feature: str) -> DriftSettings:
        """These settings with the overrides matching the series applied (most specific last)."""
        if not self.overrides:
            return self
        merged: dict[str, Any] = {}
        for key in ("*/*", f"{agent_name}/*", f"*/{feature}", f"{agent_name}/{feature}"):
            merged.update(self.overrides.get(key, {}))
        return dataclasses.replace(self, **merged) if merged else self


def _make_detector(name: str) -> Any:
    from river import drift

    if name == "adwin":
        return drift.ADWIN()
    if name == "kswin":
        return drift.KSWIN(seed=0)
    return drift.PageHinkley()


_DETECTORS = ("adwin", "kswin", "page_hinkley")


def psi(current: np.ndarray, baseline: np.ndarray, epsilon: float = 1e-4) -> float:
    """Population stability index ``sum((c - b) * ln(c / b))`` of two proportion vectors, empties -> ``epsilon``.

    >>> round(psi(np.array([0.5, 0.5]), np.array([0.25, 0.75])), 4)
    0.2747
    >>> psi(np.array([0.5, 0.5]), np.array([0.5, 0.5]))
    0.0
    """
    c = np.where(current > 0, current, epsilon)
    b = np.where(baseline > 0, baseline, epsilon)
    return float(np.sum((c - b) * np.log(c / b)))


def psi_grade(value: float, cuts: tuple[float, float, float] = (0.1, 0.2, 0.25)) -> str:
    """The seeds' PSI grade.

    >>> [psi_grade(v) for v in (0.05, 0.1, 0.22, 0.3)]
    ['none', 'low', 'medium', 'high']
    """
    if value < cuts[0]:
        return "none"
    if value < cuts[1]:
        return "low"
    return "medium" if value < cuts[2] else "high"


def _alert_severity(grade: str) -> str:
    # a calibrated alarm is worth a look even when the PSI grade is small
    return "critical" if grade == "high" else "warning"


class _BaseMonitor:
    """What numeric and categorical monitors share: learning, pending block, alarm lifecycle, report frame."""

    def __init__(
        self,
        settings: DriftSettings | None = None,
        *,
        agent_name: str = "",
        feature: str = "",
        variant_id: str | None = None,
    ) -> None:
        self.settings = settings or DriftSettings()
        self.agent_name, self.feature, self.variant_id = agent_name, feature, variant_id
        self.values_seen = 0
        self.generation = 0
        self.firing = False
        self.fired_at: int | None = None
        self.transition: str | None = None  # "fired" / "resolved" at the last evaluation, else None
        self.last_statistic = 0.0
        self._quiet = 0
        self._learning: list[Any] = []
        self._pending: list[Any] = []
        self._block_ts0 = 0
        self._last_ts = 0
        self._ready = False
        self._detectors = {name: _make_detector(name) for name in self.settings.detectors}
        self._detected = dict.fromkeys(self._detectors, False)

    # -- lifecycle -----------------------------------------------------------------
    def reset_baseline(self) -> None:
        """Forget the baseline and the window; the next ``baseline_size`` values become the new baseline."""
        self._ready = False
        self._learning = []
        self._pending = []
        self.generation += 1
        self.firing, self._quiet, self.transition = False, 0, None

    def pin_baseline(self, values: Iterable[Any]) -> None:
        """Use ``values`` (e.g. a person's chosen period) as the baseline and start a fresh window."""
        self.reset_baseline()
        self._set_baseline(list(values))

    def _decide(self, statistic: float, threshold: float, ts: int) -> None:
        self.last_statistic = statistic
        self.transition = None
        if statistic > threshold:
            self._quiet = 0
            if not self.firing:
                self.firing, self.fired_at, self.transition = True, ts, "fired"
        elif self.firing:
            self._quiet += 1
            # resolved once the series stayed within its budget for a whole configured window
            if self._quiet * self.settings.look_every >= self.settings.window:
                self.firing, self._quiet, self.transition = False, 0, "resolved"

    def _feed(self, value: float) -> None:
        for name, det in self._detectors.items():
            det.update(value)
            if det.drift_detected:
                self._detected[name] = True

    def _frame(self, ts: int) -> dict[str, Any]:
        detected, self._detected = self._detected, dict.fromkeys(self._detectors, False)
        return {
            "event_id": derive_id(
                "drift.report", self.agent_name, self.feature, self.variant_id, self.generation, self.values_seen
            ),
            "ts": ts,
            "agent_name": self.agent_name,
            "feature": self.feature,
            "variant_id": self.variant_id,
            "values_seen": self.values_seen,
            "detectors": detected,
            "window_end": ts,
        }

    def _set_baseline(self, values: list[Any]) -> None:  # pragma: no cover - abstract
        raise NotImplementedError


class DriftMonitor(_BaseMonitor):
    """Drift of one numeric series: baseline, sliding count windows, an alarm look every ``look_every`` values.

    ``update(value, ts)`` returns a DriftReport dict (field names of
    ``schemas/DriftReport.avsc``) every ``evaluate_every`` values once the
    baseline is known -- and also on an alarm look in between when the alarm
    fires or resolves there, so the Alert is not held back to the next report --
    else ``None``. After an update, ``firing`` tells whether the calibrated alarm
    is on and ``transition`` whether it just fired or resolved. Non-finite values
    are skipped (counted in ``skipped``).
    """

    def __init__(
        self,
        settings: DriftSettings | None = None,
        *,
        agent_name: str = "",
        feature: str = "",
        variant_id: str | None = None,
    ) -> None:
        super().__init__(settings, agent_name=agent_name, feature=feature, variant_id=variant_id)
        self.skipped = 0
        self.threshold = math.inf
        self._every = self.settings.look_every

    def update(self, value: float, ts: int) -> dict[str, Any] | None:
        """Add one value observed at ``ts`` (epoch ms)."""
        if not math.isfinite(value):
            self.skipped += 1
            return None
        self.values_seen += 1
        self._last_ts = ts
        if self._detectors:
            self._feed(value)
        if not self._ready:
            self._learning.append(value)
            if len(self._learning) >= self.settings.baseline_size:
                self._set_baseline(self._learning)
            return None
        pending = self._pending
        if not pending:
            self._block_ts0 = ts
        pending.append(value)
        if len(pending) < self._every:
            return None
        return self._evaluate()

    # -- baseline ------------------------------------------------------------------
    def _set_baseline(self, values: list[Any]) -> None:
        s = self.settings
        base = np.sort(np.asarray(values, dtype=float))
        base = base[np.isfinite(base)]
        if len(base) < 2:
            raise ValueError("a baseline needs at least two finite values")
        self._learning = []
        n = len(base)
        self._base = base
        self._n = n
        self._mean_b = float(base.mean())
        self._sd_b = float(base.std())
        self._edges = np.quantile(base, np.linspace(0.0, 1.0, s.bins + 1))[1:-1]
        self._edges_list = [float(e) for e in self._edges]
        self._base_props = np.bincount(np.searchsorted(self._edges, base, "right"), minlength=s.bins) / n
        self._base_props_eps = np.where(self._base_props > 0, self._base_props, s.psi_epsilon)
        moments = placement_moments(base)
        # A value's *cell* is #{b < x} + #{b <= x} in [0, 2n]: its midrank among the baseline values, exact under
        # ties. Cell -> (-#{b <= x}/n, #{b < x}/n) is all KS needs of a window value, so nothing is re-sorted
        # against the baseline.
        uniq, counts = np.unique(base, return_counts=True)
        if len(uniq) == n:
            # without ties the tables depend on n alone: one shared copy stays in cache across the series, where
            # 64 KB per series would be evicted between two looks of the same series
            self._cell_lr, self._cell_table = _cell_tables(n)
        else:
            self._cell_lr, self._cell_table = _cell_tables_of(n, counts)
        every = self._every
        self._cap = max(s.window, *s.windows)
        self._nblocks = self._cap // every
        self._ring = np.zeros(self._cap, dtype=np.int16 if 2 * n < 2**15 else np.int32)
        # one row per block of `every` values: sum(c - n), sum((c - n)^2), sum(x - mean_b), sum((x - mean_b)^2),
        # then the block's PSI bin counts; the first two and the counts are integers, exact in float64
        self._blocks = np.zeros((self._nblocks, 4 + s.bins))
        self._block_ts = np.zeros(self._nblocks, dtype=np.int64)
        self._row = np.zeros(4 + s.bins)
        # rows: the block's cells, its values less the baseline mean, ones -- so one matmul gives every block sum
        self._v = np.zeros((3, every))
        self._v[2] = 1.0
        self._block_pos = 0
        self._filled = 0  # values in the ring, up to cap
        self._looks = 0
        wins = sorted(set(s.windows) | {s.window})
        self._wins = np.array(wins)
        self._wins_list = wins
        self._head = wins.index(s.window)
        self._alarm_rows = [i for i, w in enumerate(wins) if w in s.windows]
        k = self._wins // every
        # running sums of every window (alarm windows and the configured one): + the new block, - the one leaving
        self._sums = np.zeros((len(wins), 4 + s.bins))
        self._leave = _leaving_blocks(self._nblocks, tuple(k.tolist()))
        s1, mu2w, s2 = window_scales(self._wins, n, moments, s.spread_weight)
        alarm = np.isin(self._wins, s.windows)
        # window sums of c - n are 2n * sum(p), of (c - n)^2 are 4n^2 * sum(p^2): fold the units into the scales
        self._z_scale = np.stack([s1 / (2 * n), s2 / (4.0 * n * n)], axis=1) * alarm[:, None]
        self._z_off = np.stack([np.zeros(len(wins)), mu2w * 4.0 * n * n], axis=1)
        # the configured window keeps its cell counts only when it is longer than every alarm window; otherwise its
        # KS comes with theirs from one sort of at most sum(windows) cells
        self._cells = np.zeros(2 * n + 1, dtype=np.int32) if s.window > max(s.windows) else None
        self._eps_by_max = 0.0 <= s.psi_epsilon <= 1.0 / self._cap
        self._lcm = {w: n // math.gcd(n, w) * w for w in wins}  # KS lattice of each window, for the memo key
        calibration = s.calibration
        if calibration == "auto":
            calibration = "bootstrap" if len(uniq) < n else "rank"
        self.threshold = calibrate_threshold(
            n,
            s.windows,
            every,
            s.rate_per_value,
            s.window // every,
            values=None if calibration == "rank" else base,
            replicates=s.calibration_replicates,
            length=s.calibration_length,
            seed=s.calibration_seed,
            spread_weight=s.spread_weight,
        )
        self._ready = True

    @property
    def ready(self) -> bool:
        """Whether the baseline is known."""
        return self._ready

    @property
    def baseline(self) -> np.ndarray | None:
        """The sorted baseline values."""
        return self._base if self._ready else None

    # -- evaluation ----------------------------------------------------------------
    def _evaluate(self) -> dict[str, Any] | None:
        """One alarm look over the block just completed; a report on report looks and on alarm transitions."""
        every = self._every
        n = self._n
        # row 0: the values' cells, row 1: the values less the baseline mean; then one matmul gives every sum
        v = self._v
        v[1] = self._pending
        self._pending = []
        x = v[1]
        base = self._base
        np.add(base.searchsorted(x, "left"), base.searchsorted(x, "right"), out=v[0])
        row = self._row
        row[4:] = np.bincount(self._edges.searchsorted(x, "right"), minlength=self.settings.bins)
        x -= self._mean_b
        (scc, _, sc), (_, sxx, sx), _ = (v @ v.T).tolist()
        # sums of c - n and (c - n)^2 from those of c and c^2: integers below 2^53, exact in float64
        row[:4] = (sc - every * n, scc - 2 * n * sc + every * n * n, sx, sxx)
        bp = self._block_pos
        sums = self._sums
        sums += row - self._blocks[self._leave[bp]]  # every window: the new block in, the one leaving out
        self._blocks[bp] = row
        self._block_ts[bp] = self._block_ts0
        start = bp * every
        if self._cells is not None and self._filled >= self.settings.window:
            # the block leaving the configured window, read before the write below (it is the same block when
            # the configured window fills the ring)
            old = (start - self.settings.window) % self._cap
            np.subtract.at(self._cells, self._ring[old : old + every], 1)
        ring_block = self._ring[start : start + every]
        ring_block[...] = v[0]  # integer-valued floats: the cast is exact
        if self._cells is not None:
            np.add.at(self._cells, ring_block, 1)
        self._block_pos = bp = (bp + 1) % self._nblocks
        if bp == 0:
            self._refresh_sums()
        zz = np.abs(sums[:, :2] - self._z_off)
        zz *= self._z_scale
        if self._filled < self._cap:
            self._filled += every
            full = self._wins <= self._filled
            zz *= full[:, None]
        else:
            full = None
        self._decide(float(zz.max()), self.threshold, self._last_ts)
        self._looks += 1
        if self._looks % self._report_looks and self.transition is None:
            return None
        return self._report(zz.max(axis=1), full)

    def _refresh_sums(self) -> None:
        """Recompute the running window sums from the blocks once per turn of the ring.

        The integer columns stay exact anyway; this bounds the rounding drift of the float ones (sums of
        ``x - mean_b``) at a cost of one pass over the ring per turn, i.e. O(1) per look.
        """
        order = (self._block_pos - 1 - np.arange(self._nblocks)) % self._nblocks  # newest first
        self._sums[:] = self._blocks[order].cumsum(axis=0)[self._wins // self._every - 1]

    @property
    def _report_looks(self) -> int:
        return self.settings.evaluate_every // self._every

    def _report(self, z: np.ndarray, full: np.ndarray | None) -> dict[str, Any]:
        s = self.settings
        every = self._every
        n = self._n
        wins_list = self._wins_list
        sums = self._sums
        if full is None:
            rows_at = self._alarm_rows
            wh = s.window
        else:
            rows_at = [i for i in self._alarm_rows if full[i]]
            wh = min(s.window, self._filled)
        # PSI of every window at once; empty proportions -> epsilon on both sides
        cur = sums[:, 4:] / self._wins[:, None]
        head = sums[self._head]
        if wh != s.window:  # the configured window is still filling: its sums are those of what there is of it
            cur[self._head] = head[4:] / wh
        # proportions are counts / w: when epsilon is below 1 / longest window, a max is the same as the where
        cur = np.maximum(cur, s.psi_epsilon) if self._eps_by_max else np.where(cur > 0, cur, s.psi_epsilon)
        bpe = self._base_props_eps
        psis = np.einsum("ij,ij->i", cur - bpe, np.log(cur / bpe)).tolist()
        # KS D of the alarm windows (and of the configured one unless it keeps cell counts): one sort
        ks_wins = [wins_list[i] for i in rows_at]
        if self._cells is None and wh not in ks_wins:
            ks_wins.append(wh)
        ks_d = dict(zip(ks_wins, self._ks_windows(tuple(ks_wins)), strict=True))
        if self._cells is not None:
            ks_d[wh] = self._ks_from_cells(wh)
        threshold = self.threshold
        z_list = z.tolist()
        rows = []
        for i in rows_at:
            w = wins_list[i]
            ks_stat, ks_p = self._ks_result(w, ks_d[w])
            rows.append(
                {
                    "window": w,
                    "psi": psis[i],
                    "ks_statistic": ks_stat,
                    "ks_pvalue": ks_p,
                    "threshold": threshold,
                    "alarm": z_list[i] > threshold,
                }
            )
        h_ks, h_p = self._ks_result(wh, ks_d[wh])
        h_psi = psis[self._head]
        sum_x, sum_xx = head[2:4].tolist()  # Python floats: cheaper scalar arithmetic than numpy scalars
        mean_d = sum_x / wh
        var_w = max(sum_xx / wh - mean_d * mean_d, 0.0)
        sd_b = self._sd_b if self._sd_b > 0 else 1e-10  # the seed's guard against a constant baseline
        mean_shift = float(mean_d / sd_b)
        ratio = math.sqrt(var_w) / sd_b
        lo, hi = s.variance_ratio_bounds
        ts = self._last_ts
        report = self._frame(ts)
        report.update(
            baseline_size=n,
            bin_edges=list(self._edges_list),
            window_size=wh,
            psi=h_psi,
            ks_statistic=h_ks,
            ks_pvalue=h_p,
            mean_shift=mean_shift,
            variance_ratio=ratio,
            severity=psi_grade(h_psi, s.psi_grades),
            mean_shift_flag=abs(mean_shift) > s.mean_shift_sd,
            variance_flag=not lo <= ratio <= hi,
            alarm=self.firing,
            windows=rows,
            window_start=int(self._block_ts[(self._block_pos - wh // every) % self._nblocks]),
        )
        return report

    def _ks_result(self, w: int, d: float) -> tuple[float, float]:
        """``(statistic, pvalue)`` exactly as ``scipy.stats.ks_2samp`` gives them, from the memo when seen before."""
        n = self._n
        lcm = self._lcm.get(w) or n // math.gcd(n, w) * w  # not precomputed: a configured window still filling
        key = (n, w, round(d * lcm))
        hit = KS_MEMO.get(key)
        if hit is None:
            hit = ks_exact(*key)
            if hit is None:  # pragma: no cover - scipy without its exact routine: ks_2samp on a surrogate window
                lr = self._cell_lr[self._last_cells(w)]
                hit = ks_pvalue(self._base, lr[:, 0], lr[:, 1], d)
        return hit

    def _last_cells(self, w: int) -> np.ndarray:
        """Cells of the last ``w`` values (oldest first)."""
        end = self._block_pos * self._every
        return self._ring.take(np.arange(end - w, end), mode="wrap")

    def _ks_windows(self, wins: tuple[int, ...]) -> list[float]:
        """KS D of the last ``w`` values for every ``w`` in ``wins``, from one sort of their concatenated cells.

        For a window sorted by value, ``F_w - F_b`` peaks just after a window value (``j/w - #{b <= x}/n``) and
        ``F_b - F_w`` just before one (``#{b < x}/n - (j-1)/w``); each window's cells are kept apart in the sort
        by adding a per-window offset, and each window's maximum is one ``reduceat``.
        """
        rel, key_off, steps, starts = _segments(wins, 2 * self._n + 1)
        idx = _ring_positions(wins, 2 * self._n + 1, self._block_pos * self._every, self._cap)
        keys = self._ring[idx]
        keys = np.add(keys, key_off, dtype=key_off.dtype)
        keys.sort(kind="stable")  # 16-bit keys: a radix sort
        gathered = self._cell_table.take(keys, axis=0, mode="wrap")  # wrap drops the window's key offset
        gathered += steps
        return np.maximum.reduceat(gathered, starts, axis=0).max(axis=1).tolist()

    def _ks_from_cells(self, w: int) -> float:
        """KS D of the configured window from its cell counts: one pass over ``2n + 1`` cells, whatever ``w``."""
        cnt = self._cells
        cw = np.cumsum(cnt) * (1.0 / w)
        table = self._cell_table
        pos = (cw + table[:, 0]).max()
        neg = (table[:, 1] - cw + cnt * (1.0 / w)).max()
        return float(max(pos, neg, 0.0))

    # -- state ---------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible state. river detectors are not carried (they restart empty after a restore)."""
        state: dict[str, Any] = {
            "kind": "numeric",
            "series": [self.agent_name, self.feature, self.variant_id],
            "values_seen": self.values_seen,
            "generation": self.generation,
            "firing": self.firing,
            "fired_at": self.fired_at,
            "quiet": self._quiet,
            "skipped": self.skipped,
            "learning": [float(v) for v in self._learning],
            "pending": [float(v) for v in self._pending],
            "block_ts0": self._block_ts0,
            "last_ts": self._last_ts,
            "ready": self._ready,
        }
        if self._ready:
            state.update(
                baseline=pack_array(self._base),
                ring=pack_array(self._ring),
                blocks=pack_array(self._blocks),
                sums=pack_array(self._sums),  # carried, not recomputed: a restore continues bit for bit
                block_ts=pack_array(self._block_ts),
                block_pos=self._block_pos,
                filled=self._filled,
                looks=self._looks,
            )
        return state

    @classmethod
    def from_dict(cls, state: Mapping[str, Any], settings: DriftSettings | None = None) -> DriftMonitor:
        """Rebuild a monitor saved with :meth:`to_dict` (same settings)."""
        agent, feature, variant = state["series"]
        m = cls(settings, agent_name=agent, feature=feature, variant_id=variant)
        if state["ready"]:
            m._set_baseline(unpack_array(state["baseline"]).tolist())
            m._ring[:] = unpack_array(state["ring"], m._ring.dtype)
            m._blocks[:] = unpack_array(state["blocks"]).reshape(m._blocks.shape)
            m._sums[:] = unpack_array(state["sums"]).reshape(m._sums.shape)
            m._block_ts[:] = unpack_array(state["block_ts"], np.int64)
            m._block_pos, m._filled, m._looks = state["block_pos"], state["filled"], state["looks"]
            w = min(m.settings.window, m._filled)
            if m._cells is not None and w:
                m._cells[:] = np.bincount(m._last_cells(w), minlength=len(m._cells))
        m._learning = list(state["learning"])
        m._pending = list(state["pending"])
        m.values_seen, m.generation = state["values_seen"], state["generation"]
        m.firing, m.fired_at, m._quiet, m.skipped = state["firing"], state["fired_at"], state["quiet"], state["skipped"]
        m._block_ts0, m._last_ts = state["block_ts0"], state["last_ts"]
        return m


def _cell_tables_of(n: int, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(#{b < x}, #{b <= x})`` per cell of a baseline whose sorted distinct values occur ``counts`` times, and the
    ``(-#{b <= x}/n, #{b < x}/n)`` table KS gathers from."""
    right_u = np.cumsum(counts)
    lr = np.empty((2 * n + 1, 2), dtype=np.int64)
    lr[:] = (0, n)  # cells no value can take: harmless (<= 0) in the all-cells maxima of _ks_from_cells
    gaps = np.concatenate([[0], right_u])
    lr[2 * gaps] = gaps[:, None]  # strictly between distinct values: #< = #<=
    lr[right_u - counts + right_u, 0] = right_u - counts
    lr[right_u - counts + right_u, 1] = right_u
    return lr, np.stack([-lr[:, 1] / n, lr[:, 0] / n], axis=1)


@lru_cache(maxsize=16)
def _cell_tables(n: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_cell_tables_of` for a baseline of ``n`` distinct values, shared by every such series (read-only)."""
    lr, table = _cell_tables_of(n, np.ones(n, dtype=np.int64))
    lr.flags.writeable = table.flags.writeable = False
    return lr, table


@lru_cache(maxsize=64)
def _leaving_blocks(nblocks: int, k: tuple[int, ...]) -> np.ndarray:
    """Per ring position, the block leaving each window (``k`` blocks long); shared by every series (read-only)."""
    leave = (np.arange(nblocks)[:, None] - np.array(k)[None, :]) % nblocks
    leave.flags.writeable = False
    return leave


@lru_cache(maxsize=256)
def _segments(wins: tuple[int, ...], span: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Layout of the concatenated windows for :meth:`DriftMonitor._ks_windows` (shared by every series).

    Returns ring offsets relative to the end (oldest first per window), the per-window sort-key offsets (16-bit
    when they fit, so the sort is a radix sort), the ``(j/w, -(j-1)/w)`` steps of each sorted position, and each
    window's first position.
    """
    lens = np.array(wins)
    seg = np.repeat(np.arange(len(wins)), lens)
    starts = np.concatenate([[0], np.cumsum(lens)[:-1]])
    j = np.arange(len(seg)) - starts[seg] + 1  # 1 .. w within each window
    w = lens[seg].astype(float)
    rel = j - 1 - lens[seg]  # -w .. -1: the last w values, oldest first
    steps = np.stack([j / w, -(j - 1) / w], axis=1)
    key_type = np.int16 if len(wins) * span < 2**15 else np.int64
    return rel, (seg * span).astype(key_type), steps, starts


@lru_cache(maxsize=4096)
def _ring_positions(wins: tuple[int, ...], span: int, end: int, cap: int) -> np.ndarray:
    """Ring positions of the concatenated windows ending at ``end``; cached per ring position, shared by series."""
    return (_segments(wins, span)[0] + end) % cap


class CategoricalDriftMonitor(_BaseMonitor):
    """Drift of a categorical series: PSI over category frequencies with an ``"other"`` bucket.

    The alarm is the two-sample chi-square test of homogeneity (window against
    baseline counts) per window, at the per-look level ``rate * every / len(windows)``
    (a union bound over looks and windows -- conservative, as no simulation is
    needed for a statistic whose null law is known).

    >>> m = CategoricalDriftMonitor(DriftSettings(baseline_size=100, window=100, windows=(50, 100)), feature="tier")
    >>> for i in range(300):
    ...     r = m.update("gold" if i % 4 else "silver", i)
    >>> r["psi"], m.firing
    (0.0, False)
    >>> for i in range(100):
    ...     r = m.update("bronze", 300 + i)
    >>> m.firing, r["severity"]
    (True, 'high')
    """

    OTHER = "other"

    def update(self, value: str, ts: int) -> dict[str, Any] | None:
        """Add one category observed at ``ts`` (epoch ms)."""
        self.values_seen += 1
        self._last_ts = ts
        if not self._ready:
            self._learning.append(value)
            if len(self._learning) >= self.settings.baseline_size:
                self._set_baseline(self._learning)
            return None
        if not self._pending:
            self._block_ts0 = ts
        self._pending.append(value)
        if len(self._pending) < self.settings.look_every:
            return None
        return self._evaluate()

    def _set_baseline(self, values: list[Any]) -> None:
        s = self.settings
        names, counts = np.unique(np.asarray([str(v) for v in values]), return_counts=True)
        keep = np.argsort(-counts, kind="stable")[: s.max_categories]
        categories = [str(names[i]) for i in sorted(keep)]
        index = {c: i for i, c in enumerate(categories)}
        base = np.zeros(len(categories) + 1)
        for v in values:
            base[index.get(str(v), len(categories))] += 1
        self._set_counts(categories, base)

    def _set_counts(self, categories: list[str], base: np.ndarray) -> None:
        s = self.settings
        self.categories = [*categories, self.OTHER]
        self._index = {c: i for i, c in enumerate(categories)}
        self._base_counts = np.asarray(base, dtype=float)
        self._n = int(self._base_counts.sum())
        cap = max(s.window, *s.windows)
        self._nblocks = cap // s.look_every
        self._block_counts = np.zeros((self._nblocks, len(self.categories)), dtype=np.int32)
        self._block_ts = np.zeros(self._nblocks, dtype=np.int64)
        self._block_pos = self._filled = self._looks = 0
        self._cap = cap
        self._learning = []
        alpha = s.rate_per_value * s.look_every / len(s.windows)
        self._chi2_cut = {w: float(stats.chi2.isf(alpha, max(len(self.categories) - 1, 1))) for w in s.windows}
        self.threshold = 1.0  # the statistic below is (chi-square / its cut)
        self._ready = True

    def _evaluate(self) -> dict[str, Any] | None:
        s = self.settings
        k_other = len(self.categories) - 1
        idx = [self._index.get(str(v), k_other) for v in self._pending]
        self._pending = []
        bp = self._block_pos
        self._block_counts[bp] = np.bincount(idx, minlength=len(self.categories))
        self._block_ts[bp] = self._block_ts0
        self._filled = min(self._filled + s.look_every, self._cap)
        self._block_pos = (bp + 1) % self._nblocks
        self._looks += 1
        order = (self._block_pos - 1 - np.arange(self._nblocks)) % self._nblocks
        csum = np.cumsum(self._block_counts[order], axis=0)
        base_p = self._base_counts / self._n
        stat, rows, psis = 0.0, [], {}
        for w in sorted(set(s.windows) | {s.window}):
            if w > self._filled:
                continue
            c = csum[w // s.look_every - 1].astype(float)
            psis[w] = psi(c / w, base_p, s.psi_epsilon)
            if w in s.windows:
                pooled = (c + self._base_counts) / (w + self._n)
                use = pooled > 0
                e_w, e_b = w * pooled[use], self._n * pooled[use]
                chi = float((((c[use] - e_w) ** 2) / e_w).sum() + (((self._base_counts[use] - e_b) ** 2) / e_b).sum())
                z = chi / self._chi2_cut[w]
                stat = max(stat, z)
                p_value = float(stats.chi2.sf(chi, max(int(use.sum()) - 1, 1)))
                rows.append(
                    {
                        "window": w,
                        "psi": psis[w],
                        "ks_statistic": 0.0,
                        "ks_pvalue": p_value,
                        "threshold": self._chi2_cut[w],
                        "alarm": z > 1.0,
                    }
                )
        self._decide(stat, 1.0, self._last_ts)
        if self._looks % (s.evaluate_every // s.look_every) and self.transition is None:
            return None  # an alarm look between reports
        w = min(s.window, self._filled)
        h_psi = psis.get(w)
        if h_psi is None:
            h_psi = psi(csum[w // s.look_every - 1] / w, base_p, s.psi_epsilon)
        report = self._frame(self._last_ts)
        report.update(
            baseline_size=self._n,
            bin_edges=[],
            window_size=w,
            psi=h_psi,
            ks_statistic=0.0,
            ks_pvalue=1.0,
            mean_shift=0.0,
            variance_ratio=1.0,
            severity=psi_grade(h_psi, s.psi_grades),
            mean_shift_flag=False,
            variance_flag=False,
            alarm=self.firing,
            windows=rows,
            window_start=int(self._block_ts[order[w // s.look_every - 1]]),
        )
        return report

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible state: the baseline values and window block counts."""
        state: dict[str, Any] = {
            "kind": "categorical",
            "series": [self.agent_name, self.feature, self.variant_id],
            "values_seen": self.values_seen,
            "generation": self.generation,
            "firing": self.firing,
            "fired_at": self.fired_at,
            "quiet": self._quiet,
            "learning": list(self._learning),
            "pending": list(self._pending),
            "block_ts0": self._block_ts0,
            "last_ts": self._last_ts,
            "ready": self._ready,
        }
        if self._ready:
            state.update(
                categories=self.categories[:-1],
                base_counts=self._base_counts.tolist(),
                block_counts=self._block_counts.tolist(),
                block_ts=self._block_ts.tolist(),
                block_pos=self._block_pos,
                filled=self._filled,
                looks=self._looks,
            )
        return state

    @classmethod
    def from_dict(cls, state: Mapping[str, Any], settings: DriftSettings | None = None) -> CategoricalDriftMonitor:
        """Rebuild a monitor saved with :meth:`to_dict`."""
        agent, feature, variant = state["series"]
        m = cls(settings, agent_name=agent, feature=feature, variant_id=variant)
        if state["ready"]:
            m._set_counts(state["categories"], np.asarray(state["base_counts"]))
            m._block_counts[:] = np.asarray(state["block_counts"], dtype=np.int32)
            m._block_ts[:] = np.asarray(state["block_ts"], dtype=np.int64)
            m._block_pos, m._filled, m._looks = state["block_pos"], state["filled"], state["looks"]
        m._learning, m._pending = list(state["learning"]), list(state["pending"])
        m.values_seen, m.generation, m.firing = state["values_seen"], state["generation"], state["firing"]
        m.fired_at, m._quiet = state["fired_at"], state["quiet"]
        m._block_ts0, m._last_ts = state["block_ts0"], state["last_ts"]
        return m


SeriesKey = tuple[str, str, "str | None"]


class DriftProcessor:
    """The drift monitors of one partition, keyed by series; turns events into DriftReports and Alerts.

    Inputs must be keyed by agent so that a series lives in one partition.
    ``offset`` is ``(partition, offset)``; an input at or below the highest
    applied offset of its partition is a replay and is ignored.

    >>> p = DriftProcessor(DriftSettings(baseline_size=100, window=100, windows=(50, 100)))
    >>> out = []
    >>> for i in range(200):
    ...     ev = {"agent_name": "a", "variant_id": "v1", "ts": i, "reward": float(i % 7), "latency_ms": 10.0 + i % 5,
    ...           "cost_usd": 0.01, "features": {"intent_score": (i % 10) / 10}, "attributes": {}}
    ...     out += p.on_outcome(ev, (0, i))
    >>> sorted({e.key for e in out})
    ['a/cost_usd', 'a/intent_score', 'a/latency_ms', 'a/reward']
    >>> p.on_outcome(ev, (0, 150))
    []
    """

    def __init__(self, settings: DriftSettings | None = None) -> None:
        self.settings = settings or DriftSettings()
        self.monitors: dict[SeriesKey, DriftMonitor | CategoricalDriftMonitor] = {}
        self.offsets: dict[int, int] = {}

    def _replayed(self, offset: tuple[int, int] | None) -> bool:
        if offset is None:
            return False
        partition, off = offset
        if off <= self.offsets.get(partition, -1):
            return True
        self.offsets[partition] = off
        return False

    def monitor(self, agent_name: str, feature: str, variant_id: str | None = None, *, categorical: bool = False):
        """The monitor of a series, created on first use."""
        key = (agent_name, feature, variant_id)
        m = self.monitors.get(key)
        if m is None:
            cls = CategoricalDriftMonitor if categorical else DriftMonitor
            m = cls(
                self.settings.for_series(agent_name, feature),
                agent_name=agent_name,
                feature=feature,
                variant_id=variant_id,
            )
            self.monitors[key] = m
        return m

    def _observe(self, agent: str, variant: str | None, feature: str, value: Any, ts: int, categorical: bool = False):
        out: list[Emission] = []
        variants = (None, variant) if self.settings.per_variant and variant else (None,)
        for v in variants:
            m = self.monitor(agent, feature, v, categorical=categorical)
            report = m.update(value, ts)
            if report is not None:
                out.extend(self._emissions(m, report))
        return out

    def on_outcome(self, event: Mapping[str, Any], offset: tuple[int, int] | None = None) -> list[Emission]:
        """Feed an AgentOutcome: reward, latency_ms, cost_usd, every ``features`` key, categorical attributes."""
        if self._replayed(offset):
            return []
        agent, variant, ts = event["agent_name"], event.get("variant_id"), int(event["ts"])
        out: list[Emission] = []
        for name in OUTCOME_FIELDS:
            value = event.get(name)
            if value is not None:
                out += self._observe(agent, variant, name, float(value), ts)
        for name, value in sorted((event.get("features") or {}).items()):
            out += self._observe(agent, variant, name, float(value), ts)
        attributes = event.get("attributes") or {}
        for name in self.settings.categorical:
            if name in attributes:
                out += self._observe(agent, variant, name, attributes[name], ts, categorical=True)
        return out

    def on_metric(self, event: Mapping[str, Any], offset: tuple[int, int] | None = None) -> list[Emission]:
        """Feed an AgentMetric: one series per metric name."""
        if self._replayed(offset):
            return []
        return self._observe(
            event["agent_name"], event.get("variant_id"), event["name"], float(event["value"]), int(event["ts"])
        )

    def pin_baseline(
        self, agent_name: str, feature: str, values: Iterable[Any], variant_id: str | None = None
    ) -> list[Emission]:
        """``reverify baseline pin``: the given values become the baseline; a firing alert resolves."""
        m = self.monitor(agent_name, feature, variant_id)
        out = self._resolve_for_reset(m)
        m.pin_baseline(values)
        return out

    def reset_baseline(self, agent_name: str, feature: str, variant_id: str | None = None) -> list[Emission]:
        """``reverify baseline reset``: learn a new baseline from the next values; a firing alert resolves."""
        m = self.monitor(agent_name, feature, variant_id)
        out = self._resolve_for_reset(m)
        m.reset_baseline()
        return out

    def _labels(self, m: _BaseMonitor) -> dict[str, str]:
        labels = {"agent_name": m.agent_name, "feature": m.feature}
        if m.variant_id is not None:
            labels["variant_id"] = m.variant_id
        return labels

    def _resolve_for_reset(self, m: _BaseMonitor) -> list[Emission]:
        if not m.firing:
            return []
        m.firing = False
        return [
            make_alert(
                source="drift",
                status="resolved",
                severity="warning",
                title=f"Drift on {m.feature} ({m.agent_name})",
                labels=self._labels(m),
                ts=m._last_ts,
                starts_at=m.fired_at or m._last_ts,
                ends_at=m._last_ts,
                cause=("baseline-reset", m.generation, m.values_seen),
                message="baseline replaced",
            )
        ]

    def _emissions(self, m: _BaseMonitor, report: dict[str, Any]) -> list[Emission]:
        out = [Emission(REPORT_TOPIC, f"{m.agent_name}/{m.feature}", "DriftReport", report)]
        if m.transition is None:
            return out
        firing = m.transition == "fired"
        evidence = {
            # the keys every reverify alert carries: what was measured, against what, on how many values
            "value": m.last_statistic,
            "statistic": m.last_statistic,
            "threshold": m.threshold,
            "sample_size": float(report["window_size"]),
            "psi": report["psi"],
            "ks_statistic": report["ks_statistic"],
            "ks_pvalue": report["ks_pvalue"],
            "mean_shift": report["mean_shift"],
            "variance_ratio": report["variance_ratio"],
            "window_size": float(report["window_size"]),
            "baseline_size": float(report["baseline_size"]),
        }
        out.append(
            make_alert(
                source="drift",
                status="firing" if firing else "resolved",
                severity=_alert_severity(report["severity"]),
                title=f"Drift on {m.feature} ({m.agent_name})",
                message=(
                    f"calibrated drift alarm: statistic {m.last_statistic:.2f} vs threshold {m.threshold:.2f}, "
                    f"PSI {report['psi']:.3f} ({report['severity']}), KS p {report['ks_pvalue']:.2g}"
                ),
                labels=self._labels(m),
                ts=report["ts"],
                starts_at=m.fired_at or report["ts"],
                ends_at=None if firing else report["ts"],
                evidence=evidence,
                cause=(m.transition, m.generation, m.values_seen),
            )
        )
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible state of every series and the applied offsets."""
        return {
            "offsets": {str(k): v for k, v in self.offsets.items()},
            "monitors": [m.to_dict() for m in self.monitors.values()],
        }

    @classmethod
    def from_dict(cls, state: Mapping[str, Any], settings: DriftSettings | None = None) -> DriftProcessor:
        """Rebuild a processor saved with :meth:`to_dict`."""
        p = cls(settings)
        p.offsets = {int(k): int(v) for k, v in state["offsets"].items()}
        for ms in state["monitors"]:
            agent, feature, variant = ms["series"]
            kind = CategoricalDriftMonitor if ms["kind"] == "categorical" else DriftMonitor
            p.monitors[(agent, feature, variant)] = kind.from_dict(ms, p.settings.for_series(agent, feature))
        return p
