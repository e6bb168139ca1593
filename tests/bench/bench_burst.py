"""Benchmark: a burst of a million outcomes through ``AgentEvents`` into a reachable broker, nothing dropped.

Run by hand: ``python tests/bench/bench_burst.py [N] [MAX_BUFFER]``. Starts its own embedded broker on a free
port. The loop publishes as fast as it can, far faster than the broker takes events, so librdkafka's queue
(``MAX_BUFFER`` events, the SDK's default 100,000) fills again and again: each time a call waits for room
(``sdk_max_block_ms``) instead of dropping. Then the topic is read back and its events counted. Prints the
publish time, how many calls waited, and the count on the topic; exits non-zero unless the topic holds all N
events, once each, and the SDK dropped none.
"""

from __future__ import annotations

import sys
import time
import uuid

from bench_sdk import record  # this folder is on the path when the script runs
from confluent_kafka import Consumer, KafkaError, TopicPartition
from confluent_kafka.admin import AdminClient
from reverify.streams.client import AgentEvents
from reverify.streams.embedded import EmbeddedBroker, free_port
from reverify.streams.settings import Settings
from reverify.streams.topics import ensure_topics


def publish(settings: Settings, n: int, max_buffer: int) -> AgentEvents:
    with AgentEvents(settings=settings, max_buffer=max_buffer) as events:
        for i in range(n):
            events.outcome(**record(i))
        left = events.flush(300)
    if left:
        raise SystemExit(f"bench_burst: {left:,} events still undelivered after 300 s")
    return events


def count_on_topic(settings: Settings, expected: int) -> tuple[int, int]:
    """Events on ``agent.outcomes`` and how many distinct event ids they carry (read to every partition's end)."""
    topic = settings.topic("agent.outcomes")
    consumer = Consumer(
        settings.kafka_config(
            **{"group.id": f"burst-{uuid.uuid4().hex}", "enable.auto.commit": False, "enable.partition.eof": True}
        )
    )
    parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, 0) for p in parts])
    count, ids, at_end = 0, set(), set()
    deadline = time.monotonic() + 600
    while len(at_end) < len(parts) and time.monotonic() < deadline:
        for msg in consumer.consume(10_000, 1.0):
            if msg.error() is not None:
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    at_end.add(msg.partition())
                continue
            count += 1
            # the event id is the first Avro field after the 5-byte header: a length byte, then the text
            ids.add(msg.value()[6:42])
    consumer.close()
    if len(at_end) < len(parts):
        raise SystemExit(f"bench_burst: read {count:,} of {expected:,} events and not every partition's end in 600 s")
    return count, len(ids)


def main(n: int = 1_000_000, max_buffer: int = 100_000) -> None:
    with EmbeddedBroker(port=free_port()) as broker:
        settings = Settings.load(env={"REVERIFY_KAFKA": broker.bootstrap, "REVERIFY_TOPIC_PREFIX": "burst."}, path=None)
        ensure_topics(AdminClient(settings.kafka_config()), settings.topic_prefix, settings.partitions)
        start = time.perf_counter()
        events = publish(settings, n, max_buffer)
        elapsed = time.perf_counter() - start
        count, distinct = count_on_topic(settings, n)
    print(f"events: {n:,}; queue bound {max_buffer:,}")
    print(f"published and delivered in {elapsed:.1f} s ({n / elapsed:,.0f} events/s)")
    print(f"calls that waited for room: {events.waited:,}; dropped: {events.dropped}; failed: {events.failed}")
    print(f"on the topic: {count:,} events, {distinct:,} distinct event ids")
    if events.dropped or events.failed or count != n or distinct != n:
        raise SystemExit("bench_burst: events were lost or duplicated")


if __name__ == "__main__":
    main(
        int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000,
        int(sys.argv[2]) if len(sys.argv) > 2 else 100_000,
    )
