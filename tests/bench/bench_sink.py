"""Sink throughput, topic -> ClickHouse, beside the plain baselines it competes with, in one run.

Run by hand: ``python tests/bench/bench_sink.py [--rows 100000] [--batch 20000]``. It starts an embedded
broker on a free port and a chdb directory under /tmp, produces the outcomes once, then measures:

- ``sink``: :class:`sinks.writer.ClickHouseSink` from the topic until every row is committed;
- ``bare insert``: clickhouse-connect inserting the same rows (already decoded) into a copy of the table;
- ``bare consume``: a plain confluent-kafka consumer loop over the same topic (the broker's own ceiling).

The target is sink >= 50 % of the bare insert rate; the consume rate shows when the broker is the limit.

The machine this runs on is shared and noisy, so the three measurements are repeated ``--rounds`` times (default
3), each round with its own consumer groups and its own chdb directory (so neither committed offsets nor insert
deduplication tokens of an earlier round touch it), and the median ratio is what counts.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from confluent_kafka import Consumer, Producer  # noqa: E402
from confluent_kafka.admin import AdminClient  # noqa: E402
from prometheus_client import CollectorRegistry  # noqa: E402
from reverify.schemas import decode, encode  # noqa: E402
from reverify.sinks.clickhouse import close_embedded, connect  # noqa: E402
from reverify.sinks.migrate import migrate  # noqa: E402
from reverify.sinks.writer import ClickHouseSink
from reverify.streams.embedded import EmbeddedBroker, free_port  # noqa: E402
from reverify.streams.settings import Settings  # noqa: E402
from reverify.streams.sink import sink_config  # noqa: E402
from reverify.streams.topics import ensure_topics  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="reverify-bench-"))
    with EmbeddedBroker(port=free_port(), log_path=tmp / "broker.log") as broker:
        settings = Settings.load(
            env={
                "REVERIFY_KAFKA": broker.bootstrap,
                "REVERIFY_TOPIC_PREFIX": "bench.",
                "REVERIFY_CLICKHOUSE": f"chdb://{tmp}/ch",
            },
            path=None,
        )
        ensure_topics(AdminClient(settings.kafka_config()), prefix="bench.", partitions=settings.partitions)
        now = int(time.time() * 1000)
        values = [
            encode(
                "AgentOutcome",
                {
                    "event_id": uuid.uuid4().hex,
                    "ts": now - i,
                    "agent_name": f"agent{i % 8}",
                    "task_type": f"task{i % 3}",
                    "variant_id": f"v{i % 4}",
                    "success": i % 5 != 0,
                    "reward": (i % 100) / 100,
                    "latency_ms": float(i % 977),
                    "cost_usd": 0.001,
                    "tokens_in": i,
                    "features": {"len": float(i % 50)},
                    "attributes": {"m": "x"},
                },
            )
            for i in range(args.rows)
        ]
        producer = Producer(settings.kafka_config(**{"linger.ms": 20, "enable.idempotence": True}))
        for i, value in enumerate(values):
            while True:
                try:
                    producer.produce(settings.topic("agent.outcomes"), value, key=f"agent{i % 8}")
                    break
                except BufferError:
                    producer.poll(0.05)
        producer.flush(60)

        ratios: list[tuple[float, float]] = []
        for r in range(args.rounds):
            rate = measure(settings, values, args.rows, args.batch, tmp / f"ch{r}", r)
            for name, value in rate.items():
                print(f"round {r + 1} {name:>13}: {value:>10,.0f} rows/s")
            ratios.append((rate["sink"] / rate["bare insert"], rate["sink"] / rate["bare consume"]))
            print(f"round {r + 1} sink / bare insert : {ratios[-1][0]:.1%}", flush=True)
    insert_ratios = ", ".join(f"{a:.1%}" for a, _ in ratios)
    print(
        f"sink / bare insert : median {statistics.median(a for a, _ in ratios):.1%} of [{insert_ratios}] (target >= 50 %)"
    )
    print(f"sink / bare consume: median {statistics.median(b for _, b in ratios):.1%} (the broker's ceiling)")
    shutil.rmtree(tmp, ignore_errors=True)


def measure(settings: Settings, values: list[bytes], n: int, batch: int, ch_dir: Path, r: int) -> dict[str, float]:
    """One round: bare consume, the sink end to end, and a bare insert of the same rows; rows/s of each."""
    # a fresh chdb directory per round: earlier rows and deduplication tokens would make the sink skip rows
    settings = Settings.load(
        env={
            "REVERIFY_KAFKA": settings.kafka,
            "REVERIFY_TOPIC_PREFIX": settings.topic_prefix,
            "REVERIFY_CLICKHOUSE": f"chdb://{ch_dir}",
        },
        path=None,
    )
    # bare consume: the broker's ceiling
    consumer = Consumer(
        settings.kafka_config(
            **{
                "group.id": f"bench-bare-{r}",
                "auto.offset.reset": "earliest",
                "session.timeout.ms": 10_000,
                "heartbeat.interval.ms": 1_000,
            }
        )
    )
    consumer.subscribe([settings.topic("agent.outcomes")])
    got, started = 0, None
    while got < n:
        got_batch = consumer.consume(10_000, 1.0)
        if got_batch and started is None:
            started = time.perf_counter()
        got += len(got_batch)
    consume_s = time.perf_counter() - started
    consumer.close()

    # the sink, end to end (its clock starts at its first message, like the bare loop's)
    sink = ClickHouseSink(
        sink_config(settings),
        topics=["agent.outcomes"],
        batch_size=batch,
        max_delay=0.5,
        group_id=f"bench-sink-{r}",
        registry=CollectorRegistry(),
    )
    started = None
    while sink.rows_written.get("agent_outcomes", 0) < n:
        if started is None and (sink._pending or sink.rows_written):
            started = time.perf_counter()
        sink.poll_once(0.2)
    sink_s = time.perf_counter() - started
    sink.close()

    # bare insert of the same rows, decoded beforehand
    client = connect(settings.clickhouse)
    migrate(client)
    client.command("CREATE TABLE bare_outcomes AS agent_outcomes")
    columns = [c for c in client.query("SELECT * FROM agent_outcomes LIMIT 0").column_names]
    rows = []
    for i, value in enumerate(values):
        record = decode(value)[1]
        rows.append([record.get(c) for c in columns[:-2]] + [i % 3, i])
    started = time.perf_counter()
    for start in range(0, len(rows), batch):
        client.insert("bare_outcomes", rows[start : start + batch], column_names=columns)
    insert_s = time.perf_counter() - started
    stored = client.query("SELECT count(), uniqExact(event_id) FROM agent_outcomes").result_rows[0]
    client.close()
    close_embedded()  # the next round opens another directory
    assert tuple(stored) == (n, n), f"the sink stored {stored} rows (count, distinct) of {n:,}"
    return {"sink": n / sink_s, "bare insert": n / insert_s, "bare consume": n / consume_s}


if __name__ == "__main__":
    main()
