-- Arms by Q: the latest Q-value per arm, outcome statistics over the window, and the latest decision.
WITH
    o AS (
        SELECT agent_name, task_type, variant_id,
               count() AS invocations,
               avgIf(success, NOT awaiting_feedback) AS success_rate,
               avgIf(reward, NOT awaiting_feedback) AS reward_mean,
               quantileExactInclusive(0.95)(latency_ms) AS latency_p95,
               avg(cost_usd) AS cost_mean
        FROM agent_outcomes FINAL
        WHERE ts >= fromUnixTimestamp64Milli({since_ms:Int64})
          AND ({agent:String} = '' OR agent_name = {agent:String})
          AND ({task:String} = '' OR task_type = {task:String})
        GROUP BY agent_name, task_type, variant_id
    ),
    q AS (
        SELECT agent_name, task_type, variant_id, argMax(q, ts) AS q, argMax(n, ts) AS n
        FROM crl_qvalues FINAL
        GROUP BY agent_name, task_type, variant_id
    ),
    d AS (
        SELECT agent_name, task_type, variant_id, argMax(decision, ts) AS decision
        FROM crl_decisions FINAL
        GROUP BY agent_name, task_type, variant_id
    )
SELECT o.agent_name AS agent, o.task_type AS task, o.variant_id AS variant,
       q.q AS q, q.n AS n, o.invocations AS invocations,
       round(o.success_rate, 4) AS success_rate, round(o.reward_mean, 4) AS reward_mean,
       round(o.latency_p95, 3) AS latency_p95_ms, round(o.cost_mean, 6) AS cost_mean_usd,
       ifNull(d.decision, 'none') AS decision
FROM o
LEFT JOIN q ON q.agent_name = o.agent_name AND q.task_type = o.task_type AND q.variant_id = o.variant_id
LEFT JOIN d ON d.agent_name = o.agent_name AND d.task_type = o.task_type AND d.variant_id = o.variant_id
ORDER BY q DESC, invocations DESC, agent, task, variant
SETTINGS join_use_nulls = 1
