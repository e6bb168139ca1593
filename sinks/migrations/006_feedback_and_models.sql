-- Delayed outcomes and the model monitor (issue 19): the feedback that judges an outcome later, what the outcomes
-- and Q-values say about it, and the model monitor's reports. Outcomes awaiting feedback carry placeholders for
-- success and reward: the hourly arm rollup leaves them out (their results are in agent_feedback and crl_qvalues).

ALTER TABLE agent_outcomes ADD COLUMN IF NOT EXISTS awaiting_feedback Bool DEFAULT false AFTER next_state;
ALTER TABLE agent_outcomes ADD COLUMN IF NOT EXISTS prediction Nullable(Float64) AFTER awaiting_feedback;
ALTER TABLE agent_outcomes ADD COLUMN IF NOT EXISTS prediction_class Nullable(String) AFTER prediction;
ALTER TABLE agent_outcomes ADD COLUMN IF NOT EXISTS model_version LowCardinality(Nullable(String)) AFTER prediction_class;

ALTER TABLE crl_qvalues ADD COLUMN IF NOT EXISTS pending Int64 DEFAULT 0 AFTER source_event_id;
ALTER TABLE crl_qvalues ADD COLUMN IF NOT EXISTS timeouts Int64 DEFAULT 0 AFTER pending;
ALTER TABLE crl_qvalues ADD COLUMN IF NOT EXISTS timeout_default LowCardinality(String) DEFAULT '' AFTER timeouts;

CREATE TABLE IF NOT EXISTS agent_feedback (
    event_id String,
    ts DateTime64(3, 'UTC'),
    agent_name LowCardinality(String),
    outcome_id String,
    success Bool,
    reward Float64,
    label Nullable(Float64),
    label_class Nullable(String),
    attributes Map(LowCardinality(String), String),
    kafka_partition Int32,
    kafka_offset Int64
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (agent_name, outcome_id, ts, event_id)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS model_reports (
    event_id String,
    ts DateTime64(3, 'UTC'),
    agent_name LowCardinality(String),
    model_version LowCardinality(String),
    kind LowCardinality(String),
    window_size Int64,
    judged Int64,
    accuracy Nullable(Float64),
    mae Nullable(Float64),
    brier Nullable(Float64),
    ece Nullable(Float64),
    calibration Array(Tuple(lower Float64, upper Float64, count Int64, mean_score Float64, positive_rate Float64)),
    baseline_accuracy Nullable(Float64),
    baseline_size Int64,
    accuracy_drop Nullable(Float64),
    tolerance Float64,
    prediction_psi Nullable(Float64),
    prediction_drift Bool,
    alarm Bool,
    reason String,
    kafka_partition Int32,
    kafka_offset Int64
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (agent_name, model_version, ts, event_id)
SETTINGS non_replicated_deduplication_window = 1000;

DROP VIEW IF EXISTS arm_hourly_outcomes_mv;

CREATE MATERIALIZED VIEW IF NOT EXISTS arm_hourly_outcomes_mv TO arm_hourly AS
SELECT
    agent_name,
    task_type,
    variant_id,
    toStartOfHour(ts) AS hour,
    toUInt64(count()) AS invocations,
    toUInt64(countIf(success)) AS successes,
    sum(reward) AS reward_sum,
    sum(cost_usd) AS cost_sum,
    quantilesState(0.5, 0.95, 0.99)(latency_ms) AS latency_state,
    toUInt64(0) AS errors,
    toUInt64(0) AS pipeline_errors
FROM agent_outcomes
WHERE NOT awaiting_feedback
GROUP BY agent_name, task_type, variant_id, hour;
