"""Drift of one numeric series: baseline, sliding count windows, an alarm look every ``look_every`` values.

The monitor keeps what is plain Python (position, counts, alarm state); its
window state lives in a row of its shape's bank (:mod:`.bank`) and its looks
are taken by :mod:`.looks`, many series in one pass.

>>> m = DriftMonitor(DriftSettings(baseline_size=100, window=100, windows=(50, 100)), feature="latency_ms")
>>> m.pin_baseline(np.random.default_rng(0).random(100).tolist())  # in arrival order: its dependence is estimated
>>> reports = [m.update(5.0, i) for i in range(50)]  # far above every baseline value
>>> m.firing, m.transition, reports[-1]["window_size"], m.shape.bank is m.shape.bank
(True, 'fired', 50, True)
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Mapping
from typing import Any

import numpy as np
from reverify.processors.base import pack_array, unpack_array
from reverify.processors.drift.bank import Shape, tied_shape, untied_shape
from reverify.processors.drift.calibration import alarm_threshold, ks_exact, ks_pvalue, serial_correlation
from reverify.processors.drift.looks import look
from reverify.processors.drift.monitor import BaseMonitor, psi_grade
from reverify.processors.drift.settings import DriftSettings

__all__ = ["DriftMonitor"]


class DriftMonitor(BaseMonitor):
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

    The window state lives in a row of its shape's :class:`~.bank.Bank`; the monitor
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
        self.serial_correlation = 0.0  # the baseline's, as an AR(1) coefficient (see calibration.serial_correlation)
        self.calibrated = True  # False: too dependent to calibrate from the baseline, never alarms
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
    def look_batch(cls, monitors: list[DriftMonitor]) -> list[dict[str, Any] | None]:
        return look(monitors)

    # -- baseline ------------------------------------------------------------------
    def _set_baseline(self, values: list[Any], dependence: float | None = None) -> None:
        """``values`` in arrival order become the baseline; ``dependence``: a restored one (else the baseline's
        serial dependence is estimated now)."""
        s = self.settings
        base = np.asarray(values, dtype=float)
        base = base[np.isfinite(base)]
        if dependence is None:
            dependence = serial_correlation(base) if s.dependence == "ar1" else 0.0
        base = np.sort(base)
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
        self._take_row(tied_shape(s, n, tuple(counts.tolist())) if tied else untied_shape(s, n))
        padded = self._row("base")
        padded[:n], padded[n:] = base, np.inf
        self._row("levels")[:] = np.concatenate([[self._mean_b, -np.inf], self._edges, [np.inf]])  # see _block_rows
        self._row("props_eps")[:] = np.where(self._base_props > 0, self._base_props, s.psi_epsilon)
        self.filled = 0  # values in the ring, up to cap
        self._looks = 0
        calibration = s.calibration
        if calibration == "auto":
            calibration = "bootstrap" if tied else "rank"
        self.serial_correlation = dependence
        self.calibrated = dependence <= s.max_dependence
        self.threshold = (
            alarm_threshold(s, n, None if calibration == "rank" else base, phi=s.dependence_of(dependence))
            if self.calibrated
            else math.inf
        )
        self._ready = True

    @property
    def ready(self) -> bool:
        """Whether the baseline is known."""
        return self._ready

    @property
    def baseline(self) -> np.ndarray | None:
        """The sorted baseline values."""
        return self._row("base")[: self._n] if self._ready else None

    def _take_row(self, sh: Shape) -> None:
        """Move to a zeroed row of the bank of ``sh``, freeing the previous row; it is freed again on collection."""
        if self._release is not None:
            self._release()
        self.shape = sh
        self.slot = sh.bank.take()
        self._release = weakref.finalize(self, sh.bank.free.append, self.slot)
        self._release.atexit = False  # nothing to free at exit
        self.block_pos = 0
        self.batch_key = id(sh)

    def _row(self, name: str) -> np.ndarray:
        """This series' row of a bank array (see :class:`~.bank.Bank`): a view, valid until the bank next grows."""
        return getattr(self.shape.bank, name)[self.slot]

    # -- what the look engine (processors.drift.looks) asks of a series ------------------------------------------
    # shape, slot (its bank row), block_pos (its ring block) and filled (values in its ring) are the engine's to
    # read and advance; the rest goes through these methods.
    def take_block(self) -> tuple[list[float], int]:
        """The completed block awaiting its look and the time of its first value; the block starts afresh."""
        block, self._pending = self._pending, []
        return block, self._block_ts0

    def conclude_look(self, statistic: float) -> bool:
        """Decide the alarm on this look's statistic; whether the look makes a report (a report look, or the
        alarm fired or resolved)."""
        self._decide(statistic, self.threshold, self._last_ts)
        self._looks += 1
        return self.transition is not None or not self._looks % self.shape.report_looks

    @property
    def takes_runs(self) -> bool:
        """Whether :meth:`extend` may take a run of values (no river detector wants them one at a time)."""
        return not self._detectors

    def report(
        self, psis: list[float], ks: dict[int, tuple[float, float]], z: list[float], head: list[float], start: int
    ) -> dict[str, Any]:
        """The report dict from this series' row of a batched look: PSI, KS and alarm statistic per window."""
        s = self.settings
        wh = min(s.window, self.filled)
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
            for i, w in self.shape.shown(self.filled)
        ]
        h_ks, h_p = ks[wh]
        h_psi = psis[self.shape.head]
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
            serial_correlation=self.serial_correlation,
            calibrated=self.calibrated,
        )
        return report

    def ks_result(self, w: int, h: int) -> tuple[float, float]:
        """``(statistic, pvalue)`` exactly as ``scipy.stats.ks_2samp`` gives them for ``D = h / lcm(n, w)``."""
        hit = ks_exact(self._n, w, h)
        if hit is None:  # pragma: no cover - scipy without its exact routine: ks_2samp on a surrogate window
            below, upto = self.shape.placements(self._last_cells(w).astype(np.int64))
            hit = ks_pvalue(self.baseline, below, upto, h * math.gcd(self._n, w) / (self._n * w))
        return hit

    def _last_cells(self, w: int) -> np.ndarray:
        """Cells of the last ``w`` values (oldest first)."""
        end = self.block_pos * self._every
        return self._row("ring")[: self.shape.cap].take(np.arange(end - w, end), mode="wrap")

    # -- state ---------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible state. river detectors are not carried (they restart empty after a restore)."""
        state = self._state("numeric")
        state.update(
            skipped=self.skipped,
            # packed: up to baseline_size floats, written at every checkpoint while the baseline fills (as a JSON
            # list, ~0.3 us a value: 6 % of a worker whose agents are all learning)
            learning=pack_array(np.array(self._learning, dtype=float)),
            pending=[float(v) for v in self._pending],
        )
        if self._ready:
            state.update(
                baseline=pack_array(self.baseline),
                ring=pack_array(self._row("ring")[: self.shape.cap]),
                blocks=pack_array(self._row("blocks")),
                sums=pack_array(self._row("sums")),  # carried, not recomputed: a restore continues bit for bit
                block_ts=pack_array(self._row("block_ts")),
                block_pos=self.block_pos,
                filled=self.filled,
                looks=self._looks,
                serial_correlation=self.serial_correlation,
            )
        return state

    @classmethod
    def from_dict(cls, state: Mapping[str, Any], settings: DriftSettings | None = None) -> DriftMonitor:
        """Rebuild a monitor saved with :meth:`to_dict` (same settings)."""
        agent, feature, variant = state["series"]
        m = cls(settings, agent_name=agent, feature=feature, variant_id=variant)
        if state["ready"]:
            # the baseline is stored sorted: its dependence comes from the state (none before it existed; a
            # "share" of a fleet budget written by older versions is ignored: the budget is spent by values now)
            m._set_baseline(unpack_array(state["baseline"]).tolist(), state.get("serial_correlation", 0.0))
            sh = m.shape
            ring = m._row("ring")
            ring[: sh.cap] = unpack_array(state["ring"], ring.dtype)
            ring[sh.cap :] = ring[: sh.mirror]
            for name in ("blocks", "sums"):
                row = m._row(name)
                row[:] = unpack_array(state[name]).reshape(row.shape)
            m._row("block_ts")[:] = unpack_array(state["block_ts"], np.int64)
            m.block_pos, m.filled, m._looks = state["block_pos"], state["filled"], state["looks"]
            w = min(m.settings.window, m.filled)
            if sh.keep_cells and w:
                m._row("cells")[:] = np.bincount(m._last_cells(w), minlength=2 * m._n + 1)
        m._learning = unpack_array(state["learning"]).tolist()  # a list in state written before it was packed
        m._pending = list(state["pending"])
        m._restore(state)
        m.skipped = state["skipped"]
        return m
