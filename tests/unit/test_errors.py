"""Error monitor: rates, consecutive failures, circuit transitions with the seed numbers, degradation levels."""

from __future__ import annotations

import json

import pytest
from reverify.processors.alerting import AlertManager
from reverify.processors.degradation_levels import allowed_operations, is_allowed, level_for_components, level_name
from reverify.processors.errors import CircuitBreaker, ErrorMonitor, ErrorSettings
from reverify.schemas import encode


def error(ts: int, component: str = "clay_api", agent: str = "enricher", **kw):
    return {
        "event_id": f"err-{agent}-{component}-{ts}",
        "ts": ts,
        "agent_name": agent,
        "task_type": kw.pop("task_type", None),
        "variant_id": None,
        "component": component,
        "error_type": "Timeout",
        "message": "",
        "retryable": True,
        "severity": kw.pop("severity", "error"),
        "pipeline": kw.pop("pipeline", False),
        "attributes": {},
        "trace_id": None,
    }


def outcome(ts: int, agent: str = "enricher", **attrs: str):
    return {
        "event_id": f"out-{agent}-{ts}",
        "ts": ts,
        "agent_name": agent,
        "task_type": "lookup",
        "variant_id": "v1",
        "success": True,
        "reward": 1.0,
        "attributes": dict(attrs),
    }


def checked(emissions):
    for e in emissions:
        encode(e.record_type, e.value)
    return emissions


def controls(emissions):
    return [
        (e.value["kind"], e.value["circuit_state"], e.value["degradation_level"])
        for e in checked(emissions)
        if e.record_type == "AgentControl"
    ]


def alerts(emissions):
    return [(e.value["source"], e.value["status"], e.value["severity"]) for e in emissions if e.record_type == "Alert"]


def test_seed_defaults():
    s = ErrorSettings()
    assert (s.failure_threshold, s.recovery_timeout_ms, s.success_threshold) == (5, 60_000, 3)
    with pytest.raises(ValueError, match="failure_threshold"):
        ErrorSettings(failure_threshold=0)
    with pytest.raises(ValueError, match="failure_severities"):
        ErrorSettings(failure_severities=("fatal",))


def test_breaker_closed_open_half_open_closed():
    cb = CircuitBreaker()
    assert [cb.record_failure(t) for t in range(4)] == [None] * 4 and cb.state == "closed"
    assert cb.record_failure(4) == "open" and not cb.allows(5)
    assert cb.tick(4 + 59_999) is None
    assert cb.allows(4 + 60_000)
    assert cb.tick(4 + 60_000) == "half_open"
    assert cb.record_success(60_100) is None and cb.record_success(60_200) is None
    assert cb.record_success(60_300) == "closed"


def test_breaker_success_resets_consecutive_failures():
    cb = CircuitBreaker()
    for t in range(4):
        cb.record_failure(t)
    cb.record_success(5)
    assert [cb.record_failure(t) for t in range(10, 14)] == [None] * 4
    assert cb.record_failure(14) == "open"


def test_breaker_failure_in_half_open_reopens_and_restarts_timeout():
    cb = CircuitBreaker()
    for t in range(5):
        cb.record_failure(t)
    cb.tick(60_004)
    cb.record_success(60_010)
    assert cb.record_failure(60_020) == "open"
    assert cb.tick(60_020 + 59_999) is None
    assert cb.tick(60_020 + 60_000) == "half_open"


def test_breaker_failures_while_open_push_recovery_back():
    cb = CircuitBreaker()
    for t in range(5):
        cb.record_failure(t)
    cb.record_failure(30_000)  # the seed times out from the last failure
    assert cb.tick(60_004) is None
    assert cb.tick(90_000) == "half_open"
    assert cb.record_success(10) is None or cb.state == "half_open"


def test_breaker_round_trip():
    cb = CircuitBreaker()
    for t in range(5):
        cb.record_failure(t)
    copy = CircuitBreaker().load(json.loads(json.dumps(cb.to_dict())))
    assert copy.to_dict() == cb.to_dict() and copy.tick(60_004) == "half_open"


def test_monitor_circuit_transitions_emit_control_and_alert():
    mon = ErrorMonitor()
    out = []
    for i in range(4):
        out += mon.on_error(error(i * 1_000), offset=(0, i))
    assert out == []
    out = mon.on_error(error(4_000), offset=(0, 4))
    assert controls(out) == [("circuit", "open", 1), ("degrade", None, 1)]
    assert alerts(out) == [("circuit", "firing", "critical")]
    alert = next(e.value for e in out if e.record_type == "Alert")
    assert alert["labels"] == {"agent_name": "enricher", "component": "clay_api", "statistic": "consecutive_failures"}
    assert alert["evidence"]["value"] == 5 and alert["evidence"]["threshold"] == 5
    assert alert["evidence"]["sample_size"] == 5
    ctl = next(e for e in out if e.record_type == "AgentControl")
    assert ctl.topic == "control.agents" and ctl.key == "enricher" and ctl.value["component"] == "clay_api"
    assert ctl.value["cause_id"] == "err-enricher-clay_api-4000"

    assert mon.tick(63_999) == []
    out = mon.tick(64_000)
    assert controls(out) == [("circuit", "half_open", 1)] and alerts(out) == []
    out = mon.on_outcome(outcome(65_000), offset=(0, 0)) + mon.on_outcome(outcome(66_000), offset=(0, 1))
    assert out == []
    out = mon.on_outcome(outcome(67_000), offset=(0, 2))
    assert controls(out) == [("circuit", "closed", 0), ("degrade", None, 0)]
    assert alerts(out) == [("circuit", "resolved", "critical")]
    assert mon.circuit_state("enricher", "clay_api") == "closed" and mon.degradation_level("enricher") == 0


def test_error_rates_with_outcomes_as_denominators():
    mon = ErrorMonitor(ErrorSettings(window=10))
    for i in range(8):
        mon.on_outcome(outcome(i))
    mon.on_error(error(10))
    mon.on_error(error(11, component="ghl_api"))
    stats = mon.agent_stats("enricher")
    assert stats["error_rate"] == pytest.approx(0.2) and stats["sample_size"] == 10
    assert stats["consecutive_failures"] == 2
    comp = mon.component_stats("enricher", "clay_api")
    assert comp["error_rate"] == 1.0 and comp["consecutive_failures"] == 1 and comp["circuit_state"] == 0
    # outcomes now count for both components the agent has used
    mon.on_outcome(outcome(12))
    assert mon.component_stats("enricher", "clay_api")["error_rate"] == 0.5
    assert mon.agent_stats("enricher")["consecutive_failures"] == 0
    assert mon.agent_stats("nobody")["error_rate"] == 0.0


def test_outcome_names_the_components_it_used():
    mon = ErrorMonitor()
    for t in range(5):
        mon.on_error(error(t))
    mon.tick(70_000)
    for t in range(3):
        mon.on_outcome(outcome(70_001 + t, components="database"))
    assert mon.circuit_state("enricher", "clay_api") == "half_open"  # clay_api was not used: no evidence


def test_pipeline_errors_do_not_count_against_the_agent_warnings_do_not_count_at_all():
    mon = ErrorMonitor()
    mon.on_outcome(outcome(0))
    mon.on_error(error(1, pipeline=True))
    assert mon.agent_stats("enricher")["error_rate"] == 0.0
    assert mon.component_stats("enricher", "clay_api")["errors"] == 1
    for t in range(10):
        assert mon.on_error(error(10 + t, component="database", severity="warning")) == []
    assert mon.circuit_state("enricher", "database") == "closed"
    assert mon.agent_stats("enricher")["ignored"] == 10


def test_degradation_levels_follow_the_seed_map_and_alert_above_2():
    mon = ErrorMonitor()
    out = []
    for t in range(5):
        out += mon.on_error(error(t, component="linkedin_session"))
    assert mon.degradation_level("enricher") == 2 and alerts(out) == [("circuit", "firing", "critical")]
    out = []
    for t in range(5):
        out += mon.on_error(error(10 + t, component="ghl_api"))
    assert controls(out)[-1] == ("degrade", None, 3)
    assert ("degradation", "firing", "warning") in alerts(out)
    deg = next(e.value for e in out if e.record_type == "Alert" and e.value["source"] == "degradation")
    assert deg["evidence"] == {"value": 3.0, "threshold": 3.0, "sample_size": 2.0}
    out = []
    for t in range(5):
        out += mon.on_error(error(20 + t, component="database"))
    assert mon.degradation_level("enricher") == 4
    assert mon.agent_stats("enricher")["degradation_level"] == 4
    # recovery: every circuit closes -> level 0 and the degradation alert resolves
    out = mon.tick(200_000)
    for t in range(3):
        out += mon.on_outcome(outcome(200_001 + t))
    assert mon.degradation_level("enricher") == 0
    assert [a[:2] for a in alerts(out) if a[0] == "degradation"] == [("degradation", "resolved")]


def test_unknown_component_opens_circuit_without_degrading():
    mon = ErrorMonitor()
    out = []
    for t in range(5):
        out += mon.on_error(error(t, component="some_tool"))
    assert controls(out) == [("circuit", "open", 0)]


def test_replayed_offsets_are_ignored():
    mon = ErrorMonitor()
    for i in range(4):
        mon.on_error(error(i), offset=(0, i))
    for i in range(4):  # a replay after a crash: the same offsets again
        assert mon.on_error(error(i), offset=(0, i)) == []
    assert mon.circuit_state("enricher", "clay_api") == "closed"
    assert mon.on_error(error(4), offset=(1, 0)) != []  # another partition has its own offsets


def test_round_trip_keeps_circuits_and_owned_alerts():
    mon = ErrorMonitor(settings_version="v3")
    for t in range(5):
        mon.on_error(error(t), offset=(0, t))
    mon.on_outcome(outcome(10), offset=(0, 0))
    data = json.loads(json.dumps(mon.to_dict()))
    restored = ErrorMonitor.from_dict(data, settings_version="v3")
    assert restored.to_dict() == data
    assert restored.on_error(error(4), offset=(0, 4)) == []
    out = restored.tick(70_000)
    for t in range(3):
        out += restored.on_outcome(outcome(70_001 + t), offset=(0, 1 + t))
    assert ("circuit", "resolved", "critical") in alerts(out)


def test_shared_alert_manager_is_not_ticked_by_the_monitor():
    am = AlertManager()
    mon = ErrorMonitor(alerts=am)
    assert not mon.owns_alerts and mon.to_dict()["alerts"] is None
    for t in range(5):
        mon.on_error(error(t))
    assert len(am.firing()) == 1


def test_degradation_levels_module():
    assert level_name(0) == "FULL_OPERATION" and level_name(4) == "MAINTENANCE"
    assert allowed_operations(4) == ("queue_only",)
    assert is_allowed("enrich", 0) and not is_allowed("enrich", 1)
    assert level_for_components(["database", "clay_api"]) == 4
    with pytest.raises(ValueError):
        level_name(5)
