"""The SDK against a real broker: every event back with the same fields, buffering while the broker is away."""

from __future__ import annotations

import time

import pytest
from confluent_kafka import Consumer, TopicPartition
from reverify.schemas import decode_as
from reverify.streams.client import AgentEvents
from reverify.streams.embedded import EmbeddedBroker, free_port
from reverify.streams.settings import Settings


def consume_all(settings: Settings, topic: str, expected: int, timeout: float = 120.0) -> list[dict]:
    consumer = Consumer(settings.kafka_config(**{"group.id": f"check-{time.time_ns()}", "enable.auto.commit": False}))
    md = consumer.list_topics(settings.topic(topic), timeout=10).topics[settings.topic(topic)]
    consumer.assign([TopicPartition(settings.topic(topic), p, 0) for p in md.partitions])
    schema = "AgentOutcome" if topic == "agent.outcomes" else "AgentMetric"
    records: list[dict] = []
    deadline = time.monotonic() + timeout
    while len(records) < expected and time.monotonic() < deadline:
        for msg in consumer.consume(5000, 0.5):
            if msg.error() is None:
                records.append(decode_as(schema, msg.value()))
    # anything more would be a duplicate
    for msg in consumer.consume(5000, 1.0):
        if msg.error() is None:
            records.append(decode_as(schema, msg.value()))
    consumer.close()
    return records


def test_100k_outcomes_round_trip_exactly(settings: Settings):
    sent = {}
    with AgentEvents(settings=settings) as events:
        for i in range(100_000):
            fields = dict(
                agent_name=f"agent{i % 7}",
                task_type=f"task{i % 3}",
                variant_id=f"v{i % 2}",
                success=i % 5 != 0,
                reward=(i % 100) / 100,
                latency_ms=float(i),
                cost_usd=i / 1e6,
                tokens_in=i,
                tokens_out=None,
                features={"intent_score": float(i % 97)},
                attributes={"region": "eu"},
                trace_id=None,
                ts=1_700_000_000_000 + i,
            )
            eid = events.outcome(**fields)
            sent[eid] = fields
        assert events.flush(60) == 0
        assert events.dropped == 0 and events.failed == 0
    got = consume_all(settings, "agent.outcomes", len(sent))
    assert len(got) == len(sent)
    assert len({r["event_id"] for r in got}) == len(sent)
    for record in got:
        fields = sent[record["event_id"]]
        for key, value in fields.items():
            assert record[key] == value, key


def test_wrong_types_and_values_name_the_field():
    events = AgentEvents(bootstrap="127.0.0.1:1", settings=Settings.load(env={}, path=None))
    good = dict(agent_name="a", task_type="t", variant_id="v", success=True, reward=0.5)
    with pytest.raises(ValueError, match="reward"):
        events.outcome(**{**good, "reward": float("nan")})
    with pytest.raises(TypeError, match="success"):
        events.outcome(**{**good, "success": 1})
    with pytest.raises(TypeError, match="agent_name"):
        events.outcome(**{**good, "agent_name": 3})
    with pytest.raises(TypeError, match="variant_id"):
        events.outcome(**{k: v for k, v in good.items() if k != "variant_id"})
    with pytest.raises(ValueError, match=r"features\['x'\]"):
        events.outcome(**good, features={"x": float("inf")})
    with pytest.raises(ValueError, match="severity"):
        events.error(agent_name="a", component="c", error_type="E", severity="fatal")
    assert events.sent == 0  # nothing invalid reached the producer
    events.close(timeout=0)


def test_buffers_while_broker_is_down_and_delivers_after(tmp_path):
    port = free_port()
    settings = Settings.load(env={"REVERIFY_KAFKA": f"127.0.0.1:{port}", "REVERIFY_TOPIC_PREFIX": "down."}, path=None)
    events = AgentEvents(settings=settings)
    start = time.perf_counter()
    for i in range(10_000):
        events.metric(agent_name="hunter", name="queue_depth", value=float(i), ts=1_700_000_000_000 + i)
    per_call = (time.perf_counter() - start) / 10_000
    print(f"\nper call while the broker is down: {per_call * 1e6:.1f} us")
    assert per_call < 1e-3  # "well under a millisecond": a round trip would be seconds of timeouts
    assert events.pending == 10_000 and events.dropped == 0
    with EmbeddedBroker(port=port, log_path=tmp_path / "broker.log") as broker:
        from confluent_kafka.admin import AdminClient
        from reverify.streams.topics import ensure_topics

        ensure_topics(AdminClient(settings.kafka_config()), settings.topic_prefix, settings.partitions)
        assert events.flush(60) == 0
        assert events.delivered == 10_000
        got = consume_all(settings, "agent.metrics", 10_000)
        assert sorted(r["value"] for r in got) == [float(i) for i in range(10_000)]
        assert broker.process is not None
    events.close(timeout=0)


def test_a_burst_into_a_small_queue_waits_for_room_and_loses_nothing(settings: Settings):
    n = 30_000
    with AgentEvents(settings=settings, max_buffer=200) as events:
        for i in range(n):
            events.outcome(agent_name=f"b{i % 5}", task_type="t", variant_id="v1", success=True, reward=0.5, ts=i)
        assert events.flush(60) == 0
    assert events.dropped == 0 and events.failed == 0 and events.sent == n
    assert events.waited > 100, events.waited  # the full-queue path was taken, many times
    got = consume_all(settings, "agent.outcomes", n)
    assert len(got) == n and len({r["event_id"] for r in got}) == n


def test_full_buffer_drops_are_counted_not_silent(caplog):
    settings = Settings.load(env={"REVERIFY_KAFKA": f"127.0.0.1:{free_port()}"}, path=None)
    events = AgentEvents(settings=settings, max_buffer=100)
    for i in range(150):
        events.metric(agent_name="a", name="m", value=float(i))
    assert events.sent == 100
    assert events.dropped == 50
    assert any("dropped" in r.getMessage() for r in caplog.records)
    assert events.close(timeout=0) >= 100
