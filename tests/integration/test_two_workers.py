"""Two ``reverify worker`` processes on the same topics share the partitions and decide exactly as one does.

The same 10,000 outcomes go to two topic prefixes: one worker serves prefix A alone, two workers share prefix
B. Every learning decision depends only on the order of one agent's outcomes, and outcomes are keyed by agent,
so however B's partitions are split (and moved while the second worker joins), the latest QValue of every arm,
the decisions and the rollbacks must be those of A. Both B workers must have owned partitions and consumed
outcomes, or the test would only compare one worker with another.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, TopicPartition
from confluent_kafka.admin import AdminClient

from schemas import decode
from streams.client import AgentEvents
from streams.embedded import free_port
from streams.settings import Settings
from streams.topics import ensure_topics

pytestmark = pytest.mark.integration

N = 10_000
AGENTS, TASKS, VARIANTS = 12, 2, 3


def _prefix_settings(broker: str, tmp: Path) -> Settings:
    """Settings on a fresh topic prefix of the shared broker, its topics created."""
    env = {
        "REVERIFY_KAFKA": broker,
        "REVERIFY_TOPIC_PREFIX": f"w{uuid.uuid4().hex[:8]}.",
        "REVERIFY_CLICKHOUSE": f"chdb://{tmp / 'clickhouse'}",
        "REVERIFY_DATA_DIR": str(tmp),
        "REVERIFY_METRICS_PORT": "0",
        "REVERIFY_WEB_PORT": "0",
    }
    s = Settings.load(env=env, path=None)
    ensure_topics(AdminClient(s.kafka_config()), prefix=s.topic_prefix, partitions=s.partitions)
    return s


class WorkerProcess:
    """One ``python -m streams worker`` on a topic prefix, with its own data dir, web and metrics ports."""

    def __init__(self, settings: Settings, data_dir: Path) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        self.web_port, self.metrics_port = free_port(), free_port()
        self.log = data_dir / "worker.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("REVERIFY_")}
        env.update(
            {
                "REVERIFY_KAFKA": settings.kafka,
                "REVERIFY_TOPIC_PREFIX": settings.topic_prefix,
                "REVERIFY_WEB_PORT": str(self.web_port),
                "REVERIFY_METRICS_PORT": str(self.metrics_port),
                # Separate data dirs: each worker keeps its own local table stores.
                "REVERIFY_DATA_DIR": str(data_dir),
                "REVERIFY_CLICKHOUSE": f"chdb://{data_dir / 'clickhouse'}",
                "PYTHONUNBUFFERED": "1",
            }
        )
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "streams", "worker"],
                env=env,
                cwd=data_dir,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

    def tail(self) -> str:
        return self.log.read_text()[-3000:]

    def readyz(self) -> dict[str, Any]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.web_port}/readyz", timeout=1.0) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as exc:  # 503 while rebalancing, with the same body
            return json.loads(exc.read() or b"{}")
        except (OSError, ValueError):
            return {}

    def consumed(self) -> float:
        """Input events this worker consumed, from its Prometheus metrics."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=2) as r:
                text = r.read().decode()
        except OSError:
            return 0.0
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("reverify_events_consumed_total{")
        )

    def stop(self) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait(10)


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
    physical = settings.topic(topic)
    consumer = Consumer(
        settings.kafka_config(
            **{"group.id": f"two-{uuid.uuid4().hex}", "enable.auto.commit": False, "enable.partition.eof": True}
        )
    )
    try:
        parts = consumer.list_topics(physical, timeout=10).topics[physical].partitions
        consumer.assign([TopicPartition(physical, p, 0) for p in parts])
        by_partition: dict[int, list[tuple[int, dict[str, Any]]]] = {p: [] for p in parts}
        at_end: set[int] = set()
        deadline = time.monotonic() + 60
        while len(at_end) < len(parts) and time.monotonic() < deadline:
            for msg in consumer.consume(1000, 0.5):
                if msg.error() is not None:
                    if msg.error().code() == KafkaError._PARTITION_EOF:
                        at_end.add(msg.partition())
                        continue
                    raise RuntimeError(msg.error())
                by_partition[msg.partition()].append((msg.offset(), decode(msg.value())[1]))
        return [r for p in sorted(by_partition) for _o, r in sorted(by_partition[p], key=lambda x: x[0])]
    finally:
        consumer.close()


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
    alone, shared = _prefix_settings(broker, tmp_path / "a"), _prefix_settings(broker, tmp_path / "b")
    a = WorkerProcess(alone, tmp_path / "a" / "w")
    b1, b2 = WorkerProcess(shared, tmp_path / "b" / "w1"), WorkerProcess(shared, tmp_path / "b" / "w2")
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
