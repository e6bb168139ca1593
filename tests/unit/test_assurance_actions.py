"""An assurance case's action, driven through :class:`AgentPipeline` as the worker and ``reverify replay`` drive it.

A rollback is carried out once, where the case decided it: the evaluator publishes the ``Command`` on
``control.commands`` (the record of the action) and the pipeline rolls back at once; the worker then consumes that
Command like any other, and read back it must not roll the restored variant back too. Every action opens an incident
(cause ``assurance``) that ends on verified evidence: the restored variant's outcomes for a rollback, the case
passing again for a pause.
"""

from __future__ import annotations

from typing import Any

from reverify.processors.assurance import parse_cases
from reverify.processors.base import Emission
from reverify.processors.pipeline import AgentPipeline, PipelineConfig
from reverify.processors.slo import parse_slos

T0 = 1_700_000_000_000


def outcome(i: int, variant: str, success: bool = True, latency_ms: float = 10.0) -> dict[str, Any]:
    return {"event_id": f"o{i}", "ts": T0 + i * 100, "agent_name": "ann", "task_type": "t", "variant_id": variant,
            "success": success, "reward": float(success), "latency_ms": latency_ms, "cost_usd": None, "features": {},
            "attributes": {}}  # fmt: skip


def case(action: str, evidence: str = "latency_p95") -> dict[str, Any]:
    bounds = {"threshold_max": 100.0} if evidence == "latency_p95" else {"threshold_min": 0.8}
    return {"name": "ok", "evidence": evidence, "window": "20 events", "min_evidence": 10, **bounds,
            "scope": {"agent_name": "ann", "task_type": "t"}, "action": action}  # fmt: skip


def healthy_then_failing(action: str, evidence: str = "latency_p95") -> tuple[AgentPipeline, list[Emission]]:
    """v1 active and healthy (v2 explored: a target to roll back to), then 40 bad outcomes of v1: slow ones (which
    only the case watches: the degradation detector does not see latency) or failures."""
    pipeline = AgentPipeline("ann", PipelineConfig(cases=tuple(parse_cases([case(action, evidence)]))))
    out: list[Emission] = []
    for i in range(200):
        out += pipeline.on_event("AgentOutcome", outcome(i, "v2" if i % 5 == 4 else "v1"), (0, i))
    assert pipeline.loops["t"].active == "v1"
    slow = evidence == "latency_p95"
    for i in range(200, 240):
        out += pipeline.on_event("AgentOutcome", outcome(i, "v1", slow, 500.0 if slow else 10.0), (0, i))
    return pipeline, out


def incidents(out: list[Emission]) -> list[tuple[str, str, str]]:
    return [(e.value["cause"], e.value["trigger"], e.value["status"]) for e in out if e.record_type == "Incident"]


def test_the_command_read_back_does_not_roll_back_again() -> None:
    pipeline, out = healthy_then_failing("rollback")
    (command,) = [e.value for e in out if e.record_type == "Command"]
    rollbacks = [e.value for e in out if e.record_type == "Rollback"]
    assert [(r["from_variant"], r["to_variant"], r["trigger"]) for r in rollbacks] == [("v1", "v2", "assurance:ok")]
    assert pipeline.loops["t"].active == "v2"

    again = pipeline.on_event("Command", command, (1, 0))
    assert again == []  # no second rollback, nor an alert that the restored variant "degraded, no rollback"
    assert pipeline.loops["t"].active == "v2"


def test_a_persons_rollback_command_is_carried_out() -> None:
    pipeline = AgentPipeline("ann", PipelineConfig())
    for i in range(200):
        pipeline.on_event("AgentOutcome", outcome(i, "v2" if i % 5 == 4 else "v1"), (0, i))
    command = {"event_id": "c1", "ts": T0 + 200 * 100, "command": "rollback", "by": "ana",
               "args": {"agent_name": "ann", "task_type": "t", "reason": "by hand"}}  # fmt: skip
    out = pipeline.on_event("Command", command, (1, 0))
    assert [(e.value["from_variant"], e.value["to_variant"]) for e in out if e.record_type == "Rollback"] == [
        ("v1", "v2")
    ]


def test_a_cases_rollback_opens_an_incident_verified_by_the_restored_variant() -> None:
    pipeline, out = healthy_then_failing("rollback")
    assert incidents(out) == [("assurance", "assurance:ok", "verifying")]
    later: list[Emission] = []
    for i in range(240, 300):
        later += pipeline.on_event("AgentOutcome", outcome(i, "v2"), (0, i))
    (resolved,) = [e.value for e in later if e.record_type == "Incident"]
    assert (resolved["status"], resolved["automatic"], resolved["to_variant"]) == ("resolved", True, "v2")
    assert resolved["mttr_ms"] == resolved["resolved_at"] - resolved["failure_started_at"] > 0


def test_a_case_failing_on_outcomes_a_rollback_already_took_care_of_does_not_roll_back_the_restored_variant() -> None:
    """Failures: the degradation detector rolls v1 back first; the case, whose window still holds v1's failures,
    fails a moment later. Its Command changes nothing: no rollback of v2, no 'no target' incident."""
    pipeline, out = healthy_then_failing("rollback", evidence="success_rate")
    assert [e.value["trigger"] for e in out if e.record_type == "Rollback"] == ["cusum:success"]
    assert [e.value["command"] for e in out if e.record_type == "Command"] == ["rollback"]
    assert incidents(out) == [("degradation", "cusum:success", "verifying")]
    assert pipeline.loops["t"].active == "v2"


def test_a_cases_pause_opens_an_incident_that_ends_when_the_case_passes_again() -> None:
    pipeline, out = healthy_then_failing("pause")
    (control,) = [e.value for e in out if e.record_type == "AgentControl"]
    assert control["paused"] is True and pipeline.loops["t"].active == "v1"
    assert incidents(out) == [("assurance", "assurance:ok", "verifying")]
    later: list[Emission] = []
    for i in range(240, 280):
        later += pipeline.on_event("AgentOutcome", outcome(i, "v1"), (0, i))
    assert [e.value["paused"] for e in later if e.record_type == "AgentControl"] == [False]
    (resolved,) = [e.value for e in later if e.record_type == "Incident"]
    assert resolved["status"] == "resolved" and resolved["mttr_ms"] > 0


def test_outcomes_awaiting_feedback_reach_the_cases_incidents_and_slos_only_when_judged() -> None:
    """An awaited outcome's success and reward are placeholders (false, 0) until its feedback: the success-rate
    case, the incident's verification and the success-rate SLO take it once judged, once, with its result."""
    success = {**case("alert", "success_rate"), "name": "success", "window": "100 events"}
    cases = tuple(parse_cases([case("rollback"), success]))
    slos = tuple(parse_slos([{"name": "s", "sli": "success_rate", "objective": 0.9, "window": "30d"}]))
    pipeline = AgentPipeline("ann", PipelineConfig(cases=cases, slos=slos))
    out: list[Emission] = []
    for i in range(200):
        out += pipeline.on_event("AgentOutcome", outcome(i, "v2" if i % 5 == 4 else "v1"), (0, i))
    for i in range(200, 240):
        out += pipeline.on_event("AgentOutcome", outcome(i, "v1", True, 500.0), (0, i))
    assert incidents(out) == [("assurance", "assurance:ok", "verifying")] and pipeline.loops["t"].active == "v2"
    (series,) = pipeline.slos._series["s"].values()
    now = T0 + 10_000_000
    assert series.counts.window(now, 30 * 86_400_000) == (240, 240)  # (good, total): each outcome counted once

    waiting: list[Emission] = []
    for i in range(240, 300):  # the restored variant's outcomes, awaiting feedback
        awaited = {**outcome(i, "v2"), "success": False, "reward": 0.0, "awaiting_feedback": True}
        waiting += pipeline.on_event("AgentOutcome", awaited, (0, i))
    assert {v["case"]: v["verdict"] for v in pipeline.assurance.verdicts()}["success"] == "passed"
    assert [e.value["title"] for e in waiting if e.record_type == "Alert"] == []  # no "case success failed"
    assert incidents(waiting) == [] and series.counts.window(now, 30 * 86_400_000) == (240, 240)

    judged: list[Emission] = []
    for k, i in enumerate(range(240, 300)):
        feedback = {"event_id": f"f{i}", "ts": T0 + 40_000 + k, "agent_name": "ann", "outcome_id": f"o{i}",
                    "success": True, "reward": 1.0, "label": None, "attributes": {}}  # fmt: skip
        judged += pipeline.on_event("AgentFeedback", feedback, (1, k))
    (resolved,) = [e.value for e in judged if e.record_type == "Incident"]
    assert (resolved["status"], resolved["to_variant"]) == ("resolved", "v2")
    assert series.counts.window(now, 30 * 86_400_000) == (300, 300)
    assert {v["case"]: v["verdict"] for v in pipeline.assurance.verdicts()}["success"] == "passed"
    window = next(iter(pipeline.assurance._groups["success"].values())).window
    assert (len(window.items), window.total) == (100, 100.0)  # judged once each, with success


def test_an_outcome_from_no_log_reaches_the_cases_once() -> None:
    """``reverify restore`` rebuilds state by applying stored outcomes with no position: no replay guard can drop
    a second application, so each outcome must be given to the cases once."""
    pipeline = AgentPipeline("ann", PipelineConfig(cases=tuple(parse_cases([case("alert", "success_rate")]))))
    for i in range(10):
        pipeline.on_event("AgentOutcome", outcome(i, "v1"), None)  # type: ignore[arg-type]
    window = next(iter(pipeline.assurance._groups["ok"].values())).window
    assert len(window.items) == 10
