-- Every model version with its latest report: accuracy alarms first, then by accuracy (lowest first).
SELECT agent_name AS agent, model_version AS model, argMax(kind, r.ts) AS kind, max(r.ts) AS last_report,
       argMax(judged, r.ts) AS judged, argMax(window_size, r.ts) AS window,
       round(argMax(accuracy, r.ts), 4) AS accuracy, round(argMax(baseline_accuracy, r.ts), 4) AS baseline,
       round(argMax(mae, r.ts), 4) AS mae, round(argMax(brier, r.ts), 4) AS brier, round(argMax(ece, r.ts), 4) AS ece,
       round(argMax(prediction_psi, r.ts), 4) AS prediction_psi, argMax(prediction_drift, r.ts) AS prediction_drift,
       argMax(alarm, r.ts) AS alarm
FROM model_reports AS r FINAL
WHERE ts >= fromUnixTimestamp64Milli({since_ms:Int64})
  AND ({agent:String} = '' OR agent_name = {agent:String})
GROUP BY agent_name, model_version
ORDER BY alarm DESC, accuracy ASC NULLS LAST, agent, model
