"""Canned queries on a seeded scenario against an independent computation; read-only SQL; migrations."""

from __future__ import annotations

import random
import time
import uuid
from collections import defaultdict

import numpy as np
import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient
from prometheus_client import CollectorRegistry
from reverify.schemas import encode
from reverify.schemas.topics import TOPICS
from reverify.sinks.analytics import QueryError, execute
from reverify.sinks.clickhouse import close_embedded, connect
from reverify.sinks.dashboard import dashboard
from reverify.sinks.migrate import MigrationError, current_version, load_migrations, migrate
from reverify.sinks.writer import ClickHouseSink
from reverify.streams.settings import Settings
from reverify.streams.sink import sink_config
from reverify.streams.topics import ensure_topics

pytestmark = pytest.mark.integration
NOW = int(time.time() * 1000)
HOUR = 3_600_000


def produce(settings: Settings, topic: str, values: list[bytes]) -> None:
    producer = Producer(settings.kafka_config(**{"linger.ms": 20, "enable.idempotence": True}))
    for value in values:
        producer.produce(settings.topic(topic), value)
        producer.poll(0)
    assert producer.flush(30) == 0


def _id() -> str:
    return uuid.uuid4().hex


@pytest.fixture(scope="module")
def scenario(broker: str, tmp_path_factory: pytest.TempPathFactory):
    """Events of every kind produced to the broker and sunk into chdb; yields (client, events by schema)."""
    tmp = tmp_path_factory.mktemp("analytics")
    prefix = f"a{uuid.uuid4().hex[:8]}."
    settings = Settings.load(
        env={
            "REVERIFY_KAFKA": broker,
            "REVERIFY_TOPIC_PREFIX": prefix,
            "REVERIFY_CLICKHOUSE": f"chdb://{tmp}/ch",
            "REVERIFY_DATA_DIR": str(tmp),
        },
        path=None,
    )
    ensure_topics(AdminClient(settings.kafka_config()), prefix=prefix, partitions=settings.partitions)
    rng = random.Random(7)
    ev: dict[str, list[dict]] = defaultdict(list)
    for i in range(3000):
        agent, task, variant = rng.choice(["hunter", "scout"]), rng.choice(["scrape", "parse"]), rng.choice("abc")
        old = i % 10 == 0  # 10 % of the history is two days old: outside --since 24h
        ev["AgentOutcome"].append(
            {
                "event_id": _id(),
                "ts": NOW - (48 * HOUR if old else rng.randint(0, 20 * HOUR)),
                "agent_name": agent,
                "task_type": task,
                "variant_id": variant,
                "success": rng.random() < {"a": 0.9, "b": 0.7, "c": 0.5}[variant],
                "reward": rng.random(),
                "latency_ms": rng.expovariate(1 / 200),
                "cost_usd": rng.random() / 100,
            }
        )
    for i in range(200):
        ev["AgentError"].append(
            {
                "event_id": _id(),
                "ts": NOW - rng.randint(0, 20 * HOUR),
                "agent_name": rng.choice(["hunter", "scout"]),
                "task_type": "scrape",
                "component": rng.choice(["http", "parser", "llm"]),
                "error_type": "E",
                "pipeline": i % 7 == 0,
                "severity": "critical" if i % 5 == 0 else "error",
            }
        )
    for n, (agent, task, variant, q) in enumerate(
        [
            ("hunter", "scrape", "a", 0.2),
            ("hunter", "scrape", "a", 0.93),
            ("hunter", "scrape", "b", 0.71),
            ("scout", "parse", "c", 0.5),
        ]
    ):
        ev["QValue"].append(
            {
                "event_id": _id(),
                "ts": NOW - HOUR + n,
                "agent_name": agent,
                "task_type": task,
                "variant_id": variant,
                "q": q,
                "n": 10 + n,
                "alpha": 0.1,
                "success_rate": q,
                "reward_mean": q,
                "reward_var": 0.0,
                "error_rate": 0.0,
            }
        )
        ev["VariantDecision"].append(
            {
                "event_id": _id(),
                "ts": NOW - HOUR + n,
                "agent_name": agent,
                "task_type": task,
                "variant_id": variant,
                "decision": "auto_apply" if q >= 0.9 else "no_action",
                "reasoning": "",
                "q": q,
                "n": 10 + n,
            }
        )
    for k in range(3):
        ev["Rollback"].append(
            {
                "event_id": _id(),
                "ts": NOW - (3 - k) * HOUR,
                "rollback_id": f"rb-{k}",
                "agent_name": "hunter",
                "task_type": "scrape",
                "from_variant": "a",
                "to_variant": "b",
                "reason": f"reason {k}",
                "statistic": 5.0 + k,
                "threshold": 4.0,
            }
        )
        ev["ActiveVariant"].append(
            {
                "event_id": _id(),
                "ts": NOW - (3 - k) * HOUR + 1,
                "agent_name": "hunter",
                "task_type": "scrape",
                "variant_id": "b",
                "previous_variant": "a",
                "reason": "rollback",
                "cause_id": f"rb-{k}",
            }
        )
    for feature, psis in (("latency_ms", [0.05, 0.31]), ("reward", [0.4, 0.02]), ("cost_usd", [0.12])):
        for j, psi in enumerate(psis):
            ev["DriftReport"].append(
                {
                    "event_id": _id(),
                    "ts": NOW - HOUR + j,
                    "agent_name": "hunter",
                    "feature": feature,
                    "baseline_size": 1000,
                    "bin_edges": [],
                    "window_size": 500,
                    "psi": psi,
                    "ks_statistic": psi / 2,
                    "ks_pvalue": 0.5,
                    "mean_shift": 0.0,
                    "variance_ratio": 1.0,
                    "severity": "high" if psi >= 0.25 else "none",
                    "alarm": psi >= 0.25,
                    # a series too dependent to calibrate is reported, never alarmed (migration 003 stores it)
                    "serial_correlation": 0.95 if feature == "cost_usd" else 0.2,
                    "calibrated": feature != "cost_usd",
                }
            )
    for fp, states in (("f1", ["firing"]), ("f2", ["firing", "resolved"]), ("f3", ["firing"])):
        for j, status in enumerate(states):
            ev["Alert"].append(
                {
                    "event_id": _id(),
                    "ts": NOW - 2 * HOUR + j * 1000,
                    "fingerprint": fp,
                    "source": "rollback",
                    "status": status,
                    "severity": "critical" if fp == "f1" else "warning",
                    "title": fp,
                    "labels": {"agent": "hunter" if fp != "f3" else "scout", "task": "scrape"},
                    "starts_at": NOW - 2 * HOUR,
                }
            )
    for case, verdicts in (("acc", ["passed", "failed"]), ("lat", ["passed"])):
        for j, verdict in enumerate(verdicts):
            ev["AssuranceResult"].append(
                {
                    "event_id": _id(),
                    "ts": NOW - HOUR + j,
                    "case_name": case,
                    "evidence": "success_rate",
                    "scope": {"agent": "hunter"},
                    "verdict": verdict,
                    "value": 0.5 + j,
                    "sample_size": 100,
                }
            )
    for slo, agent, task, ago, remaining, alerting in (
        ("shop", "hunter", None, 2 * HOUR, 0.9, "none"),
        ("shop", "hunter", None, HOUR, -0.5, "page"),  # the latest of its series
        ("shop", "scout", None, HOUR, 0.97, "none"),
        ("fast", "scout", "parse", HOUR, 0.4, "none"),
        ("fast", "scout", "parse", 30 * HOUR, -3.0, "page"),  # older than --since 24h
    ):
        ev["SloReport"].append(
            {
                "event_id": _id(),
                "ts": NOW - ago,
                "slo": slo,
                "sli": "success_rate",
                "objective": 0.99,
                "window": "30d",
                "window_ms": 30 * 24 * HOUR,
                "agent_name": agent,
                "task_type": task,
                "good": 990,
                "total": 1000,
                "sli_value": 0.99,
                "error_budget_consumed": 1 - remaining,
                "error_budget_remaining": remaining,
                "burn_rates": {"5m": 20.0, "1h": 15.0},
                "alerting": alerting,
            }
        )
    ev["Proposal"].append(
        {
            "event_id": _id(),
            "ts": NOW - HOUR,
            "proposal_id": "p1",
            "agent_name": "hunter",
            "task_type": "scrape",
            "variant_id": "b",
            "reasoning": "r",
            "confidence": 0.8,
        }
    )
    by_schema = {t.value: name for name, t in TOPICS.items()}
    for schema, records in ev.items():
        produce(settings, by_schema[schema], [encode(schema, r) for r in records])
    close_embedded()
    sink = ClickHouseSink(sink_config(settings), batch_size=5000, max_delay=0.3, registry=CollectorRegistry())
    total = sum(len(r) for r in ev.values())
    deadline = time.monotonic() + 90
    while sum(sink.rows_written.values()) < total:
        assert time.monotonic() < deadline, sink.rows_written
        sink.poll_once(0.5)
    sink.close()
    client = connect(settings.clickhouse)
    yield client, ev
    close_embedded()


def table(answer: dict) -> list[dict]:
    return [dict(zip(answer["columns"], row, strict=True)) for row in answer["rows"]]


def test_leaderboard_matches_an_independent_computation(scenario) -> None:
    client, ev = scenario
    got = {(r["agent"], r["task"], r["variant"]): r for r in table(execute(client, {"name": "leaderboard"}))}
    arms: dict[tuple, list[dict]] = defaultdict(list)
    for o in ev["AgentOutcome"]:
        if o["ts"] >= NOW - 24 * HOUR:
            arms[(o["agent_name"], o["task_type"], o["variant_id"])].append(o)
    assert set(got) == set(arms)
    for arm, rows in arms.items():
        g = got[arm]
        assert g["invocations"] == len(rows)
        assert g["success_rate"] == pytest.approx(np.mean([r["success"] for r in rows]), abs=1e-4)
        assert g["reward_mean"] == pytest.approx(np.mean([r["reward"] for r in rows]), abs=1e-4)
        assert g["latency_p95_ms"] == pytest.approx(np.percentile([r["latency_ms"] for r in rows], 95), abs=1e-3)
        assert g["cost_mean_usd"] == pytest.approx(np.mean([r["cost_usd"] for r in rows]), abs=1e-6)
    assert got[("hunter", "scrape", "a")]["q"] == 0.93 and got[("hunter", "scrape", "a")]["decision"] == "auto_apply"
    filtered = table(execute(client, {"name": "leaderboard", "agent": "scout", "task": "parse"}))
    assert {(r["agent"], r["task"]) for r in filtered} == {("scout", "parse")}
    everything = table(execute(client, {"name": "leaderboard", "since": "7d"}))
    assert sum(r["invocations"] for r in everything) == len(ev["AgentOutcome"])


def test_rollbacks_drift_alerts_assurance_errors_timeline(scenario) -> None:
    client, ev = scenario
    rollbacks = table(execute(client, {"name": "rollbacks", "agent": "hunter"}))
    assert [r["rollback_id"] for r in rollbacks] == ["rb-2", "rb-1", "rb-0"]
    assert rollbacks[0]["change"] == "a -> b" and rollbacks[0]["reason"] == "reason 2"
    drift = table(execute(client, {"name": "drift"}))
    assert [(d["feature"], d["psi"], d["alarm"]) for d in drift] == [
        ("latency_ms", 0.31, True),
        ("cost_usd", 0.12, False),
        ("reward", 0.02, False),
    ]
    assert [(d["serial_correlation"], d["calibrated"]) for d in drift] == [(0.2, True), (0.95, False), (0.2, True)]
    alerts = table(execute(client, {"name": "alerts", "agent": "hunter"}))
    assert [(a["fingerprint"], a["status"]) for a in alerts] == [("f1", "firing"), ("f2", "resolved")]
    assurance = {a["case"]: a for a in table(execute(client, {"name": "assurance"}))}
    assert assurance["acc"]["verdict"] == "failed" and assurance["lat"]["verdict"] == "passed"
    errors = table(execute(client, {"name": "errors"}))
    invocations = defaultdict(int)
    for o in ev["AgentOutcome"]:
        invocations[o["agent_name"]] += o["ts"] >= NOW - 24 * HOUR
    expected = defaultdict(int)
    for e in ev["AgentError"]:
        if e["pipeline"]:
            continue
        expected[(e["agent_name"], e["component"])] += 1
    for row in errors:
        key = (row["agent"], row["component"])
        assert row["errors"] == expected[key]
        assert row["error_rate"] == pytest.approx(expected[key] / invocations[row["agent"]], abs=1e-4)
    rates = [r["error_rate"] for r in errors]
    assert rates == sorted(rates, reverse=True)
    timeline = table(execute(client, {"name": "timeline", "agent": "hunter", "task": "scrape"}))
    kinds = [t["kind"] for t in timeline]
    assert kinds.count("rollback") == 3 and kinds.count("active") == 3 and "alert firing" in kinds
    assert [t["ts"] for t in timeline] == sorted(t["ts"] for t in timeline)
    board = dashboard(client)
    assert board["overview"]["rollbacks_30d"] == 3 and board["overview"]["pending_proposals"] == 1
    proposals = table(execute(client, {"name": "proposals", "since": "1m"}))  # pending ones, however old
    assert [(p["proposal_id"], p["variant_id"]) for p in proposals] == [("p1", "b")]
    assert [p["proposal_id"] for p in board["pending_proposals"]] == ["p1"]  # the dashboard runs the same query
    assert table(execute(client, {"name": "proposals", "agent": "scout"})) == []
    assert [(r["agent_name"], r["variant_id"]) for r in board["ready_for_auto_apply"]] == [("hunter", "a")]
    assert board["status"] == "CRITICAL" and len(board["degradation_alerts"]) == 2


def test_slo_query_and_dashboard_show_each_series_latest_budget_alerting_first(scenario) -> None:
    client, _ = scenario
    rows = table(execute(client, {"name": "slo"}))
    got = [(r["slo"], r["agent"], r["task"], r["budget_remaining"], r["alerting"]) for r in rows]
    assert got == [
        ("shop", "hunter", "", -0.5, "page"),
        ("fast", "scout", "parse", 0.4, "none"),
        ("shop", "scout", "", 0.97, "none"),
    ]
    assert rows[0]["burn_rates"] == {"5m": 20.0, "1h": 15.0} and rows[0]["budget_consumed"] == 1.5
    assert [r["agent"] for r in table(execute(client, {"name": "slo", "agent": "scout", "task": "parse"}))] == ["scout"]
    assert [r["slo"] for r in dashboard(client)["error_budgets"]] == ["shop", "fast", "shop"]


def test_sql_is_read_only_and_parameterised(scenario) -> None:
    client, ev = scenario
    answer = execute(
        client,
        {
            "sql": "SELECT count() AS n FROM agent_outcomes WHERE agent_name = {a:String}",
            "params": {"a": "hunter'; DROP TABLE alerts; --"},
        },
    )
    assert answer == {"columns": ["n"], "rows": [[0]]}
    for sql in (
        "DROP TABLE alerts",
        "INSERT INTO alerts (event_id) VALUES ('x')",
        "ALTER TABLE alerts DELETE WHERE 1",
        "SELECT 1 SETTINGS readonly = 0",
    ):
        with pytest.raises(QueryError, match="read-only"):
            execute(client, {"sql": sql})
    with pytest.raises(QueryError):
        execute(client, {"sql": "SELEC 1"})
    with pytest.raises(QueryError, match="unknown query"):
        execute(client, {"name": "nope"})
    assert client.query("SELECT count() FROM alerts").result_rows[0][0] == len(ev["Alert"])


def test_migrate_is_idempotent_and_refuses_a_newer_database(scenario) -> None:
    client, _ = scenario
    newest = load_migrations()[-1].version
    assert migrate(client) == [] and migrate(client) == []
    assert current_version(client) == newest
    migrate(client, ttl_days=30)
    assert (
        "toIntervalDay(30)"
        in client.query("SELECT engine_full FROM system.tables WHERE name = 'alerts'").result_rows[0][0]
    )
    migrate(client)
    assert " TTL " not in client.query("SELECT engine_full FROM system.tables WHERE name = 'alerts'").result_rows[0][0]
    client.insert("schema_migrations", [[newest + 1, "future", "x"]], column_names=["version", "name", "checksum"])
    try:
        with pytest.raises(MigrationError, match="newer"):
            migrate(client)
    finally:
        client.command("DELETE FROM schema_migrations WHERE version = {v:UInt32}", parameters={"v": newest + 1})
