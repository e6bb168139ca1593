-- The rollback history: when, which id, from -> to, why, and the test statistic that decided it.
SELECT ts, rollback_id, agent_name AS agent, task_type AS task,
       concat(from_variant, ' -> ', to_variant) AS change, reason, trigger,
       round(statistic, 4) AS statistic, round(threshold, 4) AS threshold
FROM control_rollbacks FINAL
WHERE ts >= fromUnixTimestamp64Milli({since_ms:Int64})
  AND ({agent:String} = '' OR agent_name = {agent:String})
  AND ({task:String} = '' OR task_type = {task:String})
ORDER BY ts DESC, rollback_id
