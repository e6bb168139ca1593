"""The learning loop: emissions, promotions, proposals, rollbacks, cooldown, replay and state."""

from __future__ import annotations

import json
import re
from itertools import count
from typing import Any

import schemas
from processors.base import Emission
from processors.learning import LearningLoop, LearningSettings

TS0 = 1_763_562_600_000  # 2025-11-19T14:30:00Z
_ids = count()


def outcome(variant: str, success: bool, reward: float | None = None, ts: int = TS0) -> dict[str, Any]:
    return {
        "event_id": f"o-{next(_ids)}",
        "ts": ts,
        "agent_name": "backend-architect",
        "task_type": "api-design",
        "variant_id": variant,
        "success": success,
        "reward": (1.0 if success else 0.0) if reward is None else reward,
    }


def encode_all(out: list[Emission]) -> None:
    for e in out:
        schemas.encode(e.record_type, e.value)


def feed(loop: LearningLoop, events: list[dict[str, Any]]) -> list[Emission]:
    out: list[Emission] = []
    for ev in events:
        out += loop.on_outcome(ev)
    encode_all(out)
    return out


def of(out: list[Emission], kind: str) -> list[dict[str, Any]]:
    return [e.value for e in out if e.record_type == kind]


def test_first_seen_qvalue_and_decision_on_change_only() -> None:
    loop = LearningLoop("backend-architect", "api-design")
    out = feed(loop, [outcome("v1", True)])
    assert [e.record_type for e in out] == ["ActiveVariant", "QValue", "VariantDecision"]
    assert out[0].topic == "crl.active" and out[0].key == "backend-architect/api-design"
    assert out[0].value["reason"] == "first_seen"
    assert out[1].topic == "crl.qvalues" and out[1].key == "backend-architect/api-design/v1"
    assert out[1].value["q"] == 1.0 and out[1].value["n"] == 1
    assert out[2].value["decision"] == "no_action"
    out = feed(loop, [outcome("v1", True) for _ in range(3)])
    assert of(out, "VariantDecision") == [] and len(of(out, "QValue")) == 3
    out = feed(loop, [outcome("v1", True)])  # n = 5: human_approval, but v1 is active: no proposal
    assert of(out, "VariantDecision")[0]["decision"] == "human_approval" and of(out, "Proposal") == []


def test_qvalue_publishing_can_be_coalesced() -> None:
    loop = LearningLoop("a", "t", LearningSettings(publish_interval_ms=1000))
    out = feed(loop, [outcome("v1", True, ts=TS0 + 100 * i) for i in range(25)])
    assert [q["ts"] - TS0 for q in of(out, "QValue")] == [0, 1000, 2000]


def test_proposal_once_and_approval_activates() -> None:
    loop = LearningLoop("backend-architect", "api-design")
    feed(loop, [outcome("v1", i % 2 == 0) for i in range(20)])
    out = feed(loop, [outcome("v2", i != 0) for i in range(9)])  # Q 0.8 .. 0.89: human_approval throughout
    proposals = of(out, "Proposal")
    assert len(proposals) == 1
    p = proposals[0]
    assert re.fullmatch(r"prop-20251119-[0-9a-f]{6}", p["proposal_id"]) and p["variant_id"] == "v2"
    approval = {"event_id": "ap-1", "ts": TS0 + 5, "proposal_id": p["proposal_id"], "approved": True, "by": "ana"}
    schemas.encode("Approval", approval)
    act = loop.on_approval(approval, offset=("control.approvals", 0, 7))
    encode_all(act)
    assert [a.value["reason"] for a in act] == ["approval"] and loop.active == "v2"
    assert act[0].value["previous_variant"] == "v1" and act[0].value["cause_id"] == p["proposal_id"]
    assert loop.on_approval(approval, offset=("control.approvals", 0, 7)) == []


def test_auto_apply_needs_the_promotion_gate() -> None:
    loop = LearningLoop("a", "t")
    feed(loop, [outcome("inc", i % 10 != 0) for i in range(100)])  # 90 / 100
    out = feed(loop, [outcome("chal", i != 3) for i in range(10)])  # 9 / 10, Q = 0.9
    assert loop.arms["chal"].q >= 0.9 - 1e-9 and loop.arms["chal"].n == 10
    assert of(out, "ActiveVariant") == [] and loop.decisions["chal"] == "human_approval"
    assert loop.active == "inc"
    out = feed(loop, [outcome("chal", True) for _ in range(300)])
    assert [a["reason"] for a in of(out, "ActiveVariant")] == ["auto_apply"] and loop.active == "chal"
    assert of(out, "VariantDecision")[-1]["decision"] == "auto_apply"


def _degrade(loop: LearningLoop, variant: str, start: int = 0) -> list[Emission]:
    """90 % then a fall to 25 % until the loop reacts; returns everything emitted during the fall."""
    feed(loop, [outcome(variant, i % 10 != 0, ts=TS0 + i) for i in range(200)])
    out: list[Emission] = []
    for i in range(200):
        out += feed(loop, [outcome(variant, i % 4 == 0, ts=TS0 + 1000 + start + i)])
        if of(out, "Rollback") or of(out, "Alert"):
            break
    return out


def test_rollback_to_best_other_variant_with_seed_reason() -> None:
    loop = LearningLoop("backend-architect", "api-design")
    feed(loop, [outcome("v1", True)])
    feed(loop, [outcome("default", i % 5 != 0) for i in range(30)])  # Q 0.8, n 30
    feed(loop, [outcome("weak", i % 2 == 0) for i in range(3)])  # n < 5: not a target
    out = _degrade(loop, "v1")
    (rb,) = of(out, "Rollback")
    assert rb["from_variant"] == "v1" and rb["to_variant"] == "default"
    assert re.fullmatch(r"rb-20251119-[0-9a-f]{6}", rb["rollback_id"])
    assert re.fullmatch(r"Success rate dropped from 90% to \d+% \(\d+\.\d% drop\)", rb["reason"])
    assert rb["trigger"] == "cusum:success" and rb["statistic"] > rb["threshold"]
    m = rb["degradation_metrics"]
    assert m["sample_size"] == 20 and abs(m["baseline_success_rate"] - 0.9) < 0.01
    (alert,) = of(out, "Alert")
    assert alert["severity"] == "critical" and alert["source"] == "rollback" and alert["status"] == "firing"
    assert alert["labels"] == {"agent_name": "backend-architect", "task_type": "api-design", "variant_id": "v1"}
    act = of(out, "ActiveVariant")[-1]
    assert act["variant_id"] == "default" and act["reason"] == "rollback" and act["cause_id"] == rb["rollback_id"]
    assert loop.active == "default"


def test_rollback_reason_for_ninety_to_seventy_five() -> None:
    from processors.degradation import format_reason

    assert format_reason("success", {"baseline_success_rate": 0.9, "recent_success_rate": 0.75}) == (
        "Success rate dropped from 90% to 75% (16.7% drop)"
    )


def test_no_target_alerts_and_keeps_the_variant() -> None:
    loop = LearningLoop("a", "t")
    out = _degrade(loop, "solo")
    assert of(out, "Rollback") == []
    (alert,) = of(out, "Alert")
    assert (
        alert["severity"] == "critical" and "kept solo" in alert["message"] and "no other variant" in alert["message"]
    )
    assert loop.active == "solo"


def test_cooldown_blocks_ping_pong_between_the_same_two_variants() -> None:
    loop = LearningLoop("a", "t", LearningSettings(cooldown_ms=3_600_000))
    feed(loop, [outcome("v1", True)])
    feed(loop, [outcome("v2", i % 5 != 0) for i in range(30)])
    first = _degrade(loop, "v1")
    assert of(first, "Rollback")[0]["to_variant"] == "v2"
    # v2 now degrades within the hour: rolling back to v1 is blocked by the cooldown.
    second = _degrade(loop, "v2", start=5000)
    assert of(second, "Rollback") == []
    assert "cooldown" in of(second, "Alert")[0]["message"] and loop.active == "v2"


def test_pipeline_errors_never_count_and_errors_are_published() -> None:
    loop = LearningLoop("a", "t")
    feed(loop, [outcome("v1", True)])
    err = {
        "event_id": "x1",
        "ts": TS0,
        "agent_name": "a",
        "task_type": "t",
        "variant_id": "v1",
        "component": "judge",
        "error_type": "Timeout",
        "pipeline": True,
    }
    assert loop.on_error(err, offset=(0, 1)) == [] and loop.arms["v1"].errors == 0
    err = dict(err, event_id="x2", pipeline=False)
    out = loop.on_error(err, offset=(0, 2))
    encode_all(out)
    assert of(out, "QValue")[0]["errors"] == 1 and of(out, "QValue")[0]["error_rate"] == 0.5


def test_replay_applies_nothing_twice_and_ids_are_deterministic() -> None:
    events = [outcome("v1" if i % 2 else "v2", i % 7 != 0) for i in range(300)]
    a, b = LearningLoop("a", "t"), LearningLoop("a", "t")
    out_a = [e for i, ev in enumerate(events) for e in a.on_outcome(ev, offset=(3, i))]
    out_b = [e for i, ev in enumerate(events[:150]) for e in b.on_outcome(ev, offset=(3, i))]
    restored = LearningLoop.from_dict(json.loads(json.dumps(b.to_dict())))
    # A crash after offset 149 was stored: the shell replays from 100.
    out_b += [e for i, ev in enumerate(events[100:], start=100) for e in restored.on_outcome(ev, offset=(3, i))]
    assert [e.value["event_id"] for e in out_a] == [e.value["event_id"] for e in out_b]
    assert restored.to_dict() == a.to_dict()
    assert restored.on_outcome(events[5], offset=(3, 5)) == []
    assert restored.on_outcome(events[5], offset=(4, 5)) != []  # another partition is its own sequence
