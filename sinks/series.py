"""Time series for the web console's charts, read from the history with the read-only path of ``reverify query``.

Every query here goes through :func:`sinks.analytics.run_sql` with ``readonly = 2`` (ClickHouse refuses
writes) and takes its filters as query parameters, never as SQL text. Times come back as milliseconds since
the epoch, bucketed into ``step_ms`` so a chart has a few dozen points whatever the window.

>>> step_for(3600)
60000
>>> step_for(60)
1000
"""

from __future__ import annotations

import time
from typing import Any

from clickhouse_connect.driver.client import Client
from reverify.sinks.analytics import parse_since, run_sql

POINTS = 60  # points per chart line: enough for a shape, few enough to read
_STEPS_MS = (1_000, 5_000, 10_000, 30_000, 60_000, 300_000, 900_000, 3_600_000, 21_600_000, 86_400_000)

_AGENTS = """
SELECT agent_name AS agent, groupUniqArray(task_type) AS tasks, count() AS outcomes, max(ts) AS last_seen
FROM agent_outcomes WHERE ts >= fromUnixTimestamp64Milli({since_ms:Int64})
GROUP BY agent_name ORDER BY agent_name
"""

_FLEET = """
SELECT intDiv(toUnixTimestamp64Milli(ts), {step_ms:Int64}) * {step_ms:Int64} AS t,
       count() AS outcomes, avg(success) AS success_rate, avg(reward) AS reward
FROM agent_outcomes FINAL WHERE ts >= fromUnixTimestamp64Milli({since_ms:Int64})
GROUP BY t ORDER BY t
"""

_OUTCOMES = """
SELECT intDiv(toUnixTimestamp64Milli(ts), {step_ms:Int64}) * {step_ms:Int64} AS t, variant_id AS variant,
       count() AS outcomes, avg(success) AS success_rate, avg(reward) AS reward
FROM agent_outcomes FINAL
WHERE agent_name = {agent:String} AND task_type = {task:String} AND ts >= fromUnixTimestamp64Milli({since_ms:Int64})
GROUP BY t, variant ORDER BY t, variant
"""

_QVALUES = """
SELECT intDiv(toUnixTimestamp64Milli(ts), {step_ms:Int64}) * {step_ms:Int64} AS t, variant_id AS variant,
       argMax(q, ts) AS q, argMax(n, ts) AS n
FROM crl_qvalues FINAL
WHERE agent_name = {agent:String} AND task_type = {task:String} AND ts >= fromUnixTimestamp64Milli({since_ms:Int64})
GROUP BY t, variant ORDER BY t, variant
"""

_MOMENTS = """
SELECT t, kind, task, id, detail FROM (
SELECT toUnixTimestamp64Milli(ts) AS t, 'rollback' AS kind, task_type AS task, rollback_id AS id,
       concat(from_variant, ' -> ', to_variant, ': ', reason) AS detail
FROM control_rollbacks FINAL
WHERE ({agent:String} = '' OR agent_name = {agent:String}) AND ({task:String} = '' OR task_type = {task:String})
  AND ts >= fromUnixTimestamp64Milli({since_ms:Int64})
UNION ALL
SELECT toUnixTimestamp64Milli(ts), 'promotion', task_type, event_id,
       concat(ifNull(previous_variant, '-'), ' -> ', variant_id, ' (', reason, ')')
FROM crl_active FINAL
WHERE ({agent:String} = '' OR agent_name = {agent:String}) AND ({task:String} = '' OR task_type = {task:String})
  AND reason IN ('auto_apply', 'approval') AND ts >= fromUnixTimestamp64Milli({since_ms:Int64})
) ORDER BY t
"""

_ACTIVE = """
SELECT task_type AS task, argMax(variant_id, ts) AS variant, argMax(reason, ts) AS reason, max(ts) AS since
FROM crl_active FINAL WHERE agent_name = {agent:String} GROUP BY task_type ORDER BY task_type
"""

_DECISIONS = """
SELECT task_type AS task, variant_id AS variant, argMax(decision, ts) AS decision, argMax(q, ts) AS q,
       argMax(n, ts) AS n, argMax(p_beats_active, ts) AS p_beats_active, argMax(reasoning, ts) AS reasoning,
       max(ts) AS since
FROM crl_decisions FINAL WHERE agent_name = {agent:String}
GROUP BY task_type, variant_id ORDER BY task_type, variant_id
"""

_DRIFT = """
SELECT intDiv(toUnixTimestamp64Milli(ts), {step_ms:Int64}) * {step_ms:Int64} AS t,
       max(psi) AS psi, max(ks_statistic) AS ks, max(alarm) AS alarm
FROM drift_reports FINAL
WHERE agent_name = {agent:String} AND feature = {feature:String} AND ifNull(variant_id, '') = {variant:String}
  AND ts >= fromUnixTimestamp64Milli({since_ms:Int64})
GROUP BY t ORDER BY t
"""

_LATEST_DRIFT = """
SELECT argMax(bin_edges, ts) AS edges, argMax(window_start, ts) AS window_start, argMax(window_end, ts) AS window_end,
       argMax(baseline_size, ts) AS baseline_size
FROM drift_reports FINAL
WHERE agent_name = {agent:String} AND feature = {feature:String} AND ifNull(variant_id, '') = {variant:String}
"""

_ALARMS = """
SELECT toUnixTimestamp64Milli(min(ts)) AS t, any(event_id) AS id, max(psi) AS psi
FROM drift_reports FINAL
WHERE agent_name = {agent:String} AND feature = {feature:String} AND ifNull(variant_id, '') = {variant:String}
  AND alarm AND ts >= fromUnixTimestamp64Milli({since_ms:Int64})
GROUP BY intDiv(toUnixTimestamp64Milli(ts), {step_ms:Int64} * 5) ORDER BY t
"""

# The values of one drift series in agent_outcomes: an outcome column, else a feature of that name.
_OUTCOME_COLUMNS = ("reward", "latency_ms", "cost_usd")

_BINNED = """
SELECT if(b = 0, {{bins:Int64}}, b) AS bin, count() AS n FROM (
    SELECT arrayFirstIndex(e -> v < e, arraySlice({{edges:Array(Float64)}}, 2)) AS b FROM (
        SELECT {value} AS v FROM {table} FINAL
        WHERE agent_name = {{agent:String}} AND ({{variant:String}} = '' OR variant_id = {{variant:String}}) {where}
        ORDER BY ts {limit}
    )
) GROUP BY bin ORDER BY bin
"""


def step_for(window_s: float) -> int:
    """The bucket (ms) that gives about :data:`POINTS` points over ``window_s`` seconds, from a round list."""
    wanted = window_s * 1000 / POINTS
    return next((s for s in _STEPS_MS if s >= wanted), _STEPS_MS[-1])


_FIRST = "SELECT toUnixTimestamp64Milli(min(ts)) AS first FROM agent_outcomes WHERE ts >= fromUnixTimestamp64Milli({since_ms:Int64})"


def _window(client: Client, since: str) -> dict[str, int]:
    """The window's start and the bucket giving about :data:`POINTS` points over the part of it holding data."""
    now = time.time()
    since_ms = int((now - parse_since(since)) * 1000)
    first = records(client, _FIRST, {"since_ms": since_ms})
    start = max(since_ms, int(first[0]["first"] or 0)) if first else since_ms
    return {"since_ms": since_ms, "step_ms": step_for(max(1.0, now - start / 1000))}


def records(client: Client, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    """``sql`` run read-only with ``params``, as a list of dicts (column -> JSON-friendly value)."""
    answer = run_sql(client, sql, params, readonly=2)
    return [dict(zip(answer["columns"], row, strict=True)) for row in answer["rows"]]


def agents(client: Client, since: str = "24h") -> list[dict[str, Any]]:
    """Agents with outcomes in the window: their tasks, outcome count and last outcome."""
    return records(client, _AGENTS, _window(client, since))


def fleet(client: Client, since: str = "1h") -> dict[str, Any]:
    """The fleet's outcomes, success rate and mean reward per bucket, and every rollback and promotion."""
    params = _window(client, since)
    return {
        "points": records(client, _FLEET, params),
        "moments": records(client, _MOMENTS, {**params, "agent": "", "task": ""}),
    }


def agent(client: Client, name: str, since: str = "1h") -> dict[str, Any]:
    """One agent: per task the outcome and Q series per variant, its moments; active variants and decisions."""
    params = {**_window(client, since), "agent": name}
    active = records(client, _ACTIVE, params)
    decisions = records(client, _DECISIONS, params)
    tasks = sorted({r["task"] for r in active} | {r["task"] for r in decisions})
    per_task = {}
    for task in tasks or [""]:
        p = {**params, "task": task}
        per_task[task] = {
            "outcomes": records(client, _OUTCOMES, p),
            "qvalues": records(client, _QVALUES, p),
            "moments": records(client, _MOMENTS, p),
        }
    return {"active": active, "decisions": decisions, "tasks": per_task}


def drift_series(client: Client, name: str, feature: str, variant: str = "", since: str = "1h") -> dict[str, Any]:
    """PSI and KS of one drift series per bucket, its alarm moments, and the latest report's bins."""
    params = {**_window(client, since), "agent": name, "feature": feature, "variant": variant}
    latest = records(client, _LATEST_DRIFT, params)
    return {
        "points": records(client, _DRIFT, params),
        "alarms": records(client, _ALARMS, params),
        "latest": latest[0] if latest and latest[0].get("edges") else None,
    }


def _shares(rows: list[dict[str, Any]], bins: int) -> list[float]:
    counts = [0.0] * bins
    for row in rows:
        if 1 <= row["bin"] <= bins:
            counts[row["bin"] - 1] = float(row["n"])
    total = sum(counts)
    return [c / total for c in counts] if total else counts


def histograms(client: Client, name: str, feature: str, variant: str, latest: dict[str, Any]) -> dict[str, Any] | None:
    """The shares of the latest report's bins among the series' first ``baseline_size`` values (the learned
    baseline, unless a person pinned or reset it) and among the values of its current window, read from the
    outcomes (their fields and ``features``) or, for a series they do not hold, from the metrics of that name;
    None when neither holds it or the report has no window."""
    edges = [float(e) for e in latest.get("edges") or []]
    if len(edges) < 2 or not latest.get("window_start") or not latest.get("window_end"):
        return None
    if feature in _OUTCOME_COLUMNS:
        sources = [("agent_outcomes", feature, "1")]
    else:
        sources = [
            ("agent_outcomes", "features[{feature:String}]", "mapContains(features, {feature:String})"),
            ("agent_metrics", "value", "name = {feature:String}"),
        ]
    params = {"agent": name, "variant": variant, "feature": feature, "edges": edges, "bins": len(edges) - 1}
    for table, value, has in sources:
        baseline_sql = _BINNED.format(table=table, value=value, where=f"AND {has}", limit="LIMIT {baseline:Int64}")
        window_sql = _BINNED.format(
            table=table,
            value=value,
            where=f"AND {has} AND ts BETWEEN parseDateTime64BestEffort({{start:String}}, 3) "
            "AND parseDateTime64BestEffort({end:String}, 3)",
            limit="",
        )
        baseline = records(client, baseline_sql, {**params, "baseline": int(latest.get("baseline_size") or 0)})
        if not baseline:
            continue
        window = records(client, window_sql, {**params, "start": latest["window_start"], "end": latest["window_end"]})
        if not window:
            return None
        bins = len(edges) - 1
        return {"edges": edges, "baseline": _shares(baseline, bins), "current": _shares(window, bins)}
    return None


_APPROVALS = """
SELECT ts, proposal_id, approved, by, comment FROM control_approvals FINAL ORDER BY ts DESC LIMIT {limit:Int64}
"""


def approvals(client: Client, limit: int = 20) -> list[dict[str, Any]]:
    """The latest answers to proposals (approve / reject), newest first."""
    return records(client, _APPROVALS, {"limit": limit})
