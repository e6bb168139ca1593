-- Incidents, newest first, each at its latest change: status, MTTR (first evidence of the failure -> verified
-- recovery), time to detect and to act, recovered without a person, why.
SELECT incident_id, agent_name AS agent, if(task_type != '', task_type, component) AS task, cause, status,
       round(mttr_ms / 1000, 1) AS mttr_s, round(time_to_detect_ms / 1000, 1) AS detect_s,
       round(time_to_act_ms / 1000, 1) AS act_s, automatic AS auto, why, detected_at
FROM (
    SELECT * FROM crl_incidents FINAL
    WHERE ts >= fromUnixTimestamp64Milli({since_ms:Int64})
    ORDER BY incident_id, ts DESC, status = 'resolved' DESC
    LIMIT 1 BY incident_id
)
WHERE ({agent:String} = '' OR agent_name = {agent:String})
  AND ({task:String} = '' OR task_type = {task:String} OR component = {task:String})
ORDER BY detected_at DESC, incident_id
