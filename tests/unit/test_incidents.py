"""Incidents end on a verified recovery, or escalate saying why; their MTTR counts from the first evidence.

Driven through :class:`AgentPipeline`, as the worker and ``reverify replay`` drive them: a degradation fires the
real CUSUM, the learning loop rolls back, and the incident tracker reads what they emitted.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
from reverify.processors.base import Emission
from reverify.processors.incidents import IncidentSettings, IncidentTracker, lower_bound
from reverify.processors.pipeline import AgentPipeline, PipelineConfig

T0 = 1_700_000_000_000
STEP = 100  # ms between outcomes


class Agent:
    """One agent's pipeline, fed outcomes and errors one at a time, everything emitted kept."""

    def __init__(self, **incidents: Any) -> None:
        settings = IncidentSettings(**{"verify_min_outcomes": 20, "escalate_after_ms": 60_000, **incidents})
        self.pipeline = AgentPipeline("ann", PipelineConfig(incidents=settings))
        self.out: list[Emission] = []
        self.offset, self.ts = 0, T0
        self.rng = random.Random(7)

    def outcome(self, variant: str, p: float) -> list[Emission]:
        ok = self.rng.random() < p
        record = {
            "event_id": f"o{self.offset}",
            "ts": self.ts,
            "agent_name": "ann",
            "task_type": "t",
            "variant_id": variant,
            "success": ok,
            "reward": 1.0 if ok else 0.0,
            "latency_ms": 10.0,
            "cost_usd": None,
            "features": {},
            "attributes": {},
        }
        return self._apply("AgentOutcome", record)

    def error(self, component: str, kind: str = "Timeout") -> list[Emission]:
        record = {
            "event_id": f"x{self.offset}",
            "ts": self.ts,
            "agent_name": "ann",
            "component": component,
            "error_type": kind,
            "severity": "error",
            "pipeline": False,
            "task_type": None,
            "variant_id": None,
        }
        return self._apply("AgentError", record)

    def _apply(self, record_type: str, record: dict[str, Any]) -> list[Emission]:
        out = self.pipeline.on_event(record_type, record, (0, self.offset))
        self.offset += 1
        self.ts += STEP
        self.out += out
        return out

    def tick(self, now_ms: int) -> list[Emission]:
        out = self.pipeline.tick(now_ms)
        self.out += out
        return out

    def healthy_then_degraded(self, v2: float = 0.9) -> dict[str, Any]:
        """v1 active and healthy (v2 explored a fifth of the time), then v1 fails until the rollback."""
        for i in range(400):
            self.outcome("v2" if i % 5 == 4 else "v1", v2 if i % 5 == 4 else 0.95)
        for _ in range(200):
            rollbacks = [e.value for e in self.outcome("v1", 0.2) if e.record_type == "Rollback"]
            if rollbacks:
                return rollbacks[0]
        raise AssertionError("the degradation was never detected")

    def incidents(self) -> list[dict[str, Any]]:
        return [e.value for e in self.out if e.record_type == "Incident"]


def test_rollback_opens_an_incident_verified_by_the_restored_variant_with_its_mttr() -> None:
    agent = Agent()
    rollback = agent.healthy_then_degraded()
    opened = agent.incidents()[-1]
    assert (opened["change"], opened["status"], opened["to_variant"]) == ("opened", "verifying", "v2")
    started = int(rollback["degradation_metrics"]["run_started_at"])
    # the first evidence is the start of the excursion that fired, within the degraded run (which began at 400)
    assert T0 + 400 * STEP <= started < rollback["ts"]
    assert opened["failure_started_at"] == started
    assert opened["time_to_detect_ms"] == rollback["ts"] - started
    assert opened["time_to_act_ms"] == 0  # the rollback is the alarm's own action
    for _ in range(300):
        if agent.outcome("v2", 0.97) and agent.incidents()[-1]["status"] == "resolved":
            break
    done = agent.incidents()[-1]
    assert done["status"] == "resolved" and done["automatic"] is True
    assert done["mttr_ms"] == done["resolved_at"] - started
    assert done["outcomes"] >= 20 and done["lower_bound"] >= done["required_success_rate"]
    assert done["required_success_rate"] == pytest.approx(done["baseline_success_rate"] * 0.9)
    assert not agent.pipeline.incidents.open


def test_rollback_alert_carries_the_incident_id_and_root_cause_and_keeps_its_fingerprint() -> None:
    agent = Agent()
    for _ in range(5):
        agent.error("clay_api", "RateLimit")  # opens the clay_api circuit (its own incident)
    rollback = agent.healthy_then_degraded()
    alert = next(e.value for e in agent.out if e.record_type == "Alert" and e.value["source"] == "rollback")
    incident = next(i for i in agent.incidents() if i["cause"] == "degradation")
    assert alert["labels"]["incident_id"] == incident["incident_id"]
    assert "root cause: " in alert["message"] and "RateLimit x5" in alert["message"]
    assert alert["evidence"]["errors_last_window"] == 5.0
    labels = {k: v for k, v in alert["labels"].items() if k != "incident_id"}
    from reverify.processors.base import fingerprint

    assert alert["fingerprint"] == fingerprint("rollback", labels)  # acks and silences still match
    assert rollback["to_variant"] == "v2"


def test_restored_variant_also_failing_escalates_still_failing_with_a_critical_alert() -> None:
    agent = Agent()
    agent.healthy_then_degraded()
    for _ in range(700):  # 70 s of a failing v2: past escalate_after (60 s)
        agent.outcome("v2", 0.4)
    escalated = [i for i in agent.incidents() if i["change"] == "escalated"]
    assert len(escalated) == 1
    assert escalated[0]["escalation_reason"] == "still failing"
    assert "lower bound" in escalated[0]["why"]
    alerts = [e.value for e in agent.out if e.record_type == "Alert" and e.value["source"] == "incident"]
    assert [(a["status"], a["severity"]) for a in alerts] == [("firing", "critical")]
    assert alerts[0]["labels"]["incident_id"] == escalated[0]["incident_id"]


def test_no_outcomes_of_the_restored_variant_escalates_no_traffic_on_a_tick() -> None:
    agent = Agent()
    rollback = agent.healthy_then_degraded()
    assert not [i for i in agent.incidents() if i["change"] == "escalated"]
    agent.tick(rollback["ts"] + 59_999)
    assert not [i for i in agent.incidents() if i["change"] == "escalated"]
    agent.tick(rollback["ts"] + 60_000)
    assert agent.incidents()[-1]["escalation_reason"] == "no traffic"


def test_an_alarm_with_no_target_opens_an_incident_that_escalates_no_target() -> None:
    agent = Agent()
    for _ in range(400):
        agent.outcome("v1", 0.95)  # nothing else to roll back to
    while not agent.incidents():
        agent.outcome("v1", 0.2)
    opened = agent.incidents()[0]
    assert (opened["status"], opened["acted_at"], opened["to_variant"]) == ("open", None, None)
    agent.tick(opened["detected_at"] + 60_000)
    escalated = agent.incidents()[-1]
    assert escalated["escalation_reason"] == "no target"
    assert "a person must choose" in escalated["why"]


def test_escalated_incident_verified_later_is_resolved_but_not_without_a_person() -> None:
    agent = Agent()
    rollback = agent.healthy_then_degraded()
    agent.tick(rollback["ts"] + 60_000)  # no traffic yet: escalated
    agent.ts = rollback["ts"] + 61_000
    for _ in range(300):
        agent.outcome("v2", 0.97)
    done = agent.incidents()[-1]
    assert (done["status"], done["automatic"]) == ("resolved", False)
    statuses = [e.value["status"] for e in agent.out if e.record_type == "Alert" and e.value["source"] == "incident"]
    assert statuses == ["firing", "resolved"]


def test_circuit_incident_is_verified_once_closed_for_the_window() -> None:
    agent = Agent(circuit_window_ms=30_000, escalate_after_ms=300_000)
    first = agent.ts
    for _ in range(5):
        agent.error("clay_api")
    opened = agent.incidents()[-1]
    assert (opened["cause"], opened["failure_started_at"], opened["detected_at"]) == ("circuit", first, first + 400)
    agent.tick(first + 61_000)  # half-open after the seed's 60 s
    agent.ts = first + 62_000
    for _ in range(3):  # three successes close it
        agent.outcome("v1", 1.0)
    closed_at = first + 62_200
    agent.tick(closed_at + 29_999)
    assert agent.incidents()[-1]["status"] == "verifying"
    agent.tick(closed_at + 30_000)
    done = agent.incidents()[-1]
    assert done["status"] == "resolved" and done["mttr_ms"] == closed_at - first
    circuit_alerts = [e.value for e in agent.out if e.record_type == "Alert" and e.value["source"] == "circuit"]
    assert {a["labels"]["incident_id"] for a in circuit_alerts} == {done["incident_id"]}


def test_state_round_trip_mid_incident_continues_identically() -> None:
    agent = Agent()
    agent.healthy_then_degraded()
    for _ in range(5):
        agent.outcome("v2", 0.97)
    state = agent.pipeline.to_dict()
    restored = AgentPipeline.from_dict(state, agent.pipeline.config)
    assert restored.to_dict() == state
    twin = Agent()
    twin.pipeline, twin.offset, twin.ts, twin.rng = restored, agent.offset, agent.ts, random.Random(11)
    agent.rng = random.Random(11)
    for _ in range(100):
        assert [e.value for e in agent.outcome("v2", 0.97)] == [e.value for e in twin.outcome("v2", 0.97)]
    assert agent.incidents()[-1]["status"] == "resolved"


def test_a_replayed_outcome_is_not_counted_twice() -> None:
    agent = Agent()
    agent.healthy_then_degraded()
    agent.outcome("v2", 1.0)
    record = {"event_id": "again", "ts": agent.ts, "agent_name": "ann", "task_type": "t", "variant_id": "v2"}
    assert agent.pipeline.incidents.on_outcome({**record, "success": True}, (0, agent.offset - 1)) == []
    assert next(iter(agent.pipeline.incidents.open.values())).outcomes == 1


def test_mttr_detect_and_act_arithmetic_when_a_person_acts() -> None:
    t = IncidentTracker(IncidentSettings(verify_min_outcomes=3, tolerance=0.5))
    alert = {
        "source": "rollback",
        "status": "firing",
        "fingerprint": "f",
        "ts": 10_000,
        "message": "Success rate dropped; cusum:success 11 > 10; kept v1: no other variant has n >= 5",
        "labels": {"agent_name": "a", "task_type": "t", "variant_id": "v1"},
        "evidence": {"run_started_at": 7_000.0, "baseline_success_rate": 0.9, "baseline_size": 100.0},
    }
    opened = [e.value for e in t.observe([Emission("alerts", "f", "Alert", alert)]) if e.record_type == "Incident"]
    assert (opened[0]["time_to_detect_ms"], opened[0]["time_to_act_ms"]) == (3_000, None)
    activation = {"agent_name": "a", "task_type": "t", "variant_id": "v3", "reason": "approval", "ts": 25_000}
    acted = t.observe([Emission("crl.active", "a/t", "ActiveVariant", activation)])[-1].value
    assert (acted["time_to_act_ms"], acted["to_variant"]) == (15_000, "v3")
    out = [
        e
        for i in range(3)
        for e in t.on_outcome({"ts": 30_000 + i, "task_type": "t", "variant_id": "v3", "success": True})
    ]
    done = out[-1].value
    assert (done["mttr_ms"], done["time_to_detect_ms"], done["time_to_act_ms"]) == (23_002, 3_000, 15_000)
    assert done["automatic"] is False  # a person approved the variant that recovered
    assert alert["labels"]["incident_id"] == done["incident_id"]


def test_lower_bound_is_below_the_rate_and_tightens_with_evidence() -> None:
    bounds = [lower_bound(0.9 * n, n) for n in (20, 100, 1000)]
    assert bounds == sorted(bounds) and all(b < 0.9 for b in bounds)
    assert lower_bound(20, 20) > 0.85 > lower_bound(19, 20)


def test_settings_reject_what_cannot_work() -> None:
    with pytest.raises(ValueError, match="verify_min_outcomes"):
        IncidentSettings(verify_min_outcomes=0)
    with pytest.raises(ValueError, match="tolerance"):
        IncidentSettings(tolerance=1.5)
    with pytest.raises(ValueError, match="escalate_after_ms"):
        IncidentSettings(escalate_after_ms=0)


def test_incident_records_feed_the_mttr_and_time_to_detect_histograms() -> None:
    from prometheus_client import REGISTRY
    from reverify.streams.metrics import SeedGauges

    def count(name: str) -> float:
        return REGISTRY.get_sample_value(f"{name}_count", {"cause": "degradation"}) or 0.0

    before = count("reverify_mttr_seconds"), count("reverify_time_to_detect_seconds")
    agent, gauges = Agent(), SeedGauges()
    agent.healthy_then_degraded()
    for _ in range(300):
        agent.outcome("v2", 0.97)
    for record in agent.incidents():
        gauges.observe("Incident", record)
    assert count("reverify_time_to_detect_seconds") == before[1] + 1
    assert count("reverify_mttr_seconds") == before[0] + 1
    mttr = agent.incidents()[-1]["mttr_ms"] / 1000
    total = REGISTRY.get_sample_value("reverify_mttr_seconds_sum", {"cause": "degradation"})
    assert total is not None and total >= mttr
