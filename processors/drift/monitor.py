"""What every drift monitor shares: learning a baseline, the pending block, the alarm's lifecycle, the report frame.

The numeric (:mod:`.numeric`) and categorical (:mod:`.categorical`) monitors
differ in what a look computes; both fire when their statistic passes the
threshold and resolve once it stayed below for a whole configured window.
PSI and its grades (the seed's) are here as both report them.

References
----------
Yurdakul, B. (2018). Statistical properties of population stability index. PhD thesis, Western Michigan University.

>>> round(psi(np.array([0.2, 0.8]), np.array([0.5, 0.5])), 4)
0.4159
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping
from typing import Any

import numpy as np
from reverify.processors.base import derive_id
from reverify.processors.drift.settings import DriftSettings, make_detector

__all__ = ["BaseMonitor", "psi", "psi_grade"]


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


class BaseMonitor:
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
        self._detectors = {name: make_detector(name) for name in self.settings.detectors}
        self._detected = dict.fromkeys(self._detectors, False)
        self._every = self.settings.look_every
        self.batch_key: Hashable = id(self)  # series looked at together share it (see looks.evaluate_looks)

    def update(self, value: Any, ts: int) -> dict[str, Any] | None:
        """Add one value observed at ``ts`` (epoch ms); a DriftReport dict on a report look, else ``None``."""
        return self.look_batch([self])[0] if self.push(value, ts) else None

    def push(self, value: Any, ts: int) -> bool:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def look_due(self) -> bool:
        """Whether a completed block awaits its look (see :func:`evaluate_looks`)."""
        return len(self._pending) == self._every

    @classmethod
    def look_batch(cls, monitors: list[Any]) -> list[dict[str, Any] | None]:
        """The due looks of ``monitors``, which share a batch key: their reports or ``None``."""
        return [m.evaluate() for m in monitors]

    def evaluate(self) -> dict[str, Any] | None:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def last_ts(self) -> int:
        """Time (epoch ms) of the last value taken."""
        return self._last_ts

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

    def _state(self, kind: str) -> dict[str, Any]:
        """The part of :meth:`to_dict` every monitor shares: series, counts, alarm lifecycle, block clock."""
        return {
            "kind": kind,
            "series": [self.agent_name, self.feature, self.variant_id],
            "values_seen": self.values_seen,
            "generation": self.generation,
            "firing": self.firing,
            "fired_at": self.fired_at,
            "quiet": self._quiet,
            "block_ts0": self._block_ts0,
            "last_ts": self._last_ts,
            "ready": self._ready,
        }

    def _restore(self, state: Mapping[str, Any]) -> None:
        """Take back what :meth:`_state` wrote (the baseline and window are each monitor's own)."""
        self.values_seen, self.generation = state["values_seen"], state["generation"]
        self.firing, self.fired_at, self._quiet = state["firing"], state["fired_at"], state["quiet"]
        self._block_ts0, self._last_ts = state["block_ts0"], state["last_ts"]

    def _set_baseline(self, values: list[Any]) -> None:  # pragma: no cover - abstract
        raise NotImplementedError
