"""Kill -9 of the worker in the middle of a stream: after a restart, crl.qvalues equal an uninterrupted run.

The worker checkpoints agent states every ``state_interval`` and acknowledges (so lets Faust commit) only the
inputs whose effect is in the changelog. A SIGKILL therefore loses only unacknowledged work, which the restarted
worker redoes from the committed offsets while skipping what the recovered states already applied: nothing is
lost and nothing counted twice, so every arm's latest QValue is exactly the one an uninterrupted run publishes.
The uninterrupted run is the same learning code fed the same partition order in this process.
"""

from __future__ import annotations

import dataclasses
import os
import random
import signal
import time

import pytest
from reverify.streams.client import AgentEvents
from reverify.streams.embedded import free_port
from reverify.streams.settings import Settings

from tests.support import WorkerProcess, latest_qvalues, read_all, uninterrupted_qvalues

pytestmark = pytest.mark.integration

N = 50_000  # the "kill -9 of the worker in the middle of 50,000 outcomes"
AGENTS, TASKS, VARIANTS = 12, 2, 3


def _start(settings: Settings) -> WorkerProcess:
    """A worker on ``settings`` with a fresh metrics port, its log in the test's data dir."""
    # Checkpoints every 0.5 s: the kill lands between them, with applied but unacknowledged work.
    return WorkerProcess(dataclasses.replace(settings, metrics_port=free_port()), REVERIFY_WORKER__STATE_INTERVAL="0.5")


def _publish(settings: Settings) -> None:
    rng = random.Random(11)
    with AgentEvents(settings=settings) as events:
        for i in range(N):
            agent, task, variant = rng.randrange(AGENTS), rng.randrange(TASKS), rng.randrange(VARIANTS)
            # Variant v0 collapses half-way for a few agents, so rollbacks and promotions are part of the replay.
            p = 0.3 if variant == 0 and agent < 4 and i > N // 2 else 0.9 - 0.1 * variant
            ok = rng.random() < p
            events.outcome(
                agent_name=f"rec{agent}",
                task_type=f"task{task}",
                variant_id=f"v{variant}",
                success=ok,
                reward=0.7 + 0.3 * rng.random() if ok else 0.3 * rng.random(),
                latency_ms=rng.lognormvariate(6, 0.4),
                ts=1_763_562_600_000 + i,
                event_id=f"rec-{i}",
            )
        assert events.flush(120) == 0


def test_kill_9_mid_stream_then_restart_gives_the_uninterrupted_qvalues(settings: Settings) -> None:
    _publish(settings)
    expected = uninterrupted_qvalues(settings)
    assert len(expected) == AGENTS * TASKS * VARIANTS
    first = _start(settings)
    try:
        deadline = time.monotonic() + 180
        while first.consumed() < N * 0.4:
            assert first.process.poll() is None, first.tail()
            assert time.monotonic() < deadline, f"the worker did not reach 40 %:\n{first.tail()}"
            time.sleep(0.05)
        os.kill(first.process.pid, signal.SIGKILL)
        first.process.wait(10)
    finally:
        first.stop()
    killed_at = len(read_all(settings, "crl.qvalues"))
    assert killed_at < N, "the kill came after the worker had finished: nothing was interrupted"

    second = _start(settings)
    try:
        deadline = time.monotonic() + 240
        while True:
            latest, replayed = latest_qvalues(settings)
            done = len(latest) == len(expected) and all(
                latest[k]["event_id"] == v["event_id"] for k, v in expected.items()
            )
            if done:
                break
            assert second.process.poll() is None, second.tail()
            assert time.monotonic() < deadline, f"no full recovery within 240 s:\n{second.tail()}"
            time.sleep(1.0)
    finally:
        second.stop()
    assert latest == expected
    # Outcomes whose effect was not checkpointed were applied again with the same ids: recognisably the same.
    print(f"killed after {killed_at} QValues; {replayed} replayed QValues carried the ids of the originals")
