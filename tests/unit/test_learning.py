"""The learning loop: emissions, promotions, proposals, rollbacks, cooldown, replay and state."""

from __future__ import annotations

import json
import re
from itertools import count
from typing import Any

from reverify.processors.base import Emission
from reverify.processors.learning import LearningLoop, LearningSettings

from reverify import schemas

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


EVERY_UPDATE = LearningSettings(publish_interval_ms=0)


def test_first_seen_qvalue_and_decision_on_change_only() -> None:
    loop = LearningLoop("backend-architect", "api-design", EVERY_UPDATE)
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


def test_held_qvalues_flush_as_the_latest_update_would_have_published() -> None:
    held, every = LearningLoop("a", "t"), LearningLoop("a", "t", EVERY_UPDATE)
    events = [outcome(v, i % 3 > 0, ts=TS0 + 100 * i) for i in range(25) for v in ("v1", "v2")]
    assert of(feed(held, events), "QValue") == []
    latest = {q["variant_id"]: q for q in of(feed(every, events), "QValue")}
    flushed = held.flush_qvalues()
    encode_all(flushed)
    assert {e.value["variant_id"]: e.value for e in flushed} == latest and latest["v2"]["n"] == 25
    assert held.flush_qvalues() == []  # nothing changed since
    state = LearningLoop.from_dict(json.loads(json.dumps(held.to_dict())))
    assert state.to_dict() == held.to_dict()


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


def test_a_flickering_decision_keeps_one_open_proposal() -> None:
    loop = LearningLoop("a", "t")
    feed(loop, [outcome("v1", i % 2 == 0) for i in range(20)])
    out: list[Emission] = []
    for i in range(40):  # v2 hovers around approval_q: human_approval and no_action alternate
        out += feed(loop, [outcome("v2", i % 3 != 2, ts=TS0 + 1000 + i)])
    decisions = [d["decision"] for d in of(out, "VariantDecision") if d["variant_id"] == "v2"]
    assert decisions.count("human_approval") >= 2 and "no_action" in decisions
    proposals = of(out, "Proposal")
    assert len(proposals) == 1  # the open one stands; people are not asked again each time
    rejection = {
        "event_id": "rj",
        "ts": TS0 + 2000,
        "proposal_id": proposals[0]["proposal_id"],
        "approved": False,
        "by": "ana",
    }
    assert loop.on_approval(rejection, offset=(0, 1)) == [] and loop.active == "v1"


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
    from reverify.processors.degradation import format_reason

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
    loop = LearningLoop("a", "t", EVERY_UPDATE)
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
    a, b = LearningLoop("a", "t", EVERY_UPDATE), LearningLoop("a", "t", EVERY_UPDATE)
    out_a = [e for i, ev in enumerate(events) for e in a.on_outcome(ev, offset=(3, i))]
    out_b = [e for i, ev in enumerate(events[:150]) for e in b.on_outcome(ev, offset=(3, i))]
    restored = LearningLoop.from_dict(json.loads(json.dumps(b.to_dict())), EVERY_UPDATE)
    # A crash after offset 149 was stored: the shell replays from 100.
    out_b += [e for i, ev in enumerate(events[100:], start=100) for e in restored.on_outcome(ev, offset=(3, i))]
    assert [e.value["event_id"] for e in out_a] == [e.value["event_id"] for e in out_b]
    assert restored.to_dict() == a.to_dict()
    assert restored.on_outcome(events[5], offset=(3, 5)) == []
    assert restored.on_outcome(events[5], offset=(4, 5)) != []  # another partition is its own sequence


def _alerts(out: list[Emission], status: str) -> list[dict[str, Any]]:
    return [a for a in of(out, "Alert") if a["status"] == status]


def test_rollback_alert_resolves_once_the_new_variant_has_its_own_evidence() -> None:
    s = LearningSettings(cooldown_ms=60_000, cooldown_min_outcomes=20)
    loop = LearningLoop("a", "t", s)
    feed(loop, [outcome("v1", True)])
    feed(loop, [outcome("v2", i % 5 != 0) for i in range(30)])
    out = _degrade(loop, "v1")
    (fired,) = _alerts(out, "firing")
    assert loop.active == "v2" and fired["title"] == "a/t: rolled back v1 -> v2"
    alarm_ts = fired["ts"]
    # 19 outcomes of v2 after the cooldown, then v1 outcomes long after: not enough of v2's own evidence.
    out = feed(loop, [outcome("v2", True, ts=alarm_ts + 70_000 + i) for i in range(19)])
    out += feed(loop, [outcome("v1", True, ts=alarm_ts + 80_000 + i) for i in range(5)])
    assert of(out, "Alert") == []
    # 40 outcomes of v2 but within the cooldown: still firing.
    fresh = LearningLoop.from_dict(json.loads(json.dumps(loop.to_dict())), s)
    assert of(feed(fresh, [outcome("v2", True, ts=alarm_ts + 100 + i) for i in range(40)]), "Alert") == []
    # The 20th outcome of v2 after the cooldown resolves it: same fingerprint and labels, ends_at, once.
    out = feed(loop, [outcome("v2", True, ts=alarm_ts + 90_000)])
    (resolved,) = of(out, "Alert")
    assert resolved["status"] == "resolved" and resolved["fingerprint"] == fired["fingerprint"]
    assert resolved["labels"] == fired["labels"] and resolved["severity"] == "critical"
    assert resolved["starts_at"] == fired["starts_at"] and resolved["ends_at"] == alarm_ts + 90_000
    assert "v2 has its own evidence" in resolved["message"]
    assert of(feed(loop, [outcome("v2", True, ts=alarm_ts + 90_001 + i) for i in range(50)]), "Alert") == []
    assert loop.open_alerts == {}


def test_no_rollback_alert_resolves_when_another_variant_is_activated() -> None:
    loop = LearningLoop("a", "t", LearningSettings(cooldown_ms=3_600_000))
    out = _degrade(loop, "solo")
    (fired,) = _alerts(out, "firing")
    assert fired["title"] == "a/t: solo degraded, no rollback"
    # A challenger reaches human_approval; approving it activates it and ends the episode.
    out = feed(loop, [outcome("new", True, ts=TS0 + 5000 + i) for i in range(6)])
    (proposal,) = of(out, "Proposal")
    approval = {"event_id": "ap-9", "ts": TS0 + 6000, "proposal_id": proposal["proposal_id"], "approved": True}
    act = loop.on_approval(approval, offset=("control.approvals", 0, 1))
    encode_all(act)
    assert [e.record_type for e in act] == ["Alert", "ActiveVariant"]
    resolved = act[0].value
    assert resolved["status"] == "resolved" and resolved["fingerprint"] == fired["fingerprint"]
    assert resolved["ends_at"] == TS0 + 6000 and "new activated (approval)" in resolved["message"]
    assert loop.open_alerts == {}


def test_a_second_rollback_resolves_the_first_alert_before_firing_its_own() -> None:
    loop = LearningLoop("a", "t", LearningSettings(cooldown_ms=3_600_000, cooldown_min_outcomes=20))
    feed(loop, [outcome("v1", True)])
    feed(loop, [outcome("v2", i % 5 != 0) for i in range(30)])
    feed(loop, [outcome("v3", i % 4 != 0) for i in range(30)])
    first = _alerts(_degrade(loop, "v1"), "firing")[0]
    assert loop.active == "v2"
    # v2 degrades within the hour (the first alert is still open); v1 is in cooldown, so the rollback goes to v3.
    second = _degrade(loop, "v2", start=5000)
    kinds = [(e.record_type, e.value.get("status")) for e in second if e.record_type in ("Alert", "Rollback")]
    assert kinds == [("Alert", "resolved"), ("Rollback", None), ("Alert", "firing")]
    assert of(second, "Alert")[0]["fingerprint"] == first["fingerprint"]
    assert of(second, "Rollback")[0]["to_variant"] == "v3" and loop.active == "v3"
    assert list(loop.open_alerts) == [of(second, "Alert")[1]["fingerprint"]]


def test_open_alerts_survive_a_restart_and_older_state_loads() -> None:
    loop = LearningLoop("a", "t")
    _degrade(loop, "solo")
    data = json.loads(json.dumps(loop.to_dict()))
    assert LearningLoop.from_dict(data).open_alerts == loop.open_alerts != {}
    del data["open_alerts"]
    assert LearningLoop.from_dict(data).open_alerts == {}


def test_resolved_rollback_alert_lifts_the_inhibition_in_the_pipeline() -> None:
    from reverify.processors.pipeline import AgentPipeline, PipelineConfig

    config = PipelineConfig(learning=LearningSettings(cooldown_ms=1000, cooldown_min_outcomes=5))
    p = AgentPipeline("a", config)
    offsets = count()

    def run(events: list[dict[str, Any]]) -> list[Emission]:
        out: list[Emission] = []
        for ev in events:
            out += p.on_event("AgentOutcome", dict(ev, agent_name="a", task_type="t"), (0, next(offsets)))
        return out

    run([outcome("v1", True, ts=TS0)] + [outcome("v2", i % 5 != 0, ts=TS0) for i in range(30)])
    run([outcome("v1", i % 10 != 0, ts=TS0 + i) for i in range(200)])
    out: list[Emission] = []
    for i in range(200):
        out += run([outcome("v1", i % 4 == 0, ts=TS0 + 1000 + i)])
        if of(out, "Rollback"):
            break
    (fired,) = _alerts(out, "firing")
    assert fired["fingerprint"] in p.alerts._inhibitors
    out = run([outcome("v2", True, ts=TS0 + 10_000 + i) for i in range(5)])
    assert [a["status"] for a in of(out, "Alert") if a["source"] == "rollback"] == ["resolved"]
    assert fired["fingerprint"] not in p.alerts._inhibitors


def test_fast_ids_are_the_reference_uuid5() -> None:
    from reverify.processors import learning
    from reverify.processors.base import derive_id

    for parts in [("qvalue", "e-1", "v1"), ("decision", "ünï", 7), ("active", "", None)]:
        assert learning.derive_id(*parts) == derive_id(*parts)


def test_classify_agrees_with_decide() -> None:
    from reverify.processors.safety import classify, decide

    for q in [0.0, 0.69, 0.7 - 1e-12, 0.7, 0.85, 0.9 - 1e-12, 0.9, 0.95, 1.0]:
        for n in [0, 4, 5, 9, 10, 100]:
            for degraded in (False, True):
                for p_beats in (None, 0.2, 0.95, 0.99):
                    expected = decide(q, n, degraded=degraded, p_beats_active=p_beats, active_variant="x").decision
                    assert classify(q, n, degraded, p_beats) == expected, (q, n, degraded, p_beats)


def test_state_is_compact_and_older_list_forms_still_load() -> None:
    loop = LearningLoop("a", "t")
    feed(loop, [outcome("v1", i % 3 != 0, reward=0.1 * (i % 10)) for i in range(80)])
    data = json.loads(json.dumps(loop.to_dict()))
    assert isinstance(data["arms"]["v1"]["last_outcomes"], str)
    det = data["detectors"]["v1"]
    assert isinstance(det["recent_ok"], str) and isinstance(det["recent_events"], str)
    restored = LearningLoop.from_dict(data)
    assert restored.to_dict() == loop.to_dict()
    # State written before the compact form: lists of booleans and of [ok, reward] pairs.
    old_arm = dict(data["arms"]["v1"], last_outcomes=[c == "1" for c in data["arms"]["v1"]["last_outcomes"]])
    recent = restored.detectors["v1"]._recent
    old_det = {k: v for k, v in det.items() if k not in ("recent_ok", "recent_reward")}
    old_det["recent"] = [[ok, r] for ok, r in recent]
    old_det["recent_events"] = [c == "1" for c in det["recent_events"]]
    old = dict(data, arms={"v1": old_arm}, detectors={"v1": old_det})
    assert LearningLoop.from_dict(old).to_dict() == loop.to_dict()
