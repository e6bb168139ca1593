"""Kill -9 of the worker while outcomes await their feedback: after a restart nothing is lost or counted twice.

Outcomes awaiting feedback live in the agents' checkpointed state (the feedback join), like everything a worker
decides from. The outcomes are all consumed before any feedback is sent; after the restart the worker may re-read
outcomes and feedback side by side from its checkpoints, so feedback may come before its outcome, but the join
releases judgments in the order the feedback arrives (processors/feedback.py), whatever the interleaving. So the
latest QValue of every arm after the kill and the restart is the one of an uninterrupted run applying each agent's
feedback in partition order, exactly (n, success rate, Q and mean reward, bit for bit), with nothing pending and no
dead letter.
"""

from __future__ import annotations

import dataclasses
import os
import random
import signal
import time

import pytest
from reverify.processors.qvalues import ArmStats
from reverify.streams.client import AgentEvents
from reverify.streams.embedded import free_port
from reverify.streams.restore import CHANGELOG
from reverify.streams.settings import Settings

from tests.support import WorkerProcess, latest_qvalues, read_all

pytestmark = pytest.mark.integration

N = 20_000
AGENTS, VARIANTS = 8, 2


def _start(settings: Settings) -> WorkerProcess:
    return WorkerProcess(dataclasses.replace(settings, metrics_port=free_port()), REVERIFY_WORKER__STATE_INTERVAL="0.5")


def _wait(worker: WorkerProcess, consumed: float, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while worker.consumed() < consumed:
        assert worker.process.poll() is None, worker.tail()
        assert time.monotonic() < deadline, f"the worker did not consume {consumed:.0f} inputs:\n{worker.tail()}"
        time.sleep(0.05)


def _wait_pending(worker: WorkerProcess, settings: Settings, pending: int, timeout: float) -> None:
    """Until the arms' QValues say ``pending`` outcomes wait: every outcome is in the join before any feedback is
    sent (consumed inputs would not do: a rebalance at start-up may deliver some twice)."""
    deadline = time.monotonic() + timeout
    while sum(r["pending"] for r in latest_qvalues(settings)[0].values()) < pending:
        assert worker.process.poll() is None, worker.tail()
        assert time.monotonic() < deadline, f"the worker did not take {pending} outcomes:\n{worker.tail()}"
        time.sleep(0.5)


def _uninterrupted(settings: Settings) -> dict[str, ArmStats]:
    """Each arm's statistics with its feedback applied in partition order, as one uninterrupted worker does."""
    arm_of = {
        r["event_id"]: f"{r['agent_name']}/{r['task_type']}/{r['variant_id']}"
        for _, _, r in read_all(settings, "agent.outcomes")
    }
    arms: dict[str, ArmStats] = {}
    for _, _, r in sorted(read_all(settings, "agent.feedback"), key=lambda x: x[:2]):
        arms.setdefault(arm_of[r["outcome_id"]], ArmStats()).update(r["success"], r["reward"], alpha=0.1)
    return arms


def test_kill_9_with_feedback_pending_loses_and_doubles_nothing(settings: Settings) -> None:
    rng = random.Random(23)
    now = int(time.time() * 1000)
    first = _start(settings)
    try:
        with AgentEvents(settings=settings) as events:
            ids = [
                (
                    events.outcome(
                        agent_name=f"fr{i % AGENTS}",
                        task_type="t",
                        variant_id=f"v{rng.randrange(VARIANTS)}",
                        awaiting_feedback=True,
                        ts=now + i,
                    ),
                    f"fr{i % AGENTS}",
                )
                for i in range(N)
            ]
            assert events.flush(60) == 0
            _wait_pending(first, settings, N, 180)
            rng.shuffle(ids)
            for k, (outcome_id, agent) in enumerate(ids):
                reward = rng.random()
                events.feedback(outcome_id, agent_name=agent, success=reward > 0.3, reward=reward, ts=now + N + k)
            assert events.flush(60) == 0
        _wait(first, N * 1.4, 180)
        os.kill(first.process.pid, signal.SIGKILL)
        first.process.wait(10)
    finally:
        first.stop()
    judged_at_kill = sum(r["n"] for r in latest_qvalues(settings)[0].values())
    assert judged_at_kill < N, "the kill came after every feedback was applied: nothing was pending"

    expected = _uninterrupted(settings)
    second = _start(settings)
    try:
        deadline = time.monotonic() + 180
        while True:
            latest, replayed = latest_qvalues(settings)
            if sum(r["n"] for r in latest.values()) == N and all(r["pending"] == 0 for r in latest.values()):
                break
            assert second.process.poll() is None, second.tail()
            assert time.monotonic() < deadline, f"no full recovery within 180 s:\n{second.tail()}"
            time.sleep(1.0)
    finally:
        second.stop()
    assert set(latest) == set(expected)
    for arm, stats in expected.items():
        got = latest[arm]
        assert (got["n"], got["success_rate"], got["pending"], got["timeouts"]) == (stats.n, stats.success_rate, 0, 0)
        # the same updates in the same order, none missing or doubled: the same floats, to the last bit
        assert (got["q"], got["reward_mean"]) == (stats.q, stats.reward_mean), arm
    assert read_all(settings, "reverify.deadletter") == []
    print(f"killed with {N - judged_at_kill} of {N} outcomes unjudged in crl.qvalues; {replayed} replayed QValues")


def test_an_agent_state_past_one_megabyte_checkpoints_and_recovers(settings: Settings) -> None:
    """One agent with 6,000 outcomes awaiting feedback: its state, one changelog message, passes Kafka's default
    1 MB limit (the worker used to stop on MessageSizeTooLargeError); it is checkpointed, read back after a
    kill -9, and every feedback judges its outcome."""
    waiting = 6_000
    now = int(time.time() * 1000)
    first = _start(settings)
    try:
        with AgentEvents(settings=settings) as events:
            ids = [
                events.outcome(agent_name="busy", task_type="t", variant_id="v1", awaiting_feedback=True, ts=now + i)
                for i in range(waiting)
            ]
            assert events.flush(60) == 0
        _wait_pending(first, settings, waiting, 180)
        os.kill(first.process.pid, signal.SIGKILL)
        first.process.wait(10)
    finally:
        first.stop()
    states = [len(value) for _, _, value in read_all(settings, CHANGELOG, raw=True) if value]
    assert max(states) > 1_048_576, f"the largest agent state was {max(states)} bytes: the limit was not reached"

    second = _start(settings)
    try:
        with AgentEvents(settings=settings) as events:
            for k, outcome_id in enumerate(ids):
                events.feedback(outcome_id, agent_name="busy", success=True, reward=1.0, ts=now + waiting + k)
            assert events.flush(60) == 0
        deadline = time.monotonic() + 180
        while True:
            arm = latest_qvalues(settings)[0].get("busy/t/v1", {})
            if arm.get("n") == waiting and arm.get("pending") == 0:
                break
            assert second.process.poll() is None, second.tail()
            assert time.monotonic() < deadline, f"not every feedback judged its outcome within 180 s:\n{second.tail()}"
            time.sleep(1.0)
    finally:
        second.stop()
    assert (arm["timeouts"], arm["success_rate"]) == (0, 1.0)
    assert read_all(settings, "reverify.deadletter") == []
