-- Incidents (processors/incidents.py): one row per change of an incident, from the first evidence of a failure
-- to its verified recovery. Readers take each incident's latest row (argMax by ts).

CREATE TABLE IF NOT EXISTS crl_incidents (
    event_id String,
    ts DateTime64(3, 'UTC'),
    incident_id String,
    agent_name LowCardinality(String),
    task_type LowCardinality(String),
    component LowCardinality(String),
    cause LowCardinality(String),
    trigger LowCardinality(String),
    status LowCardinality(String),
    change LowCardinality(String),
    failure_started_at DateTime64(3, 'UTC'),
    detected_at DateTime64(3, 'UTC'),
    acted_at Nullable(DateTime64(3, 'UTC')),
    resolved_at Nullable(DateTime64(3, 'UTC')),
    escalated_at Nullable(DateTime64(3, 'UTC')),
    mttr_ms Nullable(Int64),
    time_to_detect_ms Int64,
    time_to_act_ms Nullable(Int64),
    from_variant Nullable(String),
    to_variant Nullable(String),
    rollback_id Nullable(String),
    action String,
    baseline_success_rate Nullable(Float64),
    required_success_rate Nullable(Float64),
    outcomes Int32,
    successes Int32,
    lower_bound Nullable(Float64),
    automatic Bool,
    escalation_reason Nullable(String),
    why String,
    root_cause String,
    kafka_partition Int32,
    kafka_offset Int64
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (incident_id, ts, event_id)
SETTINGS non_replicated_deduplication_window = 1000;
