"""``reverify query incidents`` and the dashboard read each incident at its latest change, with the seed's numbers."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any

from reverify.sinks import clickhouse
from reverify.sinks.analytics import execute
from reverify.sinks.dashboard import dashboard
from reverify.sinks.migrate import migrate
from reverify.streams.settings import Settings

NOW = int(time.time() * 1000)


def _at(ms: int | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, tz=timezone.utc)


def _row(incident: str, change: str, status: str, ts: int, **fields: Any) -> dict[str, Any]:
    detected = NOW - 600_000
    return {
        "event_id": f"{incident}-{change}",
        "ts": _at(ts),
        "incident_id": incident,
        "agent_name": "hunter",
        "task_type": "scrape",
        "component": "",
        "cause": "degradation",
        "trigger": "cusum:success",
        "status": status,
        "change": change,
        "failure_started_at": _at(detected - 5_000),
        "detected_at": _at(detected),
        "acted_at": _at(detected),
        "resolved_at": None,
        "escalated_at": None,
        "mttr_ms": None,
        "time_to_detect_ms": 5_000,
        "time_to_act_ms": 0,
        "from_variant": "v2",
        "to_variant": "v1",
        "rollback_id": "rb-x",
        "action": "rollback v2 -> v1",
        "baseline_success_rate": 0.9,
        "required_success_rate": 0.81,
        "outcomes": 0,
        "successes": 0,
        "lower_bound": 0.0,
        "automatic": False,
        "escalation_reason": None,
        "why": change,
        "root_cause": "",
        "kafka_partition": 0,
        "kafka_offset": 0,
        **fields,
    }


def test_latest_change_per_incident_mttr_and_share_recovered_without_a_person(settings: Settings) -> None:
    client = clickhouse.connect(settings.clickhouse)
    try:
        migrate(client)
        rows = []
        for name, mttr, automatic in (("inc-a", 30_000, True), ("inc-b", 45_000, True), ("inc-c", 90_000, False)):
            rows.append(_row(name, "opened", "verifying", NOW - 500_000))
            rows.append(_row(name, "resolved", "resolved", NOW - 400_000, mttr_ms=mttr, automatic=automatic))
        rows.append(_row("inc-d", "opened", "verifying", NOW - 500_000))
        rows.append(_row("inc-d", "escalated", "escalated", NOW - 200_000, escalation_reason="no traffic"))
        rows.append(
            _row(
                "inc-e", "opened", "verifying", NOW - 100_000, task_type="", component="clay_api", detected_at=_at(NOW)
            )
        )
        columns = list(rows[0])
        client.insert("crl_incidents", [[r[c] for c in columns] for r in rows], column_names=columns)

        answer = execute(client, {"name": "incidents"})
        table = [dict(zip(answer["columns"], row, strict=True)) for row in answer["rows"]]
        by_id = {r["incident_id"]: r for r in table}
        assert sorted(by_id) == ["inc-a", "inc-b", "inc-c", "inc-d", "inc-e"]
        assert (by_id["inc-a"]["status"], by_id["inc-a"]["mttr_s"], by_id["inc-a"]["auto"]) == ("resolved", 30.0, True)
        assert (by_id["inc-d"]["status"], by_id["inc-d"]["mttr_s"]) == ("escalated", None)
        assert by_id["inc-e"]["task"] == "clay_api" and by_id["inc-a"]["detect_s"] == 5.0
        only = execute(client, {"name": "incidents", "task": "clay_api"})["rows"]
        assert [row[0] for row in only] == ["inc-e"]

        board = dashboard(client)
        overview = board["overview"]
        assert (overview["incidents_30d"], overview["incidents_open"], overview["incidents_escalated"]) == (5, 1, 1)
        assert overview["mttr_median_s"] == 45.0
        assert overview["recovered_without_a_person"] == 0.5  # 2 automatic of 3 resolved and 1 escalated
        assert [r["incident_id"] for r in board["recent_incidents"]][:1] == ["inc-e"]
    finally:
        client.close()
