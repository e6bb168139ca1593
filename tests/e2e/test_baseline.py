"""Drift baselines steered by an operator: ``reverify baseline pin`` and ``baseline reset`` against a real worker.

One series (an agent's ``features.intent_score``) learns its baseline at N(50, 10), shifts to N(65, 10) and
alarms; pinning the shifted period makes the worker adopt it (the alert resolves, later reports use the pinned
values and stay quiet); a return to 50 alarms against the pinned baseline, and a reset resolves that alert and
makes the series learn a fresh baseline of ``baseline_size`` values. The ClickHouse path of ``baseline pin`` is
checked in-process against an embedded history with known rows.
"""

from __future__ import annotations

import json
import os
import random
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from reverify.sinks import clickhouse
from reverify.sinks.migrate import migrate
from reverify.streams.cli import cli
from reverify.streams.client import AgentEvents
from reverify.streams.settings import Settings

from tests.support import publish_feature

FEATURE = "intent_score"
BASELINE_SIZE = 1000  # processors.drift.DriftSettings default, which the worker runs with


@pytest.fixture(scope="module")
def worker(worker_factory: Any) -> Any:
    return worker_factory()


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).isoformat(timespec="milliseconds")


def _now_ms() -> int:
    return int(time.time() * 1000)


def test_pinned_period_becomes_the_baseline_and_reset_learns_a_new_one(worker: Any, e2e: Any) -> None:
    settings = worker.settings
    agent = f"bp-{uuid.uuid4().hex[:6]}"
    rng = random.Random(5)
    reports, alerts = e2e.Follower(settings, "drift.reports"), e2e.Follower(settings, "alerts")
    sent = 0

    def publish(events: AgentEvents, count: int, mean: float) -> None:
        nonlocal sent
        publish_feature(events, agent, FEATURE, rng, sent, count, mean)
        sent += count
        assert events.flush(30) == 0

    def series(r: dict[str, Any]) -> bool:
        return r["agent_name"] == agent and r["feature"] == FEATURE and r["variant_id"] is None

    def mine(r: dict[str, Any]) -> bool:
        return r["labels"].get("agent_name") == agent and r["labels"].get("feature") == FEATURE

    def processed(count: int) -> dict[str, Any]:
        # Reports come every 50 values once a baseline is known: the one at `count` says all were applied.
        return reports.wait(lambda r: series(r) and r["values_seen"] == count, timeout=120)[1]

    try:
        with AgentEvents(settings=settings) as events:
            publish(events, BASELINE_SIZE + 100, 50.0)
            # The pin below reads the live stream by log time: the shifted values are exactly those logged
            # between these two instants (the producer stamps each record when it is produced).
            time.sleep(0.05)
            shift_from = _now_ms()
            publish(events, 400, 65.0)
            shift_to = _now_ms()
            _, fired = alerts.wait(lambda r: mine(r) and r["status"] == "firing", timeout=120)
            before_pin = processed(sent)
            assert before_pin["baseline_size"] == BASELINE_SIZE and before_pin["alarm"]

            done = e2e.run_cli(
                settings,
                "baseline",
                "pin",
                "--agent",
                agent,
                "--feature",
                FEATURE,
                "--from",
                _iso(shift_from),
                "--to",
                _iso(shift_to),
                "--json",
            )
            assert done.returncode == 0, done.stderr
            pinned = json.loads(done.stdout)
            # The worker runs no ClickHouse sink here: the values come from the stream, and say so.
            assert (pinned["source"], pinned["count"]) == ("stream", 400)
            _, resolved = alerts.wait(lambda r: mine(r) and r["status"] == "resolved", timeout=60)
            assert resolved["fingerprint"] == fired["fingerprint"]

            # The resolution says the pin is applied: everything published from here on meets the new baseline.
            pinned_at = sent
            publish(events, 200, 65.0)
            processed(sent)
            after_pin = [r for _t, r in reports.matching(lambda r: series(r) and r["values_seen"] > pinned_at)]
            assert after_pin and all(r["baseline_size"] == 400 and not r["alarm"] for r in after_pin)
            # Bin edges are deciles of the pinned values: centred on the shifted mean, not the old one.
            assert 60.0 < after_pin[-1]["bin_edges"][4] < 70.0

            # Back to 50: a shift against the pinned baseline, which alarms again.
            publish(events, 400, 50.0)
            alerts.wait(lambda r: mine(r) and r["status"] == "firing" and r["event_id"] != fired["event_id"], 120)
            processed(sent)

            done = e2e.run_cli(settings, "baseline", "reset", "--agent", agent, "--feature", FEATURE)
            assert done.returncode == 0, done.stderr
            firings = [r for _t, r in alerts.matching(lambda r: mine(r) and r["status"] == "firing")]
            alerts.wait(
                lambda r: mine(r) and r["status"] == "resolved" and r["event_id"] != resolved["event_id"], timeout=60
            )
            reset_at = sent
            publish(events, BASELINE_SIZE + 100, 50.0)
            processed(sent)
    finally:
        reports.close()
        alerts.close()
    after_reset = [r for _t, r in reports.matching(lambda r: series(r) and r["values_seen"] > reset_at)]
    # Nothing is reported while the series learns again; then against a fresh baseline of BASELINE_SIZE values.
    assert after_reset[0]["values_seen"] >= reset_at + BASELINE_SIZE
    assert all(r["baseline_size"] == BASELINE_SIZE and not r["alarm"] for r in after_reset)
    assert 45.0 < after_reset[-1]["bin_edges"][4] < 55.0
    assert len(firings) == 2  # one per shift, not one per evaluation


# ---------------------------------------------------------------------------------------------- ClickHouse path

# Rows below are in the column order of sinks/migrations/001_event_tables.sql; later migrations add nullable columns,
# so the outcome inserts name the columns they fill.
OUTCOME_COLUMNS = [
    "event_id", "ts", "agent_name", "task_type", "variant_id", "success", "reward", "latency_ms", "cost_usd",
    "tokens_in", "tokens_out", "features", "attributes", "trace_id", "next_state", "kafka_partition", "kafka_offset",
]  # fmt: skip
T0 = 1_760_000_000_000  # event times of the stored rows: one a second from here


def _when(i: int) -> datetime:
    return datetime.fromtimestamp((T0 + 1000 * i) / 1000, tz=timezone.utc)


def _outcome_row(i: int, agent: str, variant: str, intent: float, offset: int) -> list[Any]:
    return [
        f"h{i:05d}-{agent}-{variant}",
        _when(i),
        agent,
        "t",
        variant,
        True,
        round(0.5 + i / 1000, 6),
        100.0 + i,
        0.001,
        None,
        None,
        {FEATURE: intent},
        {},
        None,
        None,
        0,
        offset,
    ]


def _cli_env(settings: Settings) -> dict[str, str]:
    return {
        "REVERIFY_KAFKA": settings.kafka,
        "REVERIFY_TOPIC_PREFIX": settings.topic_prefix,
        "REVERIFY_CLICKHOUSE": settings.clickhouse,
        "REVERIFY_DATA_DIR": settings.data_dir,
        "REVERIFY_WEB_PORT": str(settings.web_port),
        "REVERIFY_METRICS_PORT": "0",
    }


def test_pin_reads_the_period_from_the_clickhouse_history(
    settings: Settings, e2e: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = random.Random(8)
    rows: list[list[Any]] = []
    for i in range(600):
        rows.append(_outcome_row(i, "hist", "v1" if i % 3 else "v2", rng.gauss(50, 10), len(rows)))
        rows.append(_outcome_row(i, "other", "v1", rng.gauss(80, 10), len(rows)))
    metrics = [[f"m{i:05d}", _when(i), "hist", None, None, "queue_depth", float(i % 17), {}, 0, i] for i in range(600)]
    client = clickhouse.connect(settings.clickhouse)
    try:
        migrate(client)
        client.insert("agent_outcomes", rows, column_names=OUTCOME_COLUMNS)
        # The sink stored a few rows twice (a retried batch from another offset): each event still counts once.
        client.insert("agent_outcomes", [[*r[:-1], 10_000 + r[-1]] for r in rows[:40]], column_names=OUTCOME_COLUMNS)
        client.insert("agent_metrics", metrics)
    finally:
        client.close()

    # The period: events 100..399 inclusive, by event time.
    lo, hi = 100, 399
    period = ["--from", _iso(T0 + 1000 * lo), "--to", _iso(T0 + 1000 * hi)]
    in_period = [r for r in rows if r[2] == "hist" and lo <= (r[1].timestamp() * 1000 - T0) / 1000 <= hi]

    for name in [k for k in os.environ if k.startswith("REVERIFY_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # no stray reverify.toml
    runner = CliRunner()
    commands = e2e.Follower(settings, "control.commands")
    try:

        def pin(*args: str) -> dict[str, Any]:
            result = runner.invoke(cli, ["baseline", "pin", *args, "--json"], env=_cli_env(settings))
            assert result.exit_code == 0, result.output
            answer = json.loads(result.stdout)
            _, published = commands.wait(lambda r: r["event_id"] == answer["event_id"])
            assert published["args"]["values"] == answer["args"]["values"]
            return {**answer, "values": json.loads(published["args"]["values"])}

        features = pin("--agent", "hist", "--feature", FEATURE, *period)
        assert features["source"] == "clickhouse" and features["command"] == "baseline_pin"
        assert features["values"] == [r[11][FEATURE] for r in in_period]  # exactly the stored values, in time order
        assert features["count"] == 300

        rewards = pin("--agent", "hist", "--feature", "reward", "--variant", "v1", *period)
        assert rewards["args"]["variant_id"] == "v1"
        assert rewards["values"] == [r[6] for r in in_period if r[4] == "v1"]

        depth = pin("--agent", "hist", "--feature", "queue_depth", *period)
        assert depth["source"] == "clickhouse"
        assert depth["values"] == [float(i % 17) for i in range(lo, hi + 1)]
    finally:
        commands.close()

    # Outside the stored period the history has nothing: the live stream is read instead, and it has nothing
    # either, so the command refuses in one line naming where it looked.
    result = runner.invoke(
        cli,
        [
            "baseline",
            "pin",
            "--agent",
            "hist",
            "--feature",
            FEATURE,
            "--from",
            _iso(T0 - 7_200_000),
            "--to",
            _iso(T0 - 1),
        ],
        env=_cli_env(settings),
    )
    assert result.exit_code == 2, result.output
    assert result.stderr.strip().count("\n") == 0
    assert "only 0 values" in result.stderr and "live stream" in result.stderr
