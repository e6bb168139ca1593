"""The assurance evaluator: every case re-verified on the events in its scope and on a timer, with its actions.

For each case and each combination of its scope's values, the evaluator keeps
the evidence window (:mod:`reverify.processors.assurance.evidence`), measures
it on every relevant event and on :meth:`AssuranceEvaluator.tick`, and emits
an ``AssuranceResult`` when the verdict changes. A failed verdict is an alert
condition: the alert fires once it has lasted ``for`` (Prometheus's semantics,
through :class:`~reverify.processors.alerting.AlertManager`) and so does the
case's action (rollback, pause, degrade). ``resolve_min`` / ``resolve_max`` add
hysteresis: a failed case passes again only once the value is back beyond them.

References
----------
Prometheus alerting rules (``for``, ``keep_firing_for``):
https://prometheus.io/docs/prometheus/latest/configuration/alerting_rules/

Examples
--------
>>> from reverify.processors.assurance.cases import parse_cases
>>> cases = parse_cases([{"name": "enrich", "evidence": "success_rate", "scope": {"agent_name": "enricher"},
...                       "window": "10 events", "threshold_min": 0.8, "min_evidence": 5, "for": "30s"}])
>>> ev = AssuranceEvaluator(cases)
>>> out = []
>>> for i in range(10):
...     out += ev.on_outcome({"event_id": f"o{i}", "ts": i * 10_000, "agent_name": "enricher", "task_type": "t",
...                           "variant_id": "v", "success": i % 2 == 0, "reward": 0.5}, offset=(0, i))
>>> [(e.record_type, e.value.get("verdict") or e.value.get("status")) for e in out]
[('AssuranceResult', 'insufficient_evidence'), ('AssuranceResult', 'failed'), ('Alert', 'firing')]
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from reverify.processors.alerting import AlertManager
from reverify.processors.applied import AppliedOffsets
from reverify.processors.assurance.cases import SCOPE_KEYS, AssuranceCase
from reverify.processors.assurance.evidence import LatestWindow, SampleWindow, measure, new_window, observe
from reverify.processors.base import Emission, derive_id

__all__ = ["AssuranceEvaluator"]


@dataclass
class _Group:
    """One case evaluated for one combination of scope values."""

    labels: dict[str, str]
    window: SampleWindow | LatestWindow
    verdict: str | None = None
    violating: bool = False  # hysteresis memory: stays True until the resolve threshold is crossed
    failing_since: int | None = None
    acted: bool = False
    alert_open: bool = False
    first_ts: int | None = None
    last_ts: int | None = None


class AssuranceEvaluator:
    """Re-verifies every case on the events in its scope and on :meth:`tick`; emits verdicts, alerts and actions.

    Parameters
    ----------
    cases
        From :func:`parse_cases`.
    alerts
        The shared :class:`~processors.alerting.AlertManager`; when omitted the evaluator owns one and ticks it.
    settings_version
        Stamped on every verdict, alert and action.

    Outputs
    -------
    * ``AssuranceResult`` on ``assurance.results`` (key: case name) when a verdict changes;
    * ``Alert`` on ``alerts`` (source ``assurance``) through the alert lifecycle;
    * for ``rollback``, a ``Command`` (``command = "rollback"``) on ``control.commands``, key ``agent/task``,
      that the learning loop executes (it knows the previous best variant);
    * for ``pause`` and ``degrade:N``, an ``AgentControl`` on ``control.agents``, key ``agent_name``, with the
      agent's state over all cases (paused while any pause case fails; the highest level of failing degrade cases).

    Dry-run cases emit their verdicts and nothing else.
    """

    def __init__(
        self,
        cases: Iterable[AssuranceCase] = (),
        alerts: AlertManager | None = None,
        settings_version: str = "",
    ) -> None:
        self.owns_alerts = alerts is None
        self.alerts = alerts if alerts is not None else AlertManager()
        self.settings_version = settings_version
        self._cases: dict[str, AssuranceCase] = {}
        self._groups: dict[str, dict[tuple[str, ...], _Group]] = {}
        self._index: dict[str, dict[str | None, list[AssuranceCase]]] = {}
        self._offsets: dict[str, AppliedOffsets] = {}
        self._pauses: dict[str, set[str]] = {}  # agent -> members (case/group) pausing it
        self._degrades: dict[str, dict[str, int]] = {}  # agent -> member -> level
        self._now = 0
        self._install(list(cases))

    @property
    def cases(self) -> list[AssuranceCase]:
        return list(self._cases.values())

    # ------------------------------------------------------------------ inputs

    def on_outcome(self, event: Mapping[str, Any], offset: tuple[int, int] | None = None) -> list[Emission]:
        """An ``AgentOutcome``: evidence for success, reward, latency, cost, error-rate and outcome-rate cases."""
        return self._consume("outcome", event, offset)

    def on_error(self, event: Mapping[str, Any], offset: tuple[int, int] | None = None) -> list[Emission]:
        """An ``AgentError``: evidence for error-rate and ``rate:errors`` cases."""
        return self._consume("error", event, offset)

    def on_metric(self, event: Mapping[str, Any], offset: tuple[int, int] | None = None) -> list[Emission]:
        """An ``AgentMetric``: evidence for ``metric:NAME`` and ``rate:NAME`` cases."""
        return self._consume("metric", event, offset)

    def on_qvalue(self, event: Mapping[str, Any], offset: tuple[int, int] | None = None) -> list[Emission]:
        """A ``QValue``: the latest Q of an arm, for ``q_value`` cases."""
        return self._consume("qvalue", event, offset)

    def on_model(self, event: Mapping[str, Any], offset: tuple[int, int] | None = None) -> list[Emission]:
        """A ``ModelReport``: the latest accuracy, Brier score and ECE of a model version, for those cases."""
        return self._consume("model", event, offset)

    def on_drift(self, event: Mapping[str, Any], offset: tuple[int, int] | None = None) -> list[Emission]:
        """A ``DriftReport``: the latest PSI / KS of a series, for ``psi:``, ``ks_p:`` and ``ks:`` cases."""
        return self._consume("drift", event, offset)

    def tick(self, now_ms: int) -> list[Emission]:
        """Re-verify every case at ``now_ms``: windows expire, stale evidence becomes insufficient, ``for`` elapses."""
        self._now = max(self._now, now_ms)
        out: list[Emission] = []
        cause = f"tick:{now_ms}"
        for name, groups in self._groups.items():
            case = self._cases[name]
            for key, group in groups.items():
                out += self._evaluate(case, key, group, self._now, cause)
        if self.owns_alerts:
            out += self.alerts.tick(self._now)
        return out

    def reload(self, cases: Iterable[AssuranceCase], now_ms: int) -> list[Emission]:
        """Switch to a new list of cases; unchanged cases keep their windows, verdicts and pending alerts.

        Removed or changed cases give back what they did: their alerts resolve and
        their pause / degrade contributions are withdrawn.
        """
        self._now = max(self._now, now_ms)
        new = {c.name: c for c in cases}
        out: list[Emission] = []
        for name, old in list(self._cases.items()):
            if new.get(name) == old:
                continue
            for key, group in self._groups.get(name, {}).items():
                out += self._retire(old, key, group, self._now)
            self._groups.pop(name, None)
        self._install(list(new.values()))
        return out

    # ------------------------------------------------------------------ queries

    def verdicts(self) -> list[dict[str, Any]]:
        """Current verdict of every case and scope (for ``reverify assurance status``)."""
        return [
            {"case": name, "scope": dict(g.labels), "verdict": g.verdict or "insufficient_evidence", "acted": g.acted}
            for name, groups in self._groups.items()
            for g in groups.values()
        ]

    def is_paused(self, agent: str) -> bool:
        return bool(self._pauses.get(agent))

    def degradation_level(self, agent: str) -> int:
        return max(self._degrades.get(agent, {}).values(), default=0)

    # ------------------------------------------------------------------ persistence

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible state; each case's state is tagged with its definition so a changed case starts afresh."""
        cases = {}
        for name, groups in self._groups.items():
            case = self._cases[name]
            cases[name] = {
                "definition": case.to_dict(),
                "groups": [self._group_to_dict(key, g) for key, g in groups.items()],
            }
        return {
            "version": 1,
            "now": self._now,
            "offsets": {k: v.to_dict() for k, v in self._offsets.items()},
            "cases": cases,
            "pauses": {a: sorted(m) for a, m in self._pauses.items()},
            "degrades": {a: dict(m) for a, m in self._degrades.items()},
            "alerts": self.alerts.to_dict() if self.owns_alerts else None,
        }

    @classmethod
    def from_dict(
        cls,
        data: Mapping[str, Any],
        cases: Iterable[AssuranceCase],
        alerts: AlertManager | None = None,
        settings_version: str = "",
    ) -> AssuranceEvaluator:
        """Restore :meth:`to_dict`'s state for ``cases`` (the current config); state of changed cases is dropped."""
        ev = cls(cases, alerts, settings_version)
        if alerts is None and data.get("alerts") is not None:
            ev.alerts = AlertManager.from_dict(data["alerts"])
        ev._now = int(data.get("now", 0))
        ev._offsets = {k: AppliedOffsets.from_dict(v) for k, v in data.get("offsets", {}).items()}
        for name, saved in data.get("cases", {}).items():
            case = ev._cases.get(name)
            if case is None or saved["definition"] != case.to_dict():
                continue
            for raw in saved["groups"]:
                key = tuple(raw["key"])
                ev._groups.setdefault(name, {})[key] = ev._group_from_dict(case, raw)
        live = {f"{n}\x1f" + "\x1f".join(k) for n, gs in ev._groups.items() for k in gs}
        ev._pauses = {a: {m for m in ms if m in live} for a, ms in data.get("pauses", {}).items()}
        ev._degrades = {
            a: {m: int(v) for m, v in ms.items() if m in live} for a, ms in data.get("degrades", {}).items()
        }
        return ev

    # ------------------------------------------------------------------ internals: routing

    def _install(self, cases: list[AssuranceCase]) -> None:
        self._cases = {c.name: c for c in cases}
        self._index = {}
        for c in cases:
            agent = c.scope.get("agent_name")
            literal = None if agent in (None, "*") else agent
            for src in c.source_kinds:
                self._index.setdefault(src, {}).setdefault(literal, []).append(c)
        self._groups = {n: g for n, g in self._groups.items() if n in self._cases}

    def _consume(self, stream: str, event: Mapping[str, Any], offset: tuple[int, int] | None) -> list[Emission]:
        if offset is not None:
            applied = self._offsets.get(stream)
            if applied is None:
                applied = self._offsets[stream] = AppliedOffsets()
            if applied.replayed(offset):
                return []  # a replay after a crash: already applied
        ts = int(event["ts"])
        self._now = max(self._now, ts)
        by_agent = self._index.get(stream)
        if not by_agent:
            return []
        agent = event.get("agent_name")
        candidates = by_agent.get(None, []) if agent is None else by_agent.get(agent, []) + by_agent.get(None, [])
        out: list[Emission] = []
        cause = str(event.get("event_id", ts))
        for case in candidates:
            if not self._relevant(case, stream, event):
                continue
            key = self._group_key(case, event)
            if key is None:
                continue
            group = self._group(case, key, event)
            self._observe(case, stream, group, event, ts)
            out += self._evaluate(case, key, group, self._now, cause)
        return out

    @staticmethod
    def _relevant(case: AssuranceCase, stream: str, event: Mapping[str, Any]) -> bool:
        kind, arg = case.kind, case.argument
        if stream == "metric":
            return event.get("name") == arg
        if stream == "drift":
            return event.get("feature") == arg
        if stream == "error" and kind == "error_rate":
            # Warnings and info are not failures (the same rule as the error monitor's default).
            return event.get("severity", "error") in ("error", "critical")
        return True

    @staticmethod
    def _group_key(case: AssuranceCase, event: Mapping[str, Any]) -> tuple[str, ...] | None:
        key = []
        for dim in SCOPE_KEYS:
            want = case.scope.get(dim)
            if want is None:
                continue
            got = event.get(dim)
            if want == "*":
                if got is None:
                    return None  # cannot say which scope value this event belongs to
                key.append(str(got))
            elif got != want:
                return None
        return tuple(key)

    def _group(self, case: AssuranceCase, key: tuple[str, ...], event: Mapping[str, Any]) -> _Group:
        groups = self._groups.setdefault(case.name, {})
        group = groups.get(key)
        if group is None:
            labels = {dim: (str(event[dim]) if v == "*" else v) for dim, v in case.scope.items()}
            group = groups[key] = _Group(labels=labels, window=new_window(case))
        return group

    @staticmethod
    def _observe(case: AssuranceCase, stream: str, group: _Group, event: Mapping[str, Any], ts: int) -> None:
        group.first_ts = ts if group.first_ts is None else min(group.first_ts, ts)
        group.last_ts = ts if group.last_ts is None else max(group.last_ts, ts)
        observe(case, stream, group.window, event, ts)

    # ------------------------------------------------------------------ internals: verdicts

    def _evaluate(
        self, case: AssuranceCase, key: tuple[str, ...], group: _Group, now: int, cause: str
    ) -> list[Emission]:
        value, n, why = measure(case, group.window, now)
        stale = (
            case.window_events is not None and group.last_ts is not None and now - group.last_ts >= case.stale_after_ms
        )
        threshold: float | None = None
        if stale:
            verdict = "insufficient_evidence"
            message = f"no {case.evidence} evidence for {now - group.last_ts} ms (stale after {case.stale_after_ms} ms)"
        elif n < case.min_evidence or (n == 0 and case.kind != "rate"):
            verdict = "insufficient_evidence"
            message = why or f"{n} observations < min_evidence {case.min_evidence} over {case.window}"
        elif value is None or not math.isfinite(value):
            verdict = "error"
            message = f"{case.evidence} cannot be computed: {why or 'not a finite number'}"
            value = None
        else:
            violating, threshold = self._check(case, value, group.violating)
            group.violating = violating
            verdict = "failed" if violating else "passed"
            message = ""  # built only when someone will read it: the explanation is the costly part
        if not message and (verdict != group.verdict or group.alert_open or verdict == "failed"):
            message = self._explain(case, value, n, verdict == "failed", threshold)  # type: ignore[arg-type]
        out: list[Emission] = []
        if verdict != group.verdict:
            out.append(self._result(case, key, group, verdict, value, n, message, now, cause))
            group.verdict = verdict
        if case.dry_run:
            return out
        out += self._alert(case, group, verdict == "failed", value, n, threshold, message, now)
        out += self._act(case, key, group, verdict, value, threshold, message, now, cause)
        return out

    @staticmethod
    def _check(case: AssuranceCase, value: float, was_violating: bool) -> tuple[bool, float | None]:
        """Threshold test with hysteresis; returns ``(violating, the threshold that decided)``."""
        lo = case.resolve_min if was_violating and case.resolve_min is not None else case.threshold_min
        hi = case.resolve_max if was_violating and case.resolve_max is not None else case.threshold_max
        if lo is not None and value < lo:
            return True, lo
        if hi is not None and value > hi:
            return True, hi
        return False, case.threshold_min if case.threshold_min is not None else case.threshold_max

    @staticmethod
    def _explain(case: AssuranceCase, value: float, n: int, violating: bool, threshold: float | None) -> str:
        bounds = f"[{_fmt(case.threshold_min)}, {_fmt(case.threshold_max)}]"
        if case.resolve_min is not None or case.resolve_max is not None:
            bounds += f" (resolve at [{_fmt(case.resolve_min)}, {_fmt(case.resolve_max)}])"
        state = "violates" if violating else "within"
        return f"{case.evidence} = {value:.4g} over {case.window} (n={n}) {state} {bounds}"

    def _result(
        self,
        case: AssuranceCase,
        key: tuple[str, ...],
        group: _Group,
        verdict: str,
        value: float | None,
        n: int,
        message: str,
        now: int,
        cause: str,
    ) -> Emission:
        record = {
            "event_id": derive_id("assurance", case.name, key, verdict, cause),
            "ts": now,
            "case_name": case.name,
            "claim": case.claim,
            "evidence": case.evidence,
            "scope": dict(group.labels),
            "verdict": verdict,
            "previous_verdict": group.verdict,
            "value": value,
            "threshold_min": case.threshold_min,
            "threshold_max": case.threshold_max,
            "window": case.window,
            "sample_size": n,
            "severity": case.severity,
            "action": case.action_label,
            "dry_run": case.dry_run,
            "settings_version": self.settings_version,
            "message": ("dry run: " if case.dry_run else "") + message,
        }
        return Emission("assurance.results", case.name, "AssuranceResult", record)

    def _alert(
        self,
        case: AssuranceCase,
        group: _Group,
        active: bool,
        value: float | None,
        n: int,
        threshold: float | None,
        message: str,
        now: int,
    ) -> list[Emission]:
        if not active and not group.alert_open:
            return []
        group.alert_open = active
        evidence: dict[str, float] = {"sample_size": float(n)}
        if value is not None:
            evidence["value"] = value
        if threshold is not None:
            evidence["threshold"] = threshold
        for k in ("threshold_min", "threshold_max", "resolve_min", "resolve_max"):
            if getattr(case, k) is not None:
                evidence[k] = getattr(case, k)
        return self.alerts.observe(
            "assurance",
            {"case": case.name, **group.labels},
            active,
            now,
            severity=case.severity,
            title=f"assurance case {case.name} failed" + (f": {case.claim}" if case.claim else ""),
            message=message,
            evidence=evidence,
            for_ms=case.for_ms,
            keep_firing_for_ms=case.keep_firing_for_ms,
            settings_version=self.settings_version,
            statistic=case.evidence,
        )

    # ------------------------------------------------------------------ internals: actions

    def _act(
        self,
        case: AssuranceCase,
        key: tuple[str, ...],
        group: _Group,
        verdict: str,
        value: float | None,
        threshold: float | None,
        message: str,
        now: int,
        cause: str,
    ) -> list[Emission]:
        if verdict == "failed":
            if group.failing_since is None:
                group.failing_since = now
        else:
            group.failing_since = None
        if case.action == "alert":
            return []
        if verdict == "failed" and not group.acted and now - (group.failing_since or now) >= case.for_ms:
            group.acted = True
            return self._start_action(case, key, group, value, threshold, message, now, cause)
        if verdict == "passed" and group.acted:
            # A paused agent may never produce evidence again: only a passing verdict lifts the action.
            group.acted = False
            return self._stop_action(case, key, group, now, cause)
        return []

    def _start_action(
        self,
        case: AssuranceCase,
        key: tuple[str, ...],
        group: _Group,
        value: float | None,
        threshold: float | None,
        message: str,
        now: int,
        cause: str,
    ) -> list[Emission]:
        agent = group.labels["agent_name"]
        member = f"{case.name}\x1f" + "\x1f".join(key)
        # "assurance:" first: VariantRouter tells control sources apart by prefix (the error monitor writes "errors:")
        reason = f"assurance:{case.name} failed for {case.for_ms} ms: {message}"
        if case.action == "rollback":
            task = group.labels["task_type"]
            args = {
                "agent_name": agent,
                "task_type": task,
                "case": case.name,
                "reason": reason,
                "trigger": f"assurance:{case.name}",
                "value": _fmt(value),
                "threshold": _fmt(threshold),
                "failing_since": str(group.failing_since),  # the incident's first evidence (processors.incidents)
            }
            if "variant_id" in group.labels:
                args["variant_id"] = group.labels["variant_id"]
            record = {
                "event_id": derive_id("assurance-rollback", case.name, key, group.failing_since, cause),
                "ts": now,
                "command": "rollback",
                "args": args,
                "by": f"assurance:{case.name}",
            }
            return [Emission("control.commands", f"{agent}/{task}", "Command", record)]
        if case.action == "pause":
            was = self.is_paused(agent)
            self._pauses.setdefault(agent, set()).add(member)
            return [] if was else [self._control(agent, "pause", reason, now, cause)]
        before = self.degradation_level(agent)
        self._degrades.setdefault(agent, {})[member] = case.degrade_level or 0
        after = self.degradation_level(agent)
        return [] if after == before else [self._control(agent, "degrade", reason, now, cause)]

    def _stop_action(
        self, case: AssuranceCase, key: tuple[str, ...], group: _Group, now: int, cause: str
    ) -> list[Emission]:
        agent = group.labels.get("agent_name")
        if agent is None or case.action == "rollback":
            return []  # a rollback is not undone: the learning loop promotes again on evidence
        member = f"{case.name}\x1f" + "\x1f".join(key)
        reason = f"assurance:{case.name} passes again"
        if case.action == "pause":
            members = self._pauses.get(agent, set())
            had = bool(members)
            members.discard(member)
            if not members:
                self._pauses.pop(agent, None)
            return [self._control(agent, "resume", reason, now, cause)] if had and not members else []
        levels = self._degrades.get(agent, {})
        before = self.degradation_level(agent)
        levels.pop(member, None)
        if not levels:
            self._degrades.pop(agent, None)
        after = self.degradation_level(agent)
        return [] if after == before else [self._control(agent, "degrade", reason, now, cause)]

    def _control(self, agent: str, kind: str, reason: str, now: int, cause: str) -> Emission:
        level = self.degradation_level(agent)
        paused = self.is_paused(agent)
        record = {
            "event_id": derive_id("assurance-control", agent, kind, paused, level, cause),
            "ts": now,
            "agent_name": agent,
            "kind": kind,
            "paused": paused,
            "degradation_level": level,
            "component": None,
            "circuit_state": None,
            "reason": reason,
            "cause_id": cause,
        }
        return Emission("control.agents", agent, "AgentControl", record)

    def _retire(self, case: AssuranceCase, key: tuple[str, ...], group: _Group, now: int) -> list[Emission]:
        out: list[Emission] = []
        cause = f"reload:{now}"
        if group.alert_open:
            group.alert_open = False
            out += self.alerts.observe(
                "assurance",
                {"case": case.name, **group.labels},
                False,
                now,
                message=f"assurance case {case.name} was removed or changed",
                statistic=case.evidence,
            )
        if group.acted:
            group.acted = False
            out += self._stop_action(case, key, group, now, cause)
        return out

    # ------------------------------------------------------------------ internals: state

    @staticmethod
    def _group_to_dict(key: tuple[str, ...], g: _Group) -> dict[str, Any]:
        win = g.window
        return {
            "key": list(key),
            "labels": dict(g.labels),
            "samples": win.to_list() if isinstance(win, SampleWindow) else None,
            "series": win.to_dict() if isinstance(win, LatestWindow) else None,
            "verdict": g.verdict,
            "violating": g.violating,
            "failing_since": g.failing_since,
            "acted": g.acted,
            "alert_open": g.alert_open,
            "first_ts": g.first_ts,
            "last_ts": g.last_ts,
        }

    def _group_from_dict(self, case: AssuranceCase, raw: Mapping[str, Any]) -> _Group:
        win = new_window(case)
        if isinstance(win, SampleWindow):
            win.load(raw.get("samples") or [])
        else:
            win.load(raw.get("series") or {})
        return _Group(
            labels=dict(raw["labels"]),
            window=win,
            verdict=raw["verdict"],
            violating=raw["violating"],
            failing_since=raw["failing_since"],
            acted=raw["acted"],
            alert_open=raw["alert_open"],
            first_ts=raw["first_ts"],
            last_ts=raw["last_ts"],
        )


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:g}"
