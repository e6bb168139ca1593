"""AgentEvents' hot path: the bytes it produces, and what it still refuses, without a broker."""

from __future__ import annotations

import io
import math
from datetime import datetime, timezone
from typing import Any

import fastavro
import pytest
from reverify.schemas import EncodeError, decode_as, encode, load_schema
from reverify.schemas.codec import SCHEMA_IDS, encoder
from reverify.streams.client import MAX_STRING, AgentEvents
from reverify.streams.settings import Settings


class FakeProducer:
    """Records what would have been produced; counts polls."""

    def __init__(self) -> None:
        self.produced: list[tuple[str, bytes, bytes]] = []
        self.polls = 0

    def produce(self, topic: str, value: bytes, key: bytes) -> None:
        assert type(value) is bytes  # confluent-kafka refuses a bytearray
        self.produced.append((topic, value, key))

    def poll(self, _timeout: float) -> int:
        self.polls += 1
        return 0

    def flush(self, _timeout: float) -> int:
        return 0

    def __len__(self) -> int:
        return 0


@pytest.fixture
def events() -> AgentEvents:
    client = AgentEvents(bootstrap="127.0.0.1:1", settings=Settings.load(env={}, path=None))
    client._producer.flush(0)
    client._producer = FakeProducer()  # type: ignore[assignment]
    return client


def reference_encoding(name: str, record: dict[str, Any]) -> bytes:
    """What the codec produced before it called fastavro's writer directly: header + schemaless_writer."""
    buf = io.BytesIO()
    buf.write(bytes([0]) + SCHEMA_IDS[name].to_bytes(4, "big"))
    fastavro.schemaless_writer(buf, fastavro.parse_schema(load_schema(name)), record, strict_allow_default=True)
    return buf.getvalue()


OUTCOMES = [
    dict(agent_name="a", task_type="t", variant_id="v", success=True, reward=0.5),
    dict(
        agent_name="hunter",
        task_type="scrape",
        variant_id="v2",
        success=False,
        reward=0.0,
        latency_ms=12.5,
        cost_usd=0.002,
        tokens_in=500,
        tokens_out=0,
        features={"intent_score": 3.0, "len": -1.5},
        ts=1_700_000_000_000,
    ),
    dict(agent_name="é" * 10, task_type="t", variant_id="v", success=True, reward=1.0, tokens_in=2**62, features={}),
]


@pytest.mark.parametrize("fields", OUTCOMES)
def test_fast_path_bytes_equal_the_checked_path_and_the_reference(events: AgentEvents, fields: dict[str, Any]):
    event_id = events.outcome(**fields)
    # Passing event_id takes the field-by-field path: both paths must produce the same bytes (and the same ts,
    # which the first call took from the clock when the fields have none).
    ts = decode_as("AgentOutcome", events._producer.produced[0][1])["ts"]  # type: ignore[attr-defined]
    events.outcome(**{"ts": ts, **fields}, event_id=event_id)
    (topic, fast, key), (_, checked, _) = events._producer.produced  # type: ignore[attr-defined]
    assert topic == events._outcomes and key == fields["agent_name"].encode()
    assert fast == checked
    record = decode_as("AgentOutcome", fast)
    assert record["event_id"] == event_id
    for name, value in fields.items():
        assert record[name] == value, name
    assert fast == reference_encoding("AgentOutcome", record)


def test_error_and_metric_bytes_equal_the_reference(events: AgentEvents):
    events.error(agent_name="a", component="c", error_type="E", message="m", task_type="t", attributes={"k": "v"})
    events.metric(agent_name="a", name="queue_depth", value=12.0, ts=5)
    (_, error, _), (_, metric, _) = events._producer.produced  # type: ignore[attr-defined]
    assert error == reference_encoding("AgentError", decode_as("AgentError", error))
    assert metric == reference_encoding("AgentMetric", decode_as("AgentMetric", metric))


def test_encode_keeps_its_errors():
    good = {"event_id": "e1", "ts": 1, "agent_name": "a", "name": "m", "value": 2.0}
    assert encode("AgentMetric", good) == reference_encoding("AgentMetric", good)
    with pytest.raises(EncodeError, match="AgentMetric"):
        encode("AgentMetric", {k: v for k, v in good.items() if k != "value"})
    with pytest.raises(EncodeError, match="more fields"):
        encode("AgentMetric", {**good, "extra": 1})
    with pytest.raises(EncodeError):
        encode("AgentMetric", {**good, "value": "x"})
    with pytest.raises(KeyError):
        encode("NoSuchSchema", good)
    assert encoder("AgentMetric") is encoder("AgentMetric")


def test_int_timestamps_encoder_writes_the_same_bytes_and_refuses_datetimes():
    record = {"event_id": "e1", "ts": 1_700_000_000_123, "agent_name": "a", "name": "m", "value": 2.0}
    assert encoder("AgentMetric", int_timestamps=True)(record) == encode("AgentMetric", record)
    as_datetime = {**record, "ts": datetime.fromtimestamp(1_700_000_000.123, tz=timezone.utc)}
    assert encode("AgentMetric", as_datetime) == encode("AgentMetric", record)  # encode() still converts them
    with pytest.raises(EncodeError, match="AgentMetric"):
        encoder("AgentMetric", int_timestamps=True)(as_datetime)


GOOD = dict(agent_name="a", task_type="t", variant_id="v", success=True, reward=0.5)


@pytest.mark.parametrize(
    ("change", "error", "field"),
    [
        ({"reward": 1.5}, ValueError, "reward"),
        ({"reward": -0.1}, ValueError, "reward"),
        ({"reward": math.nan}, ValueError, "reward"),
        ({"reward": "0.5"}, TypeError, "reward"),
        ({"success": 1}, TypeError, "success"),
        ({"latency_ms": math.inf}, ValueError, "latency_ms"),
        ({"cost_usd": math.nan}, ValueError, "cost_usd"),
        ({"cost_usd": True}, TypeError, "cost_usd"),
        ({"latency_ms": -1.0}, ValueError, "latency_ms"),
        ({"latency_ms": -1}, ValueError, "latency_ms"),
        ({"cost_usd": -5.0}, ValueError, "cost_usd"),
        ({"cost_usd": -math.inf}, ValueError, "cost_usd"),
        ({"tokens_out": -2}, ValueError, "tokens_out"),
        ({"agent_name": 3}, TypeError, "agent_name"),
        ({"task_type": ""}, ValueError, "task_type"),
        ({"variant_id": "v" * (MAX_STRING + 1)}, ValueError, "variant_id"),
        ({"tokens_in": -1}, ValueError, "tokens_in"),
        ({"tokens_out": 1.0}, TypeError, "tokens_out"),
        ({"features": {"x": math.inf}}, ValueError, r"features\['x'\]"),
        ({"features": {"x": "1"}}, TypeError, r"features\['x'\]"),
        ({"features": {"": 1.0}}, ValueError, "features key"),
        ({"features": {"k" * (MAX_STRING + 1): 1.0}}, ValueError, "features key"),
        ({"features": [1.0]}, TypeError, "features"),
        ({"attributes": {"k": 1}}, TypeError, r"attributes\['k'\]"),
        ({"trace_id": "x" * (MAX_STRING + 1)}, ValueError, "trace_id"),
        ({"ts": 1.5}, TypeError, "ts"),
    ],
)
def test_bad_outcomes_name_the_field_and_send_nothing(
    events: AgentEvents, change: dict[str, Any], error: type[Exception], field: str
):
    with pytest.raises(error, match=field):
        events.outcome(**{**GOOD, **change})
    assert events.sent == 0 and not events._producer.produced  # type: ignore[attr-defined]


def test_missing_required_field_is_a_type_error(events: AgentEvents):
    with pytest.raises(TypeError, match="variant_id"):
        events.outcome(**{k: v for k, v in GOOD.items() if k != "variant_id"})  # type: ignore[call-arg]


def test_ints_and_mapping_types_take_the_checked_path(events: AgentEvents):
    events.outcome(**{**GOOD, "reward": 1, "latency_ms": 3, "features": {"x": 2}}, attributes={"r": "eu"})
    record = decode_as("AgentOutcome", events._producer.produced[0][1])  # type: ignore[attr-defined]
    assert record["reward"] == 1.0 and record["latency_ms"] == 3.0 and record["features"] == {"x": 2.0}
    assert record["attributes"] == {"r": "eu"}


def test_the_queue_is_served_while_publishing(events: AgentEvents):
    for i in range(1000):
        events.metric(agent_name="a", name="m", value=float(i))
    assert events.sent == 1000
    assert 0 < events._producer.polls < 1000  # type: ignore[attr-defined]
