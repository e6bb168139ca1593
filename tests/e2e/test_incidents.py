"""End to end: a degradation fed through the SDK to a real ``reverify worker`` opens an incident that ends on a
verified recovery, with its MTTR in ``reverify query incidents``; with the restored variant failing too, it escalates,
and ``reverify notify`` delivers the rollback and the escalation, both naming the incident, to a webhook.

Outcomes carry the wall-clock time (the SDK's default), as in production: the worker's timer escalates by it.
"""

from __future__ import annotations

import json
import random
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from reverify.streams.client import AgentEvents
from reverify.streams.embedded import free_port

from tests.receivers import RecordingServer
from tests.support import settings_env

CONFIG = """
[incidents]
verify_min_outcomes = 20
escalate_after_ms = 8000

[[receivers]]
name = "oncall"
webhook = "{url}"

[[routes]]
match_re = {{ agent_name = "inc-.*" }}
receiver = "oncall"
group_by = ["agent_name", "incident_id"]

[notify]
group_wait = "0s"
group_interval = "1s"
"""


@pytest.fixture(scope="module")
def hook() -> Iterator[RecordingServer]:
    server = RecordingServer()
    yield server
    server.close()


@pytest.fixture(scope="module")
def worker(worker_factory: Any, hook: RecordingServer) -> Any:
    return worker_factory(CONFIG.format(url=hook.url))


def _degrade(events: AgentEvents, agent: str, rng: random.Random) -> None:
    """v1 active and healthy (v2 explored a fifth of the time), then v1 fails: the CUSUM fires within ~30."""
    for i in range(300):
        variant, p = ("v2", 0.9) if i % 5 == 4 else ("v1", 0.97)
        ok = rng.random() < p
        events.outcome(agent_name=agent, task_type="t", variant_id=variant, success=ok, reward=float(ok))
    for _ in range(60):  # paced, so that the run the detector used spans time before its alarm
        ok = rng.random() < 0.2
        events.outcome(agent_name=agent, task_type="t", variant_id="v1", success=ok, reward=float(ok))
        time.sleep(0.005)
    assert events.flush(30) == 0


def _restored(events: AgentEvents, agent: str, rng: random.Random, p: float, n: int) -> None:
    for _ in range(n):
        ok = rng.random() < p
        events.outcome(agent_name=agent, task_type="t", variant_id="v2", success=ok, reward=float(ok))
        time.sleep(0.002)
    assert events.flush(30) == 0


def _sink_rows(port: int) -> float:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as answer:
            text = answer.read().decode()
    except OSError:
        return 0.0
    line = next((x for x in text.splitlines() if x.startswith('reverify_sink_rows_total{table="crl_incidents"}')), "")
    return float(line.split()[-1]) if line else 0.0


def test_incident_resolves_verified_with_its_mttr_in_query_incidents(worker: Any, e2e: Any) -> None:
    settings, agent = worker.settings, f"inc-ok-{uuid.uuid4().hex[:6]}"
    incidents = e2e.Follower(settings, "crl.incidents")
    alerts = e2e.Follower(settings, "alerts")
    rng = random.Random(3)
    with AgentEvents(settings=settings) as events:
        _degrade(events, agent, rng)
        _, opened = incidents.wait(lambda r: r["agent_name"] == agent, timeout=60)
        assert (opened["status"], opened["to_variant"], opened["cause"]) == ("verifying", "v2", "degradation")
        assert opened["failure_started_at"] < opened["detected_at"]  # the degraded run began before the alarm
        _restored(events, agent, rng, 0.98, 150)
    _, done = incidents.wait(lambda r: r["agent_name"] == agent and r["status"] == "resolved", timeout=60)
    assert done["incident_id"] == opened["incident_id"] and done["automatic"] is True
    assert done["mttr_ms"] == done["resolved_at"] - opened["failure_started_at"] > 0
    assert done["lower_bound"] >= done["required_success_rate"] and done["outcomes"] >= 20
    _, rollback_alert = alerts.wait(lambda a: a["source"] == "rollback" and a["labels"].get("agent_name") == agent)
    assert rollback_alert["labels"]["incident_id"] == opened["incident_id"]
    assert "root cause: drift in alarm" in rollback_alert["message"]

    # The sink stores the records; `reverify query incidents --json` shows the incident with its MTTR.
    incidents.poll(1.0)
    expected = len(incidents.seen)
    port = free_port()
    sink = subprocess.Popen(
        [e2e.REVERIFY, "sink", "--max-delay", "0.2"],
        env=settings_env(settings, REVERIFY_METRICS_PORT=str(port)),
        cwd=settings.data_dir,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    deadline = time.monotonic() + 90
    while _sink_rows(port) < expected:
        assert sink.poll() is None and time.monotonic() < deadline, sink.stderr.read() if sink.stderr else ""
        time.sleep(0.3)
    code, stderr = e2e.stop(sink)
    assert code == 0, stderr
    answer = e2e.run_cli(settings, "query", "incidents", "--agent", agent, "--json")
    assert answer.returncode == 0, answer.stderr
    table = json.loads(answer.stdout)
    rows = [dict(zip(table["columns"], row, strict=True)) for row in table["rows"]]
    assert [(r["incident_id"], r["status"], r["auto"]) for r in rows] == [(done["incident_id"], "resolved", True)]
    assert rows[0]["mttr_s"] == round(done["mttr_ms"] / 1000, 1)
    assert rows[0]["detect_s"] == round(done["time_to_detect_ms"] / 1000, 1) and rows[0]["act_s"] == 0
    people = subprocess.run(
        [e2e.REVERIFY, "query", "incidents", "--agent", agent],
        env=settings_env(settings, COLUMNS="220"),
        cwd=settings.data_dir,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert people.returncode == 0 and done["incident_id"] in people.stdout and "verified" in people.stdout


def test_restored_variant_also_failing_escalates_with_a_critical_alert(
    worker: Any, e2e: Any, hook: RecordingServer
) -> None:
    settings, agent = worker.settings, f"inc-bad-{uuid.uuid4().hex[:6]}"
    incidents, alerts = e2e.Follower(settings, "crl.incidents"), e2e.Follower(settings, "alerts")
    notify = e2e.spawn(settings, [e2e.REVERIFY, "notify"])
    try:
        rng = random.Random(4)
        with AgentEvents(settings=settings) as events:
            _degrade(events, agent, rng)
            _, opened = incidents.wait(lambda r: r["agent_name"] == agent, timeout=60)
            _restored(events, agent, rng, 0.3, 40)
        # escalate_after_ms (8 s) after the alarm, the worker's timer escalates it
        _, escalated = incidents.wait(lambda r: r["agent_name"] == agent and r["status"] == "escalated", timeout=40)
        assert escalated["incident_id"] == opened["incident_id"]
        assert escalated["escalation_reason"] == "still failing" and "lower bound" in escalated["why"]
        _, alert = alerts.wait(lambda a: a["source"] == "incident" and a["labels"].get("agent_name") == agent)
        assert (alert["status"], alert["severity"]) == ("firing", "critical")
        assert alert["labels"]["incident_id"] == opened["incident_id"]

        # People hear of both: the rollback, then the escalation, each naming the incident.
        def delivered(requests: list[Any]) -> dict[str, dict[str, Any]]:
            found = {}
            for request in requests:
                for a in request.json()["alerts"]:
                    if a["labels"].get("agent_name") == agent and a["status"] == "firing":
                        found.setdefault(a["labels"]["alertname"], a)
            return found

        hook.wait(lambda rs: {"rollback", "incident"} <= delivered(rs).keys(), timeout=60)
        sent = delivered(hook.accepted())
        assert {sent[name]["labels"]["incident_id"] for name in ("rollback", "incident")} == {opened["incident_id"]}
        assert sent["incident"]["labels"]["severity"] == "critical"
        assert "still failing" in sent["incident"]["annotations"]["title"]
    finally:
        code, stderr = e2e.stop(notify)
    assert "Traceback" not in stderr, stderr
