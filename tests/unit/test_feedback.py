"""The feedback join (processors.feedback) and what the pipeline makes of judged outcomes."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from reverify.processors.feedback import FeedbackJoin, FeedbackSettings
from reverify.processors.learning import LearningSettings
from reverify.processors.pipeline import AgentPipeline, PipelineConfig
from reverify.processors.qvalues import ArmStats

HOUR = 3_600_000


def outcome(i: int, ts: int = 0, variant: str = "v1", task: str = "t") -> dict[str, Any]:
    return {"event_id": f"o{i}", "ts": ts, "agent_name": "a", "task_type": task, "variant_id": variant,
            "success": False, "reward": 0.0, "latency_ms": 1.0, "cost_usd": 0.0, "features": {}, "attributes": {},
            "awaiting_feedback": True}  # fmt: skip


def feedback(i: int, ts: int, reward: float = 0.7, fid: str | None = None) -> dict[str, Any]:
    return {"event_id": fid or f"f{i}", "ts": ts, "agent_name": "a", "outcome_id": f"o{i}", "success": reward > 0.5,
            "reward": reward, "label": None, "attributes": {}}  # fmt: skip


def step(join: FeedbackJoin, kind: str, record: dict[str, Any], at: tuple[int, int]) -> tuple[list[Any], list[Any]]:
    judged, dead = join.advance(int(record["ts"]))
    if kind == "outcome":
        _, more = join.on_outcome(record, at)
        return judged + more, dead
    more, dead2 = join.on_feedback(record, at)
    return judged + more, dead + dead2


def test_outcomes_are_judged_in_feedback_order_and_a_second_feedback_is_dead_lettered() -> None:
    join = FeedbackJoin()
    for i in range(5):
        assert step(join, "outcome", outcome(i, ts=i), (0, i)) == ([], [])
    order = [3, 0, 4, 1, 2]
    judged = [step(join, "feedback", feedback(i, 10 + k), (0, k))[0][0] for k, i in enumerate(order)]
    assert [j.outcome["event_id"] for j in judged] == [f"o{i}" for i in order]
    assert [j.ts for j in judged] == [10, 11, 12, 13, 14] and join.pending_count == 0
    _, dead = step(join, "feedback", feedback(3, 20, fid="again"), (0, 5))
    assert [d.value["reason"] for d in dead] == ["outcome o3 was already judged (by feedback)"]
    assert dead[0].value["topic"] == "agent.feedback" and dead[0].value["offset"] == 5


def test_feedback_before_its_outcome_waits_and_judges_it_when_it_comes() -> None:
    join = FeedbackJoin()
    assert step(join, "feedback", feedback(1, 5), (0, 0)) == ([], [])
    _, dead = step(join, "feedback", feedback(1, 6, fid="dup"), (0, 1))
    assert [d.value["reason"] for d in dead] == ["another feedback for outcome o1 is already waiting for it"]
    judged, _ = step(join, "outcome", outcome(1, ts=4), (0, 0))
    assert [(j.outcome["event_id"], j.reward, j.position) for j in judged] == [("o1", 0.7, ("agent.outcomes", 0, 0))]
    assert not join.early and not join.pending


def test_feedback_for_an_unknown_outcome_is_dead_lettered_once_the_outcomes_are_past_early_wait() -> None:
    join = FeedbackJoin(FeedbackSettings(early_wait="10m"))
    step(join, "feedback", feedback(9, 0), (0, 0))
    assert step(join, "outcome", outcome(1, ts=9 * 60_000), (0, 0)) == ([], [])
    _, dead = step(join, "outcome", outcome(2, ts=10 * 60_000), (0, 1))
    assert [d.value["reason"] for d in dead] == [
        "feedback for unknown outcome o9: no outcome with this id within early_wait = 10m"
    ]


@pytest.mark.parametrize(
    ("default", "expected"), [("failure", (False, 0.0)), ("0.4", (False, 0.4)), ("ignore", (False, None))]
)
def test_an_outcome_waiting_past_its_timeout_counts_as_the_default(default: str, expected: tuple[Any, ...]) -> None:
    join = FeedbackJoin(FeedbackSettings(timeout="1h", default=default))
    step(join, "outcome", outcome(0, ts=0), (0, 0))
    assert step(join, "outcome", outcome(1, ts=HOUR - 1), (0, 1)) == ([], [])
    judged, _ = step(join, "outcome", outcome(2, ts=HOUR), (0, 2))
    assert [(j.outcome["event_id"], j.success, j.reward, j.timed_out, j.ts) for j in judged] == [
        ("o0", *expected, True, HOUR)
    ]
    assert judged[0].counts is (default != "ignore")
    _, dead = step(join, "feedback", feedback(0, HOUR + 1), (0, 0))
    assert dead[0].value["reason"] == f"outcome o0 was already judged (timed out (timeout) and counted as {default})"


def test_timeouts_are_overridden_per_agent_and_task() -> None:
    settings = FeedbackSettings(timeout="1d", overrides={"a/fast": {"timeout": "1h", "default": "ignore"}})
    join = FeedbackJoin(settings)
    step(join, "outcome", outcome(0, ts=0, task="fast"), (0, 0))
    step(join, "outcome", outcome(1, ts=0, task="slow"), (0, 1))
    judged, _ = step(join, "outcome", outcome(2, ts=2 * HOUR, task="slow"), (0, 2))
    assert [(j.outcome["event_id"], j.counts) for j in judged] == [("o0", False)]
    with pytest.raises(ValueError, match="use failure, ignore or a reward"):
        FeedbackSettings(default="maybe")
    with pytest.raises(ValueError, match="not a duration"):
        FeedbackSettings(overrides={"a": {"timeout": "soon"}})


def test_the_state_stays_bounded_and_replays_apply_nothing_twice() -> None:
    join = FeedbackJoin(FeedbackSettings(max_pending=100, max_early=10, timeout="1h"))
    judged_total = 0
    for i in range(1000):
        judged, _ = step(join, "outcome", outcome(i, ts=i), (0, i))
        judged_total += len(judged)
    assert join.pending_count == 100 and judged_total == 900  # the oldest time out early, counted as the default
    assert len(join.judged) <= 100
    dead = []
    for i in range(50):
        dead += step(join, "feedback", feedback(5000 + i, 2000), (1, i))[1]
    assert len(join.early) == 10 and len(dead) == 40
    assert step(join, "outcome", outcome(999, ts=999), (0, 999)) == ([], [])  # a replayed offset
    assert step(join, "feedback", feedback(998, 3000), (1, 3)) == ([], [])
    assert len(join._deadlines) <= 2 * join.pending_count + 64
    far = step(join, "outcome", outcome(5000, ts=10 * HOUR), (0, 1000))
    assert join.pending_count == 1 and len(join.judged) <= 100 and not join.early
    assert len(far[0]) == 100 and len(far[1]) == 10  # everything waiting expired, o5000's feedback before it came
    restored = FeedbackJoin.from_dict(json.loads(json.dumps(join.to_dict())), join.settings)
    assert restored.to_dict() == join.to_dict()


def _pipeline() -> AgentPipeline:
    return AgentPipeline("a", PipelineConfig(learning=LearningSettings(publish_interval_ms=0)))


def test_the_pipeline_learns_judged_outcomes_like_outcomes_with_their_result() -> None:
    rng = random.Random(4)
    p, arm = _pipeline(), ArmStats()
    for i in range(40):
        p.on_event("AgentOutcome", outcome(i, ts=i), (0, i))
    last: dict[str, Any] = {}
    for k, i in enumerate(rng.sample(range(40), 40)):
        reward = rng.random()
        out = p.on_event("AgentFeedback", feedback(i, 100 + k, reward), (0, k))
        arm.update(reward > 0.5, reward)
        last = [e.value for e in out if e.record_type == "QValue"][-1]
    assert (last["n"], last["q"], last["pending"], last["reward_mean"]) == (40, arm.q, 0, arm.reward_mean)
    reward = p.drift.monitors[("a", "reward", None)]
    assert reward.to_dict() != {} and p.drift.monitors[("a", "latency_ms", None)] is not None
    assert AgentPipeline.from_dict(json.loads(json.dumps(p.to_dict())), p.config).to_dict() == p.to_dict()


def test_an_arm_whose_outcomes_mostly_wait_is_not_promoted_and_the_reasoning_says_how_many() -> None:
    p = _pipeline()
    regular = {**outcome(0), "awaiting_feedback": False, "success": False, "reward": 0.5}
    for i in range(30):  # v0 is active, mediocre
        p.on_event("AgentOutcome", {**regular, "event_id": f"r{i}", "ts": i, "variant_id": "v0"}, (0, i))
    for i in range(30):  # v1: 30 outcomes wait, 12 get glowing feedback
        p.on_event("AgentOutcome", {**outcome(i, ts=100 + i), "variant_id": "v1"}, (0, 100 + i))
    decisions = []
    for i in range(12):
        out = p.on_event("AgentFeedback", feedback(i, 200 + i, 1.0), (0, i))
        decisions += [e.value for e in out if e.record_type == "VariantDecision"]
    assert p.loops["t"].active == "v0"
    # Q = 1 with n = 12 would auto-apply (and beat v0), but 18 of its 30 outcomes are unknown
    assert p.loops["t"].arms["v1"].n == 12 and p.loops["t"].decisions["v1"] == "human_approval"
    assert decisions[-1]["decision"] == "human_approval"
    assert "25 of its 30 outcomes await feedback" in decisions[-1]["reasoning"]
    for i in range(12, 30):
        p.on_event("AgentFeedback", feedback(i, 300 + i, 1.0), (0, i))
    assert p.loops["t"].active == "v1"  # once its outcomes are known, it is promoted
