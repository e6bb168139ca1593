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

Cost: ``update`` only appends; the work is done once per look (25 values). A
look of one series is a few dozen numpy calls on a few dozen values, so their
fixed cost is most of it: the looks that fall due together -- the series of one
event in :class:`DriftProcessor`, or any :func:`update_many` -- are taken in one
vectorised pass. For that the window state of every series of one *shape*
(settings, baseline size, tie-free baseline) lives in a row of one bank of
arrays, so the pass reads and writes those rows with a few calls whatever the
number of series. Every window's sums (placement sums and PSI bin counts,
integers kept exactly in float64) are running sums -- the new block in, the
leaving block out -- so nothing grows with the window length. KS D of all alarm
windows comes from one sort of their concatenated *cells* (a value's
``#{b < x} + #{b <= x}``), in integer units of ``1 / nw``; a configured window
longer than every alarm window keeps cell counts instead (one pass over ``2n + 1``
cells). KS p-values are scipy's own exact routine, memoised process-wide on
``(n1, n2, h)``. Reports are the same to the last bit whichever series are
looked at together.

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
import weakref
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import chain
from typing import Any, NamedTuple

import numpy as np
from reverify.processors.base import Emission, derive_id, make_alert, pack_array, unpack_array
from reverify.processors.drift.calibration import (
    KS_MEMO,
    calibrate_threshold,
    ks_exact,
    ks_pvalue,
    placement_moments,
    tie_ranks,
    window_scales,
)
from scipy import stats

__all__ = [
    "CategoricalDriftMonitor",
    "DriftMonitor",
    "DriftProcessor",
    "DriftSettings",
    "alarm_threshold",
    "evaluate_looks",
    "psi",
    "psi_grade",
    "update_many",
    "warm_caches",
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
        self._every = self.settings.look_every
        self._batch_key: Hashable = id(self)  # series looked at together share it (see evaluate_looks)

    def update(self, value: Any, ts: int) -> dict[str, Any] | None:
        """Add one value observed at ``ts`` (epoch ms); a DriftReport dict on a report look, else ``None``."""
        return self._look_batch([self])[0] if self.push(value, ts) else None

    def push(self, value: Any, ts: int) -> bool:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def look_due(self) -> bool:
        """Whether a completed block awaits its look (see :func:`evaluate_looks`)."""
        return len(self._pending) == self._every

    @classmethod
    def _look_batch(cls, monitors: list[Any]) -> list[dict[str, Any] | None]:
        """The due looks of ``monitors``, which share a batch key: their reports or ``None``."""
        return [m._evaluate() for m in monitors]

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
    are skipped (counted in ``skipped``). Series fed together are cheaper with
    :func:`update_many` (or :meth:`push` and :func:`evaluate_looks`): the looks
    that fall due together are one vectorised pass, with the same reports.

    The window state lives in a row of its shape's :class:`_Bank`; the monitor
    keeps the row's number and what is plain Python (position, counts, alarm).
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
        self._release: weakref.finalize | None = None

    def push(self, value: float, ts: int) -> bool:
        """Add one value observed at ``ts`` (epoch ms) without looking; ``True`` when a look is due.

        A due look must be taken with :func:`evaluate_looks` before the series' next value.
        """
        if not math.isfinite(value):
            self.skipped += 1
            return False
        self.values_seen += 1
        self._last_ts = ts
        if self._detectors:
            self._feed(value)
        if not self._ready:
            self._learning.append(value)
            if len(self._learning) >= self.settings.baseline_size:
                self._set_baseline(self._learning)
            return False
        pending = self._pending
        if not pending:
            self._block_ts0 = ts
        pending.append(value)
        return len(pending) == self._every

    def room(self) -> int:
        """How many values :meth:`push` takes before a look falls due (the last of them makes it due)."""
        if self._ready:
            return self._every - len(self._pending)
        return self.settings.baseline_size - len(self._learning) + self._every

    def extend(self, values: list[float], ts: list[int]) -> bool:
        """:meth:`push` of each finite value of ``values`` in turn (``ts`` theirs), at most :meth:`room` of them.

        For a run of values without river detectors: the learning list or the pending block takes them in one go.
        """
        n = len(values)
        self.values_seen += n
        self._last_ts = ts[-1]
        start = 0
        if not self._ready:
            start = self.settings.baseline_size - len(self._learning)
            if n < start:
                self._learning += values
                return False
            self._learning += values[:start]
            self._set_baseline(self._learning)
            if start == n:
                return False
        pending = self._pending
        if not pending:
            self._block_ts0 = ts[start]
        pending += values[start:] if start else values
        return len(pending) == self._every

    @classmethod
    def _look_batch(cls, monitors: list[DriftMonitor]) -> list[dict[str, Any] | None]:
        return _look(monitors)

    # -- baseline ------------------------------------------------------------------
    def _set_baseline(self, values: list[Any]) -> None:
        s = self.settings
        base = np.sort(np.asarray(values, dtype=float))
        base = base[np.isfinite(base)]
        if len(base) < 2:
            raise ValueError("a baseline needs at least two finite values")
        self._learning = []
        n = len(base)
        self._n = n
        self._mean_b = float(base.mean())
        self._sd_b = float(base.std())
        self._edges = np.quantile(base, np.linspace(0.0, 1.0, s.bins + 1))[1:-1]
        self._edges_list = [float(e) for e in self._edges]
        self._base_props = np.bincount(np.searchsorted(self._edges, base, "right"), minlength=s.bins) / n
        _, counts = np.unique(base, return_counts=True)
        tied = len(counts) < n
        # the shape depends on n and the ties alone: series that share them share one copy, and are looked at together
        self._take_row(_tied_shape(s, n, tuple(counts.tolist())) if tied else _untied_shape(s, n))
        padded = self._row("base")
        padded[:n], padded[n:] = base, np.inf
        self._row("levels")[:] = np.concatenate([[self._mean_b, -np.inf], self._edges, [np.inf]])  # see _block_rows
        self._row("props_eps")[:] = np.where(self._base_props > 0, self._base_props, s.psi_epsilon)
        self._filled = 0  # values in the ring, up to cap
        self._looks = 0
        calibration = s.calibration
        if calibration == "auto":
            calibration = "bootstrap" if tied else "rank"
        self.threshold = alarm_threshold(s, n, None if calibration == "rank" else base)
        self._ready = True

    @property
    def ready(self) -> bool:
        """Whether the baseline is known."""
        return self._ready

    @property
    def baseline(self) -> np.ndarray | None:
        """The sorted baseline values."""
        return self._row("base")[: self._n] if self._ready else None

    def _take_row(self, sh: _Shape) -> None:
        """Move to a zeroed row of the bank of ``sh``, freeing the previous row; it is freed again on collection."""
        if self._release is not None:
            self._release()
        self._shape = sh
        self._slot = sh.bank.take()
        self._release = weakref.finalize(self, sh.bank.free.append, self._slot)
        self._release.atexit = False  # nothing to free at exit
        self._block_pos = 0
        self._batch_key = id(sh)

    def _row(self, name: str) -> np.ndarray:
        """This series' row of a bank array (see :class:`_Bank`): a view, valid until the bank next grows."""
        return getattr(self._shape.bank, name)[self._slot]

    # -- evaluation (the batched passes are the module's _look & co.) -------------------------------------------
    def _report(
        self, psis: list[float], ks: dict[int, tuple[float, float]], z: list[float], head: list[float], start: int
    ) -> dict[str, Any]:
        """The report dict from this series' row of a batched look: PSI, KS and alarm statistic per window."""
        s = self.settings
        wh = min(s.window, self._filled)
        threshold = self.threshold
        rows = [
            {
                "window": w,
                "psi": psis[i],
                "ks_statistic": ks[w][0],
                "ks_pvalue": ks[w][1],
                "threshold": threshold,
                "alarm": z[i] > threshold,
            }
            for i, w in self._shape.shown(self._filled)
        ]
        h_ks, h_p = ks[wh]
        h_psi = psis[self._shape.head]
        sum_x, sum_xx = head
        mean_d = sum_x / wh
        var_w = max(sum_xx / wh - mean_d * mean_d, 0.0)
        sd_b = self._sd_b if self._sd_b > 0 else 1e-10  # the seed's guard against a constant baseline
        mean_shift = float(mean_d / sd_b)
        ratio = math.sqrt(var_w) / sd_b
        lo, hi = s.variance_ratio_bounds
        report = self._frame(self._last_ts)
        report.update(
            baseline_size=self._n,
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
            window_start=start,
        )
        return report

    def _ks_result(self, w: int, h: int) -> tuple[float, float]:
        """``(statistic, pvalue)`` exactly as ``scipy.stats.ks_2samp`` gives them for ``D = h / lcm(n, w)``."""
        hit = ks_exact(self._n, w, h)
        if hit is None:  # pragma: no cover - scipy without its exact routine: ks_2samp on a surrogate window
            below, upto = self._shape.placements(self._last_cells(w).astype(np.int64))
            hit = ks_pvalue(self.baseline, below, upto, h * math.gcd(self._n, w) / (self._n * w))
        return hit

    def _last_cells(self, w: int) -> np.ndarray:
        """Cells of the last ``w`` values (oldest first)."""
        end = self._block_pos * self._every
        return self._row("ring")[: self._shape.cap].take(np.arange(end - w, end), mode="wrap")

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
            # packed: up to baseline_size floats, written at every checkpoint while the baseline fills (as a JSON
            # list, ~0.3 us a value: 6 % of a worker whose agents are all learning)
            "learning": pack_array(np.array(self._learning, dtype=float)),
            "pending": [float(v) for v in self._pending],
            "block_ts0": self._block_ts0,
            "last_ts": self._last_ts,
            "ready": self._ready,
        }
        if self._ready:
            state.update(
                baseline=pack_array(self.baseline),
                ring=pack_array(self._row("ring")[: self._shape.cap]),
                blocks=pack_array(self._row("blocks")),
                sums=pack_array(self._row("sums")),  # carried, not recomputed: a restore continues bit for bit
                block_ts=pack_array(self._row("block_ts")),
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
            sh = m._shape
            ring = m._row("ring")
            ring[: sh.cap] = unpack_array(state["ring"], ring.dtype)
            ring[sh.cap :] = ring[: sh.mirror]
            for name in ("blocks", "sums"):
                row = m._row(name)
                row[:] = unpack_array(state[name]).reshape(row.shape)
            m._row("block_ts")[:] = unpack_array(state["block_ts"], np.int64)
            m._block_pos, m._filled, m._looks = state["block_pos"], state["filled"], state["looks"]
            w = min(m.settings.window, m._filled)
            if sh.keep_cells and w:
                m._row("cells")[:] = np.bincount(m._last_cells(w), minlength=2 * m._n + 1)
        m._learning = unpack_array(state["learning"]).tolist()  # a list in state written before it was packed
        m._pending = list(state["pending"])
        m.values_seen, m.generation = state["values_seen"], state["generation"]
        m.firing, m.fired_at, m._quiet, m.skipped = state["firing"], state["fired_at"], state["quiet"], state["skipped"]
        m._block_ts0, m._last_ts = state["block_ts0"], state["last_ts"]
        return m


def alarm_threshold(settings: DriftSettings, n: int | None = None, values: np.ndarray | None = None) -> float:
    """The calibrated alarm threshold of a baseline of ``n`` values (default ``baseline_size``) under ``settings``.

    ``values=None``: a tie-free baseline (the distribution-free rank calibration, about a second the first time,
    then cached for the process: a worker calls this at start-up so no input waits for it); else the baseline,
    whose ties are bootstrapped (see :func:`processors.drift_calibration.calibrate_threshold`).

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
    )


def warm_caches(settings: DriftSettings, *, min_pvalue: float = 1e-8) -> int:
    """Compute ahead what monitoring under ``settings`` caches per process; returns the KS p-values computed.

    For ``settings`` and what each of its per-series overrides makes of them: the rank calibration
    (:func:`alarm_threshold`) and the exact KS p-value of every report window (full, or the configured one at each
    report look while it fills) for each statistic ``D`` a stationary window plausibly shows (down to
    ``min_pvalue``; each costs up to 0.2 ms, a few seconds for the default windows). A worker calls this while it
    joins its group, so the first looks of every series do not compute them in front of the inputs.

    >>> s = DriftSettings(windows=(100,), window=100, calibration_replicates=20, calibration_length=2_000,
    ...                   overrides={"*/latency_ms": {"window": 200, "windows": (200,)}})
    >>> _ = warm_caches(s)
    >>> (s.baseline_size, 100, 0) in KS_MEMO, (s.baseline_size, 200, 0) in KS_MEMO, warm_caches(s)
    (True, True, 0)
    """
    computed = 0
    for each in _with_overrides(settings):
        alarm_threshold(each)
        n = each.baseline_size
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


def update_many(monitors: Sequence[_BaseMonitor], values: Sequence[Any], ts: int) -> list[dict[str, Any] | None]:
    """``[m.update(v, ts) for m, v in zip(monitors, values)]`` with the looks that fall due taken together.

    The monitors must be distinct. Each report is the one ``update`` gives, to the last bit.

    >>> rng = np.random.default_rng(1)
    >>> ms = [DriftMonitor(DriftSettings(baseline_size=100, window=100, windows=(50, 100))) for _ in range(3)]
    >>> for m in ms:
    ...     m.pin_baseline(rng.normal(0, 1, 100).tolist())
    >>> out = [update_many(ms, rng.normal(0, 1, 3).tolist(), i) for i in range(100)]
    >>> [sum(r is not None for r in row) for row in out[48:51]], out[99][2]["window_size"]
    ([0, 3, 0], 100)
    """
    due = [i for i, (m, v) in enumerate(zip(monitors, values, strict=True)) if m.push(v, ts)]
    out: list[dict[str, Any] | None] = [None] * len(monitors)
    for i, report in zip(due, evaluate_looks([monitors[i] for i in due]), strict=True):
        out[i] = report
    return out


def evaluate_looks(monitors: Sequence[_BaseMonitor]) -> list[dict[str, Any] | None]:
    """Take the due look of each monitor (see :meth:`DriftMonitor.push`); its report or ``None``, in order.

    Numeric series of one shape (settings and baseline size, tie-free baselines) are looked at in one vectorised
    pass over their bank rows, wherever each is in its ring. A block is a few dozen values, so a look of one series
    is dominated by the fixed cost of its numpy calls; one pass shares that cost among the series. The monitors
    must be distinct.
    """
    groups: dict[Hashable, list[int]] = {}
    for i, m in enumerate(monitors):
        groups.setdefault(m._batch_key, []).append(i)
    if len(groups) == 1:
        return type(monitors[0])._look_batch(list(monitors))
    out: list[dict[str, Any] | None] = [None] * len(monitors)
    for idx in groups.values():
        batch = [monitors[i] for i in idx]
        for i, report in zip(idx, type(batch[0])._look_batch(batch), strict=True):
            out[i] = report
    return out


class _Shape:
    """What a look depends on besides a series' own state: its settings, baseline size and placement moments.

    Read-only and shared: one copy per distinct shape (see :func:`_untied_shape`), which keeps it in cache across
    the series and tells :func:`evaluate_looks` which series can be looked at together. It owns the bank that
    holds the window state of its series.
    """

    def __init__(
        self, s: DriftSettings, n: int, moments: tuple[float, float, float], counts: np.ndarray | None
    ) -> None:
        every = s.look_every
        self.n, self.every, self.window, self.bins = n, every, s.window, s.bins
        self.cap = max(s.window, *s.windows)
        self.nblocks = self.cap // every
        self.report_looks = s.evaluate_every // every
        wins = sorted(set(s.windows) | {s.window})
        self.wins, self.wins_list = np.array(wins), wins
        self.head = wins.index(s.window)
        self.alarm_wins = [(i, w) for i, w in enumerate(wins) if w in s.windows]
        self.leave = _leaving_blocks(self.nblocks, tuple(w // every for w in wins))
        s1, mu2w, s2 = window_scales(self.wins, n, moments, s.spread_weight)
        alarm = np.isin(self.wins, s.windows)
        # window sums of c - n are 2n * sum(p), of (c - n)^2 are 4n^2 * sum(p^2): fold the units into the scales
        self.z_scale = np.stack([s1 / (2 * n), s2 / (4.0 * n * n)], axis=1) * alarm[:, None]
        self.z_off = np.stack([np.zeros(len(wins)), mu2w * 4.0 * n * n], axis=1)
        # the configured window keeps its cell counts only when it is longer than every alarm window; otherwise its
        # KS comes with theirs from one sort of at most sum(windows) cells
        self.keep_cells = s.window > max(s.windows)
        self.mirror = max(s.windows)  # the longest window KS sorts (see sorted_ks_windows)
        self.psi_epsilon = s.psi_epsilon
        self.eps_by_max = 0.0 <= s.psi_epsilon <= 1.0 / self.cap
        # a tied baseline's (#{b < x}, #{b <= x}) per cell; without ties they are cell arithmetic
        self.lr = None if counts is None else _cell_placements(n, counts)
        self.ks_wins = self._ks_windows(self.cap)
        self.bank = _Bank(self)

    def shown(self, filled: int) -> list[tuple[int, int]]:
        """``(row, window)`` of the alarm windows a report shows: those already full."""
        if filled >= self.cap:
            return self.alarm_wins
        return [(i, w) for i, w in self.alarm_wins if w <= filled]

    def sorted_ks_windows(self, filled: int) -> tuple[int, ...]:
        """Windows whose KS comes from sorting their cells: the shown alarm windows, the configured one unless it
        keeps cell counts (with what there is of it while it fills)."""
        return self.ks_wins if filled >= self.cap else self._ks_windows(filled)

    def _ks_windows(self, filled: int) -> tuple[int, ...]:
        wins = [w for _, w in self.shown(filled)]
        head = min(self.window, filled)
        if not self.keep_cells and head not in wins:
            wins.append(head)
        return tuple(wins)

    def placements(self, cells: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(#{b < x}, #{b <= x})`` of values known by their cells, in the cells' integer type."""
        if self.lr is None:
            below = cells >> 1  # cell 2i: between b_i and b_(i+1); 2i + 1: equal to b_i
            return below, cells - below
        below, upto = self.lr.take(cells, axis=1)
        return below.astype(cells.dtype, copy=False), upto.astype(cells.dtype, copy=False)


class _Bank:
    """The state of every series of one shape, a row each: its baseline and PSI levels, then its window state.

    With the series' rows side by side a look of many of them is a few numpy calls on those rows, where per-series
    arrays would take a few calls per series. Rows are recycled: a series frees its row when it takes a new
    baseline or is collected; the arrays grow by doubling and never shrink. Like the monitors, not thread-safe:
    a worker drives its processors from one thread.
    """

    def __init__(self, sh: _Shape) -> None:
        ring_type = np.int16 if 2 * sh.n < 2**15 else np.int32
        k = 4 + sh.bins
        # per row: shape of the row, dtype; a ring holds the cells of the last `cap` values, then a copy of the
        # first `mirror` of them, so that every window KS sorts is one contiguous slice; a block row holds
        # sum(c - n), sum((c - n)^2), sum(x - mean_b), sum((x - mean_b)^2), then the block's PSI bin counts (all
        # but the x sums integers, exact in float64); sums are the running sums of every window
        self._layout: dict[str, tuple[tuple[int, ...], Any]] = {
            "base": ((2 ** (sh.n + 1).bit_length() - 1,), np.float64),  # padded with inf: see _count_below
            "levels": ((sh.bins + 2,), np.float64),
            "props_eps": ((sh.bins,), np.float64),
            "ring": ((sh.cap + sh.mirror,), ring_type),
            "blocks": ((sh.nblocks, k), np.float64),
            "block_ts": ((sh.nblocks,), np.int64),
            "sums": ((len(sh.wins_list), k), np.float64),
        }
        if sh.keep_cells:  # cell counts of the configured window
            self._layout["cells"] = ((2 * sh.n + 1,), np.int32)
        self.cells: np.ndarray | None = None
        self.free: list[int] = []
        self.rows = 0
        self._grow(1)

    base: np.ndarray
    levels: np.ndarray
    props_eps: np.ndarray
    ring: np.ndarray
    blocks: np.ndarray
    block_ts: np.ndarray
    sums: np.ndarray

    def take(self) -> int:
        """A zeroed row."""
        if not self.free:
            self._grow(2 * self.rows)
        row = self.free.pop()
        for name in self._layout:
            getattr(self, name)[row] = 0
        return row

    def _grow(self, rows: int) -> None:
        for name, (shape, dtype) in self._layout.items():
            grown = np.zeros((rows, *shape), dtype=dtype)
            if self.rows:
                grown[: self.rows] = getattr(self, name)
            setattr(self, name, grown)
        self.free.extend(range(rows - 1, self.rows - 1, -1))  # lowest first: rows of series made together stay in order
        self.rows = rows

    def row_bytes(self, names: Iterable[str]) -> int:
        """Bytes of one row of the named arrays."""
        return sum(getattr(self, name)[0].nbytes for name in names if name in self._layout)


@lru_cache(maxsize=64)
def _untied_shape(s: DriftSettings, n: int) -> _Shape:
    """The shape of every tie-free baseline of ``n`` values (their placement moments are those of ``0 .. n-1``)."""
    return _Shape(s, n, placement_moments(np.arange(float(n))), None)


@lru_cache(maxsize=256)
def _tied_shape(s: DriftSettings, n: int, counts: tuple[int, ...]) -> _Shape:
    """The shape of every baseline of ``n`` values whose sorted distinct values occur ``counts`` times (a constant
    cost of any value, rewards on the same few levels): placements depend on the ranks alone."""
    return _Shape(s, n, placement_moments(tie_ranks(counts)), np.asarray(counts))


def _cell_placements(n: int, counts: np.ndarray) -> np.ndarray:
    """``(#{b < x}, #{b <= x})`` per cell (columns) of a baseline whose sorted distinct values occur ``counts`` times.

    >>> _cell_placements(3, np.array([2, 1])).tolist()  # baseline (a, a, b): cells 0 .. 6, odd 1 and 3 impossible
    [[0, 0, 0, 0, 2, 2, 3], [0, 3, 2, 3, 2, 3, 3]]
    """
    right_u = np.cumsum(counts)
    lr = np.empty((2, 2 * n + 1), dtype=np.int32)
    lr[0], lr[1] = 0, n  # cells no value can take: harmless (<= 0) in every KS maximum
    gaps = np.concatenate([[0], right_u])
    lr[:, 2 * gaps] = gaps  # strictly between distinct values: #< = #<=
    lr[0, right_u - counts + right_u] = right_u - counts
    lr[1, right_u - counts + right_u] = right_u
    lr.flags.writeable = False
    return lr


@lru_cache(maxsize=64)
def _leaving_blocks(nblocks: int, k: tuple[int, ...]) -> np.ndarray:
    """Per ring position, the block leaving each window (``k`` blocks long); shared by every series (read-only)."""
    leave = (np.arange(nblocks)[:, None] - np.array(k)[None, :]) % nblocks
    leave.flags.writeable = False
    return leave


class _Rows(NamedTuple):
    """The bank rows of a batch of series, in batch order: a slice when they are consecutive (views, no copies)."""

    at: slice | np.ndarray
    ids: np.ndarray

    @classmethod
    def of(cls, ms: list[DriftMonitor]) -> _Rows:
        if len(ms) == 1:
            slot = ms[0]._slot
            return cls(slice(slot, slot + 1), np.array([slot]))
        slots = [m._slot for m in ms]
        first = slots[0]
        ids = np.array(slots)
        if slots == list(range(first, first + len(slots))):
            return cls(slice(first, first + len(slots)), ids)
        return cls(ids, ids)

    def each(self, a: np.ndarray) -> Iterable[np.ndarray]:
        """The rows of ``a``, views."""
        return a[self.at] if isinstance(self.at, slice) else (a[i] for i in self.ids.tolist())

    def index(self, cols: slice | np.ndarray) -> tuple[Any, Any]:
        """The index of ``cols`` in each row: the same columns for every row (a slice, or 1-D), or a row of them
        per series (2-D, from :func:`_columns_from`)."""
        if isinstance(cols, slice) or (cols.ndim == 1 and isinstance(self.at, slice)):
            return self.at, cols
        return self.ids[:, None], cols


def _positions(ms: list[DriftMonitor]) -> int | np.ndarray:
    """The ring block each series is at: one number when they share it (a series alone, one agent's series), which
    keeps their reads and writes slices of the rows; else one per series."""
    bp = [m._block_pos for m in ms]
    return bp[0] if bp.count(bp[0]) == len(bp) else np.array(bp)


def _columns_from(start: int | np.ndarray, width: int) -> slice | np.ndarray:
    """``width`` columns from ``start``: a slice for a shared start, a row of columns per series for one each."""
    if isinstance(start, np.ndarray):
        return start[:, None] + np.arange(width)
    return slice(start, start + width)


def _look(ms: list[DriftMonitor]) -> list[dict[str, Any] | None]:
    """One alarm look of series of one shape, each at its own ring position; a report where it is a report look or
    the alarm fired or resolved."""
    sh = ms[0]._shape
    rows = _Rows.of(ms)
    x = np.fromiter(chain.from_iterable(m._pending for m in ms), float, len(ms) * sh.every).reshape(len(ms), -1)
    for m in ms:
        m._pending = []
    cells = _cells(sh, rows, x)
    sums = _advance(ms, sh, rows, _block_rows(sh, rows, x, cells), cells)
    z = np.abs(sums[:, :, :2] - sh.z_off)
    z *= sh.z_scale
    z = z.max(axis=2)  # per window: the larger of the location and spread statistics
    filling = [i for i, m in enumerate(ms) if m._filled < sh.cap]
    if filling:  # a window not yet full is not looked at
        for i in filling:
            ms[i]._filled += sh.every
        z[filling] *= sh.wins <= np.array([[ms[i]._filled] for i in filling])
    due = []
    for i, (m, stat) in enumerate(zip(ms, z.max(axis=1).tolist(), strict=True)):
        m._decide(stat, m.threshold, m._last_ts)
        m._looks += 1
        if m.transition is not None or not m._looks % sh.report_looks:
            due.append(i)
    out: list[dict[str, Any] | None] = [None] * len(ms)
    if due:
        batch = [ms[i] for i in due]
        reports = _reports(batch, sh, rows if len(due) == len(ms) else _Rows.of(batch), sums[due], z[due])
        for i, report in zip(due, reports, strict=True):
            out[i] = report
    return out


def _cells(sh: _Shape, rows: _Rows, x: np.ndarray) -> np.ndarray:
    """Each value's cell ``#{b < x} + #{b <= x}`` among its series' baseline values, shape (series, every).

    A cell in ``[0, 2n]`` is a value's midrank among the baseline values, exact under ties; it is all the alarm
    and KS need of a value, so nothing is re-sorted against the baseline.
    """
    below = _count_below(sh, rows, x)
    if sh.lr is None and len(x) > _GATHER_FROM:
        # without ties #{b <= x} is #{b < x}, plus one where x is the next baseline value (inf past the last): one
        # gather for all the series instead of a second binary search per series
        at = sh.bank.base.reshape(-1).take(below + rows.ids[:, None] * sh.bank.base.shape[1])
        return 2 * below + (at == x)
    return below + np.array([b.searchsorted(row, "right") for b, row in zip(rows.each(sh.bank.base), x, strict=True)])


_GATHER_FROM = 4  # series: below, a second search per series costs fewer numpy calls than the gather


def _count_below(sh: _Shape, rows: _Rows, x: np.ndarray) -> np.ndarray:
    """``#{b < x}`` of each value among its series' baseline values, shape (series, every).

    For a few series, numpy's binary search per series. For many, one branch-free binary search over all their
    bank rows at once: numpy's search mispredicts about every other branch on random values, while the probes of
    all series together are a few gathers whose cache misses overlap. A row is padded with inf to ``2^k - 1``
    values, so halving steps from ``2^(k-1)`` keep every probe inside it.
    """
    base = sh.bank.base
    if len(x) < _SEARCH_TOGETHER_FROM:
        return np.array([b.searchsorted(row) for b, row in zip(rows.each(base), x, strict=True)])
    width = base.shape[1]
    flat = base.reshape(-1)
    before_row = rows.ids[:, None] * width - 1
    below = np.zeros(x.shape, dtype=np.intp)
    step = (width + 1) >> 1
    while step:
        below += step * (flat.take(below + (before_row + step)) < x)  # probe the step-th value past `below`
        step >>= 1
    return below


_SEARCH_TOGETHER_FROM = 128  # series: measured crossover of the two searches is about 100


def _block_rows(sh: _Shape, rows: _Rows, x: np.ndarray, cells: np.ndarray) -> np.ndarray:
    """Each series' block row of its new block (see :class:`_Bank`), shape (series, 4 + bins).

    One matrix product per series gives them all: the vectors ``c - n``, ``d = x - mean_b``, then ``x >= edge``
    for each PSI edge from ``-inf`` (all ones) to ``inf``, times the first three. The counts at or above
    successive edges differ by the bin counts. Every product of integers stays below 2^53: exact in float64.
    """
    series, every = x.shape
    levels = sh.bank.levels[rows.at]  # mean_b, then the edges
    v = np.empty((series, sh.bins + 3, every))
    np.subtract(cells, sh.n, out=v[:, 0])
    np.subtract(x, levels[:, :1], out=v[:, 1])
    np.greater_equal(x[:, None, :], levels[:, 1:, None], out=v[:, 2:], casting="unsafe")
    p = np.matmul(v, v[:, :3].transpose(0, 2, 1)).reshape(series, -1)  # column 3i + j: v_i . v_j
    at_or_above = p[:, 8::3]  # v_i . v_2 for i >= 2
    sums = p.take([2, 0, 5, 4], axis=1)  # sum(c - n), sum((c - n)^2), sum(d), sum(d^2)
    return np.concatenate([sums, at_or_above[:, :-1] - at_or_above[:, 1:]], axis=1)


def _advance(ms: list[DriftMonitor], sh: _Shape, rows: _Rows, new: np.ndarray, cells: np.ndarray) -> np.ndarray:
    """Store the new blocks, each at its series' ring position; returns every window's sums (series, windows,
    4 + bins), the new block in, the leaving one out."""
    bank = sh.bank
    bp = _positions(ms)
    shared = not isinstance(bp, np.ndarray)
    sums = bank.sums[rows.at] + (new[:, None, :] - bank.blocks[rows.index(sh.leave[bp])])
    at = rows.at if shared else rows.ids
    bank.blocks[at, bp] = new
    bank.block_ts[at, bp] = [m._block_ts0 for m in ms]
    start = bp * sh.every
    if bank.cells is not None:
        _move_cells(ms, sh, rows, start, cells)
    bank.ring[rows.index(_columns_from(start, sh.every))] = cells  # cells < 2^15 (or 2^31) by the ring's type: exact
    bp = (bp + 1) % sh.nblocks
    if shared:
        if start < sh.mirror:
            bank.ring[rows.index(_columns_from(start + sh.cap, sh.every))] = cells
        for m in ms:
            m._block_pos = bp
        turned = slice(None) if bp == 0 else None
    else:
        mirrored = np.flatnonzero(start < sh.mirror)
        if len(mirrored):
            bank.ring[rows.ids[mirrored, None], _columns_from(start[mirrored] + sh.cap, sh.every)] = cells[mirrored]
        for m, pos in zip(ms, bp.tolist(), strict=True):
            m._block_pos = pos
        turned = np.flatnonzero(bp == 0) if (bp == 0).any() else None
    if turned is not None:
        # once per turn of a ring, its sums afresh from the blocks: the integer columns stay exact anyway, this
        # bounds the rounding drift of the x sums at O(1) per look
        order = (-1 - np.arange(sh.nblocks)) % sh.nblocks  # newest first
        sums[turned] = bank.blocks[rows.ids[turned, None], order].cumsum(axis=1)[:, sh.wins // sh.every - 1]
    bank.sums[rows.at] = sums
    return sums


def _move_cells(ms: list[DriftMonitor], sh: _Shape, rows: _Rows, start: int | np.ndarray, cells: np.ndarray) -> None:
    """Cell counts of the configured window: the new block in, the one leaving out.

    The leaving block is read before the ring's write: the configured window, longer than every alarm window,
    fills the ring, so it is the very block being overwritten.
    """
    span = 2 * sh.n + 1
    flat = sh.bank.cells.reshape(-1)  # flat indices and a value array keep ufunc.at on its fast path
    full = [m._filled >= sh.window for m in ms]
    if any(full):
        old = (start - sh.window) % sh.cap
        leaving = sh.bank.ring[rows.index(_columns_from(old, sh.every))][full] + (rows.ids[full] * span)[:, None]
        np.add.at(flat, leaving.ravel(), _constant(leaving.size, -1))
    entering = (cells + rows.ids[:, None] * span).ravel()
    np.add.at(flat, entering, _constant(entering.size, 1))


@lru_cache(maxsize=32)
def _constant(size: int, value: int) -> np.ndarray:
    return np.full(size, value, dtype=np.int32)


def _reports(ms: list[DriftMonitor], sh: _Shape, rows: _Rows, sums: np.ndarray, z: np.ndarray) -> list[dict[str, Any]]:
    """Reports of series of one shape: PSI and KS of every window in a few passes over all of them, then the dicts."""
    psis = _psis(ms, sh, rows, sums).tolist()
    ks = _ks_of(ms, sh, rows)
    heads = sums[:, sh.head, 2:4].tolist()
    first = [(m._block_pos - min(sh.window, m._filled) // sh.every) % sh.nblocks for m in ms]  # head window's 1st block
    starts = sh.bank.block_ts[rows.ids, first].tolist()
    return [m._report(*row) for m, row in zip(ms, zip(psis, ks, z.tolist(), heads, starts, strict=True), strict=True)]


def _psis(ms: list[DriftMonitor], sh: _Shape, rows: _Rows, sums: np.ndarray) -> np.ndarray:
    """PSI of every window of every series (series, windows); empty proportions -> epsilon on both sides."""
    cur = sums[:, :, 4:] / sh.wins[:, None]
    for i, m in enumerate(ms):
        if m._filled < sh.window:  # the configured window still filling: its sums are those of what there is of it
            cur[i, sh.head] = sums[i, sh.head, 4:] / m._filled
    eps = sh.psi_epsilon
    # proportions are counts / w: when epsilon is below 1 / longest window, a max is the same as the where
    cur = np.maximum(cur, eps) if sh.eps_by_max else np.where(cur > 0, cur, eps)
    base = sh.bank.props_eps[rows.at][:, None, :]
    terms = (cur - base) * np.log(cur / base)
    return terms.sum(axis=2)  # along each row: the same bits whatever the batch


def _ks_of(ms: list[DriftMonitor], sh: _Shape, rows: _Rows) -> list[dict[int, tuple[float, float]]]:
    """Per series, KS ``(statistic, pvalue)`` of each window its report shows, as ``scipy.stats.ks_2samp`` gives.

    Series whose windows are all full share one pass, and so do series still filling (once per baseline) to the
    same point: their windows are the same. The p-value depends only on ``(n, w, D)`` with ``D = h / lcm(n, w)``:
    the process-wide memo answers by ``h``.
    """
    by_filled: dict[int, list[int]] = {}
    for i, m in enumerate(ms):
        by_filled.setdefault(min(m._filled, sh.cap), []).append(i)
    parts = list(by_filled.values())
    out: list[dict[int, tuple[float, float]]] = [{} for _ in ms]
    n = sh.n
    get = KS_MEMO.get
    for part in parts:
        batch = [ms[i] for i in part]
        at = rows if len(part) == len(ms) else _Rows.of(batch)
        filled = batch[0]._filled
        wins = list(sh.sorted_ks_windows(filled))
        nums = _sorted_ks(sh, at, _positions(batch), tuple(wins))
        if sh.keep_cells:
            wins.append(min(sh.window, filled))
            nums = np.column_stack([nums, _cells_ks(sh, at, wins[-1])])
        nums //= [math.gcd(n, w) for w in wins]  # n w D -> lcm(n, w) D
        for i, m, hs in zip(part, batch, nums.tolist(), strict=True):
            out[i] = {w: get((n, w, h)) or m._ks_result(w, h) for w, h in zip(wins, hs, strict=True)}
    return out


def _sorted_ks(sh: _Shape, rows: _Rows, block_pos: int | np.ndarray, wins: tuple[int, ...]) -> np.ndarray:
    """``n * w * D`` of the last ``w`` values of each series for each ``w`` in ``wins``, shape (series, windows).

    For a window sorted by value, ``F_w - F_b`` peaks just after a window value (``j/w - #{b <= x}/n``) and
    ``F_b - F_w`` just before one (``#{b < x}/n - (j-1)/w``): in units of ``1 / nw``, integers. All windows of all
    series are one sort of their concatenated cells (each window's kept apart by a key offset) and each window's
    maximum is one ``reduceat``.
    """
    seg = _segments(wins, sh.n)
    longest = max(wins)
    end = block_pos * sh.every
    end = end + sh.cap * (end < longest)  # the ring's mirrored head
    if isinstance(end, np.ndarray):
        window = sh.bank.ring[rows.ids[:, None], (end - longest)[:, None] + seg.cols]
    else:
        window = sh.bank.ring[rows.at, end - longest : end].take(seg.cols, axis=1)
    keys = np.add(window, seg.key_off, dtype=np.int32)
    keys.sort(axis=1)  # no stability needed: equal keys are equal cells; int32 sorts with SIMD
    keys -= seg.key_off
    below, upto = sh.placements(keys.astype(seg.dtype, copy=False))
    upto *= seg.minus_w
    upto += seg.jn  # j n - w #{b <= x}
    below *= seg.w
    below -= seg.j1n  # w #{b < x} - (j - 1) n
    np.maximum(upto, below, out=upto)
    return np.maximum.reduceat(upto, seg.starts, axis=1)


def _cells_ks(sh: _Shape, rows: _Rows, w: int) -> np.ndarray:
    """``n * w * D`` of the configured window from its cell counts: one pass over ``2n + 1`` cells, whatever ``w``.

    With ``K`` the window's values at or below a cell, the maxima over cells of ``K n - w #{b <= x}`` and of
    ``w #{b < x} - K' n``, ``K'`` those below the cell (``K`` of the cell before; 0 before cell 0, where the
    second term is 0).
    """
    n = sh.n
    dtype = np.int32 if w * (n + 1) < 2**31 else np.int64  # numerators are at most w n in size
    kn = np.cumsum(sh.bank.cells[rows.at], axis=1, dtype=dtype)
    kn *= n
    below, upto = sh.placements(np.arange(2 * n + 1, dtype=dtype))
    pos = (kn - w * upto).max(axis=1)
    neg = (w * below[1:] - kn[:, :-1]).max(axis=1)
    return np.maximum(np.maximum(pos, neg), 0)


class _Segments(NamedTuple):
    """Layout of the concatenated windows of :func:`_sorted_ks`, per sorted position (shared by every series)."""

    cols: np.ndarray  # position among the last max(wins) values: the last w of them, for each window
    key_off: np.ndarray  # the window's sort-key offset, a multiple of 2n + 1
    w: np.ndarray  # the window's length
    minus_w: np.ndarray
    jn: np.ndarray  # j n for the j-th smallest value of its window (1-based)
    j1n: np.ndarray  # (j - 1) n
    starts: np.ndarray  # each window's first position
    dtype: type  # of the numerators: int32 when they fit


@lru_cache(maxsize=256)
def _segments(wins: tuple[int, ...], n: int) -> _Segments:
    lens = np.array(wins)
    seg = np.repeat(np.arange(len(wins)), lens)
    starts = np.concatenate([[0], np.cumsum(lens)[:-1]])
    j = np.arange(len(seg)) - starts[seg] + 1
    w = lens[seg]
    dtype = np.int32 if max(wins) * (n + 1) < 2**31 else np.int64  # numerators are at most w n in size
    return _Segments(
        cols=j - 1 - w + max(wins),
        key_off=(seg * (2 * n + 1)).astype(np.int32),
        w=w.astype(dtype),
        minus_w=(-w).astype(dtype),
        jn=(j * n).astype(dtype),
        j1n=((j - 1) * n).astype(dtype),
        starts=starts,
        dtype=dtype,
    )


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

    def push(self, value: str, ts: int) -> bool:
        """Add one category observed at ``ts`` (epoch ms) without looking; ``True`` when a look is due."""
        self.values_seen += 1
        self._last_ts = ts
        if not self._ready:
            self._learning.append(value)
            if len(self._learning) >= self.settings.baseline_size:
                self._set_baseline(self._learning)
            return False
        if not self._pending:
            self._block_ts0 = ts
        self._pending.append(value)
        return len(self._pending) == self._every

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


def _columns(events: Sequence[Mapping[str, Any]], features: list[str]) -> list[list[float]] | None:
    """The outcome fields' and ``features``' values of ``events`` as float columns; ``None`` if one is missing or
    not finite."""
    try:
        columns = [[float(e[name]) for e in events] for name in OUTCOME_FIELDS]
        columns += [[float(e["features"][name]) for e in events] for name in features]
    except (TypeError, ValueError, KeyError):
        return None
    for column in columns:
        total = sum(column)
        if total - total != 0.0:  # a nan or an infinity among them (or a sum that overflows: rare, then one by one)
            return None
    return columns


def _alike_run(events: Sequence[Mapping[str, Any]], offsets: Sequence[tuple[int, int] | None], most: int) -> int:
    """How many leading events (at most ``most``) share the first one's agent, partition and feature names, in
    increasing offset order."""
    first = events[0]
    agent, keys = first["agent_name"], (first.get("features") or {}).keys()
    partition, last = offsets[0]  # type: ignore[misc]
    n = 1
    while n < most:
        event, offset = events[n], offsets[n]
        if (
            offset is None
            or offset[0] != partition
            or offset[1] <= last
            or event["agent_name"] != agent
            or (event.get("features") or {}).keys() != keys
        ):
            break
        last = offset[1]
        n += 1
    return n


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

    def _applied(self, partition: int, offset: int) -> bool:
        return offset <= self.offsets.get(partition, -1)

    def _replayed(self, offset: tuple[int, int] | None) -> bool:
        if offset is None:
            return False
        partition, off = offset
        if self._applied(partition, off):
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

    def _push(
        self, agent: str, variant: str | None, values: Iterable[tuple[str, Any, bool]], ts: int
    ) -> tuple[list[Emission], list[_BaseMonitor]]:
        """Feed one event's ``(feature, value, categorical)`` in order; the emissions so far and the looks left due."""
        out: list[Emission] = []
        due: list[_BaseMonitor] = []
        variants = (None, variant) if self.settings.per_variant and variant else (None,)
        for feature, value, categorical in values:
            for v in variants:
                m = self.monitor(agent, feature, v, categorical=categorical)
                if due and m in due:  # the same series twice in one event: its pending look comes first
                    out += self.finish_looks(due, evaluate_looks(due))
                    due = []
                if m.push(value, ts):
                    due.append(m)
        return out, due

    def _observe(
        self, agent: str, variant: str | None, values: Iterable[tuple[str, Any, bool]], ts: int
    ) -> list[Emission]:
        """Feed one event's ``(feature, value, categorical)`` in order; the looks that fall due are taken together."""
        return self._with_looks(*self._push(agent, variant, values, ts))

    def _with_looks(self, out: list[Emission], due: list[_BaseMonitor]) -> list[Emission]:
        return out + self.finish_looks(due, evaluate_looks(due)) if due else out

    def finish_looks(self, due: Sequence[_BaseMonitor], reports: Sequence[dict[str, Any] | None]) -> list[Emission]:
        """The emissions of the looks ``due`` whose reports :func:`evaluate_looks` gave (maybe with other series')."""
        out: list[Emission] = []
        for m, report in zip(due, reports, strict=True):
            if report is not None:
                out += self._emissions(m, report)
        return out

    def push_outcome(
        self, event: Mapping[str, Any], offset: tuple[int, int] | None = None
    ) -> tuple[list[Emission], list[_BaseMonitor]]:
        """:meth:`on_outcome` up to its looks: the emissions so far and the monitors whose look is due.

        The caller takes the due looks with :func:`evaluate_looks` -- together with other processors' due looks
        if it likes: the reports are the same -- and hands them to :meth:`finish_looks` before this processor's
        next event. ``on_outcome`` is exactly that, with this event's looks alone.
        """
        if self._replayed(offset):
            return [], []
        values = [(name, float(event[name]), False) for name in OUTCOME_FIELDS if event.get(name) is not None]
        values += [(name, float(value), False) for name, value in sorted((event.get("features") or {}).items())]
        attributes = event.get("attributes") or {}
        values += [(name, attributes[name], True) for name in self.settings.categorical if name in attributes]
        return self._push(event["agent_name"], event.get("variant_id"), values, int(event["ts"]))

    def push_outcomes(
        self, events: Sequence[Mapping[str, Any]], offsets: Sequence[tuple[int, int]]
    ) -> tuple[int, list[Emission], list[_BaseMonitor]]:
        """:meth:`push_outcome` of ``events`` in turn until one has looks due: how many it took, and that one's result.

        The events before the last take their values and have neither emissions nor looks, so a caller may apply
        them to other processors in any order relative to this. Outcomes alike (one agent, one partition, the
        same features, finite values) go in one :meth:`DriftMonitor.extend` per series rather than a push per
        value: ~0.5 instead of ~10 us an outcome (four series).

        >>> settings = DriftSettings(baseline_size=100, window=100, windows=(50, 100))
        >>> events = [{"agent_name": "a", "ts": i, "reward": (i * 37 % 101) / 101, "latency_ms": 10.0 + i % 5,
        ...            "cost_usd": 0.01, "features": {"x": i % 3 - 1.0}, "attributes": {}} for i in range(400)]
        >>> one, many = DriftProcessor(settings), DriftProcessor(settings)
        >>> by_one = [one.on_outcome(e, (0, i)) for i, e in enumerate(events)]
        >>> by_many, at = [], 0
        >>> while at < len(events):
        ...     fed, out, due = many.push_outcomes(events[at:], [(0, i) for i in range(at, len(events))])
        ...     by_many += [[]] * (fed - 1) + [out + many.finish_looks(due, evaluate_looks(due))]
        ...     at += fed
        >>> by_many == by_one, sum(map(len, by_one)), one.to_dict() == many.to_dict()
        (True, 24, True)
        """
        fed, due = self._extend_alike(events, offsets)
        if not fed:
            return 1, *self.push_outcome(events[0], offsets[0])
        return fed, [], due

    def _extend_alike(
        self, events: Sequence[Mapping[str, Any]], offsets: Sequence[tuple[int, int]]
    ) -> tuple[int, list[_BaseMonitor]]:
        """The bulk path of :meth:`push_outcomes`: how many leading events it took (0: none is alike) and the looks due."""
        if self.settings.categorical or self.settings.per_variant:
            return 0, []
        first = events[0]
        if offsets[0] is None or self._applied(*offsets[0]):
            return 0, []  # no offset, or a replay: push_outcome knows what to do
        agent = first["agent_name"]
        features = first.get("features") or {}
        names = sorted(features)
        if any(first.get(name) is None or name in features for name in OUTCOME_FIELDS):
            return 0, []
        monitors = [self.monitor(agent, name) for name in (*OUTCOME_FIELDS, *names)]
        room = len(events)
        for m in monitors:
            if type(m) is not DriftMonitor or m._detectors:
                return 0, []
            room = min(room, m.room())
        n = _alike_run(events, offsets, room)
        columns = _columns(events[:n], names)
        if columns is None:  # a missing or non-finite value: the events before it go in bulk, it one at a time
            n = next(i for i, e in enumerate(events[:n]) if _columns([e], names) is None)
            columns = _columns(events[:n], names) if n else None
            if columns is None:
                return 0, []
        ts = [int(e["ts"]) for e in events[:n]]
        partition, last = offsets[n - 1]
        self.offsets[partition] = last
        return n, [m for m, column in zip(monitors, columns, strict=True) if m.extend(column, ts)]

    def on_outcome(self, event: Mapping[str, Any], offset: tuple[int, int] | None = None) -> list[Emission]:
        """Feed an AgentOutcome: reward, latency_ms, cost_usd, every ``features`` key, categorical attributes."""
        return self._with_looks(*self.push_outcome(event, offset))

    def on_metric(self, event: Mapping[str, Any], offset: tuple[int, int] | None = None) -> list[Emission]:
        """Feed an AgentMetric: one series per metric name."""
        if self._replayed(offset):
            return []
        values = [(event["name"], float(event["value"]), False)]
        return self._observe(event["agent_name"], event.get("variant_id"), values, int(event["ts"]))

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
