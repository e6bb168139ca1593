"""Benchmark: the SDK's publish rate beside bare fastavro + confluent-kafka loops, in the same run.

Run by hand: ``python tests/bench/bench_sdk.py [N]``. Starts its own embedded broker on a free port.
Prints events/s for (1) ``AgentEvents.outcome`` (validate + encode + produce + delivery), (2) a bare
loop that encodes the same records with fastavro and produces them with a plain producer, (3) that
producer sending pre-encoded bytes; and the SDK's ratio to (2) (target >= 0.75).
"""

from __future__ import annotations

import io
import sys
import time
import uuid

import fastavro
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from schemas import load_schema
from streams.client import AgentEvents
from streams.embedded import EmbeddedBroker, free_port
from streams.settings import Settings
from streams.topics import ensure_topics


def records(n: int) -> list[dict]:
    return [
        dict(
            agent_name=f"agent{i % 50}",
            task_type=f"task{i % 5}",
            variant_id=f"v{i % 3}",
            success=i % 7 != 0,
            reward=(i % 100) / 100,
            latency_ms=float(100 + i % 900),
            cost_usd=0.002,
            tokens_in=500,
            tokens_out=120,
            features={"intent_score": float(i % 97)},
            ts=1_700_000_000_000 + i,
        )
        for i in range(n)
    ]


def bench_sdk(settings: Settings, rows: list[dict]) -> float:
    with AgentEvents(settings=settings) as events:
        start = time.perf_counter()
        for r in rows:
            events.outcome(**r)
        left = events.flush(120)
        elapsed = time.perf_counter() - start
    assert left == 0
    return len(rows) / elapsed


def bench_bare(settings: Settings, rows: list[dict], pre_encoded: bool) -> float:
    schema = fastavro.parse_schema(load_schema("AgentOutcome"))
    producer = Producer(
        settings.kafka_config(
            **{"linger.ms": 20, "batch.num.messages": 10000, "queue.buffering.max.messages": 1_000_000}
        )
    )
    topic = settings.topic("agent.outcomes")
    full = [{**r, "event_id": str(uuid.uuid4()), "attributes": {}, "trace_id": None, "next_state": None} for r in rows]
    payloads = []
    if pre_encoded:
        for r in full:
            buf = io.BytesIO()
            fastavro.schemaless_writer(buf, schema, r)
            payloads.append((r["agent_name"].encode(), buf.getvalue()))
    start = time.perf_counter()
    if pre_encoded:
        for key, value in payloads:
            producer.produce(topic, value, key)
            producer.poll(0)
    else:
        for r in full:
            buf = io.BytesIO()
            fastavro.schemaless_writer(buf, schema, r)
            producer.produce(topic, buf.getvalue(), r["agent_name"].encode())
            producer.poll(0)
    assert producer.flush(120) == 0
    return len(rows) / (time.perf_counter() - start)


def main(n: int = 100_000) -> None:
    with EmbeddedBroker(port=free_port()) as broker:
        settings = Settings.load(env={"REVERIFY_KAFKA": broker.bootstrap}, path=None)
        ensure_topics(AdminClient(settings.kafka_config()), partitions=settings.partitions)
        rows = records(n)
        bench_bare(settings, rows[:5000], pre_encoded=True)  # warm up the broker and connections
        sdk = bench_sdk(settings, rows)
        bare = bench_bare(settings, rows, pre_encoded=False)
        raw = bench_bare(settings, rows, pre_encoded=True)
    print(f"events: {n}")
    print(f"SDK AgentEvents.outcome (validate+encode+produce+delivery): {sdk:>10,.0f} events/s")
    print(f"bare fastavro encode + confluent-kafka produce:              {bare:>10,.0f} events/s")
    print(f"confluent-kafka produce of pre-encoded bytes:                {raw:>10,.0f} events/s")
    print(f"SDK / bare encode+produce = {sdk / bare:.2f} (target >= 0.75); SDK / pre-encoded = {sdk / raw:.2f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000)
