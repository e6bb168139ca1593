"""The ClickHouse sink against the embedded broker and chdb: every field lands, nothing lost, nothing doubled."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from prometheus_client import CollectorRegistry
from reverify.schemas import encode
from reverify.schemas.topics import TOPICS
from reverify.sinks.clickhouse import close_embedded, connect
from reverify.sinks.migrate import TABLES
from reverify.sinks.writer import ClickHouseSink
from reverify.streams.embedded import free_port
from reverify.streams.settings import Settings
from reverify.streams.sink import sink_config

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
NOW = int(time.time() * 1000)


def sample(name: str, i: int) -> dict[str, Any]:
    """One record of every schema with every field set (optional ones too)."""
    base = {"event_id": f"{name}-{i}-{uuid.uuid4().hex[:6]}", "ts": NOW - 1000 * i}
    arm = {"agent_name": f"agent{i % 3}", "task_type": "scrape", "variant_id": f"v{i % 2}"}
    records: dict[str, dict[str, Any]] = {
        "AgentOutcome": {
            **arm,
            "success": i % 2 == 0,
            "reward": 0.25 * (i % 4),
            "latency_ms": 10.5 + i,
            "cost_usd": 0.002 * i,
            "tokens_in": 100 + i,
            "tokens_out": None,
            "features": {"len": 1.5 * i},
            "attributes": {"model": "m1"},
            "trace_id": f"tr{i}",
            "next_state": None,
            "propensity": 0.25 + 0.25 * (i % 3),
            "awaiting_feedback": i % 2 == 1,
            "prediction": 0.25 * i,
            "model_version": "m1",
        },
        "AgentFeedback": {
            "agent_name": f"agent{i % 3}",
            "outcome_id": f"o{i}",
            "success": True,
            "reward": 0.5,
            "label": 1.0,
            "attributes": {"by": "ana"},
        },
        "ModelReport": {
            "agent_name": "agent0",
            "model_version": "m1",
            "kind": "probabilistic",
            "window_size": 500,
            "judged": 1500 + i,
            "accuracy": 0.9,
            "mae": None,
            "brier": 0.08,
            "ece": 0.02,
            "calibration": [{"lower": 0.0, "upper": 0.1, "count": 40, "mean_score": 0.05, "positive_rate": 0.075}],
            "baseline_accuracy": 0.92,
            "baseline_size": 500,
            "accuracy_drop": 0.02,
            "tolerance": 0.1,
            "prediction_psi": 0.01,
            "prediction_drift": False,
            "alarm": False,
            "reason": "",
        },
        "AgentError": {
            **arm,
            "component": "http",
            "error_type": "Timeout",
            "message": "slow",
            "retryable": True,
            "severity": "critical",
            "pipeline": i % 2 == 1,
            "attributes": {"url": "x"},
            "trace_id": None,
        },
        "AgentMetric": {**arm, "task_type": None, "name": "queue_depth", "value": 3.0 + i, "attributes": {"q": "a"}},
        "QValue": {
            **arm,
            "q": 0.91,
            "n": 12 + i,
            "alpha": 0.1,
            "success_rate": 0.9,
            "reward_mean": 0.8,
            "reward_var": 0.01,
            "error_rate": 0.05,
            "errors": 1,
            "last_outcomes": [True, False, True],
            "source_event_id": "src",
            "successes": 10 + i,
            "failures": 2,
        },
        "VariantDecision": {
            **arm,
            "decision": "human_approval",
            "previous_decision": "no_action",
            "reasoning": "r",
            "q": 0.75,
            "n": 6,
            "p_beats_active": 0.5,
            "active_variant": "v0",
            "thresholds": {"q_auto": 0.9},
        },
        "ActiveVariant": {**arm, "previous_variant": "v9", "reason": "rollback", "cause_id": "rb-1"},
        "Proposal": {
            **arm,
            "proposal_id": f"p{i}",
            "proposal_type": "promote_variant",
            "reasoning": "good",
            "confidence": 0.8,
            "supporting_data": {"q": 0.8},
            "status": "pending",
        },
        "Approval": {"proposal_id": f"p{i}", "approved": True, "by": "ana", "comment": "ok"},
        "Rollback": {
            **{k: v for k, v in arm.items() if k != "variant_id"},
            "rollback_id": f"rb-2025-{i}",
            "from_variant": "v1",
            "to_variant": "v0",
            "reason": "success down",
            "trigger": "cusum",
            "statistic": 5.5,
            "threshold": 4.0,
            "degradation_metrics": {"success_rate": 0.6},
        },
        "AgentControl": {
            "agent_name": "agent0",
            "kind": "circuit",
            "paused": False,
            "degradation_level": 2,
            "component": "http",
            "circuit_state": "open",
            "reason": "errors",
            "cause_id": None,
        },
        "Command": {"command": "baseline.pin", "args": {"agent": "agent0"}, "by": "ana"},
        "DriftReport": {
            "agent_name": "agent0",
            "feature": "latency_ms",
            "variant_id": None,
            "baseline_size": 1000,
            "bin_edges": [0.0, 1.5, 3.0],
            "window_size": 500,
            "values_seen": 1500,
            "psi": 0.3,
            "ks_statistic": 0.2,
            "ks_pvalue": 0.001,
            "mean_shift": 2.5,
            "variance_ratio": 1.2,
            "severity": "high",
            "mean_shift_flag": True,
            "variance_flag": False,
            "alarm": True,
            "windows": [
                {"window": 50, "psi": 0.3, "ks_statistic": 0.2, "ks_pvalue": 0.01, "threshold": 0.25, "alarm": True}
            ],
            "detectors": {"adwin": True},
            "window_start": NOW - 60_000,
            "window_end": NOW,
        },
        "SloReport": {
            "slo": "shop_success",
            "sli": "success_rate",
            "objective": 0.99,
            "window": "30d",
            "window_ms": 2_592_000_000,
            "agent_name": "agent0",
            "task_type": None,
            "good": 980,
            "total": 1000,
            "sli_value": 0.98,
            "error_budget_consumed": 2.0,
            "error_budget_remaining": -1.0,
            "burn_rates": {"5m": 10.0, "1h": 2.5},
            "alerting": "page",
            "settings_version": "s1",
        },
        "AssuranceResult": {
            "case_name": "accuracy",
            "claim": "c",
            "evidence": "success_rate",
            "scope": {"agent": "agent0"},
            "verdict": "failed",
            "previous_verdict": "passed",
            "value": 0.7,
            "threshold_min": 0.8,
            "threshold_max": None,
            "window": "100 events",
            "sample_size": 100,
            "severity": "critical",
            "action": "rollback",
            "dry_run": False,
            "settings_version": "s1",
            "message": "m",
        },
        "Alert": {
            "fingerprint": f"fp{i}",
            "source": "drift",
            "status": "firing",
            "severity": "warning",
            "title": "drift",
            "message": "m",
            "labels": {"agent": "agent0"},
            "evidence": {"psi": 0.3},
            "starts_at": NOW - 5000,
            "ends_at": None,
            "flapping": False,
            "acknowledged_by": "bo",
            "settings_version": "s1",
        },
        "Incident": {
            "incident_id": f"inc-20251119-{i:06x}",
            "agent_name": "agent0",
            "task_type": "t",
            "component": "",
            "cause": "degradation",
            "trigger": "cusum:success",
            "status": "resolved",
            "change": "resolved",
            "failure_started_at": NOW - 40_000,
            "detected_at": NOW - 30_000,
            "acted_at": NOW - 30_000,
            "resolved_at": NOW - 1000,
            "escalated_at": None,
            "mttr_ms": 39_000,
            "time_to_detect_ms": 10_000,
            "time_to_act_ms": 0,
            "from_variant": "v2",
            "to_variant": "v1",
            "rollback_id": "rb-20251119-abc123",
            "action": "rollback v2 -> v1",
            "baseline_success_rate": 0.9,
            "required_success_rate": 0.81,
            "outcomes": 40,
            "successes": 38,
            "lower_bound": 0.85,
            "automatic": True,
            "escalation_reason": None,
            "why": "v1 verified",
            "root_cause": "drift in alarm: none",
        },
        "DeadLetter": {
            "topic": "agent.outcomes",
            "partition": 1,
            "offset": 42,
            "key": b"k\xff",
            "value": b"\x00garbage",
            "reason": "bad",
            "error_type": "DecodeError",
            "worker": "w1",
        },
        "Experiment": {
            "name": f"exp{i}",
            "agent_name": "agent0",
            "task_type": "t",
            "variants": ["c", "t"],
            "split": [0.5, 0.5],
            "metric": "success_rate",
            "min_effect": 0.02,
            "alpha": 0.05,
            "planned_units": None,
            "tuning_units": 5000,
            "status": "stopped",
            "started_at": NOW - 9000,
            "stopped_at": NOW - 1000,
            "reason": "rollback rb-1",
            "by": "worker",
            "cause_id": "rb-1",
        },
    }
    return {**base, **records[name]}


def produce(settings: Settings, topic: str, values: list[bytes], key: bytes | None = None) -> None:
    producer = Producer(settings.kafka_config(**{"linger.ms": 20, "enable.idempotence": True}))
    for value in values:
        while True:
            try:
                producer.produce(settings.topic(topic), value, key=key)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    assert producer.flush(30) == 0


def outcomes(n: int, agents: int = 5) -> list[bytes]:
    return [
        encode(
            "AgentOutcome",
            {
                "event_id": uuid.uuid4().hex,
                "ts": NOW - i,
                "agent_name": f"a{i % agents}",
                "task_type": "t",
                "variant_id": f"v{i % 3}",
                "success": i % 3 != 0,
                "reward": (i % 10) / 10,
                "latency_ms": float(i % 97),
                "cost_usd": 0.001,
            },
        )
        for i in range(n)
    ]


def run_until(sink: ClickHouseSink, table: str, expected: int, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while sink.rows_written.get(table, 0) < expected:
        assert time.monotonic() < deadline, f"{table}: {sink.rows_written} after {timeout}s"
        sink.poll_once(0.5)


@pytest.fixture
def sink_settings(settings: Settings):
    close_embedded()
    yield settings
    close_embedded()


def _norm(value: Any) -> Any:
    if hasattr(value, "timestamp"):
        return round(value.timestamp() * 1000)
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, list):
        return [_norm(v) for v in value]
    return value


def test_every_topic_lands_with_all_fields(sink_settings: Settings) -> None:
    by_topic = {name: [sample(t.value, i) for i in range(3)] for name, t in TOPICS.items()}
    for name, records in by_topic.items():
        produce(sink_settings, name, [encode(TOPICS[name].value, r) for r in records])
    produce(sink_settings, "agent.outcomes", [b"not avro", encode("AgentMetric", sample("AgentMetric", 9))])
    sink = ClickHouseSink(sink_config(sink_settings), batch_size=500, max_delay=0.3, registry=CollectorRegistry())
    deadline = time.monotonic() + 60
    while sum(sink.rows_written.values()) < 3 * len(TOPICS) or sink.skipped < 2:
        assert time.monotonic() < deadline, (sink.rows_written, sink.skipped)
        sink.poll_once(0.5)
    sink.close()
    client = connect(sink_settings.clickhouse)
    for name, records in by_topic.items():
        result = client.query(f"SELECT * FROM {TABLES[name]} FINAL ORDER BY event_id")
        rows = [dict(zip(result.column_names, row, strict=True)) for row in result.result_rows]
        assert len(rows) == len(records), name
        for want, got in zip(sorted(records, key=lambda r: r["event_id"]), rows, strict=True):
            for field, value in want.items():
                stored = _norm(got[field])
                if isinstance(value, bytes):  # compare the stored bytes exactly, not their text rendering
                    stored = bytes.fromhex(
                        client.query(
                            f"SELECT hex({field}) FROM {TABLES[name]} WHERE event_id = {{e:String}}",
                            parameters={"e": want["event_id"]},
                        ).result_rows[0][0]
                    )
                assert stored == value, f"{name}.{field}: {stored!r} != {value!r}"
            assert got["kafka_offset"] >= 0


def test_100k_outcomes_become_100k_rows(sink_settings: Settings) -> None:
    produce(sink_settings, "agent.outcomes", outcomes(100_000))
    sink = ClickHouseSink(
        sink_config(sink_settings),
        topics=["agent.outcomes"],
        batch_size=20_000,
        max_delay=0.5,
        registry=CollectorRegistry(),
    )
    run_until(sink, "agent_outcomes", 100_000, timeout=150)
    sink.close()
    client = connect(sink_settings.clickhouse)
    rows, distinct = client.query("SELECT count(), uniqExact(event_id) FROM agent_outcomes").result_rows[0]
    assert (rows, distinct) == (100_000, 100_000)
    assert client.query("SELECT sum(invocations) FROM arm_hourly").result_rows[0][0] == 100_000


def _committed(settings: Settings, group: str) -> int:
    consumer = Consumer(settings.kafka_config(**{"group.id": group}))
    try:
        tps = [TopicPartition(settings.topic("agent.outcomes"), p) for p in range(settings.partitions)]
        return sum(max(tp.offset, 0) for tp in consumer.committed(tps, timeout=10))
    finally:
        consumer.close()


def _start_sink(settings: Settings, log: Path, crash_after: int = 0) -> subprocess.Popen[bytes]:
    env = dict(
        os.environ,
        REVERIFY_KAFKA=settings.kafka,
        REVERIFY_TOPIC_PREFIX=settings.topic_prefix,
        REVERIFY_CLICKHOUSE=settings.clickhouse,
        REVERIFY_DATA_DIR=settings.data_dir,
        REVERIFY_SINK_CRASH_AFTER_INSERTS=str(crash_after),
        PYTHONPATH=str(ROOT),
    )
    env.pop("REVERIFY_CONFIG", None)
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "reverify.streams", "sink", "--batch-size", "10000", "--max-delay", "0.5"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def test_kill_9_between_insert_and_commit_stores_each_event_once(sink_settings: Settings, tmp_path: Path) -> None:
    produce(sink_settings, "agent.outcomes", outcomes(100_000))
    group = f"{sink_settings.topic_prefix}reverify-clickhouse-sink"
    log = tmp_path / "sink.log"
    # first run: killed by SIGKILL right after its 4th insert, before that batch's commit
    first = _start_sink(sink_settings, log, crash_after=4)
    assert first.wait(120) == -signal.SIGKILL, log.read_text()
    assert 0 < _committed(sink_settings, group) < 100_000
    second = _start_sink(sink_settings, log)
    try:
        deadline = time.monotonic() + 150
        while _committed(sink_settings, group) < 100_000:
            assert second.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.5)
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(30)
    text = log.read_text()
    assert "duplicates_dropped=" in text and "duplicates_dropped=0" not in text, text[-2000:]
    client = connect(sink_settings.clickhouse)
    rows, distinct = client.query("SELECT count(), uniqExact(event_id) FROM agent_outcomes").result_rows[0]
    assert (rows, distinct) == (100_000, 100_000)
    assert client.query("SELECT count() FROM agent_outcomes FINAL").result_rows[0][0] == 100_000
    assert client.query("SELECT sum(invocations) FROM arm_hourly").result_rows[0][0] == 100_000


def test_clickhouse_away_then_back_loses_nothing(sink_settings: Settings) -> None:
    produce(sink_settings, "agent.outcomes", outcomes(3_000))
    refused = f"http://default:@127.0.0.1:{free_port()}/default"
    sink = ClickHouseSink(
        sink_config(sink_settings),
        topics=["agent.outcomes"],
        batch_size=1000,
        max_delay=0.2,
        url=refused,
        registry=CollectorRegistry(),
        backoff_max=0.5,
    )
    group = f"{sink_settings.topic_prefix}reverify-clickhouse-sink"
    end = time.monotonic() + 3
    while time.monotonic() < end:
        assert sink.poll_once(0.2) == 0
    assert _committed(sink_settings, group) == 0
    sink.url = sink_settings.clickhouse
    run_until(sink, "agent_outcomes", 3_000, timeout=60)
    # and once more while it has a table to write to: ClickHouse goes away mid-stream
    sink.url = refused
    sink._drop_client()
    produce(sink_settings, "agent.outcomes", outcomes(2_000))
    end = time.monotonic() + 2
    while time.monotonic() < end:
        sink.poll_once(0.2)
    assert sink.rows_written["agent_outcomes"] == 3_000
    sink.url = sink_settings.clickhouse
    run_until(sink, "agent_outcomes", 5_000, timeout=60)
    sink.close()
    client = connect(sink_settings.clickhouse)
    assert client.query("SELECT count(), uniqExact(event_id) FROM agent_outcomes").result_rows[0] == (5_000, 5_000)


def test_decode_many_skips_bad_records_in_the_middle_like_decode() -> None:
    from reverify.schemas import DecodeError, decode
    from reverify.schemas.codec import decode_many

    good = outcomes(4)
    # a short body (would run into the next value in a shared buffer), a long one, a foreign schema, bad framing
    values = [
        good[0],
        good[1][:-3],
        good[1],
        good[2] + b"\x00\x00",
        encode("AgentMetric", sample("AgentMetric", 1)),
        b"\x01" + good[3][1:],
        None,
        b"\x00\x00",
        good[3],
    ]
    got = decode_many("AgentOutcome", values)
    assert len(got) == len(values)
    for value, result in zip(values, got, strict=True):
        try:
            name, want = decode(value)
            if name != "AgentOutcome":
                raise DecodeError(f"expected a AgentOutcome record, got {name}")
        except DecodeError as exc:
            assert isinstance(result, DecodeError) and result.reason == exc.reason
        else:
            assert result == want
    assert [isinstance(r, dict) for r in got] == [True, False, True, False, False, False, False, False, True]


class _FlakyClient:
    """A real client whose inserts are slow, and whose ``fail``-th insert raises before reaching ClickHouse."""

    def __init__(self, client: Any, state: dict[str, Any]) -> None:
        self._client, self._state = client, state

    def insert(self, *args: Any, **kwargs: Any) -> Any:
        self._state["inserts"] += 1
        time.sleep(0.2)  # long enough for the loop to be seen decoding the next batch meanwhile
        if self._state["inserts"] == self._state["fail"]:
            raise ConnectionError("injected: ClickHouse went away mid-insert")
        return self._client.insert(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def _flaky_sink(settings: Settings, fail: int, **options: Any) -> ClickHouseSink:
    """A sink of ``agent.outcomes`` in batches of 1,000 through a ``_FlakyClient`` whose ``fail``-th insert raises.

    ``fail=0`` never raises; ``options`` go to ``ClickHouseSink``.
    """
    state: dict[str, Any] = {"inserts": 0, "fail": fail}
    return ClickHouseSink(
        sink_config(settings),
        topics=["agent.outcomes"],
        batch_size=1000,
        max_delay=0.2,
        connect=lambda url: _FlakyClient(connect(url), state),  # type: ignore[arg-type,return-value]
        registry=CollectorRegistry(),
        **options,
    )


def test_insert_overlaps_decoding_and_a_failed_insert_is_retried_before_the_next(sink_settings: Settings) -> None:
    produce(sink_settings, "agent.outcomes", outcomes(6_000))
    sink = _flaky_sink(sink_settings, fail=3, backoff_max=0.3)
    commits: list[dict[tuple[str, int], int]] = []
    real_commit = sink._commit

    def commit(offsets: dict[tuple[str, int], int]) -> None:
        # offsets are committed on the loop's thread, once the batch's inserts are stored, in order
        assert threading.current_thread() is threading.main_thread()
        assert sink._inflight is None
        commits.append(dict(offsets))
        real_commit(offsets)

    sink._commit = commit  # type: ignore[method-assign]
    overlapped: list[bool] = []
    real_add = sink._add

    def add(messages: list[Any]) -> None:
        # decoding the next batch while the previous one's insert is still running is the point of the thread
        if messages:
            overlapped.append(sink._inflight is not None and not sink._inflight[1].done())
        real_add(messages)

    sink._add = add  # type: ignore[method-assign]
    deadline = time.monotonic() + 60
    while sink.rows_written.get("agent_outcomes", 0) < 6_000:
        assert time.monotonic() < deadline, sink.rows_written
        sink.poll_once(0.2)
    sink.flush()
    sink.close()
    assert any(overlapped), "the next batch was never taken while an insert was in flight"
    assert sink.metrics.insert_errors.labels("*")._value.get() == 1
    last: dict[tuple[str, int], int] = {}
    for offsets in commits:
        for key, offset in offsets.items():
            assert offset > last.get(key, -1), commits
            last[key] = offset
    group = f"{sink_settings.topic_prefix}reverify-clickhouse-sink"
    assert _committed(sink_settings, group) == 6_000
    client = connect(sink_settings.clickhouse)
    assert client.query("SELECT count(), uniqExact(event_id) FROM agent_outcomes").result_rows[0] == (6_000, 6_000)


def test_revocation_waits_for_the_batch_in_flight(sink_settings: Settings) -> None:
    produce(sink_settings, "agent.outcomes", outcomes(2_000))
    sink = _flaky_sink(sink_settings, fail=0)
    deadline = time.monotonic() + 30
    while sink._inflight is None:
        assert time.monotonic() < deadline
        sink.poll_once(0.2)
    sink._on_revoke(sink._consumer, sink._consumer.assignment())
    assert sink._inflight is None and sink._pending == 0
    group = f"{sink_settings.topic_prefix}reverify-clickhouse-sink"
    assert _committed(sink_settings, group) >= 1_000
    sink.close()
