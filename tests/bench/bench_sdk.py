"""Benchmark: the SDK's publish rate beside bare fastavro + confluent-kafka loops, in the same run.

Run by hand: ``python tests/bench/bench_sdk.py [N] [ROUNDS]``. Starts its own embedded broker on a free port.
Prints events/s for (1) ``AgentEvents.outcome`` (validate + encode + produce + delivery), (2) a bare
loop that encodes the same records with fastavro and produces them with a plain producer, (3) that
producer sending pre-encoded bytes; and the SDK's ratio to (2) (target >= 0.75). Beside each rate, the
CPU time the calling thread spent per event: on a shared machine it varies less than wall time, since
the broker and librdkafka's threads compete for the same cores. ``ROUNDS`` > 1 repeats (1) and (2)
alternately and prints each round's ratio and the median, as one run on a busy machine can mislead.
"""

from __future__ import annotations

import io
import statistics
import sys
import time
import uuid

import fastavro
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient
from reverify.schemas import load_schema
from reverify.streams.client import AgentEvents
from reverify.streams.embedded import EmbeddedBroker, free_port
from reverify.streams.settings import Settings
from reverify.streams.topics import ensure_topics


def record(i: int) -> dict:
    """The keyword arguments of outcome ``i``."""
    return dict(
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


def records(n: int) -> list[dict]:
    return [record(i) for i in range(n)]


def bench_sdk(settings: Settings, rows: list[dict]) -> tuple[float, float]:
    """Events/s, and the calling thread's CPU microseconds per event."""
    with AgentEvents(settings=settings) as events:
        start = time.perf_counter()
        cpu = time.thread_time()
        for r in rows:
            events.outcome(**r)
        left = events.flush(120)
        cpu = time.thread_time() - cpu
        elapsed = time.perf_counter() - start
    assert left == 0
    return len(rows) / elapsed, cpu / len(rows) * 1e6


def bench_bare(settings: Settings, rows: list[dict], pre_encoded: bool) -> tuple[float, float]:
    """Events/s, and the calling thread's CPU microseconds per event."""
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
    cpu = time.thread_time()
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
    cpu = time.thread_time() - cpu
    return len(rows) / (time.perf_counter() - start), cpu / len(rows) * 1e6


def main(n: int = 100_000, rounds: int = 1) -> None:
    with EmbeddedBroker(port=free_port()) as broker:
        settings = Settings.load(env={"REVERIFY_KAFKA": broker.bootstrap}, path=None)
        ensure_topics(AdminClient(settings.kafka_config()), partitions=settings.partitions)
        rows = records(n)
        bench_bare(settings, rows[:5000], pre_encoded=True)  # warm up the broker and connections
        sdk, sdk_cpu = bench_sdk(settings, rows)
        bare, bare_cpu = bench_bare(settings, rows, pre_encoded=False)
        raw, raw_cpu = bench_bare(settings, rows, pre_encoded=True)
        more = [(bench_sdk(settings, rows), bench_bare(settings, rows, pre_encoded=False)) for _ in range(rounds - 1)]
    print(f"events: {n}")
    print(f"SDK AgentEvents.outcome (validate+encode+produce+delivery): {sdk:>10,.0f} events/s  {sdk_cpu:5.1f} us CPU")
    print(
        f"bare fastavro encode + confluent-kafka produce:              {bare:>10,.0f} events/s  {bare_cpu:5.1f} us CPU"
    )
    print(f"confluent-kafka produce of pre-encoded bytes:                {raw:>10,.0f} events/s  {raw_cpu:5.1f} us CPU")
    print(f"SDK / bare encode+produce = {sdk / bare:.2f} (target >= 0.75); SDK / pre-encoded = {sdk / raw:.2f}")
    print(f"bare / SDK caller-thread CPU per event = {bare_cpu / sdk_cpu:.2f}")
    if more:
        ratios = [sdk / bare] + [s[0] / b[0] for s, b in more]
        cpu_ratios = [bare_cpu / sdk_cpu] + [b[1] / s[1] for s, b in more]
        print(f"rounds: {rounds}; SDK / bare per round: {' '.join(f'{r:.2f}' for r in ratios)}")
        print(
            f"median SDK / bare = {statistics.median(ratios):.2f}; median CPU ratio = {statistics.median(cpu_ratios):.2f}"
        )


if __name__ == "__main__":
    main(
        int(sys.argv[1]) if len(sys.argv) > 1 else 100_000,
        int(sys.argv[2]) if len(sys.argv) > 2 else 1,
    )
