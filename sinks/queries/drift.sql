-- Every drift series with its latest report, alarms first, then by PSI; serial_correlation is the baseline's
-- dependence the alarm is calibrated for, calibrated = false a series too dependent to alarm (reported only).
SELECT agent_name AS agent, feature, ifNull(variant_id, '') AS variant,
       max(r.ts) AS last_report, argMax(psi, r.ts) AS psi,
       argMax(ks_statistic, r.ts) AS ks, argMax(ks_pvalue, r.ts) AS ks_pvalue,
       argMax(mean_shift, r.ts) AS mean_shift_sd, argMax(variance_ratio, r.ts) AS variance_ratio,
       argMax(severity, r.ts) AS severity, argMax(alarm, r.ts) AS alarm,
       argMax(serial_correlation, r.ts) AS serial_correlation, argMax(calibrated, r.ts) AS calibrated
FROM drift_reports AS r FINAL
WHERE ts >= fromUnixTimestamp64Milli({since_ms:Int64})
  AND ({agent:String} = '' OR agent_name = {agent:String})
GROUP BY agent_name, feature, variant
ORDER BY alarm DESC, psi DESC, agent, feature, variant
