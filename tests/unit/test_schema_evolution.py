"""Schemas evolve only compatibly: every schema in the tree reads data written by the previous release's."""

from __future__ import annotations

import io
import json
from pathlib import Path

import fastavro
import pytest
from fastavro.schema import to_parsing_canonical_form
from fastavro.utils import generate_many
from reverify.schemas import SCHEMA_IDS, DecodeError, decode, encode, load_schema, schema_names
from reverify.schemas.codec import RELEASED_IDS, SCHEMA_DIR

PREVIOUS = SCHEMA_DIR / "releases" / "v0.1.0"
PREVIOUS_IDS: dict[str, int] = json.loads((PREVIOUS / "ids.json").read_text())


def previous_schemas() -> list[Path]:
    return sorted(PREVIOUS.glob("*.avsc"))


def test_the_previous_release_is_kept_as_test_data():
    assert {p.stem for p in previous_schemas()} <= set(SCHEMA_IDS)
    assert len(previous_schemas()) >= 15


@pytest.mark.parametrize("old_path", previous_schemas(), ids=lambda p: p.stem)
def test_current_schema_reads_what_the_previous_release_wrote(old_path: Path):
    old = fastavro.parse_schema(json.loads(old_path.read_text()))
    new = fastavro.parse_schema(load_schema(old_path.stem))
    for record in generate_many(old, 50):
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, old, record)
        buf.seek(0)
        read = fastavro.schemaless_reader(buf, old, new)
        for field in json.loads(old_path.read_text())["fields"]:
            assert field["name"] in read


@pytest.mark.parametrize("old_path", previous_schemas(), ids=lambda p: p.stem)
def test_the_previous_release_reads_what_this_one_writes(old_path: Path):
    old = fastavro.parse_schema(json.loads(old_path.read_text()))
    new = fastavro.parse_schema(load_schema(old_path.stem))
    for record in generate_many(new, 50):
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, new, record)
        buf.seek(0)
        read = fastavro.schemaless_reader(buf, new, old)
        assert read["event_id"] == record["event_id"]


def test_routing_fields_read_as_null_from_the_previous_release():
    """Outcomes without a propensity, Q-values without posterior evidence (issue 18): null, not an error."""
    for name, fields in (("AgentOutcome", ("propensity",)), ("QValue", ("successes", "failures"))):
        old = fastavro.parse_schema(json.loads((PREVIOUS / f"{name}.avsc").read_text()))
        (record,) = generate_many(old, 1)
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, old, record)
        buf.seek(0)
        read = fastavro.schemaless_reader(buf, old, fastavro.parse_schema(load_schema(name)))
        assert all(read[field] is None for field in fields)


def test_an_outcome_awaiting_feedback_reads_in_the_previous_release_with_placeholders():
    """An outcome whose success and reward are not known yet omits them: the schema's defaults fill them, and the
    previous release reads the record (``awaiting_feedback`` and the prediction fields are the new release's)."""
    old = fastavro.parse_schema(json.loads((PREVIOUS / "AgentOutcome.avsc").read_text()))
    new = fastavro.parse_schema(load_schema("AgentOutcome"))
    record = {
        "event_id": "o1",
        "ts": 5,
        "agent_name": "a",
        "task_type": "t",
        "variant_id": "v",
        "awaiting_feedback": True,
        "prediction": 0.8,
        "model_version": "m1",
    }
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, new, record, strict_allow_default=True)
    buf.seek(0)
    read = fastavro.schemaless_reader(buf, new, old)
    assert (read["success"], read["reward"]) == (False, 0.0) and "awaiting_feedback" not in read
    _, current = decode(encode("AgentOutcome", record))
    assert current["awaiting_feedback"] is True and current["prediction"] == 0.8 and current["model_version"] == "m1"


def test_every_schema_has_event_id_and_event_time_and_the_namespace():
    for name in schema_names():
        schema = load_schema(name)
        assert schema["namespace"] == "reverify.v1"
        fields = {f["name"]: f for f in schema["fields"]}
        assert fields["event_id"]["type"] == "string"
        assert fields["ts"]["type"] == {"type": "long", "logicalType": "timestamp-millis"}


@pytest.mark.parametrize("name", schema_names())
def test_round_trip_through_the_confluent_framing(name: str):
    for record in generate_many(fastavro.parse_schema(load_schema(name)), 5):
        raw = encode(name, record)
        assert raw[0] == 0 and int.from_bytes(raw[1:5], "big") == SCHEMA_IDS[name]
        got_name, got = decode(raw)
        assert got_name == name and got["event_id"] == record["event_id"]


def canonical(schema: dict) -> str:
    return to_parsing_canonical_form(fastavro.parse_schema(schema))


@pytest.mark.parametrize("old_path", previous_schemas(), ids=lambda p: p.stem)
def test_a_schema_that_changed_since_the_release_has_a_new_id_and_its_old_one_stays_readable(old_path: Path):
    """As in a Schema Registry, an id names one exact schema: bytes framed with it are read with that schema."""
    name, old_id = old_path.stem, PREVIOUS_IDS[old_path.stem]
    if canonical(json.loads(old_path.read_text())) == canonical(load_schema(name)):
        assert SCHEMA_IDS[name] == old_id
    else:
        assert SCHEMA_IDS[name] != old_id, f"{name} changed since v0.1.0: give it a new id in SCHEMA_IDS"
        assert RELEASED_IDS[old_id] == (name, "v0.1.0")
    assert old_id not in set(SCHEMA_IDS.values()) - {SCHEMA_IDS[name]}  # never reused for another schema


@pytest.mark.parametrize("old_path", previous_schemas(), ids=lambda p: p.stem)
def test_the_codec_reads_what_the_previous_release_framed(old_path: Path):
    """An agent on the previous release's SDK publishes on: its records decode, the new fields at their defaults."""
    name = old_path.stem
    old = fastavro.parse_schema(json.loads(old_path.read_text()))
    header = bytes([0]) + PREVIOUS_IDS[name].to_bytes(4, "big")
    added = {f["name"] for f in load_schema(name)["fields"]} - {
        f["name"] for f in json.loads(old_path.read_text())["fields"]
    }
    for record in generate_many(old, 20):
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, old, record)
        got_name, got = decode(header + buf.getvalue())
        assert got_name == name and got["event_id"] == record["event_id"]
        defaults = {f["name"]: f.get("default") for f in load_schema(name)["fields"]}
        assert {k: got[k] for k in added} == {k: defaults[k] for k in added}


def test_an_outcome_of_the_previous_release_reaches_the_worker_as_an_outcome():
    """The worker's batch decoder (the fast path takes today's id only) reads a v0.1.0 outcome between today's."""
    from reverify.schemas.codec import decode_many

    old = json.loads((PREVIOUS / "AgentOutcome.avsc").read_text())
    record = {"event_id": "old", "ts": 5, "agent_name": "a", "task_type": "t", "variant_id": "v", "success": True,
              "reward": 1.0, "latency_ms": 3.0, "cost_usd": 0.0, "tokens_in": None, "tokens_out": None,
              "features": {}, "attributes": {}, "trace_id": None, "next_state": None}  # fmt: skip
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, fastavro.parse_schema(old), record)
    framed = bytes([0]) + PREVIOUS_IDS["AgentOutcome"].to_bytes(4, "big") + buf.getvalue()
    today = encode("AgentOutcome", {**record, "event_id": "new", "propensity": 0.5})
    got = decode_many("AgentOutcome", [today, framed, today])
    assert [r["event_id"] for r in got] == ["new", "old", "new"]
    assert got[1]["propensity"] is None and got[1]["awaiting_feedback"] is False


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "empty"),
        (b"\x01\x00\x00\x00\x01abc", "magic byte"),
        (b"\x00\x00\x00\x03\xe7abc", "unknown schema id"),
        (b"\x00\x00\x00", "truncated"),
        (b"\x00\x00\x00\x00\x01\x02", "does not match"),
    ],
)
def test_bad_bytes_raise_one_decode_error_with_a_reason(raw: bytes, reason: str):
    with pytest.raises(DecodeError, match=reason):
        decode(raw)
