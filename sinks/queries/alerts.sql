-- Alerts by fingerprint: the latest state, firing first, then the most recent.
SELECT fingerprint, argMax(status, a.ts) AS status, argMax(severity, a.ts) AS severity,
       argMax(source, a.ts) AS source, argMax(title, a.ts) AS title,
       argMax(starts_at, a.ts) AS starts_at, argMax(ends_at, a.ts) AS ends_at,
       max(a.ts) AS last_change, argMax(flapping, a.ts) AS flapping,
       ifNull(argMax(tuple(acknowledged_by), a.ts).1, '') AS acked_by,
       toString(argMax(labels, a.ts)) AS labels, toString(argMax(evidence, a.ts)) AS evidence
FROM alerts AS a FINAL
WHERE ts >= fromUnixTimestamp64Milli({since_ms:Int64})
  AND ({agent:String} = '' OR a.labels['agent'] = {agent:String} OR a.labels['agent_name'] = {agent:String})
  AND ({task:String} = '' OR a.labels['task'] = {task:String} OR a.labels['task_type'] = {task:String})
GROUP BY fingerprint
ORDER BY status = 'firing' DESC, last_change DESC, fingerprint
