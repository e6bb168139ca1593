-- One agent (and task): active-variant changes, rollbacks and alerts, in time order.
SELECT ts, kind, task, detail, id FROM (
    SELECT ts, 'active' AS kind, task_type AS task,
           concat(ifNull(previous_variant, '-'), ' -> ', variant_id, ' (', reason, ')') AS detail, event_id AS id
    FROM crl_active FINAL
    WHERE agent_name = {agent:String} AND ({task:String} = '' OR task_type = {task:String})
    UNION ALL
    SELECT ts, 'rollback', task_type, concat(from_variant, ' -> ', to_variant, ': ', reason), rollback_id
    FROM control_rollbacks FINAL
    WHERE agent_name = {agent:String} AND ({task:String} = '' OR task_type = {task:String})
    UNION ALL
    SELECT ts, concat('alert ', status), if(labels['task'] != '', labels['task'], labels['task_type']),
           concat(severity, ': ', title), fingerprint
    FROM alerts FINAL
    WHERE (labels['agent'] = {agent:String} OR labels['agent_name'] = {agent:String})
      AND ({task:String} = '' OR labels['task'] = {task:String} OR labels['task_type'] = {task:String})
)
WHERE ts >= fromUnixTimestamp64Milli({since_ms:Int64})
ORDER BY ts, kind, id
