"""Incidents: every automatic action ends on a *verified* recovery, with its MTTR (self-healing: seed 004).

A rollback, an open circuit or a failed assurance case with an action opens an
**incident**, one per agent/task (or component, or case) and cause. It is
resolved only when the recovery is verified by evidence gathered after the action:

* **rollback** (cause ``degradation``, or ``assurance`` for a case's rollback) --
  the variant active since the action has at least ``verify_min_outcomes``
  outcomes and the lower confidence bound of its success rate (Wilson score,
  one-sided at ``confidence``) is at least the pre-incident baseline (the
  degraded variant's settled success rate before the alarm) less ``tolerance``
  of it, the seed's ``success_drop`` (10 %): the same relative fall that counts
  as a degradation counts as not recovered;
* **circuit** -- the circuit closed and stayed closed for ``circuit_window_ms``;
* **assurance** (pause, degrade) -- the case passes again.

Not verified within ``escalate_after_ms`` of the alarm (the seed's
``recovery_time`` alert, 5 min), the incident **escalates**: a critical alert
(source ``incident``, through the :class:`~processors.alerting.AlertManager`,
so silences and acknowledgements apply) that says why -- ``no target`` (nothing
could take over), ``no traffic`` (too few outcomes to verify) or ``still
failing`` (the evidence says the restored variant is not good enough). An
escalated incident can still be verified later; it then no longer counts as
recovered without a person.

Times. The **first evidence** of the failure is where the degraded run began:
the start of the CUSUM excursion that fired
(:attr:`~processors.degradation.DegradationAlarm.run_started_at`, Page's
change-point estimate), the first failure of the run that opened a circuit, or
the first failed verdict of a case. Then ``time_to_detect = detected_at -
failure_started_at``, ``time_to_act = acted_at - detected_at`` and ``MTTR =
resolved_at - failure_started_at``, ``resolved_at`` being the event time at
which the evidence verified the recovery (for a circuit, the time it closed: the
window only confirms it). Every time comes from events: no clock is read here.

Each change of an incident is an ``Incident`` record on ``crl.incidents`` (key
``incident_id``), and the incident id goes into the labels of the alerts about
it (the rollback alert, the circuit alert, the escalation) without changing
their fingerprints, so acknowledgements and silences keep working. A rollback's
alert also carries a **root-cause bundle** (:meth:`IncidentTracker.root_cause`):
the agent's drift series in alarm, its open circuits and the top error types of
the last ``error_window_ms``.

Examples
--------
>>> t = IncidentTracker(IncidentSettings(verify_min_outcomes=20))
>>> rollback = {"event_id": "r", "ts": 10_000, "rollback_id": "rb-1", "agent_name": "a", "task_type": "t",
...     "from_variant": "v2", "to_variant": "v1", "reason": "Success rate dropped", "trigger": "cusum:success",
...     "degradation_metrics": {"baseline_success_rate": 0.9, "baseline_size": 200.0, "run_started_at": 4_000.0}}
>>> out = t.observe([_emission("Rollback", rollback)])  # the rollback, then the incident it opens
>>> [(e.value["status"], e.value["time_to_detect_ms"]) for e in out if e.record_type == "Incident"]
[('verifying', 6000)]
>>> out = []
>>> for i in range(40):
...     out += t.on_outcome({"ts": 11_000 + 100 * i, "task_type": "t", "variant_id": "v1", "success": True})
>>> done = out[-1].value
>>> done["status"], done["outcomes"], done["mttr_ms"], done["automatic"]
('resolved', 20, 8900, True)
>>> IncidentTracker.from_dict(t.to_dict()).to_dict() == t.to_dict()
True

References
----------
Wilson, E. B. (1927). Probable inference, the law of succession, and statistical inference. JASA 22(158).
Page, E. S. (1954). Continuous inspection schemes. Biometrika 41(1/2) (the excursion start as change point).
Google SRE Workbook, "Incident Response" (time to detect, to mitigate, to recover).
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from statistics import NormalDist
from typing import Any, Protocol

from reverify.processors.alerting import AlertManager
from reverify.processors.applied import AppliedOffsets
from reverify.processors.base import Emission, derive_id, short_hex

__all__ = ["IncidentSettings", "IncidentTracker", "lower_bound"]

DEGRADATION, ASSURANCE, CIRCUIT = "degradation", "assurance", "circuit"
NO_TARGET, NO_TRAFFIC, STILL_FAILING = "no target", "no traffic", "still failing"
OPEN, VERIFYING, ESCALATED, RESOLVED = "open", "verifying", "escalated", "resolved"
TOPIC = "crl.incidents"


@dataclass(frozen=True)
class IncidentSettings:
    """The ``[incidents]`` section of ``reverify.toml``.

    Parameters
    ----------
    verify_min_outcomes
        Outcomes of the variant active since the action needed before its recovery can be verified.
    tolerance
        Relative fall from the pre-incident baseline still counted as recovered (the seed's ``success_drop``).
    confidence
        One-sided confidence of the lower bound of the success rate.
    escalate_after_ms
        From the alarm, how long an incident may stay unverified before it escalates (seed: ``recovery_time`` > 5 min).
    circuit_window_ms
        How long a circuit must stay closed for its recovery to count as verified.
    error_window_ms
        The "last window" of the root-cause bundle's top error types.

    >>> IncidentSettings().required(0.9)
    0.81
    """

    verify_min_outcomes: int = 30
    tolerance: float = 0.10
    confidence: float = 0.95
    escalate_after_ms: int = 300_000
    circuit_window_ms: int = 60_000
    error_window_ms: int = 300_000

    def __post_init__(self) -> None:
        if self.verify_min_outcomes < 1:
            raise ValueError(f"verify_min_outcomes = {self.verify_min_outcomes}; use a whole number >= 1")
        if not 0 <= self.tolerance < 1:
            raise ValueError(f"tolerance = {self.tolerance}; use a fraction in [0, 1), e.g. 0.1")
        if not 0.5 <= self.confidence < 1:
            raise ValueError(f"confidence = {self.confidence}; use a probability in [0.5, 1), e.g. 0.95")
        for name in ("escalate_after_ms", "circuit_window_ms", "error_window_ms"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} = {getattr(self, name)}; use milliseconds > 0")

    def required(self, baseline: float | None) -> float:
        """The lower bound a recovered variant must reach: the baseline less ``tolerance`` of it (0 if unknown)."""
        return 0.0 if baseline is None else round(baseline * (1.0 - self.tolerance), 12)


def lower_bound(successes: float, n: float, confidence: float = 0.95) -> float:
    """One-sided Wilson score lower bound of a success rate (0 without data).

    >>> round(lower_bound(19, 20), 3), round(lower_bound(95, 100), 3), lower_bound(0, 0)
    (0.804, 0.901, 0.0)
    """
    if n <= 0:
        return 0.0
    z = NormalDist().inv_cdf(confidence)
    p = successes / n
    z2n = z * z / n
    centre = p + z2n / 2
    margin = z * math.sqrt(p * (1 - p) / n + z2n / (4 * n))
    return max(0.0, (centre - margin) / (1 + z2n))


class Context(Protocol):
    """What the tracker asks of the pipeline it serves (the other processors' current state)."""

    def failing_since(self, agent: str, component: str) -> int | None: ...

    def drift_in_alarm(self, agent: str) -> list[str]: ...

    def open_circuits(self, agent: str) -> list[str]: ...


class _NoContext:
    def failing_since(self, agent: str, component: str) -> int | None:
        return None

    def drift_in_alarm(self, agent: str) -> list[str]:
        return []

    def open_circuits(self, agent: str) -> list[str]:
        return []


@dataclass
class _Incident:
    """One open incident; plain fields so that the state is ``asdict``."""

    incident_id: str
    key: str
    agent_name: str
    task_type: str
    component: str
    cause: str
    trigger: str
    failure_started_at: int
    detected_at: int
    status: str = OPEN
    acted_at: int | None = None
    action: str = ""
    from_variant: str | None = None
    target: str | None = None
    rollback_id: str | None = None
    baseline: float | None = None
    outcomes: int = 0
    successes: int = 0
    circuit_state: str = ""
    closed_at: int | None = None
    escalated_at: int | None = None
    escalation_reason: str | None = None
    manual: bool = False
    root_cause: str = ""
    why: str = ""
    changes: int = 0
    labels: dict[str, str] = field(default_factory=dict)


class IncidentTracker:
    """Opens, verifies, escalates and times the incidents of one agent's pipeline; see the module docstring.

    Parameters
    ----------
    settings
        :class:`IncidentSettings`.
    alerts
        The pipeline's :class:`~processors.alerting.AlertManager`, which turns escalations into alerts.
    settings_version
        Stamped on escalation alerts.
    """

    def __init__(
        self, settings: IncidentSettings | None = None, alerts: AlertManager | None = None, settings_version: str = ""
    ) -> None:
        self.settings = settings or IncidentSettings()
        self.alerts = alerts if alerts is not None else AlertManager()
        self.settings_version = settings_version
        self.open: dict[str, _Incident] = {}  # key -> incident
        self.tags: dict[str, str] = {}  # alert fingerprint -> incident id, until that alert resolves
        self.failing: dict[str, int] = {}  # "case\x1fagent" -> first failed verdict of the running failure
        self.errors: deque[tuple[int, str]] = deque(maxlen=500)  # (ts, error_type) of recent failures
        self.offsets = {"outcomes": AppliedOffsets(), "errors": AppliedOffsets()}  # a replay counts nothing twice
        self._rolled: tuple[str, int] | None = None  # (key, ts) of the Rollback whose alert comes next

    # ------------------------------------------------------------------ inputs

    def observe(
        self, emissions: list[Emission], context: Context | None = None, *, manual: bool = False
    ) -> list[Emission]:
        """Read what the other processors emitted (in order): open incidents, record actions, tag alerts.

        Returns ``emissions`` with the incident records interleaved after the emission that caused each.
        ``manual`` says the emissions answer a person's command (the recovery is then not automatic).
        """
        ctx = context or _NoContext()
        out: list[Emission] = []
        self._rolled = None
        for e in emissions:
            out.append(e)
            kind, value = e.record_type, e.value
            if kind == "Rollback":
                out += self._on_rollback(value, ctx, manual)
            elif kind == "Alert":
                out += self._on_alert(value, ctx)
            elif kind == "AgentControl":
                out += self._on_control(value, ctx)
            elif kind == "ActiveVariant" and value["reason"] != "rollback" and self.open:
                out += self._on_activation(value, manual)
            elif kind == "AssuranceResult":
                out += self._on_verdict(value)
        return out

    def on_outcome(self, record: dict[str, Any], offset: tuple[int, int] | None = None) -> list[Emission]:
        """Count an outcome towards the verification of the incidents watching its variant."""
        if self.offsets["outcomes"].replayed(offset) or not self.open:
            return []
        ts, out = int(record["ts"]), []
        for inc in list(self.open.values()):
            if inc.target == record["variant_id"] and inc.task_type == record["task_type"] and inc.acted_at is not None:
                inc.outcomes += 1
                inc.successes += bool(record["success"])
                if self._verified(inc):
                    out += self._resolve(inc, ts, ts)
        return out + self.tick(ts)

    def on_error(self, record: dict[str, Any], offset: tuple[int, int] | None = None) -> None:
        """Remember a failure's type for the root-cause bundle (warnings and infos are not failures)."""
        if self.offsets["errors"].replayed(offset):
            return
        if record.get("severity", "error") in ("error", "critical"):
            self.errors.append((int(record["ts"]), str(record.get("error_type") or "unknown")))

    def tick(self, now_ms: int) -> list[Emission]:
        """Verify circuits that stayed closed for the window; escalate what is overdue."""
        out: list[Emission] = []
        s = self.settings
        for inc in list(self.open.values()):
            if inc.cause == CIRCUIT and inc.closed_at is not None and now_ms - inc.closed_at >= s.circuit_window_ms:
                out += self._resolve(inc, now_ms, inc.closed_at)
            elif inc.escalated_at is None and now_ms - inc.detected_at >= s.escalate_after_ms:
                out += self._escalate(inc, now_ms)
        return out

    # ------------------------------------------------------------------ queries

    def root_cause(self, agent: str, now_ms: int, context: Context) -> tuple[str, dict[str, float]]:
        """The bundle a rollback alert carries: a sentence and its counts.

        >>> t = IncidentTracker()
        >>> for i, kind in enumerate(["Timeout", "Timeout", "RateLimit"]):
        ...     t.on_error({"ts": i, "error_type": kind, "severity": "error"})
        >>> t.root_cause("a", 10, _NoContext())[0]
        'drift in alarm: none; open circuits: none; top errors (last 5 min): Timeout x2, RateLimit x1'
        """
        drift, circuits = context.drift_in_alarm(agent), context.open_circuits(agent)
        top = self.top_errors(now_ms)
        window = f"{self.settings.error_window_ms / 60_000:g} min"
        text = (
            f"drift in alarm: {', '.join(drift) or 'none'}; open circuits: {', '.join(circuits) or 'none'}; "
            f"top errors (last {window}): {', '.join(f'{k} x{n}' for k, n in top) or 'none'}"
        )
        counts = {
            "drift_in_alarm": float(len(drift)),
            "open_circuits": float(len(circuits)),
            "errors_last_window": float(sum(n for _, n in self.top_errors(now_ms, None))),
        }
        return text, counts

    def top_errors(self, now_ms: int, top: int | None = 3) -> list[tuple[str, int]]:
        """The most frequent failure types within ``error_window_ms`` of ``now_ms``."""
        since = now_ms - self.settings.error_window_ms
        counts = Counter(kind for ts, kind in self.errors if ts >= since)
        return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:top]

    # ------------------------------------------------------------------ persistence

    def to_dict(self) -> dict[str, Any]:
        return {
            "open": [dataclasses.asdict(inc) for inc in self.open.values()],
            "tags": dict(self.tags),
            "failing": dict(self.failing),
            "errors": [list(x) for x in self.errors],
            "offsets": {kind: a.to_dict() for kind, a in self.offsets.items()},
        }

    @classmethod
    def from_dict(
        cls,
        data: dict[str, Any],
        settings: IncidentSettings | None = None,
        alerts: AlertManager | None = None,
        settings_version: str = "",
    ) -> IncidentTracker:
        t = cls(settings, alerts, settings_version)
        for raw in data.get("open", []):
            inc = _Incident(**{**raw, "labels": dict(raw.get("labels") or {})})
            t.open[inc.key] = inc
        t.tags = dict(data.get("tags", {}))
        t.failing = {k: int(v) for k, v in data.get("failing", {}).items()}
        t.errors.extend((int(ts), str(kind)) for ts, kind in data.get("errors", []))
        offsets = data.get("offsets", {})
        t.offsets = {kind: AppliedOffsets.from_dict(offsets.get(kind, {})) for kind in ("outcomes", "errors")}
        return t

    # ------------------------------------------------------------------ opening and acting

    def _open(
        self, key: str, agent: str, cause: str, trigger: str, first: int | None, ts: int, **where: str
    ) -> _Incident:
        day = datetime.fromtimestamp(ts / 1000, tz=timezone.utc).strftime("%Y%m%d")
        incident_id = f"inc-{day}-{short_hex('incident', key, ts)}"
        inc = _Incident(
            incident_id=incident_id,
            key=key,
            agent_name=agent,
            task_type=where.get("task_type", ""),
            component=where.get("component", ""),
            cause=cause,
            trigger=trigger,
            failure_started_at=min(ts, ts if first is None else int(first)),
            detected_at=ts,
        )
        labels = {"agent_name": agent, "incident_id": incident_id, "cause": cause}
        labels.update({k: v for k, v in where.items() if v})
        inc.labels = labels
        self.open[key] = inc
        return inc

    def _act(self, inc: _Incident, ts: int, action: str, target: str | None, manual: bool) -> None:
        """An action was taken: the evidence to verify starts now, on ``target``."""
        if inc.acted_at is None:
            inc.acted_at = ts
        inc.action, inc.target, inc.outcomes, inc.successes = action, target, 0, 0
        inc.manual = inc.manual or manual
        inc.status = VERIFYING if inc.escalated_at is None else ESCALATED

    def _on_rollback(self, value: dict[str, Any], ctx: Context, manual: bool) -> list[Emission]:
        trigger = value.get("trigger") or ""
        cause = ASSURANCE if trigger.startswith("assurance:") else DEGRADATION
        agent, task, ts = value["agent_name"], value["task_type"], int(value["ts"])
        key = f"{agent}/{task}/{cause}"
        inc = self.open.get(key)
        metrics = value.get("degradation_metrics") or {}
        change = "rolled back again"
        if inc is None:
            inc = self._open(key, agent, cause, trigger, _first(metrics), ts, task_type=task)
            if metrics.get("baseline_size"):
                inc.baseline = float(metrics["baseline_success_rate"])
            inc.root_cause = self.root_cause(agent, ts, ctx)[0]
            change = "opened"
        inc.from_variant, inc.rollback_id = value["from_variant"], value["rollback_id"]
        action = f"rollback {value['from_variant']} -> {value['to_variant']} ({value['rollback_id']})"
        self._act(inc, ts, action, value["to_variant"], manual)
        inc.why = f"{value['reason']}; waiting for {value['to_variant']} to show its recovery"
        self._rolled = (key, ts)
        return [self._record(inc, ts, change)]

    def _on_alert(self, value: dict[str, Any], ctx: Context) -> list[Emission]:
        source, status, labels = value["source"], value["status"], value["labels"]
        out: list[Emission] = []
        fp = value["fingerprint"]
        if source == "rollback" and status == "firing":
            out += self._rollback_alert(value, ctx)
        elif source == "circuit" and status == "firing":
            inc = self.open.get(f"{labels.get('agent_name')}/{labels.get('component')}/{CIRCUIT}")
            if inc is not None:
                self.tags[fp] = inc.incident_id
        incident_id = self.tags.get(fp)
        if incident_id is not None:
            labels["incident_id"] = incident_id  # after the fingerprint: acks and silences keep matching
            if status == "resolved":
                del self.tags[fp]
        return out

    def _rollback_alert(self, value: dict[str, Any], ctx: Context) -> list[Emission]:
        """Tag the alert of the rollback just seen and give it the root-cause bundle; or open a no-target incident."""
        labels, ts = value["labels"], int(value["ts"])
        agent, task = labels["agent_name"], labels.get("task_type", "")
        cause = ASSURANCE if "assurance:" in value["message"] else DEGRADATION
        key = f"{agent}/{task}/{cause}"
        out: list[Emission] = []
        inc = self.open.get(key)
        if self._rolled != (key, ts) and (inc is None or inc.status == RESOLVED):
            # An alarm that rolled nothing back: no target could take over.
            trigger = "assurance" if cause == ASSURANCE else "cusum"
            inc = self._open(key, agent, cause, trigger, _first(value.get("evidence") or {}), ts, task_type=task)
            evidence = value.get("evidence") or {}
            if evidence.get("baseline_size"):
                inc.baseline = float(evidence["baseline_success_rate"])
            inc.root_cause = self.root_cause(agent, ts, ctx)[0]
            inc.why = f"{NO_TARGET} yet: {value['message']}"
            out.append(self._record(inc, ts, "opened"))
        if inc is not None:
            text, counts = self.root_cause(agent, ts, ctx)
            value["message"] = f"{value['message']}; root cause: {text}"
            value["evidence"] = {**(value.get("evidence") or {}), **counts}
            self.tags[value["fingerprint"]] = inc.incident_id
        return out

    def _on_control(self, value: dict[str, Any], ctx: Context) -> list[Emission]:
        kind, agent, ts = value["kind"], value["agent_name"], int(value["ts"])
        if kind == "circuit" and value.get("component"):
            return self._on_circuit(value, ctx)
        reason = value.get("reason") or ""
        if kind in ("pause", "degrade") and reason.startswith("assurance:") and " failed" in reason:
            case = reason[len("assurance:") : reason.index(" failed")]
            key = f"{agent}/{case}/{ASSURANCE}"
            if key in self.open:
                return []
            first = self.failing.get(f"{case}\x1f{agent}")
            inc = self._open(key, agent, ASSURANCE, f"assurance:{case}", first, ts, case=case)
            inc.detected_at = min(ts, first if first is not None else ts)  # the failed verdict is the alarm
            self._act(inc, ts, f"{kind} ({case})", None, False)
            inc.root_cause = self.root_cause(agent, ts, ctx)[0]
            inc.why = f"{reason}; waiting for {case} to pass again"
            return [self._record(inc, ts, "opened")]
        return []

    def _on_circuit(self, value: dict[str, Any], ctx: Context) -> list[Emission]:
        agent, component, state, ts = value["agent_name"], value["component"], value["circuit_state"], int(value["ts"])
        key = f"{agent}/{component}/{CIRCUIT}"
        inc = self.open.get(key)
        if inc is None:
            if state != "open":
                return []
            first = ctx.failing_since(agent, component)
            inc = self._open(key, agent, CIRCUIT, f"circuit:{component}", first, ts, component=component)
            self._act(inc, ts, f"circuit {component} opened (calls fail fast)", None, False)
            inc.root_cause = self.root_cause(agent, ts, ctx)[0]
            inc.circuit_state, inc.why = state, f"{value.get('reason') or 'circuit open'}; waiting for it to close"
            return [self._record(inc, ts, "opened")]
        inc.circuit_state = state
        inc.closed_at = ts if state == "closed" else None
        if state == "closed":
            inc.why = (
                f"circuit {component} closed; verified if it stays closed {self.settings.circuit_window_ms / 1000:g} s"
            )
        return []

    def _on_activation(self, value: dict[str, Any], manual: bool) -> list[Emission]:
        """A variant chosen by promotion or approval becomes what the incidents of its agent/task verify."""
        out = []
        reason, ts = value["reason"], int(value["ts"])
        for cause in (DEGRADATION, ASSURANCE):
            inc = self.open.get(f"{value['agent_name']}/{value['task_type']}/{cause}")
            if inc is None:
                continue
            person = manual or reason == "approval"
            self._act(inc, ts, f"{reason}: {value['variant_id']} active", value["variant_id"], person)
            inc.why = f"{value['variant_id']} made active ({reason}); waiting for its evidence"
            out.append(self._record(inc, ts, "action"))
        return out

    def _on_verdict(self, value: dict[str, Any]) -> list[Emission]:
        agent = (value.get("scope") or {}).get("agent_name", "")
        member, ts = f"{value['case_name']}\x1f{agent}", int(value["ts"])
        if value["verdict"] == "failed":
            self.failing.setdefault(member, ts)
            return []
        if value["verdict"] != "passed":
            return []
        self.failing.pop(member, None)
        inc = self.open.get(f"{agent}/{value['case_name']}/{ASSURANCE}")
        if inc is None:
            return []
        inc.why = f"{value['case_name']} passes again: {value.get('message') or ''}".rstrip(": ")
        return self._resolve(inc, ts, ts)

    # ------------------------------------------------------------------ verification and escalation

    def _bound(self, inc: _Incident) -> float:
        return lower_bound(inc.successes, inc.outcomes, self.settings.confidence)

    def _verified(self, inc: _Incident) -> bool:
        s = self.settings
        if inc.cause == CIRCUIT or inc.target is None or inc.outcomes < s.verify_min_outcomes:
            return False
        return self._bound(inc) >= s.required(inc.baseline)

    def _resolve(self, inc: _Incident, now: int, recovered_at: int) -> list[Emission]:
        if inc.cause != CIRCUIT and inc.target is not None:
            required = self.settings.required(inc.baseline)
            inc.why = (
                f"{inc.target} verified: {inc.successes}/{inc.outcomes} succeeded since the action, lower bound "
                f"{self._bound(inc):.3f} >= {required:.3f}"
                + (f" (baseline {inc.baseline:.3f} less {self.settings.tolerance:.0%})" if inc.baseline else "")
            )
        elif inc.cause == CIRCUIT:
            inc.why = f"circuit {inc.component} closed and stayed closed {self.settings.circuit_window_ms / 1000:g} s"
        inc.status = RESOLVED
        del self.open[inc.key]
        out = [self._record(inc, now, "resolved", resolved_at=recovered_at)]
        if inc.escalated_at is not None:
            out += self.alerts.observe("incident", inc.labels, False, now, message=f"resolved: {inc.why}")
        return out

    def _escalate(self, inc: _Incident, now: int) -> list[Emission]:
        reason, value, threshold = self._stuck(inc)
        inc.escalated_at, inc.escalation_reason, inc.status = now, reason, ESCALATED
        waited = (now - inc.detected_at) / 60_000
        inc.why = f"{reason}: {self._stuck_detail(inc)} after {waited:.1f} min"
        where = inc.task_type or inc.component or inc.trigger
        out = [self._record(inc, now, "escalated")]
        # the statistic label is kept with the incident: its resolution must carry the same labels
        inc.labels["statistic"] = "lower_bound" if reason == STILL_FAILING else "outcomes"
        out += self.alerts.observe(
            "incident",
            inc.labels,
            True,
            now,
            severity="critical",
            title=f"incident {inc.incident_id} ({inc.agent_name}/{where}) not recovered: {reason}",
            message=inc.why,
            evidence={"value": value, "threshold": threshold, "sample_size": float(inc.outcomes)},
            settings_version=self.settings_version,
        )
        return out

    def _stuck(self, inc: _Incident) -> tuple[str, float, float]:
        """Why the incident is not verified, with the value and threshold that say so."""
        s = self.settings
        if inc.cause == CIRCUIT:
            reason = NO_TRAFFIC if inc.circuit_state in ("half_open", "closed") else STILL_FAILING
            return reason, 0.0, 1.0
        if inc.cause == ASSURANCE and inc.target is None and inc.acted_at is not None:
            return STILL_FAILING, 0.0, 1.0
        if inc.target is None:
            return NO_TARGET, 0.0, 1.0
        if inc.outcomes < s.verify_min_outcomes:
            return NO_TRAFFIC, float(inc.outcomes), float(s.verify_min_outcomes)
        return STILL_FAILING, self._bound(inc), s.required(inc.baseline)

    def _stuck_detail(self, inc: _Incident) -> str:
        s = self.settings
        reason, _, _ = self._stuck(inc)
        if inc.cause == CIRCUIT:
            return f"circuit {inc.component} is {inc.circuit_state or 'open'}"
        if reason == NO_TARGET:
            return "no other variant could take over; a person must choose one"
        if inc.target is None:
            return f"{inc.trigger} still fails"
        if reason == NO_TRAFFIC:
            return f"{inc.target} has {inc.outcomes} of {s.verify_min_outcomes} outcomes since the action"
        return (
            f"{inc.target} lower bound {self._bound(inc):.3f} < {s.required(inc.baseline):.3f} "
            f"({inc.successes}/{inc.outcomes} succeeded)"
        )

    # ------------------------------------------------------------------ records

    def _record(self, inc: _Incident, ts: int, change: str, resolved_at: int | None = None) -> Emission:
        inc.changes += 1
        required = self.settings.required(inc.baseline) if inc.target is not None else None
        automatic = resolved_at is not None and not inc.manual and inc.escalated_at is None
        value = {
            "event_id": derive_id("incident", inc.incident_id, inc.changes, change, ts),
            "ts": ts,
            "incident_id": inc.incident_id,
            "agent_name": inc.agent_name,
            "task_type": inc.task_type,
            "component": inc.component,
            "cause": inc.cause,
            "trigger": inc.trigger,
            "status": inc.status,
            "change": change,
            "failure_started_at": inc.failure_started_at,
            "detected_at": inc.detected_at,
            "acted_at": inc.acted_at,
            "resolved_at": resolved_at,
            "escalated_at": inc.escalated_at,
            "mttr_ms": None if resolved_at is None else resolved_at - inc.failure_started_at,
            "time_to_detect_ms": inc.detected_at - inc.failure_started_at,
            "time_to_act_ms": None if inc.acted_at is None else inc.acted_at - inc.detected_at,
            "from_variant": inc.from_variant,
            "to_variant": inc.target,
            "rollback_id": inc.rollback_id,
            "action": inc.action,
            "baseline_success_rate": inc.baseline,
            "required_success_rate": required,
            "outcomes": inc.outcomes,
            "successes": inc.successes,
            "lower_bound": None if inc.target is None else self._bound(inc),
            "automatic": automatic,
            "escalation_reason": inc.escalation_reason,
            "why": inc.why,
            "root_cause": inc.root_cause,
        }
        return Emission(TOPIC, inc.incident_id, "Incident", value)


def _first(metrics: dict[str, Any]) -> int | None:
    started = metrics.get("run_started_at")
    return None if started is None else int(started)


def _emission(record_type: str, value: dict[str, Any]) -> Emission:
    """An emission as another processor would publish it (examples and tests)."""
    return Emission("", "", record_type, value)
