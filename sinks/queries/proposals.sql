-- Pending proposals (no approval or rejection yet), with the id `reverify approve` / `reject` take; best first.
-- Not limited by --since: a proposal waits until someone decides.
SELECT p.proposal_id, p.last_ts AS ts, p.agent_name, p.task_type, p.variant_id, p.proposal_type, p.confidence,
       p.reasoning
FROM (
    SELECT proposal_id, max(ts) AS last_ts, argMax(agent_name, ts) AS agent_name, argMax(task_type, ts) AS task_type,
           argMax(variant_id, ts) AS variant_id, argMax(proposal_type, ts) AS proposal_type,
           argMax(confidence, ts) AS confidence, argMax(reasoning, ts) AS reasoning, argMax(status, ts) AS status
    FROM crl_proposals FINAL GROUP BY proposal_id
) AS p
WHERE p.status = 'pending' AND p.proposal_id NOT IN (SELECT proposal_id FROM control_approvals)
  AND ({agent:String} = '' OR p.agent_name = {agent:String})
  AND ({task:String} = '' OR p.task_type = {task:String})
ORDER BY p.confidence DESC, p.last_ts
