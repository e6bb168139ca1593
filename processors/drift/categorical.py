"""Drift of a categorical series: PSI over category frequencies and a chi-square alarm per window.

References
----------
Pearson, K. (1900). On the criterion that a given system of deviations from the probable ... *Philosophical
Magazine* 50 (the chi-square test of homogeneity, here of window against baseline counts).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from reverify.processors.drift.monitor import BaseMonitor, psi, psi_grade
from reverify.processors.drift.settings import DriftSettings
from scipy import stats

__all__ = ["CategoricalDriftMonitor"]


class CategoricalDriftMonitor(BaseMonitor):
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

    def evaluate(self) -> dict[str, Any] | None:
        """Take the due look: the block's counts in, the alarm decided; a report on a report look or a transition."""
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
            serial_correlation=0.0,
            calibrated=True,
        )
        return report

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible state: the baseline values and window block counts."""
        state = self._state("categorical")
        state.update(learning=list(self._learning), pending=list(self._pending))
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
        m._restore(state)
        return m
