"""End to end: ``reverify worker`` + ``reverify notify`` on the embedded broker; a degradation fed through the SDK
reaches a webhook as a firing alert for the agent, in Alertmanager's format, then its resolve.

The worker runs an assurance case on the agent's success rate (``for = "0s"``); outcome patterns are
deterministic (exactly 9 of 10 succeed, then 5 of 10) so the verdicts do not depend on luck.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterator
from typing import Any

import pytest
from reverify.streams.client import AgentEvents

from tests.receivers import RecordingServer


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
