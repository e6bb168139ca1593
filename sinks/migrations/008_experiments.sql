-- A/B experiments (crl.experiments, compacted on the broker, every version kept here): the latest row of a
-- name is the experiment (argMax by ts). Assignments are not stored apart: every outcome of the experiment's
-- agent/task between started_at and stopped_at carries its variant (and, when the agent passes them, the
-- attributes unit_id and experiment), so reverify experiment status sums the outcomes per unit and variant.

CREATE TABLE IF NOT EXISTS crl_experiments (
    event_id String,
    ts DateTime64(3, 'UTC'),
    name String,
    agent_name LowCardinality(String),
    task_type LowCardinality(String),
    variants Array(String),
    split Array(Float64),
    metric LowCardinality(String),
    min_effect Float64,
    alpha Float64,
    planned_units Nullable(Int64),
    tuning_units Int64,
    status LowCardinality(String),
    started_at DateTime64(3, 'UTC'),
    stopped_at Nullable(DateTime64(3, 'UTC')),
    reason String,
    by LowCardinality(String),
    cause_id Nullable(String),
    kafka_partition Int32,
    kafka_offset Int64
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (name, ts, event_id)
SETTINGS non_replicated_deduplication_window = 1000;
