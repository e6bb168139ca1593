"""Rebuild worker state from the ClickHouse history when the embedded broker starts empty.

The embedded broker keeps everything in memory, so after a restart of
``reverify up`` its topics, the Faust changelog and the compacted
``crl.active`` are gone while the history in ClickHouse is not. Every processor
is deterministic in its inputs and their event times, so feeding the stored
inputs through fresh pipelines, in event-time order, gives back the state they
had. The rebuilt states are written to the ``agents`` table's changelog topic
(which the worker recovers from as after any restart) and the latest
``crl.active`` / ``control.agents`` / ``crl.experiments`` records are
republished, so agents following :class:`~streams.client.VariantRouter` keep
their variant and their experiments. Running experiments are handed to the
rebuilt pipelines too (as the ``experiment_start`` command did), so a rollback
of one of their variants still stops them.

What the replay emits is dropped: those outputs are already in the history.
Offsets are not recorded (the new broker's offsets start again at 0).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic
from reverify.processors.experiments.record import RUNNING
from reverify.processors.pipeline import AgentPipeline, PipelineConfig
from reverify.schemas import encode, load_schema
from reverify.schemas.fields import join_number_or_class
from reverify.streams.settings import Settings

CHANGELOG = "reverify-worker-agents-changelog"
STATE_MAX_BYTES = 32 << 20
"""Largest agent state a worker writes: each agent's state is one changelog message, and Kafka's default limit
(1 MB) is passed by an agent with a few thousand outcomes awaiting feedback (docs/delayed-outcomes.md)."""
CHANGELOG_CONFIG = {"cleanup.policy": "compact", "max.message.bytes": str(STATE_MAX_BYTES)}

_INPUTS = {
    "AgentOutcome": "SELECT event_id, toUnixTimestamp64Milli(ts) AS ts, agent_name, task_type, variant_id, success, "
    "reward, latency_ms, cost_usd, tokens_in, tokens_out, features, attributes, trace_id, next_state, "
    "awaiting_feedback, prediction, prediction_class, model_version FROM agent_outcomes FINAL",
    "AgentFeedback": "SELECT event_id, toUnixTimestamp64Milli(ts) AS ts, agent_name, outcome_id, success, reward, "
    "label, label_class, attributes FROM agent_feedback FINAL",
    "AgentError": "SELECT event_id, toUnixTimestamp64Milli(ts) AS ts, agent_name, task_type, variant_id, component, "
    "error_type, message, retryable, severity, pipeline, attributes, trace_id FROM agent_errors FINAL",
    "AgentMetric": "SELECT event_id, toUnixTimestamp64Milli(ts) AS ts, agent_name, task_type, variant_id, name, value, "
    "attributes FROM agent_metrics FINAL",
}
#: The latest version of every experiment in the history (the sink keeps every version of the compacted topic), as
#: one tuple of :data:`EXPERIMENT_FIELDS`; ``reverify experiment list`` reads it too.
LATEST_EXPERIMENTS_SQL = (
    "SELECT argMax(tuple(event_id, toUnixTimestamp64Milli(ts), name, agent_name, task_type, variants, split, metric, "
    "min_effect, alpha, planned_units, tuning_units, status, toUnixTimestamp64Milli(started_at), "
    "toUnixTimestamp64Milli(stopped_at), reason, by, cause_id), ts) FROM crl_experiments FINAL GROUP BY name"
)
EXPERIMENT_FIELDS = tuple(f["name"] for f in load_schema("Experiment")["fields"])
_LATEST = {
    "ActiveVariant": (
        "crl.active",
        "SELECT argMax(tuple(event_id, toUnixTimestamp64Milli(ts), agent_name, task_type, variant_id, "
        "previous_variant, reason, cause_id), ts) FROM crl_active FINAL GROUP BY agent_name, task_type",
        ("event_id", "ts", "agent_name", "task_type", "variant_id", "previous_variant", "reason", "cause_id"),
        lambda r: f"{r['agent_name']}/{r['task_type']}",
    ),
    "AgentControl": (
        "control.agents",
        "SELECT argMax(tuple(event_id, toUnixTimestamp64Milli(ts), agent_name, kind, paused, degradation_level, "
        "component, circuit_state, reason, cause_id), ts) FROM control_agents FINAL "
        "GROUP BY agent_name, kind, component",
        (
            "event_id",
            "ts",
            "agent_name",
            "kind",
            "paused",
            "degradation_level",
            "component",
            "circuit_state",
            "reason",
            "cause_id",
        ),
        lambda r: r["agent_name"],
    ),
    "Experiment": (
        "crl.experiments",
        LATEST_EXPERIMENTS_SQL,
        EXPERIMENT_FIELDS,
        lambda r: r["name"],
    ),
}


def _inputs(client: Any, limit: int) -> Iterator[tuple[str, dict[str, Any]]]:
    """The newest ``limit`` stored inputs of every kind, merged in event-time order."""
    rows: list[tuple[int, str, str, dict[str, Any]]] = []
    for record_type, sql in _INPUTS.items():
        result = client.query(f"SELECT * FROM ({sql}) ORDER BY ts DESC, event_id DESC LIMIT {int(limit)}")
        names = result.column_names
        for values in result.result_rows:
            record = join_number_or_class(dict(zip(names, values, strict=True)))
            record["ts"] = int(record["ts"])
            for key in ("features", "attributes"):
                if key in record:
                    record[key] = dict(record[key])
            rows.append((record["ts"], record["event_id"], record_type, record))
    rows.sort(key=lambda r: (r[0], r[1]))
    for _, _, record_type, record in rows[-limit:]:
        yield record_type, record


def rebuild(
    client: Any, config: PipelineConfig, limit: int = 1_000_000, progress: Callable[[int], None] | None = None
) -> dict[str, AgentPipeline]:
    """Pipelines per agent after replaying the stored inputs (at most the newest ``limit``)."""
    pipelines: dict[str, AgentPipeline] = {}
    last: dict[str, int] = {}
    for i, (record_type, record) in enumerate(_inputs(client, limit), 1):
        agent = record["agent_name"]
        pipeline = pipelines.get(agent)
        if pipeline is None:
            pipeline = pipelines[agent] = AgentPipeline(agent, config)
        pipeline.on_event(record_type, record, None)  # type: ignore[arg-type]
        last[agent] = record["ts"]
        if progress and i % 1000 == 0:
            progress(i)
    for agent, pipeline in pipelines.items():
        # The timer's work up to the agent's last stored event, as the worker's timer did it: an incident already
        # escalated (its record is in the history) must not escalate again at the restored worker's first tick.
        pipeline.tick(last[agent])
    return pipelines


def history_exists(settings: Settings) -> bool:
    """True when the ClickHouse history holds any input event."""
    from reverify.sinks import clickhouse

    client = clickhouse.connect(settings.clickhouse)
    try:
        return any(
            client.query(f"SELECT count() FROM {table}").result_rows[0][0]
            for table in ("agent_outcomes", "agent_errors", "agent_metrics")
        )
    finally:
        client.close()


def restore(settings: Settings, progress: Callable[[int], None] | None = None) -> tuple[int, int]:
    """Rebuild from ClickHouse into the (empty) broker; returns (agents restored, control records republished)."""
    from reverify.sinks import clickhouse

    client = clickhouse.connect(settings.clickhouse)
    config = PipelineConfig.from_settings(settings)
    try:
        pipelines = rebuild(client, config, progress=progress)
        latest = []
        for record_type, (topic, sql, names, key) in _LATEST.items():
            for (values,) in client.query(sql).result_rows:
                record = dict(zip(names, values, strict=True))
                record["ts"] = int(record["ts"])
                latest.append((topic, key(record), record_type, record))
    finally:
        client.close()
    for _topic, _key, record_type, record in latest:
        if record_type == "Experiment" and record["status"] == RUNNING:
            agent = record["agent_name"]
            pipeline = pipelines.setdefault(agent, AgentPipeline(agent, config))
            pipeline.loop(record["task_type"]).on_experiment({**record, "variants": list(record["variants"])})
    changelog = settings.topic_prefix + CHANGELOG
    admin = AdminClient(settings.kafka_config())
    if changelog not in admin.list_topics(timeout=10).topics:
        # as Faust would create it: one partition per input partition, compacted
        future = admin.create_topics(
            [NewTopic(changelog, settings.partitions, replication_factor=-1, config=CHANGELOG_CONFIG)]
        )[changelog]
        future.result(15)
    producer = Producer(
        settings.kafka_config(
            **{"enable.idempotence": True, "partitioner": "murmur2_random", "message.max.bytes": STATE_MAX_BYTES}
        )
    )
    for agent, pipeline in pipelines.items():
        state = json.dumps(pipeline.to_dict(), separators=(",", ":")).encode()
        producer.produce(changelog, state, agent.encode())
    for topic, key, record_type, record in latest:
        producer.produce(settings.topic(topic), encode(record_type, record), key.encode())
    left = producer.flush(60)
    if left:
        raise RuntimeError(f"{left} restored records could not be written to the broker")
    return len(pipelines), len(latest)
