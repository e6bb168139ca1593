"""The evidence of an assurance case: the window its observations go into and the value measured over it.

=====================  =====================================================
evidence               value over the window
=====================  =====================================================
``success_rate``       share of outcomes with ``success``
``error_rate``         errors / (errors + outcomes); errors of severity
                       ``error``/``critical``, pipeline errors included
``reward_mean``        mean outcome ``reward``
``latency_p50/95/99``  percentile of outcome ``latency_ms``
``cost_mean``          mean outcome ``cost_usd``
``q_value``            latest Q of each arm in scope (n-weighted mean)
``accuracy``           latest ModelReport accuracy (worst model version in scope)
``brier``, ``ece``     latest ModelReport Brier score, calibration error (worst)
``psi:FEATURE``        latest drift PSI of FEATURE (worst series in scope)
``ks_p:FEATURE``       latest KS p-value (smallest); ``ks:FEATURE`` the statistic
``metric:NAME``        mean of AgentMetric NAME
``rate:NAME``          events per second of AgentMetric NAME
                       (``rate:outcomes`` and ``rate:errors`` count those streams)
=====================  =====================================================

Samples (outcomes, errors, metrics) go into a :class:`SampleWindow`, by count
(``"200 events"``) or by time (``"5m"``), with a running sum so a mean costs
nothing. Q-values and drift reports are states, not samples: a
:class:`LatestWindow` keeps the latest value of each series (arm, or drift
series) and the worst or the n-weighted one decides.

Examples
--------
>>> from reverify.processors.assurance.cases import AssuranceCase
>>> case = AssuranceCase.from_dict({"name": "p95", "evidence": "latency_p95", "window": "4 events",
...                                 "threshold_max": 900, "min_evidence": 1})
>>> window = new_window(case)
>>> for ts, latency in enumerate([100.0, 200.0, 300.0, 400.0, 1000.0]):
...     observe(case, "outcome", window, {"latency_ms": latency}, ts)
>>> measure(case, window, now_ms=5)  # the last four: 200, 300, 400, 1000
(910.0, 4, '')
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any

from reverify.processors.assurance.cases import AssuranceCase

__all__ = ["LatestWindow", "SampleWindow", "measure", "new_window", "observe", "percentile"]

# Drift reports and Q-values are states, not samples: keyed by series, the latest value counts.
_STATE_SOURCES = ("qvalue", "drift", "model")
_DRIFT_FIELDS = {"psi": "psi", "ks_p": "ks_pvalue", "ks": "ks_statistic"}


class SampleWindow:
    """Rolling window of ``(ts, value)`` samples, by count or by time, with a running sum."""

    __slots__ = ("events", "ms", "items", "total")

    def __init__(self, events: int | None, ms: int | None) -> None:
        self.events, self.ms = events, ms
        self.items: deque[tuple[int, float]] = deque()
        self.total = 0.0

    def add(self, ts: int, value: float) -> None:
        self.items.append((ts, value))
        self.total += value
        if self.events is not None and len(self.items) > self.events:
            self.total -= self.items.popleft()[1]

    def evict(self, now_ms: int) -> None:
        if self.ms is None:
            return
        horizon = now_ms - self.ms
        while self.items and self.items[0][0] <= horizon:
            self.total -= self.items.popleft()[1]
        if not self.items:
            self.total = 0.0  # no float residue from a long run of additions and removals

    def __len__(self) -> int:
        return len(self.items)

    def to_list(self) -> list[list[float]]:
        return [[ts, v] for ts, v in self.items]

    def load(self, items: Iterable[Iterable[float]]) -> SampleWindow:
        for ts, v in items:
            self.add(int(ts), float(v))
        return self


class LatestWindow:
    """Latest ``(ts, value, weight)`` per series; a time window drops series not updated within it."""

    __slots__ = ("ms", "series")

    def __init__(self, ms: int | None) -> None:
        self.ms = ms
        self.series: dict[str, tuple[int, float, float]] = {}

    def set(self, key: str, ts: int, value: float, weight: float) -> None:
        old = self.series.get(key)
        if old is None or ts >= old[0]:
            self.series[key] = (ts, value, weight)

    def evict(self, now_ms: int) -> None:
        if self.ms is not None:
            horizon = now_ms - self.ms
            self.series = {k: v for k, v in self.series.items() if v[0] > horizon}

    def __len__(self) -> int:
        return len(self.series)

    def to_dict(self) -> dict[str, list[float]]:
        return {k: list(v) for k, v in self.series.items()}

    def load(self, series: Mapping[str, Iterable[float]]) -> LatestWindow:
        self.series = {k: (int(ts), float(value), float(weight)) for k, (ts, value, weight) in series.items()}
        return self


def new_window(case: AssuranceCase) -> SampleWindow | LatestWindow:
    """An empty window for ``case``'s evidence."""
    if case.source_kinds[0] in _STATE_SOURCES:
        return LatestWindow(case.window_ms)
    return SampleWindow(case.window_events, case.window_ms)


def observe(
    case: AssuranceCase, stream: str, window: SampleWindow | LatestWindow, event: Mapping[str, Any], ts: int
) -> None:
    """Put what ``event`` (of input ``stream``) says about ``case``'s evidence into ``window``."""
    kind = case.kind
    if isinstance(window, LatestWindow):
        if kind == "q_value":
            series = f"{event['agent_name']}/{event['task_type']}/{event['variant_id']}"
            window.set(series, ts, float(event["q"]), float(event.get("n", 1)))
        elif stream == "model":
            if event.get(kind) is not None:  # a regression model has no accuracy, a classifier no Brier score
                window.set(
                    f"{event['agent_name']}/{event['model_version']}", ts, float(event[kind]), event["window_size"]
                )
        else:
            series = f"{event['agent_name']}/{event.get('variant_id') or ''}"
            window.set(series, ts, float(event[_DRIFT_FIELDS[kind]]), float(event.get("window_size", 0)))
        return
    if kind == "rate":
        value = 1.0
    elif kind == "error_rate":
        value = 1.0 if stream == "error" else 0.0
    elif kind == "success_rate":
        value = 1.0 if event["success"] else 0.0
    elif kind == "reward_mean":
        value = float(event["reward"])
    elif kind.startswith("latency_p"):
        value = float(event.get("latency_ms", 0.0))
    elif kind == "cost_mean":
        value = float(event.get("cost_usd", 0.0))
    else:  # metric
        value = float(event["value"])
    window.add(ts, value)


def measure(case: AssuranceCase, window: SampleWindow | LatestWindow, now_ms: int) -> tuple[float | None, int, str]:
    """``(value, sample size, why not)``: the evidence at ``now_ms``, or why there is none."""
    window.evict(now_ms)
    kind = case.kind
    if isinstance(window, LatestWindow):
        if not window.series:
            return None, 0, f"no {case.evidence} reported within {case.window}"
        vals = list(window.series.values())
        if kind == "q_value":
            weight = sum(w for _, _, w in vals)
            value = sum(v * w for _, v, w in vals) / weight if weight > 0 else float("nan")
            return value, int(weight), ""
        pick = min if kind in ("ks_p", "accuracy") else max  # the worst series in scope decides
        _, value, size = pick(vals, key=lambda t: t[1])
        return value, int(size), ""
    n = len(window)
    if kind == "rate":
        if case.window_ms is not None:
            return n / (case.window_ms / 1000.0), n, ""
        span = (window.items[-1][0] - window.items[0][0]) / 1000.0 if n > 1 else 0.0
        return ((n - 1) / span if span > 0 else None), n, "" if span > 0 else "all events at one instant"
    if n == 0:
        return None, 0, f"no evidence within {case.window}"
    if kind.startswith("latency_p"):
        q = float(kind[len("latency_p") :])
        return percentile(sorted(v for _, v in window.items), q), n, ""
    return window.total / n, n, ""


def percentile(ordered: list[float], q: float) -> float:
    """Linear-interpolation percentile of sorted values (numpy's default method), without numpy's call overhead.

    >>> percentile([1.0, 2.0, 3.0, 4.0], 50), percentile([1.0, 2.0, 3.0, 4.0], 95)
    (2.5, 3.85)
    """
    pos = (len(ordered) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)
