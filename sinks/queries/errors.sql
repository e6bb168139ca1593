-- Components by error rate: errors (pipeline errors apart) per invocation of the agent in the window.
WITH inv AS (
    SELECT agent_name, count() AS invocations
    FROM agent_outcomes FINAL
    WHERE ts >= fromUnixTimestamp64Milli({since_ms:Int64})
      AND ({task:String} = '' OR task_type = {task:String})
    GROUP BY agent_name
)
SELECT e.agent_name AS agent, e.component AS component,
       countIf(NOT e.pipeline) AS errors, countIf(e.pipeline) AS pipeline_errors,
       any(inv.invocations) AS invocations,
       round(if(any(inv.invocations) = 0, NULL, countIf(NOT e.pipeline) / any(inv.invocations)), 4) AS error_rate,
       countIf(e.severity = 'critical') AS critical, topK(1)(e.error_type)[1] AS top_error_type, max(e.ts) AS last_seen
FROM agent_errors AS e FINAL
LEFT JOIN inv ON inv.agent_name = e.agent_name
WHERE e.ts >= fromUnixTimestamp64Milli({since_ms:Int64})
  AND ({agent:String} = '' OR e.agent_name = {agent:String})
  AND ({task:String} = '' OR e.task_type = {task:String})
GROUP BY agent, component
ORDER BY error_rate DESC NULLS LAST, errors DESC, agent, component
SETTINGS join_use_nulls = 1
