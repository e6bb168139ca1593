"""End to end: ``reverify worker`` + ``reverify notify`` on the embedded broker; a degradation fed through the SDK
reaches a webhook as a firing alert for the agent, in Alertmanager's format, then its resolve. ``reverify up``
delivers too when receivers are declared.

The worker runs an assurance case on the agent's success rate (``for = "0s"``); outcome patterns are
deterministic (exactly 9 of 10 succeed, then 5 of 10) so the verdicts do not depend on luck.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer
from reverify.processors.base import make_alert
from reverify.schemas import encode
from reverify.streams.client import AgentEvents
from reverify.streams.embedded import free_port

from tests.e2e.conftest import e2e_settings
from tests.receivers import RecordingServer
from tests.support import settings_env


@pytest.fixture
def hook() -> Iterator[RecordingServer]:
    server = RecordingServer()
    yield server
    server.close()


def config(url: str) -> str:
    return f"""
[[assurance]]
name = "checkout_success"
claim = "Checkout keeps succeeding"
evidence = "success_rate"
scope = {{ agent_name = "checkout" }}
window = "20 events"
threshold_min = 0.80
resolve_min = 0.85
for = "0s"
severity = "critical"
min_evidence = 10

[[receivers]]
name = "ops"
webhook = "{url}"
hmac_secret = "e2e-secret"

[[routes]]
match = {{ agent_name = "checkout" }}
receiver = "ops"
group_by = ["agent_name"]

[notify]
group_wait = "0s"
group_interval = "1s"
console_url = "http://console.test:6066"
"""


def outcomes(events: AgentEvents, count: int, successes_per_10: int) -> None:
    for i in range(count):
        events.outcome(
            agent_name="checkout", task_type="pay", variant_id="v1", success=i % 10 < successes_per_10, reward=0.9
        )
    assert events.flush(30) == 0


def test_a_degradation_reaches_the_webhook_as_an_alertmanager_alert(
    worker_factory: Any, e2e: Any, hook: RecordingServer
) -> None:
    worker = worker_factory(config(hook.url))
    settings = worker.settings
    check = e2e.run_cli(settings, "notify", "check", "--json")
    assert check.returncode == 0, check.stderr
    notify = e2e.spawn(settings, [e2e.REVERIFY, "notify"])
    try:
        with AgentEvents(settings=settings) as events:
            outcomes(events, 20, 9)
            outcomes(events, 20, 5)  # the 20-event window falls to 0.5
            [firing] = hook.wait(lambda rs: len(rs) >= 1, timeout=60)
            body = firing.json()
            assert (body["version"], body["status"], body["receiver"]) == ("4", "firing", "ops")
            assert body["groupLabels"] == {"agent_name": "checkout"}
            alert = next(a for a in body["alerts"] if a["labels"].get("case") == "checkout_success")
            labels, annotations = alert["labels"], alert["annotations"]
            assert (labels["alertname"], labels["agent_name"], labels["severity"]) == (
                "assurance",
                "checkout",
                "critical",
            )
            assert float(annotations["value"]) < 0.8 and annotations["threshold"] == "0.8"
            assert annotations["console"].startswith("http://console.test:6066/alerts?fingerprint=")
            assert alert["endsAt"] == "0001-01-01T00:00:00Z" and alert["startsAt"].endswith("Z")
            expected = "sha256=" + hmac.new(b"e2e-secret", firing.body, hashlib.sha256).hexdigest()
            assert firing.headers["X-Reverify-Signature"] == expected

            outcomes(events, 20, 10)  # recovered: 1.0 >= resolve_min
            hook.wait(
                lambda rs: any(
                    a["status"] == "resolved" and a["fingerprint"] == alert["fingerprint"]
                    for r in rs
                    for a in r.json()["alerts"]
                ),
                timeout=60,
            )
    finally:
        code, stderr = e2e.stop(notify)
    assert "Traceback" not in stderr, stderr


def test_up_delivers_when_receivers_are_declared(broker: str, tmp_path: Path, e2e: Any, hook: RecordingServer) -> None:
    settings = e2e_settings(broker, tmp_path, f'[[receivers]]\nname = "ops"\nwebhook = "{hook.url}"\n\n'
                            '[notify]\ngroup_wait = "0s"\n')  # fmt: skip
    env = settings_env(settings, REVERIFY_METRICS_PORT=str(free_port()))
    log = tmp_path / "up.log"
    with open(log, "ab") as out:
        up = subprocess.Popen([e2e.REVERIFY, "up"], cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 90
        while "notifying ops" not in log.read_text():
            assert up.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.2)
        now = int(time.time() * 1000)
        alert = make_alert(source="circuit", status="firing", severity="critical", title="payments circuit open",
                           labels={"agent_name": "payer", "component": "gateway"}, ts=now, starts_at=now, cause=now,
                           evidence={"value": 5, "threshold": 3, "sample_size": 5}).value  # fmt: skip
        producer = Producer(settings.kafka_config())
        producer.produce(settings.topic("alerts"), encode("Alert", alert), alert["fingerprint"].encode())
        assert producer.flush(20) == 0
        [request] = hook.wait(lambda rs: len(rs) == 1, timeout=60)
        assert request.json()["alerts"][0]["labels"]["agent_name"] == "payer"
    finally:
        os.kill(up.pid, signal.SIGTERM)
        code = up.wait(40)
    assert code == 0 and "stopped." in log.read_text(), log.read_text()[-3000:]
