"""Delayed outcomes end to end through ``reverify worker``: outcomes awaiting feedback, their feedback shuffled.

The arm learns each outcome when its feedback arrives, in the order the feedback arrives: its final QValue has
n = 300 and exactly the Q-value of the feedback rewards in that order (the alpha schedule of every arm), which is
also what ``reverify replay`` computes from the same inputs as JSON lines; a second feedback for a judged outcome
goes to the dead-letter topic with the reason.
"""

from __future__ import annotations

import random
import time
import uuid
from typing import Any

import pytest
from reverify.processors.qvalues import ArmStats
from reverify.streams.client import AgentEvents
from reverify.streams.replay import replay

N = 300


@pytest.fixture(scope="module")
def worker(worker_factory: Any) -> Any:
    return worker_factory()


def _lines(agent: str, now: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]], ArmStats]:
    """The outcomes, then their feedback in shuffled order (as ``reverify replay`` lines), and the arm they make."""
    outcomes = [
        {
            "kind": "outcome",
            "agent_name": agent,
            "task_type": "t",
            "variant_id": "v1",
            "awaiting_feedback": True,
            "latency_ms": 5.0,
            "ts": now + i,
            "event_id": f"{agent}-o{i}",
        }  # fmt: skip
        for i in range(N)
    ]
    rng = random.Random(19)
    order = list(range(N))
    rng.shuffle(order)
    feedback, expected = [], ArmStats()
    for k, i in enumerate(order):
        reward = round(rng.random(), 3)
        feedback.append({"kind": "feedback", "agent_name": agent, "outcome_id": f"{agent}-o{i}",
                         "success": reward > 0.5, "reward": reward, "ts": now + N + k, "event_id": f"{agent}-f{k}"})  # fmt: skip
        expected.update(reward > 0.5, reward, alpha=0.1)
    # a second feedback for a judged outcome
    feedback.append({"kind": "feedback", "agent_name": agent, "outcome_id": f"{agent}-o0", "success": True,
                     "reward": 1.0, "ts": now + 2 * N, "event_id": f"{agent}-again"})  # fmt: skip
    return outcomes, feedback, expected


def _publish(sdk: AgentEvents, lines: list[dict[str, Any]]) -> None:
    for line in lines:
        getattr(sdk, line["kind"])(**{k: v for k, v in line.items() if k != "kind"})
    assert sdk.flush(30) == 0


def test_300_outcomes_judged_by_shuffled_feedback_learn_in_arrival_order(worker: Any, e2e: Any) -> None:
    settings = worker.settings
    agent = f"fb-{uuid.uuid4().hex[:6]}"
    outcomes, feedback, expected = _lines(agent, int(time.time() * 1000))
    qvalues = e2e.Follower(settings, "crl.qvalues")
    deadletters = e2e.Follower(settings, "reverify.deadletter")
    with AgentEvents(settings=settings) as sdk:
        _publish(sdk, outcomes)
        # Every outcome waits before any feedback is sent, so the feedback's order is the order it is learnt in.
        qvalues.wait(lambda r: r["agent_name"] == agent and r["pending"] == N, timeout=60)
        _publish(sdk, feedback)
    _, last = qvalues.wait(lambda r: r["agent_name"] == agent and r["n"] == N, timeout=60)
    assert (last["n"], last["pending"], last["timeouts"]) == (N, 0, 0)
    assert last["q"] == expected.q and last["success_rate"] == expected.success_rate
    _, dead = deadletters.wait(lambda r: r["key"] == agent.encode(), timeout=30)
    assert dead["topic"] == "agent.feedback"
    assert dead["reason"] == f"outcome {agent}-o0 was already judged (by feedback)"

    replayed = [r for t, r in replay(outcomes + feedback) if t in ("QValue", "DeadLetter")]
    final = [r for r in replayed if "q" in r][-1]
    assert (final["n"], final["q"], final["event_id"]) == (N, last["q"], last["event_id"])
    assert [r["reason"] for r in replayed if "reason" in r] == [dead["reason"]]
    qvalues.close()
    deadletters.close()
