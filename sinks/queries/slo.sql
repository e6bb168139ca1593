-- Each SLO's latest error budget and burn rates per agent (and task, for SLOs with a budget per task), alerting
-- ones first, then the least budget left. burn_rates holds one rate per alert window (5m, 1h, ... 3d).
SELECT slo, agent_name AS agent, ifNull(task_type, '') AS task,
       argMax(sli, r.ts) AS sli, argMax(objective, r.ts) AS objective, argMax(window, r.ts) AS window,
       argMax(error_budget_remaining, r.ts) AS budget_remaining,
       argMax(error_budget_consumed, r.ts) AS budget_consumed,
       argMax(sli_value, r.ts) AS sli_value, argMax(total, r.ts) AS events,
       mapApply((w, rate) -> (w, round(rate, 2)), argMax(burn_rates, r.ts)) AS burn_rates,
       argMax(alerting, r.ts) AS alerting, max(r.ts) AS evaluated
FROM slo_reports AS r FINAL
WHERE ts >= fromUnixTimestamp64Milli({since_ms:Int64})
  AND ({agent:String} = '' OR agent_name = {agent:String})
  AND ({task:String} = '' OR task_type = {task:String})
GROUP BY slo, agent_name, task
ORDER BY alerting = 'none', budget_remaining, slo, agent, task
