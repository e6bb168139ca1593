-- SloReport records (topic slo.reports): each SLO's error budget and burn rates per scope value, at each
-- evaluation. `reverify query slo` and the dashboard read the latest report of each SLO and scope.

CREATE TABLE IF NOT EXISTS slo_reports (
    event_id String,
    ts DateTime64(3, 'UTC'),
    slo LowCardinality(String),
    sli LowCardinality(String),
    objective Float64,
    window LowCardinality(String),
    window_ms Int64,
    agent_name LowCardinality(String),
    task_type LowCardinality(Nullable(String)),
    good Int64,
    total Int64,
    sli_value Nullable(Float64),
    error_budget_consumed Float64,
    error_budget_remaining Float64,
    burn_rates Map(LowCardinality(String), Float64),
    alerting LowCardinality(String),
    settings_version String,
    kafka_partition Int32,
    kafka_offset Int64
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (slo, agent_name, ts, event_id)
SETTINGS non_replicated_deduplication_window = 1000;
