-- Per arm per hour rollups for the dashboard: invocations, successes, reward and cost sums,
-- latency quantile state (merge with quantilesMerge), and errors (pipeline errors apart: they never
-- count against a variant). Two views feed one AggregatingMergeTree.

CREATE TABLE IF NOT EXISTS arm_hourly (
    agent_name LowCardinality(String),
    task_type LowCardinality(String),
    variant_id LowCardinality(String),
    hour DateTime('UTC'),
    invocations SimpleAggregateFunction(sum, UInt64),
    successes SimpleAggregateFunction(sum, UInt64),
    reward_sum SimpleAggregateFunction(sum, Float64),
    cost_sum SimpleAggregateFunction(sum, Float64),
    latency_state AggregateFunction(quantiles(0.5, 0.95, 0.99), Float64),
    errors SimpleAggregateFunction(sum, UInt64),
    pipeline_errors SimpleAggregateFunction(sum, UInt64)
) ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (agent_name, task_type, variant_id, hour);

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
GROUP BY agent_name, task_type, variant_id, hour;

CREATE MATERIALIZED VIEW IF NOT EXISTS arm_hourly_errors_mv TO arm_hourly AS
SELECT
    agent_name,
    ifNull(task_type, '') AS task_type,
    ifNull(variant_id, '') AS variant_id,
    toStartOfHour(ts) AS hour,
    toUInt64(0) AS invocations,
    toUInt64(0) AS successes,
    toFloat64(0) AS reward_sum,
    toFloat64(0) AS cost_sum,
    toUInt64(countIf(NOT pipeline)) AS errors,
    toUInt64(countIf(pipeline)) AS pipeline_errors
FROM agent_errors
GROUP BY agent_name, task_type, variant_id, hour;
