"""``reverify worker``, ``reverify sink`` and ``reverify up`` each start in an empty directory, as in a container or
a systemd unit: the data directory (``./.reverify`` by default) is created with its parents where it is needed.

Each runs as a subprocess against the session's broker, is seen working (ready, an outcome in its output or in
ClickHouse), and stops cleanly on SIGTERM.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from reverify.streams.client import AgentEvents
from reverify.streams.embedded import free_port
from reverify.streams.settings import Settings

from tests.support import make_settings, read_all, settings_env

REVERIFY = str(Path(sys.executable).with_name("reverify"))


class Started:
    """``reverify ARGS`` run from ``cwd`` with ``env``, its output in ``cwd.parent / out.log``."""

    def __init__(self, args: list[str], cwd: Path, env: dict[str, str]) -> None:
        self.log = cwd.parent / "out.log"
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                [REVERIFY, *args], cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )

    def wait_for(self, what: str, check: Callable[[], bool], timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            assert self.process.poll() is None, f"exited with {self.process.returncode}:\n{self.output()}"
            assert time.monotonic() < deadline, f"not {what} within {timeout:.0f}s:\n{self.output()}"
            time.sleep(0.3)

    def output(self) -> str:
        return self.log.read_text()[-4000:]

    def terminate(self) -> int:
        """SIGTERM by PID; its exit status (SIGKILL and a failure if it does not stop within 30 s)."""
        os.kill(self.process.pid, signal.SIGTERM)
        try:
            return self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
            pytest.fail(f"did not stop within 30 s of SIGTERM:\n{self.output()}")


@pytest.fixture
def settings(broker: str, tmp_path: Path) -> Settings:
    return make_settings(broker, tmp_path / "history", "a")


@pytest.fixture
def empty(tmp_path: Path) -> Path:
    (tmp_path / "empty").mkdir()
    return tmp_path / "empty"


@pytest.fixture
def started() -> Iterator[list[Started]]:
    processes: list[Started] = []
    yield processes
    for p in processes:
        if p.process.poll() is None:
            p.process.kill()
            p.process.wait(10)


def _env(settings: Settings) -> dict[str, str]:
    """The test's broker, topics and ClickHouse; free ports; no data directory (the default, ./.reverify)."""
    env = settings_env(settings, REVERIFY_METRICS_PORT=str(free_port()))
    env.pop("REVERIFY_DATA_DIR")
    return env


def _get(url: str) -> Any:
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:
            body = answer.read()
    except urllib.error.HTTPError as exc:  # /readyz answers 503 while the worker joins its group
        body = exc.read()
    except OSError:
        return None
    return json.loads(body) if url.endswith("readyz") else body.decode()


def _ready(settings: Settings) -> Callable[[], bool]:
    return lambda: bool((_get(f"http://127.0.0.1:{settings.web_port}/readyz") or {}).get("ready"))


def _publish_outcome(settings: Settings, agent: str) -> None:
    with AgentEvents(settings=settings) as events:
        events.outcome(agent_name=agent, task_type="t", variant_id="v0", success=True, reward=1.0)
        assert events.flush(30) == 0


def test_worker_starts_in_an_empty_directory(settings: Settings, empty: Path, started: list[Started]) -> None:
    worker = Started(["worker"], empty, _env(settings))
    started.append(worker)
    worker.wait_for("ready", _ready(settings))
    assert (empty / ".reverify" / "faust").is_dir()
    _publish_outcome(settings, "anywhere-worker")
    worker.wait_for(
        "applying outcomes",
        lambda: any(r["agent_name"] == "anywhere-worker" for _p, _o, r in read_all(settings, "crl.qvalues")),
    )
    assert worker.terminate() == 0, worker.output()


def test_sink_starts_in_an_empty_directory(settings: Settings, empty: Path, started: list[Started]) -> None:
    env = _env(settings)
    env["REVERIFY_CLICKHOUSE"] = f"chdb://{empty.parent / 'deep' / 'er' / 'clickhouse'}"  # parents made too
    metrics = f"http://127.0.0.1:{env['REVERIFY_METRICS_PORT']}/metrics"
    sink = Started(["sink", "--max-delay", "0.2"], empty, env)
    started.append(sink)
    sink.wait_for("running", lambda: "sink: running" in sink.output())
    _publish_outcome(settings, "anywhere-sink")
    sink.wait_for(
        "storing rows", lambda: 'reverify_sink_rows_total{table="agent_outcomes"} 1.0' in (_get(metrics) or "")
    )
    assert sink.terminate() == 0, sink.output()
    assert "sink: stopped rows=1 " in sink.output()


def test_up_starts_in_an_empty_directory(settings: Settings, empty: Path, started: list[Started]) -> None:
    env = _env(settings)
    up = Started(["up"], empty, env)
    started.append(up)
    up.wait_for("ready", _ready(settings))
    assert (empty / ".reverify" / "up.json").is_file() and (empty / ".reverify" / "faust").is_dir()
    _publish_outcome(settings, "anywhere-up")

    def stored() -> bool:
        sql = "SELECT count() FROM agent_outcomes WHERE agent_name = 'anywhere-up'"
        query = subprocess.run(
            [REVERIFY, "query", "--sql", sql, "--json"], cwd=empty, env=env, capture_output=True, text=True, timeout=60
        )
        return query.returncode == 0 and json.loads(query.stdout)["rows"] == [[1]]

    up.wait_for("storing the outcome in ClickHouse", stored)
    assert up.terminate() == 0, up.output()
    assert "stopped." in up.output() and not (empty / ".reverify" / "up.json").exists()


def test_ctrl_c_stops_up_demo_cleanly(settings: Settings, empty: Path, started: list[Started]) -> None:
    """Ctrl-C (SIGINT) on ``reverify up --demo`` once it runs: exit 0, no traceback, no process of it left; and
    ``reverify migrate`` meanwhile is the user's mistake (``up`` migrated its database at start): exit 2, one line."""
    env = _env(settings)
    env["REVERIFY_KAFKA"] = f"127.0.0.1:{free_port()}"  # a broker of its own, which it must stop too
    up = Started(["up", "--demo"], empty, env)
    started.append(up)
    up.wait_for("ready", _ready(settings))
    up.wait_for("the demo fleet at work", lambda: b"demo fleet publishing" in up.log.read_bytes())
    migrate = subprocess.run([REVERIFY, "migrate"], cwd=empty, env=env, capture_output=True, text=True, timeout=60)
    assert migrate.returncode == 2 and "reverify up is running" in migrate.stderr, migrate
    assert len(migrate.stderr.strip().splitlines()) == 1 and "Traceback" not in migrate.stderr
    broker_pid = int(up.output().split("embedded Tansu broker (pid ")[1].split(")")[0])
    os.kill(up.process.pid, signal.SIGINT)
    assert up.process.wait(60) == 0, up.output()
    text = up.log.read_text()
    assert "Traceback" not in text and "wakeup" not in text and "stopped." in text, text[-4000:]
    deadline = time.monotonic() + 15
    while _alive(broker_pid):
        assert time.monotonic() < deadline, f"broker {broker_pid} still running after up stopped"
        time.sleep(0.2)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"  # a zombie has stopped, only not reaped yet
