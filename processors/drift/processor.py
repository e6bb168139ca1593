"""The drift monitors of one partition, keyed by series: events in, DriftReports and Alerts out.

A series is ``(agent_name, feature[, variant_id])``: an outcome feeds reward,
latency_ms, cost_usd, every ``features`` key (and the configured categorical
``attributes``), an AgentMetric its name. Outcomes go in through one door,
:meth:`DriftProcessor.feed` (a run of outcomes up to the first with looks due)
and :meth:`DriftProcessor.finish` (that outcome's looks' reports); the host
takes the due looks of many processors together (:func:`.looks.feed_fetch`).
:meth:`DriftProcessor.on_outcome` / :meth:`DriftProcessor.on_metric` are one
event with its looks alone.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from reverify.processors.applied import AppliedOffsets
from reverify.processors.base import Emission, make_alert
from reverify.processors.drift.categorical import CategoricalDriftMonitor
from reverify.processors.drift.looks import evaluate_looks
from reverify.processors.drift.monitor import BaseMonitor
from reverify.processors.drift.numeric import DriftMonitor
from reverify.processors.drift.settings import DriftSettings
from reverify.schemas.fields import OUTCOME_NUMBERS

__all__ = ["OUTCOME_FIELDS", "REPORT_TOPIC", "DriftProcessor", "SeriesKey"]

OUTCOME_FIELDS = OUTCOME_NUMBERS
REPORT_TOPIC = "drift.reports"


def _alert_severity(grade: str) -> str:
    # a calibrated alarm is worth a look even when the PSI grade is small
    return "critical" if grade == "high" else "warning"


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
        self.offsets = AppliedOffsets()

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
    ) -> tuple[list[Emission], list[BaseMonitor]]:
        """Feed one event's ``(feature, value, categorical)`` in order; the emissions so far and the looks left due."""
        out: list[Emission] = []
        due: list[BaseMonitor] = []
        variants = (None, variant) if self.settings.per_variant and variant else (None,)
        for feature, value, categorical in values:
            for v in variants:
                m = self.monitor(agent, feature, v, categorical=categorical)
                if due and m in due:  # the same series twice in one event: its pending look comes first
                    out += self.finish(due, evaluate_looks(due))
                    due = []
                if m.push(value, ts):
                    due.append(m)
        return out, due

    def _observe(
        self, agent: str, variant: str | None, values: Iterable[tuple[str, Any, bool]], ts: int
    ) -> list[Emission]:
        """Feed one event's ``(feature, value, categorical)`` in order; the looks that fall due are taken together."""
        return self._with_looks(*self._push(agent, variant, values, ts))

    def _with_looks(self, out: list[Emission], due: list[BaseMonitor]) -> list[Emission]:
        return out + self.finish(due, evaluate_looks(due)) if due else out

    def finish(self, due: Sequence[BaseMonitor], reports: Sequence[dict[str, Any] | None]) -> list[Emission]:
        """The emissions of the looks ``due`` (from :meth:`feed`) whose reports :func:`evaluate_looks` gave."""
        out: list[Emission] = []
        for m, report in zip(due, reports, strict=True):
            if report is not None:
                out += self._emissions(m, report)
        return out

    def _push_outcome(
        self, event: Mapping[str, Any], offset: tuple[int, int] | None
    ) -> tuple[list[Emission], list[BaseMonitor]]:
        """One outcome's values in, one at a time: the emissions so far and the monitors whose look is due."""
        if self.offsets.replayed(offset):
            return [], []
        values = [(name, float(event[name]), False) for name in OUTCOME_FIELDS if event.get(name) is not None]
        values += [(name, float(value), False) for name, value in sorted((event.get("features") or {}).items())]
        attributes = event.get("attributes") or {}
        values += [(name, attributes[name], True) for name in self.settings.categorical if name in attributes]
        return self._push(event["agent_name"], event.get("variant_id"), values, int(event["ts"]))

    def feed(
        self, events: Sequence[Mapping[str, Any]], offsets: Sequence[tuple[int, int] | None]
    ) -> tuple[int, list[Emission], list[BaseMonitor]]:
        """Outcomes ``events`` in turn (``offsets`` theirs) until one has drift looks due: how many it took, that
        one's emissions so far, and the monitors due (none: every event taken).

        The caller takes the due looks -- with other processors' if it likes (:func:`.looks.feed_fetch`): the
        reports are the same -- and hands them to :meth:`finish` before this processor's next input. The events
        before the last take their values and have neither emissions nor looks, so a caller may apply them to
        other processors in any order relative to this. Outcomes alike (one agent, one partition, the same
        features, finite values) go in one :meth:`DriftMonitor.extend` per series rather than a push per value:
        ~0.5 instead of ~10 us an outcome (four series).

        >>> settings = DriftSettings(baseline_size=100, window=100, windows=(50, 100))
        >>> events = [{"agent_name": "a", "ts": i, "reward": (i * 37 % 101) / 101, "latency_ms": 10.0 + i % 5,
        ...            "cost_usd": 0.01, "features": {"x": i % 3 - 1.0}, "attributes": {}} for i in range(400)]
        >>> one, many = DriftProcessor(settings), DriftProcessor(settings)
        >>> by_one = [one.on_outcome(e, (0, i)) for i, e in enumerate(events)]
        >>> by_many, at = [], 0
        >>> while at < len(events):
        ...     fed, out, due = many.feed(events[at:], [(0, i) for i in range(at, len(events))])
        ...     by_many += [[]] * (fed - 1) + [out + many.finish(due, evaluate_looks(due))]
        ...     at += fed
        >>> by_many == by_one, sum(map(len, by_one)), one.to_dict() == many.to_dict()
        (True, 24, True)
        """
        fed, due = self._extend_alike(events, offsets)
        if not fed:
            return 1, *self._push_outcome(events[0], offsets[0])
        return fed, [], due

    def _extend_alike(
        self, events: Sequence[Mapping[str, Any]], offsets: Sequence[tuple[int, int]]
    ) -> tuple[int, list[BaseMonitor]]:
        """The bulk path of :meth:`feed`: how many leading events it took (0: none is alike) and the looks due."""
        if self.settings.categorical or self.settings.per_variant:
            return 0, []
        first = events[0]
        if offsets[0] is None or self.offsets.applied(offsets[0]):
            return 0, []  # no offset, or a replay: _push_outcome knows what to do
        agent = first["agent_name"]
        features = first.get("features") or {}
        names = sorted(features)
        if any(first.get(name) is None or name in features for name in OUTCOME_FIELDS):
            return 0, []
        monitors = [self.monitor(agent, name) for name in (*OUTCOME_FIELDS, *names)]
        room = len(events)
        for m in monitors:
            if type(m) is not DriftMonitor or not m.takes_runs:
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
        self.offsets.mark(offsets[n - 1])
        return n, [m for m, column in zip(monitors, columns, strict=True) if m.extend(column, ts)]

    def on_outcome(self, event: Mapping[str, Any], offset: tuple[int, int] | None = None) -> list[Emission]:
        """Feed an AgentOutcome: reward, latency_ms, cost_usd, every ``features`` key, categorical attributes."""
        _, out, due = self.feed([event], [offset])
        return self._with_looks(out, due)

    def on_metric(self, event: Mapping[str, Any], offset: tuple[int, int] | None = None) -> list[Emission]:
        """Feed an AgentMetric: one series per metric name."""
        if self.offsets.replayed(offset):
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

    def in_alarm(self, agent_name: str) -> list[str]:
        """The agent's series whose drift alarm fires now (``feature`` or ``feature@variant``), sorted."""
        return sorted(
            m.feature if m.variant_id is None else f"{m.feature}@{m.variant_id}"
            for (agent, _, _), m in self.monitors.items()
            if agent == agent_name and m.firing
        )

    def _labels(self, m: BaseMonitor) -> dict[str, str]:
        labels = {"agent_name": m.agent_name, "feature": m.feature}
        if m.variant_id is not None:
            labels["variant_id"] = m.variant_id
        return labels

    def _resolve_for_reset(self, m: BaseMonitor) -> list[Emission]:
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
                ts=m.last_ts,
                starts_at=m.fired_at or m.last_ts,
                ends_at=m.last_ts,
                cause=("baseline-reset", m.generation, m.values_seen),
                message="baseline replaced",
            )
        ]

    def _emissions(self, m: BaseMonitor, report: dict[str, Any]) -> list[Emission]:
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
            "offsets": self.offsets.to_dict(),
            "monitors": [m.to_dict() for m in self.monitors.values()],
        }

    @classmethod
    def from_dict(cls, state: Mapping[str, Any], settings: DriftSettings | None = None) -> DriftProcessor:
        """Rebuild a processor saved with :meth:`to_dict`."""
        p = cls(settings)
        p.offsets = AppliedOffsets.from_dict(state["offsets"])
        for ms in state["monitors"]:
            agent, feature, variant = ms["series"]
            kind = CategoricalDriftMonitor if ms["kind"] == "categorical" else DriftMonitor
            p.monitors[(agent, feature, variant)] = kind.from_dict(ms, p.settings.for_series(agent, feature))
        return p
