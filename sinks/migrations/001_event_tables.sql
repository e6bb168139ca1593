-- One table per topic (DESIGN section 2), decoded columns.
-- ReplacingMergeTree on a sorting key that ends in event_id: a row that reaches the table twice
-- (a processor replaying an output with its deterministic id, a sink crash between insert and commit)
-- collapses to one; readers that need exact counts use FINAL. kafka_partition/kafka_offset say where
-- the row came from. non_replicated_deduplication_window lets the sink's insert_deduplication_token
-- turn a retried batch into a no-op at insert time.

CREATE TABLE IF NOT EXISTS agent_outcomes (
    event_id String,
    ts DateTime64(3, 'UTC'),
    agent_name LowCardinality(String),
    task_type LowCardinality(String),
    variant_id LowCardinality(String),
    success Bool,
    reward Float64,
    latency_ms Float64,
    cost_usd Float64,
    tokens_in Nullable(Int64),
    tokens_out Nullable(Int64),
    features Map(LowCardinality(String), Float64),
    attributes Map(LowCardinality(String), String),
    trace_id Nullable(String),
    next_state Nullable(String),
    kafka_partition Int32,
    kafka_offset Int64
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (agent_name, task_type, variant_id, ts, event_id)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS agent_errors (
    event_id String,
    ts DateTime64(3, 'UTC'),
    agent_name LowCardinality(String),
    task_type LowCardinality(Nullable(String)),
    variant_id LowCardinality(Nullable(String)),
    component LowCardinality(String),
    error_type LowCardinality(String),
    message String,
    retryable Bool,
    severity LowCardinality(String),
    pipeline Bool,
    attributes Map(LowCardinality(String), String),
    trace_id Nullable(String),
    kafka_partition Int32,
    kafka_offset Int64
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (agent_name, component, ts, event_id)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS agent_metrics (
    event_id String,
    ts DateTime64(3, 'UTC'),
    agent_name LowCardinality(String),
    task_type LowCardinality(Nullable(String)),
    variant_id LowCardinality(Nullable(String)),
    name LowCardinality(String),
    value Float64,
    attributes Map(LowCardinality(String), String),
    kafka_partition Int32,
    kafka_offset Int64
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (agent_name, name, ts, event_id)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS crl_qvalues (
    event_id String,
    ts DateTime64(3, 'UTC'),
    agent_name LowCardinality(String),
    task_type LowCardinality(String),
    variant_id LowCardinality(String),
    q Float64,
    n Int64,
    alpha Float64,
    success_rate Float64,
    reward_mean Float64,
    reward_var Float64,
    error_rate Float64,
    errors Int64,
    last_outcomes Array(Bool),
    source_event_id String,
    kafka_partition Int32,
    kafka_offset Int64
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (agent_name, task_type, variant_id, ts, event_id)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS crl_decisions (
    event_id String,
    ts DateTime64(3, 'UTC'),
    agent_name LowCardinality(String),
    task_type LowCardinality(String),
    variant_id LowCardinality(String),
    decision LowCardinality(String),
    previous_decision LowCardinality(Nullable(String)),
    reasoning String,
    q Float64,
    n Int64,
    p_beats_active Nullable(Float64),
    active_variant LowCardinality(Nullable(String)),
    thresholds Map(LowCardinality(String), Float64),
    kafka_partition Int32,
    kafka_offset Int64
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (agent_name, task_type, variant_id, ts, event_id)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS crl_active (
    event_id String,
    ts DateTime64(3, 'UTC'),
    agent_name LowCardinality(String),
    task_type LowCardinality(String),
    variant_id LowCardinality(String),
    previous_variant LowCardinality(Nullable(String)),
    reason LowCardinality(String),
    cause_id Nullable(String),
    kafka_partition Int32,
    kafka_offset Int64
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (agent_name, task_type, ts, event_id)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS crl_proposals (
    event_id String,
    ts DateTime64(3, 'UTC'),
    proposal_id String,
    agent_name LowCardinality(String),
    task_type LowCardinality(String),
    variant_id LowCardinality(String),
    proposal_type LowCardinality(String),
    reasoning String,
    confidence Float64,
    supporting_data Map(LowCardinality(String), Float64),
    status LowCardinality(String),
    kafka_partition Int32,
    kafka_offset Int64
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (agent_name, task_type, ts, event_id)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS control_approvals (
    event_id String,
    ts DateTime64(3, 'UTC'),
    proposal_id String,
    approved Bool,
    by LowCardinality(String),
    comment String,
    kafka_partition Int32,
    kafka_offset Int64
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (proposal_id, ts, event_id)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS control_rollbacks (
    event_id String,
    ts DateTime64(3, 'UTC'),
    rollback_id String,
    agent_name LowCardinality(String),
    task_type LowCardinality(String),
    from_variant LowCardinality(String),
    to_variant LowCardinality(String),
    reason String,
    trigger LowCardinality(String),
    statistic Float64,
    threshold Float64,
    degradation_metrics Map(LowCardinality(String), Float64),
    kafka_partition Int32,
    kafka_offset Int64
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (agent_name, task_type, ts, event_id)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS control_agents (
    event_id String,
    ts DateTime64(3, 'UTC'),
    agent_name LowCardinality(String),
    kind LowCardinality(String),
    paused Bool,
    degradation_level Int32,
    component LowCardinality(Nullable(String)),
    circuit_state LowCardinality(Nullable(String)),
    reason String,
    cause_id Nullable(String),
    kafka_partition Int32,
    kafka_offset Int64
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (agent_name, ts, event_id)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS control_commands (
    event_id String,
    ts DateTime64(3, 'UTC'),
    command LowCardinality(String),
    args Map(LowCardinality(String), String),
    by LowCardinality(String),
    kafka_partition Int32,
    kafka_offset Int64
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (command, ts, event_id)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS drift_reports (
    event_id String,
    ts DateTime64(3, 'UTC'),
    agent_name LowCardinality(String),
    feature LowCardinality(String),
    variant_id LowCardinality(Nullable(String)),
    baseline_size Int64,
    bin_edges Array(Float64),
    window_size Int64,
    values_seen Int64,
    psi Float64,
    ks_statistic Float64,
    ks_pvalue Float64,
    mean_shift Float64,
    variance_ratio Float64,
    severity LowCardinality(String),
    mean_shift_flag Bool,
    variance_flag Bool,
    alarm Bool,
    windows Array(Tuple(window Int64, psi Float64, ks_statistic Float64, ks_pvalue Float64, threshold Float64, alarm Bool)),
    detectors Map(LowCardinality(String), Bool),
    window_start Nullable(DateTime64(3, 'UTC')),
    window_end Nullable(DateTime64(3, 'UTC')),
    kafka_partition Int32,
    kafka_offset Int64
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (agent_name, feature, ts, event_id)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS assurance_results (
    event_id String,
    ts DateTime64(3, 'UTC'),
    case_name LowCardinality(String),
    claim String,
    evidence LowCardinality(String),
    scope Map(LowCardinality(String), String),
    verdict LowCardinality(String),
    previous_verdict LowCardinality(Nullable(String)),
    value Nullable(Float64),
    threshold_min Nullable(Float64),
    threshold_max Nullable(Float64),
    window String,
    sample_size Int64,
    severity LowCardinality(String),
    action LowCardinality(String),
    dry_run Bool,
    settings_version String,
    message String,
    kafka_partition Int32,
    kafka_offset Int64
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (case_name, ts, event_id)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS alerts (
    event_id String,
    ts DateTime64(3, 'UTC'),
    fingerprint String,
    source LowCardinality(String),
    status LowCardinality(String),
    severity LowCardinality(String),
    title String,
    message String,
    labels Map(LowCardinality(String), String),
    evidence Map(LowCardinality(String), Float64),
    starts_at DateTime64(3, 'UTC'),
    ends_at Nullable(DateTime64(3, 'UTC')),
    flapping Bool,
    acknowledged_by Nullable(String),
    settings_version String,
    kafka_partition Int32,
    kafka_offset Int64
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (fingerprint, ts, event_id)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS reverify_deadletter (
    event_id String,
    ts DateTime64(3, 'UTC'),
    topic LowCardinality(String),
    partition Int32,
    offset Int64,
    key Nullable(String),
    value String,
    reason String,
    error_type LowCardinality(String),
    worker LowCardinality(String),
    kafka_partition Int32,
    kafka_offset Int64
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (topic, ts, event_id)
SETTINGS non_replicated_deduplication_window = 1000;
