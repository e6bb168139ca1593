"""Notifications against real local receivers (HTTP, SMTP) and the embedded broker; no mocks.

Delivery: a webhook that fails twice still gets the alert, one that hangs past the timeout gets it on the retry,
a 4xx is final; Slack, PagerDuty and the webhook's HMAC signature are checked by servers that validate what
they receive; e-mail goes through a real SMTP server. The service: alerts on the topic reach the webhook in
Alertmanager's format, firing then resolved; a receiver that never accepts ends on ``reverify.deadletter`` and
the others hear a ``notify`` alert; silences and acks are respected; ``kill -9`` mid-delivery loses nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from reverify.processors.base import make_alert
from reverify.processors.notify import parse_notify_config
from reverify.processors.notify.payloads import sample_notification
from reverify.schemas import encode
from reverify.streams.delivery import Deliverer
from reverify.streams.notify import NotifyService
from reverify.streams.settings import Settings

from tests.receivers import MailServer, RecordingServer
from tests.support import read_all, settings_env

FAST = {"timeout": 1.0, "attempts": 3, "backoff": 0.05, "group_wait": "0s", "group_interval": "1s"}
REVERIFY = str(Path(sys.executable).with_name("reverify"))


@pytest.fixture
def servers() -> Iterator[list[RecordingServer]]:
    made: list[RecordingServer] = []
    yield made
    for server in made:
        server.close()


def serve(made: list[RecordingServer], **kw: Any) -> RecordingServer:
    server = RecordingServer(**kw)
    made.append(server)
    return server


def deliverer(receivers: list[dict[str, Any]], **notify: Any) -> Deliverer:
    return Deliverer(parse_notify_config({"receivers": receivers, "notify": {**FAST, **notify}}))


def the_alert(agent: str = "enricher", status: str = "firing", **kw: Any) -> dict[str, Any]:
    now = int(time.time() * 1000)
    return make_alert(
        source=kw.pop("source", "rollback"),
        status=status,
        severity=kw.pop("severity", "critical"),
        title=f"{agent}/lookup rolled back",
        labels={"agent_name": agent, "task_type": "lookup", "statistic": "success_rate"},
        ts=now,
        starts_at=kw.pop("starts_at", now),
        cause=(status, now, uuid.uuid4().hex),
        message="success rate fell",
        evidence={"value": 0.55, "threshold": 0.8, "sample_size": 80},
        ends_at=now if status == "resolved" else None,
        acknowledged_by=kw.pop("acknowledged_by", None),
    ).value


# ---------------------------------------------------------------------------------------------- delivery


def test_a_webhook_answering_500_twice_still_gets_the_notification(servers: list[RecordingServer]) -> None:
    hook = serve(servers, script=[500, 503])
    [outcome] = deliverer([{"name": "ops", "webhook": hook.url}]).deliver(sample_notification("ops", 0))
    assert outcome.ok and outcome.attempts == 3 and outcome.answer and outcome.answer.status == 200
    keys = {r.headers["X-Reverify-Idempotency-Key"] for r in hook.requests}
    assert len(hook.requests) == 3 and len(keys) == 1  # every retry carries the same key


def test_a_webhook_hanging_past_the_timeout_gets_it_on_the_retry(servers: list[RecordingServer]) -> None:
    hook = serve(servers, script=[("hang", 2.5)])
    [outcome] = deliverer([{"name": "ops", "webhook": hook.url}], timeout=0.5).deliver(sample_notification("ops", 0))
    assert outcome.ok and outcome.attempts == 2
    assert "no answer" in outcome.errors[0] and "within 0.5s" in outcome.errors[0]


def test_a_4xx_is_final_and_the_budget_is_bounded(servers: list[RecordingServer]) -> None:
    rejecting, broken = serve(servers, default=400), serve(servers, default=500)
    d = deliverer([{"name": "a", "webhook": rejecting.url}, {"name": "b", "webhook": broken.url}])
    [rejected] = d.deliver(sample_notification("a", 0))
    [spent] = d.deliver(sample_notification("b", 0))
    assert (rejected.ok, rejected.attempts, len(rejecting.requests)) == (False, 1, 1)
    assert "HTTP 400" in rejected.reason
    assert (spent.ok, spent.attempts, len(broken.requests)) == (False, 3, 3)


def test_webhooks_are_signed_with_hmac_sha256_of_the_body(servers: list[RecordingServer]) -> None:
    def verify(headers: dict[str, str], body: bytes) -> str | None:
        expected = "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
        return None if hmac.compare_digest(headers.get("X-Reverify-Signature", ""), expected) else "bad signature"

    hook = serve(servers, check=verify)
    [outcome] = deliverer([{"name": "ops", "webhook": hook.url, "hmac_secret": "s3cret"}]).deliver(
        sample_notification("ops", 0)
    )
    assert outcome.ok, outcome.reason
    assert hook.requests[0].json()["version"] == "4"


def slack_problems(headers: dict[str, str], body: bytes) -> str | None:
    """What Slack's incoming webhooks would refuse: no text, blocks of unknown types, over-long texts."""
    msg = json.loads(body)
    if not isinstance(msg.get("text"), str) or not msg["text"]:
        return "missing_text"
    for block in msg.get("blocks", []):
        if block.get("type") not in ("header", "section", "context", "divider"):
            return "invalid_blocks"
        if block["type"] == "header" and len(block["text"]["text"]) > 150:
            return "invalid_blocks: header too long"
        if block["type"] == "section" and len(block["text"]["text"]) > 3000:
            return "invalid_blocks: section too long"
    return None


def pagerduty_problems(headers: dict[str, str], body: bytes) -> str | None:
    """What PagerDuty's Events API v2 answers 400 to (its documented required fields)."""
    event = json.loads(body)
    if headers.get("Content-Type") != "application/json":
        return "Content-Type must be application/json"
    if not event.get("routing_key") or event.get("event_action") not in ("trigger", "acknowledge", "resolve"):
        return "routing_key and event_action are required"
    if event["event_action"] != "trigger":
        return None if event.get("dedup_key") else "dedup_key is required"
    payload = event.get("payload") or {}
    if not all(payload.get(k) for k in ("summary", "source", "severity")):
        return "payload.summary, payload.source and payload.severity are required"
    if payload["severity"] not in ("critical", "error", "warning", "info") or len(payload["summary"]) > 1024:
        return "invalid severity or summary"
    return None


def test_slack_and_pagerduty_accept_what_they_are_sent(servers: list[RecordingServer]) -> None:
    slack, pd = serve(servers, check=slack_problems), serve(servers, check=pagerduty_problems)
    d = deliverer(
        [
            {"name": "chat", "slack": slack.url},
            {"name": "pager", "pagerduty_routing_key": "R0UT1NG", "pagerduty_url": pd.url},
        ]
    )
    assert all(o.ok for o in d.deliver(sample_notification("chat", 0))), slack.requests
    assert all(o.ok for o in d.deliver(sample_notification("pager", 0))), pd.requests
    assert pd.requests[0].json()["event_action"] == "trigger"
    assert "Test notification" in slack.requests[0].json()["text"]


def test_email_goes_through_a_real_smtp_server() -> None:
    mail = MailServer()
    try:
        cfg = parse_notify_config({
            "receivers": [{"name": "oncall", "email": ["oncall@example.com", "lead@example.com"]}],
            "smtp": {"host": "127.0.0.1", "port": mail.port, "sender": "reverify@example.com"}, "notify": FAST,
        })  # fmt: skip
        [outcome] = Deliverer(cfg).deliver(sample_notification("oncall", 0))
        assert outcome.ok, outcome.reason
        [(to, msg)] = mail.messages
        assert to == ["oncall@example.com", "lead@example.com"]
        assert msg["Subject"].startswith("[FIRING:1]") and msg["X-Reverify-Idempotency-Key"]
        assert "Test notification from reverify" in msg.get_payload()
    finally:
        mail.close()


# ---------------------------------------------------------------------------------------------- the service


def publish(settings: Settings, topic: str, records: list[tuple[str, str, dict[str, Any]]]) -> None:
    producer = Producer(settings.kafka_config(**{"partitioner": "murmur2_random"}))
    for key, record_type, record in records:
        producer.produce(settings.topic(topic), encode(record_type, record), key.encode())
    assert producer.flush(20) == 0


def publish_alerts(settings: Settings, *alerts: dict[str, Any]) -> None:
    publish(settings, "alerts", [(a["fingerprint"], "Alert", a) for a in alerts])


class Running:
    """A :class:`NotifyService` on a thread of the test process."""

    def __init__(self, settings: Settings, sections: dict[str, Any]) -> None:
        self.stop = threading.Event()
        self.service = NotifyService(settings, parse_notify_config(sections), self.stop)
        self.thread = threading.Thread(target=self.service.run, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(20)


def committed(settings: Settings, group: str = "reverify-notify") -> int:
    """Offsets the notify group committed on ``alerts``, summed over partitions."""
    topic = settings.topic("alerts")
    consumer = Consumer(settings.kafka_config(**{"group.id": settings.topic_prefix + group}))
    try:
        parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        return sum(max(0, tp.offset) for tp in consumer.committed([TopicPartition(topic, p) for p in parts], 10))
    finally:
        consumer.close()


def wait_for(predicate: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_alerts_reach_the_webhook_firing_then_resolved_and_offsets_follow(
    settings: Settings, servers: list[RecordingServer]
) -> None:
    hook = serve(servers)
    run = Running(settings, {"receivers": [{"name": "ops", "webhook": hook.url}], "notify": FAST,
                             "routes": [{"receiver": "ops", "group_by": ["agent_name"]}]})  # fmt: skip
    try:
        firing = the_alert("enricher")
        publish_alerts(settings, firing)
        [request] = hook.wait(lambda rs: len(rs) == 1)
        body = request.json()
        assert (body["version"], body["status"], body["receiver"]) == ("4", "firing", "ops")
        assert body["groupKey"] == 'routes[0]:{agent_name="enricher"}'
        [a] = body["alerts"]
        assert a["labels"]["agent_name"] == "enricher" and a["labels"]["alertname"] == "rollback"
        assert a["fingerprint"] == firing["fingerprint"] and a["annotations"]["evidence"].startswith("value 0.55")
        wait_for(lambda: committed(settings) == 1)
        publish_alerts(settings, the_alert("enricher", "resolved", starts_at=firing["starts_at"]))
        requests = hook.wait(lambda rs: len(rs) == 2)
        assert requests[1].json()["status"] == "resolved"
        wait_for(lambda: committed(settings) == 2)
    finally:
        run.close()


def test_group_wait_interval_and_repeat_pace_what_a_real_webhook_receives(
    settings: Settings, servers: list[RecordingServer]
) -> None:
    """Alertmanager's timers, seconds instead of minutes: a new group waits ``group_wait`` and sends its alerts
    together; a change waits ``group_interval`` after the last notification; nothing new, ``repeat_interval``."""
    hook = serve(servers)
    timers = {"group_wait": "2s", "group_interval": "3s", "repeat_interval": "5s"}
    run = Running(settings, {"receivers": [{"name": "ops", "webhook": hook.url}], "notify": {**FAST, **timers},
                             "routes": [{"receiver": "ops", "group_by": ["agent_name"]}]})  # fmt: skip
    arrived: list[float] = []

    def next_request(count: int, timeout: float = 20.0) -> dict[str, Any]:
        requests = hook.wait(lambda rs: len(rs) >= count, timeout)
        arrived.append(time.monotonic())
        return requests[count - 1].json()

    try:
        first = the_alert("pacer", source="rollback")
        start = time.monotonic()
        publish_alerts(settings, first)
        time.sleep(0.5)
        second = the_alert("pacer", source="degradation", severity="warning")
        publish_alerts(settings, second)
        body = next_request(1)
        assert {a["fingerprint"] for a in body["alerts"]} == {first["fingerprint"], second["fingerprint"]}
        assert arrived[0] - start >= 2.0, arrived[0] - start  # group_wait held the first and batched the second
        third = the_alert("pacer", source="assurance", severity="warning")
        publish_alerts(settings, third)
        body = next_request(2)
        assert third["fingerprint"] in {a["fingerprint"] for a in body["alerts"]}
        assert arrived[1] - arrived[0] >= 3.0 - 0.1, arrived  # group_interval after the last notification
        body = next_request(3)  # nothing new: the group is sent again, all three still firing
        assert len(body["alerts"]) == 3 and body["status"] == "firing"
        assert arrived[2] - arrived[1] >= 5.0 - 0.1, arrived  # repeat_interval
    finally:
        run.close()


def test_a_receiver_that_never_accepts_is_dead_lettered_and_the_others_hear_of_it(
    settings: Settings, servers: list[RecordingServer]
) -> None:
    broken, ok = serve(servers, default=500), serve(servers)
    run = Running(settings, {
        "receivers": [{"name": "broken", "webhook": broken.url}, {"name": "ops", "webhook": ok.url}],
        "routes": [{"match": {"alertname": "NotificationsFailing"}, "receiver": "ops"}, {"receiver": "broken"}],
        "notify": FAST,
    })  # fmt: skip
    try:
        publish_alerts(settings, the_alert("mailer"))
        [told] = ok.wait(lambda rs: len(rs) == 1)
        [a] = told.json()["alerts"]
        assert a["labels"]["alertname"] == "NotificationsFailing" and a["labels"]["failed_receiver"] == "broken"
        assert "HTTP 500" in a["annotations"]["message"]
        assert len(broken.requests) >= 3
        wait_for(lambda: committed(settings) >= 1)
        letters = [r for _p, _o, r in read_all(settings, "reverify.deadletter") if r.get("worker") == "notify"]
        [letter] = letters
        assert letter["error_type"] == "notification_failed" and "after 3 attempts: HTTP 500" in letter["reason"]
        assert json.loads(letter["value"])["alerts"][0]["labels"]["agent_name"] == "mailer"
    finally:
        run.close()


def test_silences_and_acks_are_respected(settings: Settings, servers: list[RecordingServer]) -> None:
    hook, pd = serve(servers), serve(servers, check=pagerduty_problems)
    until = int(time.time() * 1000) + 3_600_000
    silence = {"event_id": str(uuid.uuid4()), "ts": int(time.time() * 1000), "command": "silence", "by": "bob",
               "args": {"matchers": json.dumps({"agent_name": "quiet"}), "until_ms": str(until), "comment": "deploy",
                        "silence_id": "sil-1"}}  # fmt: skip
    publish(settings, "control.commands", [("quiet", "Command", silence)])
    run = Running(settings, {
        "receivers": [{"name": "ops", "webhook": hook.url, "pagerduty_routing_key": "R0UT1NG", "pagerduty_url": pd.url}],
        "routes": [{"receiver": "ops", "group_by": ["agent_name"]}], "notify": FAST,
    })  # fmt: skip
    try:
        loud = the_alert("loud")
        publish_alerts(settings, the_alert("quiet"), loud)
        hook.wait(lambda rs: len(rs) == 1)
        pd.wait(lambda rs: [r.json()["event_action"] for r in rs] == ["trigger"])
        time.sleep(1.5)  # a group interval: the quiet agent's alert stays silenced
        assert [r.json()["alerts"][0]["labels"]["agent_name"] for r in hook.accepted()] == ["loud"]

        publish_alerts(settings, {**loud, "event_id": str(uuid.uuid4()), "acknowledged_by": "alice"})
        pd.wait(lambda rs: [r.json()["event_action"] for r in rs] == ["trigger", "acknowledge"])
        assert len(hook.accepted()) == 1  # an ack is news for PagerDuty, not a new webhook notification
        wait_for(lambda: committed(settings) == 3)
    finally:
        run.close()


def test_kill_9_mid_delivery_loses_nothing_and_the_duplicate_has_the_same_key(
    settings: Settings, servers: list[RecordingServer], tmp_path: Path
) -> None:
    hook = serve(servers, script=[("hang", 8.0)])
    config = tmp_path / "reverify.toml"
    config.write_text(f'[[receivers]]\nname = "ops"\nwebhook = "{hook.url}"\n\n[notify]\ntimeout = 20\n'
                      'group_wait = "0s"\ngroup_interval = "1s"\n')  # fmt: skip
    env = settings_env(settings, REVERIFY_CONFIG=str(config), REVERIFY_METRICS_PORT="0")

    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [REVERIFY, "notify"], env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

    first = start()
    try:
        publish_alerts(settings, the_alert("booker"))
        wait_for(lambda: len(hook.requests) == 1)  # the webhook holds the request: delivery is in flight
        os.kill(first.pid, signal.SIGKILL)
        first.wait(10)
        assert committed(settings) == 0
        second = start()
        try:
            hook.wait(lambda rs: len(rs) >= 1 and any(r is not hook.requests[0] for r in rs), timeout=60)
            keys = {r.headers["X-Reverify-Idempotency-Key"] for r in hook.requests}
            assert len(keys) == 1, keys  # the duplicate carries the key of the interrupted delivery
            assert all(r.json()["alerts"][0]["labels"]["agent_name"] == "booker" for r in hook.requests)
            wait_for(lambda: committed(settings) == 1)
        finally:
            second.send_signal(signal.SIGTERM)
            second.wait(20)
    finally:
        if first.poll() is None:
            first.kill()


# ---------------------------------------------------------------------------------------------- the CLI


def run_cli(settings: Settings, tmp_path: Path, config: str, *args: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "reverify.toml"
    path.write_text(config)
    env = settings_env(settings, REVERIFY_CONFIG=str(path))
    return subprocess.run([REVERIFY, *args], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)


def test_notify_check_names_the_route_and_field_of_a_mistake(settings: Settings, tmp_path: Path) -> None:
    bad = '[[receivers]]\nname = "ops"\nwebhook = "http://x"\n\n[[routes]]\nreceiver = "opps"\n'
    done = run_cli(settings, tmp_path, bad, "notify", "check")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == ["error: routes[0]: receiver = 'opps' is not a receiver; known: ops"]
    good = run_cli(settings, tmp_path, bad.replace("opps", "ops"), "notify", "check", "--json")
    assert good.returncode == 0 and json.loads(good.stdout)["routes"][0]["receiver"] == "ops"


def test_notify_test_shows_what_the_receiver_answered(
    settings: Settings, tmp_path: Path, servers: list[RecordingServer]
) -> None:
    hook = serve(servers)
    done = run_cli(
        settings, tmp_path, f'[[receivers]]\nname = "ops"\nwebhook = "{hook.url}"\n', "notify", "test", "ops", "--json"
    )
    assert done.returncode == 0, done.stderr
    [row] = json.loads(done.stdout)
    assert (row["channel"], row["ok"], row["status"], row["answer"]) == ("webhook", True, 200, "ok")
    missing = run_cli(
        settings, tmp_path, f'[[receivers]]\nname = "ops"\nwebhook = "{hook.url}"\n', "notify", "test", "oops"
    )
    assert missing.returncode == 2 and "no receiver named 'oops'; known: ops" in missing.stderr
