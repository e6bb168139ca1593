"""State survives a restart of the embedded stack: rebuilt from the ClickHouse history into an empty broker."""

from __future__ import annotations

import json
import random
import time

from confluent_kafka import Consumer, TopicPartition
from reverify.processors.pipeline import AgentPipeline, PipelineConfig
from reverify.schemas import decode
from reverify.sinks import clickhouse
from reverify.sinks.migrate import migrate
from reverify.streams.restore import CHANGELOG, history_exists, rebuild, restore
from reverify.streams.settings import Settings


def outcomes(n: int = 1500) -> list[dict]:
    rng = random.Random(3)
    out = []
    for i in range(n):
        variant = "v1" if rng.random() < 0.7 else "v2"
        p = 0.95 if (variant == "v2" or i < 900) else 0.4
        out.append(
            {
                "event_id": f"e{i:05d}",
                "ts": 1_700_000_000_000 + 1000 * i,
                "agent_name": f"agent{i % 2}",
                "task_type": "t",
                "variant_id": variant,
                "success": rng.random() < p,
                "reward": rng.random(),
                "latency_ms": rng.gauss(800, 40),
                "cost_usd": 0.002,
                "tokens_in": None,
                "tokens_out": None,
                "features": {"intent_score": rng.gauss(50, 10)},
                "attributes": {},
                "trace_id": None,
                "next_state": None,
            }
        )
    return out


def store(client, rows: list[dict]) -> None:
    from datetime import datetime, timezone

    columns = client.query("SELECT * FROM agent_outcomes LIMIT 0").column_names  # the migration is the one list
    position = {
        "kafka_partition": lambda i, r: 0,
        "kafka_offset": lambda i, r: i,
        "ts": lambda i, r: datetime.fromtimestamp(r["ts"] / 1000, tz=timezone.utc),
    }
    # columns later migrations added (nullable) are None where the records do not carry them
    data = [[position[c](i, r) if c in position else r.get(c) for c in columns] for i, r in enumerate(rows)]
    absent = {"awaiting_feedback": False}  # columns of later migrations the rows leave out
    data = [
        [position[c](i, r) if c in position else r.get(c, absent.get(c)) for c in columns] for i, r in enumerate(rows)
    ]
    client.insert("agent_outcomes", data, column_names=list(columns))


def test_rebuild_from_history_equals_the_live_state(settings: Settings):
    rows = outcomes()
    client = clickhouse.connect(settings.clickhouse)
    try:
        migrate(client)
        assert not history_exists(settings)
        store(client, list(reversed(rows)))  # storage order must not matter: replay is by event time
        assert history_exists(settings)
        rebuilt = rebuild(client, PipelineConfig())
    finally:
        client.close()
    live: dict[str, AgentPipeline] = {}
    emitted: list[str] = []
    for r in rows:
        pipeline = live.setdefault(r["agent_name"], AgentPipeline(r["agent_name"], PipelineConfig()))
        emitted += [e.record_type for e in pipeline.on_event("AgentOutcome", dict(r), None)]
    for agent, pipeline in live.items():  # the worker's timer, at the agent's last event
        pipeline.tick(max(r["ts"] for r in rows if r["agent_name"] == agent))
    assert set(rebuilt) == {"agent0", "agent1"}
    assert "Incident" in emitted  # the incidents the rollbacks opened are part of the state compared
    for agent, pipeline in live.items():
        assert rebuilt[agent].to_dict() == pipeline.to_dict()
    # the scenario is not trivial: arms were learned and a variant was promoted or rolled back
    assert any(loop.active for p in rebuilt.values() for loop in p.loops.values())
    assert rebuilt["agent0"].loops["t"].arms["v1"].n > 400


def test_restore_writes_the_changelog_and_the_latest_active_variants(settings: Settings):
    rows = outcomes(600)
    client = clickhouse.connect(settings.clickhouse)
    try:
        migrate(client)
        store(client, rows)
        from datetime import datetime, timedelta, timezone

        when = datetime.fromtimestamp(1_700_000_000, tz=timezone.utc)
        client.insert(
            "crl_active",
            [
                ["a1", when, "agent0", "t", "v1", None, "first_seen", None, 0, 0],
                ["a2", when + timedelta(seconds=5), "agent0", "t", "v2", "v1", "rollback", "rb-1", 0, 1],
            ],
            column_names=[
                "event_id",
                "ts",
                "agent_name",
                "task_type",
                "variant_id",
                "previous_variant",
                "reason",
                "cause_id",
                "kafka_partition",
                "kafka_offset",
            ],
        )
    finally:
        client.close()
    agents, records = restore(settings)
    assert agents == 2 and records == 1

    consumer = Consumer(settings.kafka_config(**{"group.id": f"check-{time.time_ns()}", "enable.auto.commit": False}))
    states, active = {}, []
    for topic in (settings.topic_prefix + CHANGELOG, settings.topic("crl.active")):
        parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, 0) for p in parts])
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and len(states) < 2 if topic.endswith(CHANGELOG) else not active:
            for msg in consumer.consume(100, 0.5):
                if msg.error() is None and topic.endswith(CHANGELOG):
                    states[msg.key().decode()] = json.loads(msg.value())
                elif msg.error() is None:
                    active.append(decode(msg.value())[1])
    consumer.close()
    assert set(states) == {"agent0", "agent1"}
    assert states["agent0"]["loops"]["t"]["arms"]["v1"]["n"] > 100
    assert [(a["agent_name"], a["variant_id"], a["event_id"]) for a in active] == [("agent0", "v2", "a2")]
