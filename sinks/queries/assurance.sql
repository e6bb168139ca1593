-- Each assurance case's current verdict per scope, with the evidence it was decided on.
SELECT case_name AS case, toString(scope) AS scope,
       argMax(verdict, r.ts) AS verdict, argMax(evidence, r.ts) AS evidence,
       argMax(value, r.ts) AS value, argMax(threshold_min, r.ts) AS threshold_min,
       argMax(threshold_max, r.ts) AS threshold_max, argMax(sample_size, r.ts) AS sample_size,
       argMax(severity, r.ts) AS severity, argMax(action, r.ts) AS action, max(r.ts) AS since
FROM assurance_results AS r FINAL
WHERE ts >= fromUnixTimestamp64Milli({since_ms:Int64})
  AND ({agent:String} = '' OR r.scope['agent'] = {agent:String} OR r.scope['agent_name'] = {agent:String})
  AND ({task:String} = '' OR r.scope['task'] = {task:String} OR r.scope['task_type'] = {task:String})
GROUP BY case_name, r.scope
ORDER BY verdict = 'passed', case, toString(r.scope)
