"""End to end through a real worker: bad input is dead-lettered without stopping it; drift fires and resolves."""

from __future__ import annotations

import random
import time
import uuid
from typing import Any

import pytest
from confluent_kafka import Producer
from reverify.schemas import decode, encode
from reverify.streams.client import AgentEvents

from tests.support import publish_feature


@pytest.fixture(scope="module")
def worker(worker_factory: Any) -> Any:
    return worker_factory()


def _malformed(i: int, agent: str) -> bytes:
    """Ten kinds of bad input, each a reason the worker must name."""
    good = {
        "event_id": f"bad-{i}",
        "ts": 1_700_000_000_000 + i,
        "agent_name": agent,
        "task_type": "t",
        "variant_id": "v1",
        "success": True,
        "reward": 0.5,
        "latency_ms": 1.0,
        "cost_usd": 0.0,
        "tokens_in": None,
        "tokens_out": None,
        "features": {},
        "attributes": {},
        "trace_id": None,
        "next_state": None,
    }
    kind = i % 10
    if kind == 0:
        return b""
    if kind == 1:
        return b"\x01" + encode("AgentOutcome", good)[1:]  # wrong magic byte
    if kind == 2:
        return b"\x00\x00\x00\x03\xe7" + encode("AgentOutcome", good)[5:]  # unknown schema id
    if kind == 3:
        return encode("AgentOutcome", good)[:12]  # truncated body
    if kind == 4:
        return encode("AgentOutcome", {**good, "reward": float("nan")})
    if kind == 5:
        return encode("AgentOutcome", {**good, "reward": 1.5})
    if kind == 6:
        return encode("AgentOutcome", {**good, "latency_ms": float("inf")})
    if kind == 7:
        return encode("AgentOutcome", {**good, "variant_id": "x" * 5000})  # oversized string
    if kind == 8:
        return encode("AgentMetric", {"event_id": f"bad-{i}", "ts": 0, "agent_name": agent, "name": "m", "value": 1.0})
    return encode("AgentOutcome", {**good, "agent_name": ""})


def test_malformed_messages_go_to_the_dead_letter_topic_and_good_ones_are_processed(worker: Any, e2e: Any) -> None:
    settings = worker.settings
    agent = f"dl-{uuid.uuid4().hex[:6]}"
    deadletters, qvalues = e2e.Follower(settings, "reverify.deadletter"), e2e.Follower(settings, "crl.qvalues")
    alerts = e2e.Follower(settings, "alerts")
    bad = Producer(settings.kafka_config(**{"partitioner": "murmur2_random", "linger.ms": 20}))
    rng = random.Random(5)
    with AgentEvents(settings=settings) as events:
        for i in range(10_000):
            events.outcome(
                agent_name=agent,
                task_type="t",
                variant_id=f"v{i % 3}",
                success=rng.random() < 0.9,
                reward=rng.random(),
                ts=1_700_000_000_000 + i,
            )
            bad.produce(settings.topic("agent.outcomes"), _malformed(i, agent), agent.encode())
            bad.poll(0)
        assert events.flush(60) == 0
    assert bad.flush(60) == 0

    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and len(deadletters.seen) < 10_000:
        deadletters.poll(1.0)
    reasons = [r["reason"] for _t, _type, r in deadletters.seen]
    assert len(reasons) == 10_000
    assert len({r["offset"] for _t, _type, r in deadletters.seen}) == 10_000  # each bad message once
    for expected in (
        "empty value",
        "magic byte",
        "unknown schema id",
        "does not match",
        "reward = nan",
        "outside [0, 1]",
        "latency_ms = inf",
        "limit is 4096",
        "expected a AgentOutcome",
        "agent_name is empty",
    ):
        assert sum(expected in r for r in reasons) == 1000, expected
    assert all(r["value"] is not None for _t, _type, r in deadletters.seen[:10])

    def processed() -> int:
        latest: dict[str, int] = {}
        for _t, _type, q in qvalues.seen:
            if q["agent_name"] == agent:
                latest[q["variant_id"]] = max(latest.get(q["variant_id"], 0), q["n"])
        return sum(latest.values())

    while time.monotonic() < deadline and processed() < 10_000:
        qvalues.poll(1.0)
    assert processed() == 10_000  # every good outcome applied once, none lost behind the bad ones
    _, rising = alerts.wait(lambda a: a["source"] == "deadletter" and a["status"] == "firing", timeout=30)
    assert rising["labels"]["topic"] == "agent.outcomes" and rising["evidence"]["value"] >= 10
    alerts.close()
    deadletters.close()
    qvalues.close()


def test_a_shifted_feature_fires_a_drift_alert_that_resolves_when_the_stream_returns(worker: Any, e2e: Any) -> None:
    settings = worker.settings
    agent = f"dr-{uuid.uuid4().hex[:6]}"
    reports, alerts = e2e.Follower(settings, "drift.reports"), e2e.Follower(settings, "alerts")
    rng = random.Random(11)

    def publish(events: AgentEvents, start: int, count: int, mean: float) -> None:
        publish_feature(events, agent, "intent_score", rng, start, count, mean)

    mine = lambda r: r["labels"].get("agent_name") == agent and r["labels"].get("feature") == "intent_score"  # noqa: E731
    with AgentEvents(settings=settings) as events:
        publish(events, 0, 1500, 50.0)  # baseline (1,000) and a calm stretch
        publish(events, 1500, 400, 65.0)  # a 1.5 sd shift
        events.flush(30)
        _, fired = alerts.wait(lambda r: mine(r) and r["status"] == "firing", timeout=120)
        assert fired["source"] == "drift" and fired["severity"] in ("warning", "critical")
        assert fired["evidence"]["threshold"] > 0 and fired["evidence"]["sample_size"] > 0
        publish(events, 1900, 1500, 50.0)  # the stream returns
        events.flush(30)
        _, resolved = alerts.wait(lambda r: mine(r) and r["status"] == "resolved", timeout=120)
    assert resolved["fingerprint"] == fired["fingerprint"]
    assert len([r for _t, r in alerts.matching(mine) if r["status"] == "firing"]) == 1  # fired once, not per look
    reports.wait(lambda r: r["agent_name"] == agent and r["feature"] == "intent_score" and r["alarm"], timeout=30)
    alarmed = [r for _t, r in reports.matching(lambda r: r["agent_name"] == agent and r["feature"] == "intent_score")]
    assert any(r["severity"] in ("medium", "high") for r in alarmed)
    assert decode(encode("DriftReport", alarmed[-1]))[1]["window_size"] == 500
    reports.close()
    alerts.close()
