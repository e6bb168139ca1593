"""The one replay guard (processors.applied.AppliedOffsets) in every processor, and the state it wrote before."""

from __future__ import annotations

from typing import Any

from reverify.processors.applied import AppliedOffsets
from reverify.processors.assurance import AssuranceEvaluator, parse_cases
from reverify.processors.errors import ErrorMonitor
from reverify.processors.learning import LearningLoop, LearningSettings


def outcome(i: int) -> dict[str, Any]:
    return {
        "event_id": f"o-{i}",
        "ts": 1_000 + i,
        "agent_name": "a",
        "task_type": "t",
        "variant_id": "v1",
        "success": True,
        "reward": 0.9,
        "latency_ms": 10.0,
        "cost_usd": 0.0,
        "features": {},
        "attributes": {},
    }


def error(i: int) -> dict[str, Any]:
    return {"event_id": f"e-{i}", "ts": 1_000 + i, "agent_name": "a", "task_type": "t", "variant_id": "v1",
            "component": "db", "error_type": "Timeout", "severity": "error", "pipeline": False}  # fmt: skip


def test_a_replay_is_skipped_per_partition_and_a_gap_is_not_one() -> None:
    applied = AppliedOffsets()
    assert [applied.replayed(p) for p in [(0, 3), (0, 9), (1, 2), (0, 5), (0, 9), (0, 10), None, None]] == [
        False, False, False, True, True, False, False, False,
    ]  # fmt: skip
    assert applied.applied((1, 2)) and not applied.applied((1, 3))
    applied.mark((1, 7))
    assert applied.applied((1, 6)) and AppliedOffsets.from_dict(applied.to_dict()).last == applied.last


def test_learning_state_keeps_its_flat_offsets_and_loads_the_old_ones() -> None:
    old = LearningLoop("a", "t", LearningSettings(publish_interval_ms=0))
    old.on_outcome(outcome(0), (2, 40))
    old.on_outcome(outcome(1), ("agent.outcomes", 1, 7))
    old.on_error(error(0), (0, 11))
    state = old.to_dict()
    assert state["offsets"] == {"outcomes:2": 40, "outcomes:agent.outcomes:1": 7, "errors:0": 11}
    restored = LearningLoop.from_dict(state, LearningSettings(publish_interval_ms=0))
    assert (
        restored.on_outcome(outcome(0), (2, 40)) == []
        and restored.on_outcome(outcome(1), ("agent.outcomes", 1, 7)) == []
    )
    assert restored.to_dict()["arms"] == state["arms"]  # the replays changed nothing
    assert restored.on_outcome(outcome(2), (2, 41)) != []  # the next offset is applied


def test_error_monitor_and_assurance_load_their_old_offsets() -> None:
    monitor = ErrorMonitor.from_dict({"offsets": {"error": {"0": 5}, "outcome": {"1": 9}}})
    assert monitor.to_dict()["offsets"] == {"error": {"0": 5}, "outcome": {"1": 9}}
    assert monitor._offsets["error"].replayed((0, 5)) and not monitor._offsets["outcome"].replayed((1, 10))
    cases = parse_cases([{"name": "c", "evidence": "success_rate", "window": "10 events", "threshold_min": 0.8}])
    evaluator = AssuranceEvaluator.from_dict({"offsets": {"outcome": {"0": 3}}}, cases)
    before = evaluator.to_dict()
    evaluator.on_outcome(outcome(0), (0, 3))
    assert evaluator.to_dict() == before and before["offsets"] == {"outcome": {"0": 3}}
    evaluator.on_outcome(outcome(1), (0, 4))
    assert evaluator.to_dict() != before


def test_drift_keeps_its_offsets_format() -> None:
    from reverify.processors.drift import DriftProcessor

    drift = DriftProcessor()
    drift.on_outcome(outcome(0), (2, 40))
    state = drift.to_dict()
    assert state["offsets"] == {"2": 40}
    restored = DriftProcessor.from_dict(state)
    restored.on_outcome(outcome(0), (2, 40))
    assert restored.to_dict() == state  # the replay changed nothing
    restored.on_outcome(outcome(1), (2, 41))
    assert restored.to_dict()["offsets"] == {"2": 41}
