"""The seed's CRL safety dashboard, read from ClickHouse: its five sections, incidents and the error budgets.

Sections (seed *crl-safety-mechanisms*, "Safety Dashboard"): system health
overview, recent rollbacks (last 10), pending proposals, high-confidence
variants ready for auto-apply (Q >= 0.9 and n >= 10), and degradation alerts
(firing alerts). Arm throughput for the overview comes from the ``arm_hourly``
rollup that the materialized views keep. Beside them, the self-healing seed's
section: recent incidents (last 10) with their MTTR, and in the overview the
median MTTR and the share of incidents recovered without a person (seed
target: more than 80 %) over 30 days.
Also ``error_budgets``: each SLO's latest budget and burn rates per agent (``reverify query slo``).
Then the running A/B experiments (``crl.experiments``; their lift and decision
are ``reverify experiment status``'s, which the ``reverify dashboard`` command adds).

>>> status_of({"rollbacks_30d": 0, "firing_critical": 0, "firing_alerts": 0})
'HEALTHY'
>>> status_of({"rollbacks_30d": 4, "firing_critical": 0, "firing_alerts": 1})
'DEGRADED'
>>> status_of({"rollbacks_30d": 1, "firing_critical": 2, "firing_alerts": 2})
'CRITICAL'
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from clickhouse_connect.driver.client import Client
from reverify.sinks.jsonable import jsonable

AUTO_APPLY_Q = 0.9
AUTO_APPLY_N = 10

_OVERVIEW = """
SELECT
    (SELECT count() FROM (SELECT DISTINCT agent_name, task_type, variant_id FROM crl_qvalues)) AS q_table_entries,
    (SELECT uniqExact(agent_name) FROM crl_active) AS agents_with_variants,
    (SELECT count() FROM control_rollbacks FINAL WHERE ts >= fromUnixTimestamp64Milli({d30:Int64})) AS rollbacks_30d,
    (SELECT count() FROM (
        SELECT proposal_id, argMax(status, ts) AS s FROM crl_proposals FINAL GROUP BY proposal_id
     ) WHERE s = 'pending' AND proposal_id NOT IN (SELECT proposal_id FROM control_approvals)) AS pending_proposals,
    (SELECT sum(invocations) FROM arm_hourly WHERE hour >= toStartOfHour(fromUnixTimestamp64Milli({d1:Int64})))
        AS invocations_24h,
    (SELECT sum(successes) / greatest(sum(invocations), 1) FROM arm_hourly
        WHERE hour >= toStartOfHour(fromUnixTimestamp64Milli({d1:Int64}))) AS success_rate_24h,
    (SELECT sum(errors) FROM arm_hourly WHERE hour >= toStartOfHour(fromUnixTimestamp64Milli({d1:Int64})))
        AS errors_24h
"""

_FIRING = """
SELECT fingerprint, status, severity, source, title, starts_at, labels, evidence FROM (
    SELECT fingerprint, argMax(status, a.ts) AS status, argMax(severity, a.ts) AS severity,
           argMax(source, a.ts) AS source, argMax(title, a.ts) AS title, argMax(starts_at, a.ts) AS starts_at,
           argMax(a.labels, a.ts) AS labels, argMax(a.evidence, a.ts) AS evidence
    FROM alerts AS a FINAL GROUP BY fingerprint
) WHERE status = 'firing'
ORDER BY severity = 'critical' DESC, starts_at DESC
"""

_ROLLBACKS = """
SELECT ts, rollback_id, agent_name, task_type, from_variant, to_variant, reason, trigger, degradation_metrics
FROM control_rollbacks FINAL ORDER BY ts DESC LIMIT 10
"""

_LATEST_INCIDENTS = """
SELECT * FROM crl_incidents FINAL WHERE ts >= fromUnixTimestamp64Milli({d30:Int64})
ORDER BY incident_id, ts DESC, status = 'resolved' DESC LIMIT 1 BY incident_id
"""

_INCIDENT_STATS = f"""
SELECT count() AS incidents_30d,
       countIf(status IN ('open', 'verifying')) AS incidents_open,
       countIf(status = 'escalated') AS incidents_escalated,
       round(quantileExactInclusiveIf(0.5)(mttr_ms, status = 'resolved') / 1000, 1) AS mttr_median_s,
       round(countIf(automatic) / greatest(countIf(status IN ('resolved', 'escalated')), 1), 3)
           AS recovered_without_a_person
FROM ({_LATEST_INCIDENTS})
"""

_INCIDENTS = f"""
SELECT incident_id, agent_name, if(task_type != '', task_type, component) AS task, cause, status,
       round(mttr_ms / 1000, 1) AS mttr_s, round(time_to_detect_ms / 1000, 1) AS detect_s,
       round(time_to_act_ms / 1000, 1) AS act_s, automatic, why
FROM ({_LATEST_INCIDENTS}) ORDER BY detected_at DESC LIMIT 10
"""

# The same query as `reverify query proposals` (sinks/queries/proposals.sql), for every agent and task.
_PENDING = (Path(__file__).parent / "queries" / "proposals.sql").read_text()

_READY = """
SELECT agent_name, task_type, variant_id, q, n, success_rate, last_update FROM (
    SELECT agent_name, task_type, variant_id, argMax(q, ts) AS q, argMax(n, ts) AS n,
           argMax(success_rate, ts) AS success_rate, max(ts) AS last_update
    FROM crl_qvalues FINAL GROUP BY agent_name, task_type, variant_id
) WHERE q >= {q_min:Float64} AND n >= {n_min:Int64}
ORDER BY q DESC, n DESC
"""


_SLO = (Path(__file__).parent / "queries" / "slo.sql").read_text()
_EXPERIMENTS = """
SELECT name, agent_name, task_type, variants, split, metric, started_at FROM (
    SELECT name, argMax(agent_name, ts) AS agent_name, argMax(task_type, ts) AS task_type,
           argMax(variants, ts) AS variants, argMax(split, ts) AS split, argMax(metric, ts) AS metric,
           argMax(started_at, ts) AS started_at, argMax(status, ts) AS status
    FROM crl_experiments FINAL GROUP BY name
) WHERE status = 'running'
ORDER BY started_at DESC
"""


def status_of(overview: dict[str, Any]) -> str:
    """HEALTHY, DEGRADED (a firing alert, or more than 3 rollbacks in 30 days, the seed's rate alarm) or CRITICAL."""
    if overview.get("firing_critical"):
        return "CRITICAL"
    if overview.get("firing_alerts") or (overview.get("rollbacks_30d") or 0) > 3:
        return "DEGRADED"
    return "HEALTHY"


def _records(client: Client, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    result = client.query(sql, parameters=params, settings={"readonly": 2})
    return [{c: jsonable(v) for c, v in zip(result.column_names, row, strict=True)} for row in result.result_rows]


def dashboard(client: Client, now: float | None = None) -> dict[str, Any]:
    """The five sections of the safety dashboard, JSON-friendly.

    Returns
    -------
    dict
        ``generated``, ``status``, ``overview`` (dict), ``recent_rollbacks``,
        ``pending_proposals``, ``ready_for_auto_apply``, ``degradation_alerts``,
        ``recent_incidents``, ``error_budgets``,
        ``running_experiments`` (lists of dicts).
    """
    now = time.time() if now is None else now
    params = {"d30": int((now - 30 * 86400) * 1000), "d1": int((now - 86400) * 1000)}
    overview = _records(client, _OVERVIEW, params)[0]
    overview.update(_records(client, _INCIDENT_STATS, params)[0])
    firing = _records(client, _FIRING, {})
    overview["firing_alerts"] = len(firing)
    overview["firing_critical"] = sum(1 for a in firing if a["severity"] == "critical")
    return {
        "generated": jsonable(time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))),
        "status": status_of(overview),
        "overview": overview,
        "recent_rollbacks": _records(client, _ROLLBACKS, {}),
        "pending_proposals": _records(client, _PENDING, {"agent": "", "task": ""}),
        "ready_for_auto_apply": _records(client, _READY, {"q_min": AUTO_APPLY_Q, "n_min": AUTO_APPLY_N}),
        "degradation_alerts": firing,
        "recent_incidents": _records(client, _INCIDENTS, params),
        "error_budgets": _records(client, _SLO, {"since_ms": params["d1"], "agent": "", "task": ""}),
        "running_experiments": _records(client, _EXPERIMENTS, {}),
    }
