"""End-to-end fixtures: a real ``reverify worker`` subprocess, the CLI as a subprocess, topic followers.

A worker takes several seconds to start and join its group, so each test module
shares one (module-scoped ``worker``) on its own topic prefix, and every test
uses its own agent names. The worker is configured only through ``REVERIFY_*``
variables, as a user would run it, and stopped by its PID.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, TopicPartition
from reverify.schemas import DecodeError, decode
from reverify.streams.settings import Settings

from tests.support import WorkerProcess, make_settings, settings_env, stop_process

REVERIFY = str(Path(sys.executable).with_name("reverify"))


def e2e_settings(broker: str, tmp: Path, config: str | None = None) -> Settings:
    """Settings on their own topic prefix (topics created), with ``config`` as the reverify.toml when given."""
    path = None
    if config is not None:
        path = tmp / "reverify.toml"
        path.write_text(config)
    return make_settings(broker, tmp, "e", path)


def run_cli(settings: Settings, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """``reverify ARGS`` in a subprocess with the test's settings, from the data dir (no stray reverify.toml)."""
    return subprocess.run(
        [REVERIFY, *args],
        env=settings_env(settings),
        cwd=settings.data_dir,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start_worker(settings: Settings, timeout: float = 90.0) -> WorkerProcess:
    """Start ``reverify worker`` and wait until its ``/readyz`` says ready."""
    worker = WorkerProcess(settings, command=(REVERIFY, "worker"))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if worker.process.poll() is not None:
            raise RuntimeError(f"the worker exited with {worker.process.returncode}:\n{worker.tail()}")
        if worker.readyz().get("ready"):
            return worker
        time.sleep(0.2)
    worker.stop()
    raise RuntimeError(f"the worker was not ready within {timeout:.0f}s:\n{worker.tail()}")


@pytest.fixture(scope="module")
def worker_factory(broker: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., WorkerProcess]]:
    """Start workers for this module (``factory(config_toml=None)``); all are stopped by PID at the end."""
    started: list[WorkerProcess] = []

    def factory(config: str | None = None) -> WorkerProcess:
        settings = e2e_settings(broker, tmp_path_factory.mktemp("e2e"), config)
        w = start_worker(settings)
        started.append(w)
        return w

    yield factory
    for w in started:
        w.stop()


@dataclass
class Follower:
    """Reads one topic from the beginning and keeps up with it: ``wait(predicate)`` returns the first match.

    ``seen`` holds ``(log_time_seconds, record_type, record)`` in arrival order, per partition order.
    """

    settings: Settings
    topic: str
    seen: list[tuple[float, str, dict[str, Any]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        physical = self.settings.topic(self.topic)
        self._consumer = Consumer(
            self.settings.kafka_config(**{"group.id": f"e2e-{uuid.uuid4().hex}", "enable.auto.commit": False})
        )
        meta = self._consumer.list_topics(physical, timeout=10).topics[physical]
        self._consumer.assign([TopicPartition(physical, p, 0) for p in meta.partitions])

    def poll(self, timeout: float = 0.2) -> None:
        for msg in self._consumer.consume(1000, timeout):
            if msg.error() is not None:
                if msg.error().code() != KafkaError._PARTITION_EOF:
                    raise RuntimeError(msg.error())
                continue
            try:
                record_type, record = decode(msg.value())
            except DecodeError:
                continue
            self.seen.append((msg.timestamp()[1] / 1000.0, record_type, record))

    def matching(self, predicate: Callable[[dict[str, Any]], bool]) -> list[tuple[float, dict[str, Any]]]:
        return [(t, r) for t, _type, r in self.seen if predicate(r)]

    def wait(self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 30.0) -> tuple[float, dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            found = self.matching(predicate)
            if found:
                return found[0]
            if time.monotonic() > deadline:
                last = [r for _t, _type, r in self.seen[-3:]]
                raise AssertionError(
                    f"nothing matching on {self.topic} within {timeout:.0f}s; last of {len(self.seen)}: {last}"
                )
            self.poll()

    def close(self) -> None:
        self._consumer.close()


class LineReader:
    """Collects the lines a subprocess prints, with the wall time each arrived, on a background thread."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.lines: list[tuple[float, str]] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self._lock:
                self.lines.append((time.time(), line.rstrip("\n")))

    def snapshot(self) -> list[tuple[float, str]]:
        with self._lock:
            return list(self.lines)

    def wait(self, predicate: Callable[[str], bool], timeout: float = 30.0) -> tuple[float, str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for t, line in self.snapshot():
                if predicate(line):
                    return t, line
            if self.process.poll() is not None and not self._thread.is_alive():
                break
            time.sleep(0.02)
        raise AssertionError(f"no matching line within {timeout:.0f}s; last lines: {self.snapshot()[-5:]}")


def spawn(settings: Settings, args: list[str]) -> subprocess.Popen[str]:
    """A long-running subprocess (``reverify alerts tail``, a router probe) with the test's settings."""
    return subprocess.Popen(
        args,
        env=settings_env(settings),
        cwd=settings.data_dir,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )


def stop(process: subprocess.Popen[str], sig: int = signal.SIGTERM) -> tuple[int, str]:
    """Send ``sig`` by PID and return ``(exit code, stderr)``; SIGKILL after 10 s."""
    stop_process(process, sig, grace=10.0)
    stderr = process.stderr.read() if process.stderr else ""
    return process.returncode, stderr


ROUTER_PROBE = """
import sys, time
from reverify.streams.client import VariantRouter
agent, task = sys.argv[1], sys.argv[2]
with VariantRouter() as router:
    while True:
        print(time.time(), router.variant_for(agent, task, "none"), router.is_paused(agent),
              router.degradation_level(agent), flush=True)
        time.sleep(0.05)
"""


def router_probe(settings: Settings, agent: str, task: str) -> tuple[subprocess.Popen[str], LineReader]:
    """A VariantRouter in another process, printing ``time variant paused level`` every 50 ms."""
    process = spawn(settings, [sys.executable, "-c", ROUTER_PROBE, agent, task])
    return process, LineReader(process)


class E2E:
    """The helpers above, handed to tests as the ``e2e`` fixture."""

    Follower = Follower
    LineReader = LineReader
    run_cli = staticmethod(run_cli)
    spawn = staticmethod(spawn)
    stop = staticmethod(stop)
    router_probe = staticmethod(router_probe)
    REVERIFY = REVERIFY


@pytest.fixture(scope="session")
def e2e() -> type[E2E]:
    """Helpers: ``e2e.Follower``, ``e2e.run_cli``, ``e2e.router_probe``, ``e2e.spawn``, ``e2e.stop``."""
    return E2E
