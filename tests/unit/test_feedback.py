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
    # dated by the later of the two times, at the feedback's position, as if the outcome had come first
    assert [(j.outcome["event_id"], j.reward, j.ts, j.position) for j in judged] == [
        ("o1", 0.7, 5, ("agent.feedback", 0, 0))
    ]
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


def _causes(judgments: list[Any]) -> list[str]:
    return [j.cause for j in judgments]


def test_feedback_after_early_feedback_is_held_and_released_in_arrival_order() -> None:
    join = FeedbackJoin()
    for i in (1, 2):
        step(join, "outcome", outcome(i, ts=i), (0, i))
    assert step(join, "feedback", feedback(0, 10), (1, 0)) == ([], [])  # early: o0 not read yet
    assert step(join, "feedback", feedback(2, 11), (1, 1)) == ([], [])  # held behind f0, though o2 is here
    assert step(join, "feedback", feedback(3, 12), (1, 2)) == ([], [])  # early too
    assert step(join, "feedback", feedback(1, 13), (1, 3)) == ([], [])  # held behind f3
    assert list(join.early) == ["o0", "o2", "o3", "o1"] and join.pending_count == 2
    judged, _ = step(join, "outcome", outcome(0, ts=0), (0, 3))
    assert _causes(judged) == ["f0", "f2"]  # up to f3, whose outcome has not come
    assert [j.position for j in judged] == [("agent.feedback", 1, 0), ("agent.feedback", 1, 1)]
    judged, _ = step(join, "outcome", outcome(3, ts=3), (0, 4))
    assert _causes(judged) == ["f3", "f1"] and not join.early and not join.pending
    assert [j.ts for j in judged] == [12, 13]
    _, dead = step(join, "feedback", feedback(2, 20, fid="again"), (1, 4))  # a second feedback, as before
    assert [d.value["reason"] for d in dead] == ["outcome o2 was already judged (by feedback)"]


def test_a_second_feedback_for_a_held_outcome_is_dead_lettered_not_judged() -> None:
    join = FeedbackJoin()
    step(join, "outcome", outcome(1, ts=1), (0, 0))
    step(join, "feedback", feedback(0, 10), (1, 0))
    step(join, "feedback", feedback(1, 11), (1, 1))
    judged, dead = step(join, "feedback", feedback(1, 12, fid="dup"), (1, 2))
    assert judged == [] and [d.value["reason"] for d in dead] == [
        "another feedback for outcome o1 is already waiting for it"
    ]
    assert _causes(step(join, "outcome", outcome(0, ts=0), (0, 1))[0]) == ["f0", "f1"]


def _interleave(rng: random.Random, a: list[Any], b: list[Any]) -> list[Any]:
    """A random merge of ``a`` and ``b`` keeping the order of each (two partitions read side by side)."""
    picks = [0] * len(a) + [1] * len(b)
    rng.shuffle(picks)
    ia, ib = iter(a), iter(b)
    return [next(ia) if pick == 0 else next(ib) for pick in picks]


def _streams(rng: random.Random, n: int) -> tuple[list[Any], list[Any]]:
    outcomes = [("outcome", outcome(i, ts=i * 1000, variant=f"v{i % 2}"), (0, i)) for i in range(n)]
    order = rng.sample(range(n), n)
    feedbacks = [("feedback", feedback(i, n * 1000 + k, rng.random()), (1, k)) for k, i in enumerate(order)]
    return outcomes, feedbacks


def test_the_judgments_are_the_same_whatever_the_interleaving_of_outcomes_and_feedback() -> None:
    rng = random.Random(7)
    outcomes, feedbacks = _streams(rng, 60)
    in_order = FeedbackJoin()
    expected = [j for kind, r, at in outcomes + feedbacks for j in step(in_order, kind, r, at)[0]]
    assert _causes(expected) == [r["event_id"] for _, r, _ in feedbacks]
    early_seen = 0
    for _ in range(300):
        join = FeedbackJoin()
        got, dead = [], []
        for kind, record, at in _interleave(rng, outcomes, feedbacks):
            judged, d = step(join, kind, record, at)
            got += judged
            dead += d
            early_seen = max(early_seen, len(join.early))
        assert got == expected and dead == [] and not join.early and not join.pending
    assert early_seen > 10  # the interleavings did read feedback before its outcome, and held feedback


def test_the_pipeline_learns_the_same_q_values_bit_for_bit_whatever_the_interleaving() -> None:
    rng = random.Random(11)
    outcomes, feedbacks = _streams(rng, 80)
    kinds = {"outcome": "AgentOutcome", "feedback": "AgentFeedback"}

    def run(inputs: list[Any]) -> dict[str, Any]:
        p = _pipeline()
        for kind, record, at in inputs:
            p.on_event(kinds[kind], record, at)
        return {v: (arm.n, arm.q, arm.reward_mean, arm.success_rate) for v, arm in p.loops["t"].arms.items()}

    expected = run(outcomes + feedbacks)
    assert sum(n for n, *_ in expected.values()) == 80
    for _ in range(20):
        assert run(_interleave(rng, outcomes, feedbacks)) == expected  # == on floats: the same updates in order


def test_early_feedback_dead_lettered_after_early_wait_releases_the_feedback_it_held() -> None:
    join = FeedbackJoin(FeedbackSettings(early_wait="10m"))
    step(join, "outcome", outcome(1, ts=0), (0, 0))
    step(join, "outcome", outcome(2, ts=0), (0, 1))
    step(join, "feedback", feedback(9, 0), (1, 0))  # for an outcome that never comes
    step(join, "feedback", feedback(2, 60_000), (1, 1))
    step(join, "feedback", feedback(1, 120_000), (1, 2))
    assert step(join, "outcome", outcome(3, ts=10 * 60_000 - 1), (0, 2)) == ([], [])
    judged, dead = step(join, "outcome", outcome(4, ts=10 * 60_000), (0, 3))
    assert [d.value["reason"] for d in dead] == [
        "feedback for unknown outcome o9: no outcome with this id within early_wait = 10m"
    ]
    assert _causes(judged) == ["f2", "f1"] and not any(j.timed_out for j in judged)
    assert [j.position for j in judged] == [("agent.feedback", 1, 1), ("agent.feedback", 1, 2)]
    assert not join.early and join.pending_count == 2


def test_max_early_counts_held_feedback_and_dead_lettering_the_front_releases_the_rest() -> None:
    join = FeedbackJoin(FeedbackSettings(max_early=3))
    for i in (1, 2, 3):
        step(join, "outcome", outcome(i, ts=i), (0, i))
    step(join, "feedback", feedback(9, 10), (1, 0))  # early, never comes
    step(join, "feedback", feedback(1, 11), (1, 1))  # held
    assert step(join, "feedback", feedback(2, 12), (1, 2)) == ([], [])  # held: 3 waiting, at the bound
    judged, dead = step(join, "feedback", feedback(3, 13), (1, 3))  # a fourth: the front goes
    assert [d.value["reason"] for d in dead] == [
        "feedback for unknown outcome o9: more than max_early = 3 feedback waiting"
    ]
    assert _causes(judged) == ["f1", "f2", "f3"] and not join.early and not join.pending


def test_an_outcome_whose_feedback_is_held_does_not_time_out() -> None:
    join = FeedbackJoin(FeedbackSettings(timeout="1h", early_wait="2h"))
    step(join, "outcome", outcome(1, ts=0), (0, 0))
    step(join, "outcome", outcome(2, ts=0), (0, 1))
    step(join, "feedback", feedback(9, 10), (1, 0))  # early, never comes
    step(join, "feedback", feedback(1, 20), (1, 1))  # held, before o1's deadline
    judged, _ = step(join, "outcome", outcome(3, ts=HOUR + 30), (0, 2))  # past o1's and o2's deadlines
    assert [(j.outcome["event_id"], j.timed_out) for j in judged] == [("o2", True)]  # o1's feedback is here
    judged, dead = step(join, "outcome", outcome(4, ts=2 * HOUR + 10), (0, 3))
    assert len(dead) == 1 and [(j.cause, j.timed_out, j.reward, j.ts) for j in judged] == [("f1", False, 0.7, 20)]
    assert join.timed_out == 1 and list(join.pending) == ["o3", "o4"]


@pytest.mark.parametrize("steps", [[2 * HOUR], [HOUR // 2 + 5, 2 * HOUR], [HOUR - 1, HOUR, 2 * HOUR]])
def test_timeouts_and_expiries_due_in_one_step_come_in_the_order_of_their_times(steps: list[int]) -> None:
    """f9 (early, never comes) expires at 30 min and releases f1; o2 times out at 1 h: in that order, however
    stream time gets past both."""
    join = FeedbackJoin(FeedbackSettings(timeout="1h", early_wait="30m"))
    step(join, "outcome", outcome(1, ts=0), (0, 0))
    step(join, "outcome", outcome(2, ts=0), (0, 1))
    step(join, "feedback", feedback(9, 10), (1, 0))
    step(join, "feedback", feedback(1, 20), (1, 1))  # held behind f9
    judged, dead = [], []
    for k, ts in enumerate(steps):
        j, d = step(join, "outcome", outcome(10 + k, ts=ts), (0, 2 + k))
        judged += j
        dead += d
    mine = [(j.outcome["event_id"], j.timed_out) for j in judged if j.outcome["event_id"] in ("o1", "o2")]
    assert mine == [("o1", False), ("o2", True)] and len(dead) == 1  # (the steps' own outcomes time out too)


def test_the_state_round_trips_in_the_middle_of_a_hold() -> None:
    rng = random.Random(3)
    outcomes, feedbacks = _streams(rng, 40)
    inputs = _interleave(rng, outcomes, feedbacks)
    whole = FeedbackJoin()
    expected = [j for kind, r, at in inputs for j in step(whole, kind, r, at)[0]]
    holding = 0
    for cut in range(0, len(inputs), 3):
        join = FeedbackJoin()
        got = [j for kind, r, at in inputs[:cut] for j in step(join, kind, r, at)[0]]
        state = json.loads(json.dumps(join.to_dict()))
        restored = FeedbackJoin.from_dict(state, join.settings)
        assert restored.to_dict() == state
        held = [oid for oid in restored.early if oid in restored.pending]
        holding += bool(held)
        for oid in held:  # held: what judges the outcome (no copy of the outcome: that stays in pending)
            fid, ts, success, reward, label, position = state["early"][oid]
            record = next(r for _, r, _ in feedbacks if r["event_id"] == fid)
            assert (ts, success, reward, label) == (record["ts"], record["success"], record["reward"], None)
            assert record["outcome_id"] == oid
            assert position[0] == 1 and len(json.dumps(state["early"][oid])) < 100
        # a replay from before the cut applies nothing twice; the rest judges what an uninterrupted join did
        got += [j for kind, r, at in inputs[max(0, cut - 5) :] for j in step(restored, kind, r, at)[0]]
        assert got == expected
    assert holding >= 3  # cuts in the middle of a hold


def test_early_feedback_in_state_written_before_the_hold_is_released_with_no_position() -> None:
    join = FeedbackJoin()
    step(join, "feedback", feedback(0, 10), (1, 0))
    step(join, "feedback", feedback(1, 11), (1, 1))
    state = join.to_dict()
    del state["ordered"]  # as a version that judged early feedback at its outcome's position wrote it
    restored = FeedbackJoin.from_dict(json.loads(json.dumps(state)), join.settings)
    assert step(restored, "outcome", outcome(1, ts=0), (0, 0)) == ([], [])  # f1 held behind f0 now
    judged = step(restored, "outcome", outcome(0, ts=0), (0, 1))[0]
    # no position: the guards downstream may have seen later feedback judged before these were
    assert [(j.cause, j.position) for j in judged] == [("f0", None), ("f1", None)]
    step(restored, "outcome", outcome(2, ts=0), (0, 2))
    [j] = step(restored, "feedback", feedback(2, 12), (1, 2))[0]
    assert j.position == ("agent.feedback", 1, 2)  # new feedback has its position


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
