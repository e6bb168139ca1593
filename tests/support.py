"""Helpers shared by the test modules: settings on a fresh topic prefix, worker subprocesses, reading a topic.

Imported as ``from tests.support import ...`` (``tests`` and its test folders are packages). The scripts in
``tests/bench`` run by hand and do not import it.
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
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaError, TopicPartition
from confluent_kafka.admin import AdminClient
from reverify.schemas import decode
from reverify.streams.client import AgentEvents
from reverify.streams.embedded import free_port
from reverify.streams.settings import Settings
from reverify.streams.topics import ensure_topics


def make_settings(broker: str, tmp: Path, tag: str, path: Path | None = None, web_port: int | None = None) -> Settings:
    """Settings on a fresh topic prefix of ``broker`` (its topics created), with data and ClickHouse under ``tmp``.

    Parameters
    ----------
    broker : str
        Bootstrap address of the broker.
    tmp : Path
        The data directory; the embedded ClickHouse lives in ``tmp / "clickhouse"``.
    tag : str
        First letter(s) of the topic prefix, naming the kind of test that made it.
    path : Path, optional
        A reverify.toml to read; none by default.
    web_port : int, optional
        The web port; a free one by default.
    """
    env = {
        "REVERIFY_KAFKA": broker,
        "REVERIFY_TOPIC_PREFIX": f"{tag}{uuid.uuid4().hex[:8]}.",
        "REVERIFY_CLICKHOUSE": f"chdb://{tmp / 'clickhouse'}",
        "REVERIFY_DATA_DIR": str(tmp),
        "REVERIFY_METRICS_PORT": "0",
        "REVERIFY_WEB_PORT": str(free_port() if web_port is None else web_port),
    }
    s = Settings.load(env=env, path=path)
    ensure_topics(AdminClient(s.kafka_config()), prefix=s.topic_prefix, partitions=s.partitions)
    return s


def settings_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The ``REVERIFY_*`` variables that reproduce ``settings`` in another process, then those in ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("REVERIFY_")}
    env.update(
        {
            "REVERIFY_KAFKA": settings.kafka,
            "REVERIFY_TOPIC_PREFIX": settings.topic_prefix,
            "REVERIFY_WEB_PORT": str(settings.web_port),
            "REVERIFY_METRICS_PORT": str(settings.metrics_port),
            "REVERIFY_DATA_DIR": settings.data_dir,
            "REVERIFY_CLICKHOUSE": settings.clickhouse,
            "PYTHONUNBUFFERED": "1",
        }
    )
    if settings.config_path:
        env["REVERIFY_CONFIG"] = settings.config_path
    env.update(extra)
    return env


def stop_process(process: subprocess.Popen[Any], sig: int = signal.SIGTERM, grace: float = 15.0) -> None:
    """Send ``sig`` by PID unless the process has ended; SIGKILL if it has not stopped within ``grace`` seconds."""
    if process.poll() is None:
        os.kill(process.pid, sig)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(10)


class WorkerProcess:
    """A worker subprocess run with ``settings``, its output appended to ``worker.log`` in their data dir.

    Parameters
    ----------
    settings : Settings
        Passed to the worker as ``REVERIFY_*`` variables: its topics, data dir, web and metrics ports.
    command : sequence of str
        The command line; ``python -m reverify.streams worker`` by default.
    **extra : str
        More environment variables, such as processor settings (``REVERIFY_WORKER__STATE_INTERVAL``).
    """

    def __init__(
        self,
        settings: Settings,
        command: Sequence[str] = (sys.executable, "-m", "reverify.streams", "worker"),
        **extra: str,
    ) -> None:
        self.settings = settings
        self.log = Path(settings.data_dir) / "worker.log"
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                list(command),
                env=settings_env(settings, **extra),
                cwd=settings.data_dir,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

    def tail(self) -> str:
        """The last 3,000 characters of the log."""
        return self.log.read_text()[-3000:]

    def readyz(self) -> dict[str, Any]:
        """The worker's ``/readyz`` answer (also when 503, while rebalancing), or ``{}`` if it does not answer."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.settings.web_port}/readyz", timeout=1.0) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as exc:  # 503 while rebalancing, with the same body
            return json.loads(exc.read() or b"{}")
        except (OSError, ValueError):
            return {}

    def consumed(self) -> float:
        """Input events the worker consumed, from its Prometheus metrics (0 while they do not answer)."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.settings.metrics_port}/metrics", timeout=2) as r:
                text = r.read().decode()
        except OSError:
            return 0.0
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("reverify_events_consumed_total{")
        )

    def stop(self) -> None:
        """SIGTERM by PID, SIGKILL if it does not stop within 15 s."""
        stop_process(self.process)


def read_all(settings: Settings, topic: str, *, raw: bool = False) -> list[tuple[int, int, Any]]:
    """Every record of logical ``topic`` so far as ``(partition, offset, record)``, in the order they were read
    (``raw``: the value's bytes, not decoded).

    Reads from offset 0 of every partition until each reports its end (60 s at the most), outside any group.
    """
    physical = settings.topic(topic)
    consumer = Consumer(
        settings.kafka_config(
            **{"group.id": f"read-{uuid.uuid4().hex}", "enable.auto.commit": False, "enable.partition.eof": True}
        )
    )
    try:
        parts = consumer.list_topics(physical, timeout=10).topics[physical].partitions
        consumer.assign([TopicPartition(physical, p, 0) for p in parts])
        out: list[tuple[int, int, dict[str, Any]]] = []
        at_end: set[int] = set()
        deadline = time.monotonic() + 60
        while len(at_end) < len(parts) and time.monotonic() < deadline:
            for msg in consumer.consume(1000, 0.5):
                if msg.error() is not None:
                    if msg.error().code() == KafkaError._PARTITION_EOF:
                        at_end.add(msg.partition())
                        continue
                    raise RuntimeError(msg.error())
                out.append((msg.partition(), msg.offset(), msg.value() if raw else decode(msg.value())[1]))
        return out
    finally:
        consumer.close()


def publish_feature(
    events: AgentEvents, agent: str, feature: str, rng: random.Random, start: int, count: int, mean: float
) -> None:
    """Outcomes ``start`` to ``start + count - 1`` of ``agent``, each with ``feature`` drawn from N(mean, 10).

    Event times are a second apart from 1,700,000,000,000 ms; nothing is flushed.
    """
    for i in range(start, start + count):
        events.outcome(
            agent_name=agent,
            task_type="t",
            variant_id="v1",
            success=True,
            reward=0.9,
            features={feature: rng.gauss(mean, 10.0)},
            ts=1_700_000_000_000 + 1000 * i,
        )


def uninterrupted_qvalues(settings: Settings) -> dict[str, dict[str, Any]]:
    """The latest QValue per arm of an uninterrupted run over ``agent.outcomes``: learning loops fed in partition
    order in this process, the worker's decisions without a crash, a restart or a rebalance."""
    from reverify.processors.learning import LearningLoop, LearningSettings

    loops: dict[tuple[str, str], LearningLoop] = {}
    latest: dict[str, dict[str, Any]] = {}
    for partition, offset, record in sorted(read_all(settings, "agent.outcomes"), key=lambda r: r[:2]):
        key = (record["agent_name"], record["task_type"])
        loop = loops.setdefault(key, LearningLoop(*key, LearningSettings(publish_interval_ms=0)))
        for e in loop.on_outcome(record, ("agent.outcomes", partition, offset)):
            if e.record_type == "QValue":
                latest[e.key] = e.value
    return latest


def latest_qvalues(settings: Settings) -> tuple[dict[str, dict[str, Any]], int]:
    """The last QValue per arm on ``crl.qvalues``, and how many QValues repeat an earlier one's event id (replays)."""
    latest: dict[str, dict[str, Any]] = {}
    per_event: dict[str, int] = {}
    for _p, _o, record in read_all(settings, "crl.qvalues"):
        latest[f"{record['agent_name']}/{record['task_type']}/{record['variant_id']}"] = record
        per_event[record["event_id"]] = per_event.get(record["event_id"], 0) + 1
    return latest, sum(c - 1 for c in per_event.values())
