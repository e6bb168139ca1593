"""Two ``reverify worker`` processes on the same topics share the partitions and decide exactly as one does.

The same 10,000 outcomes go to two topic prefixes: one worker serves prefix A alone, two workers share prefix
B. Every learning decision depends only on the order of one agent's outcomes, and outcomes are keyed by agent,
so however B's partitions are split (and moved while the second worker joins), the latest QValue of every arm,
the decisions and the rollbacks must be those of A. Both B workers must have owned partitions and consumed
outcomes, or the test would only compare one worker with another.
"""

from __future__ import annotations

import dataclasses
import random
import time
from pathlib import Path
from typing import Any

import pytest
from reverify.streams.client import AgentEvents
from reverify.streams.embedded import free_port
from reverify.streams.settings import Settings

from tests.support import WorkerProcess, make_settings, read_all

pytestmark = pytest.mark.integration

N = 10_000
AGENTS, TASKS, VARIANTS = 12, 2, 3


def _start_worker(settings: Settings, data_dir: Path) -> WorkerProcess:
    """A worker on the topics of ``settings``, with its own data dir, web and metrics ports."""
    data_dir.mkdir(parents=True, exist_ok=True)
    own = dataclasses.replace(
        settings,
        web_port=free_port(),
        metrics_port=free_port(),
        # Separate data dirs: each worker keeps its own local table stores.
        data_dir=str(data_dir),
        clickhouse=f"chdb://{data_dir / 'clickhouse'}",
    )
    return WorkerProcess(own)


def _outcomes() -> list[dict[str, Any]]:
    """N outcomes over 12 agents: v0 collapses half-way for four agents, so promotions and rollbacks happen."""
    rng = random.Random(23)
    out = []
    for i in range(N):
        agent, task, variant = rng.randrange(AGENTS), rng.randrange(TASKS), rng.randrange(VARIANTS)
        p = 0.3 if variant == 0 and agent < 4 and i > N // 2 else 0.95 - 0.1 * variant
        ok = rng.random() < p
        out.append(
            {
                "agent_name": f"two{agent}",
                "task_type": f"task{task}",
                "variant_id": f"v{variant}",
                "success": ok,
                "reward": 0.7 + 0.3 * rng.random() if ok else 0.3 * rng.random(),
                "latency_ms": rng.lognormvariate(6, 0.4),
                # Event time spaced a minute apart so that time-based cooldowns end within the stream.
                "ts": 1_763_562_600_000 + 60_000 * i,
                "event_id": f"two-{i}",
            }
        )
    return out


def _publish(settings: Settings, outcomes: list[dict[str, Any]]) -> None:
    with AgentEvents(settings=settings) as events:
        for o in outcomes:
            events.outcome(**o)
        assert events.flush(60) == 0


def _read_all(settings: Settings, topic: str) -> list[dict[str, Any]]:
    """Every record of ``topic`` so far, partition by partition in offset order."""
    return [r for _p, _o, r in sorted(read_all(settings, topic), key=lambda x: x[:2])]


def _latest_qvalues(settings: Settings) -> dict[str, dict[str, Any]]:
    """The last QValue of every arm: what a compacted ``crl.qvalues`` keeps."""
    latest: dict[str, dict[str, Any]] = {}
    for r in _read_all(settings, "crl.qvalues"):
        latest[f"{r['agent_name']}/{r['task_type']}/{r['variant_id']}"] = r
    return latest


def _wait_ready(workers: list[WorkerProcess], deadline: float) -> None:
    """Until every worker at once is ready with partitions: the group has settled with all of them in it."""
    while not all(w.readyz().get("ready") and w.readyz().get("assigned_partitions", 0) > 0 for w in workers):
        for w in workers:
            assert w.process.poll() is None, w.tail()
        assert time.monotonic() < deadline, "workers not ready:\n" + "\n----\n".join(w.tail() for w in workers)
        time.sleep(0.2)


def test_two_workers_share_the_partitions_and_decide_as_one(broker: str, tmp_path: Path) -> None:
    alone = make_settings(broker, tmp_path / "a", "w", web_port=0)
    shared = make_settings(broker, tmp_path / "b", "w", web_port=0)
    a = _start_worker(alone, tmp_path / "a" / "w")
    b1, b2 = _start_worker(shared, tmp_path / "b" / "w1"), _start_worker(shared, tmp_path / "b" / "w2")
    workers = [a, b1, b2]
    try:
        _wait_ready(workers, time.monotonic() + 60)
        outcomes = _outcomes()
        _publish(alone, outcomes)
        _publish(shared, outcomes)

        deadline = time.monotonic() + 90
        while True:
            latest_a, latest_b = _latest_qvalues(alone), _latest_qvalues(shared)
            done_a, done_b = (sum(q["n"] for q in latest.values()) for latest in (latest_a, latest_b))
            if done_a == N and done_b == N:
                break
            for w in workers:
                assert w.process.poll() is None, w.tail()
            assert time.monotonic() < deadline, f"processed {done_a} (A) and {done_b} (B) of {N}"
            time.sleep(1.0)
        # Both B workers held partitions and did part of the work.
        shares = [b1.consumed(), b2.consumed()]
        assert all(w.readyz().get("assigned_partitions", 0) > 0 for w in (b1, b2)), [b1.readyz(), b2.readyz()]
    finally:
        for w in workers:
            w.stop()
    assert all(share > 0 for share in shares), shares
    assert len(latest_a) == AGENTS * TASKS * VARIANTS
    assert latest_b == latest_a

    def decisions(s: Settings) -> set[tuple[str, str, str, str]]:
        return {
            (r["agent_name"], r["task_type"], r["variant_id"], r["decision"]) for r in _read_all(s, "crl.decisions")
        }

    def rollbacks(s: Settings) -> set[tuple[str, str, str, str]]:
        return {
            (r["agent_name"], r["task_type"], r["from_variant"], r["to_variant"])
            for r in _read_all(s, "control.rollbacks")
        }

    decided, rolled = decisions(alone), rollbacks(alone)
    # The scenario is not trivial: variants were promoted and degraded ones rolled back.
    assert any(d[3] == "auto_apply" for d in decided) and rolled
    assert decisions(shared) == decided
    assert rollbacks(shared) == rolled
    print(
        f"B workers consumed {shares[0]:.0f} and {shares[1]:.0f} events; {len(decided)} decisions, {len(rolled)} rollbacks"
    )
