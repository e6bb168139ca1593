"""Avro codec with Confluent framing, built on fastavro's schemaless reader and writer.

Timestamps (``timestamp-millis``) are integers of milliseconds since the epoch
on both sides of the codec: processors compare and subtract them, and an
integer is what every Kafka client and ClickHouse already use for event time.

References
----------
Confluent wire format: https://docs.confluent.io/platform/current/schema-registry/fundamentals/serdes-develop/index.html#wire-format
"""

from __future__ import annotations

import io
import json
import re
import struct
from collections.abc import Callable, Sequence
from functools import cache, partial
from pathlib import Path
from typing import Any

import fastavro

try:
    # The compiled writer appends to a bytearray: a framed value is then built in one buffer, and the schema is
    # resolved once per schema rather than once per record as schemaless_writer does.
    from fastavro._write import write_data as _write_data
except ImportError:  # a pure-Python fastavro, whose write_data takes an encoder object: use schemaless_writer
    _write_data = None

SCHEMA_DIR = Path(__file__).parent
MAGIC = 0
_HEADER = struct.Struct(">bI")
_OBJECT_REPR = re.compile(r" from <[^>]* at 0x[0-9a-f]+>")

#: The id each schema is written with, without a Schema Registry. Append only: an id is never reused. As in a
#: registry, an id names one exact schema: a schema that changes gets a new id here, and the id it had in a release
#: moves to :data:`RELEASED_IDS`, so that what that release wrote stays readable.
SCHEMA_IDS: dict[str, int] = {
    "AgentError": 2,
    "AgentMetric": 3,
    "AgentFeedback": 4,
    "VariantDecision": 11,
    "ActiveVariant": 12,
    "Proposal": 13,
    "Approval": 14,
    "Rollback": 15,
    "AssuranceResult": 17,
    "Alert": 18,
    "DeadLetter": 19,
    "AgentControl": 20,
    "Command": 21,
    "Incident": 22,
    "ModelReport": 23,
    "Experiment": 24,
    "SloReport": 25,
    "AgentOutcome": 26,  # 0.2.0: propensity, awaiting_feedback, prediction, model_version
    "DriftReport": 27,  # 0.2.0: serial_correlation, calibrated
    "QValue": 28,  # 0.2.0: successes, failures, pending, timeouts, timeout_default
}

#: Ids a previous release wrote with: ``id -> (schema name, release)``; the writer's schema is kept in
#: ``releases/<release>/<name>.avsc`` and read into today's with Avro's schema resolution (new fields take their
#: defaults). Upgrade readers (workers, the sink) before writers (agents' SDK), as with a registry's BACKWARD mode:
#: an older reader does not know the new ids and dead-letters what it cannot read, naming the id.
RELEASED_IDS: dict[int, tuple[str, str]] = {
    1: ("AgentOutcome", "v0.1.0"),
    10: ("QValue", "v0.1.0"),
    16: ("DriftReport", "v0.1.0"),
}
_NAMES_BY_ID = {v: k for k, v in SCHEMA_IDS.items()} | {i: name for i, (name, _) in RELEASED_IDS.items()}


class DecodeError(ValueError):
    """Bytes that cannot be read as a reverify event; ``reason`` says why, for the dead-letter topic."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class EncodeError(ValueError):
    """A record that does not match its schema (a programming error in the caller)."""


def schema_names() -> list[str]:
    """Names of every record schema, in schema-id order."""
    return sorted(SCHEMA_IDS, key=SCHEMA_IDS.__getitem__)


@cache
def load_schema(name: str) -> dict[str, Any]:
    """The raw JSON schema of record ``name``."""
    path = SCHEMA_DIR / f"{name}.avsc"
    if not path.exists():
        raise KeyError(f"no schema named {name!r}; known: {', '.join(schema_names())}")
    return json.loads(path.read_text())


@cache
def _parsed(name: str) -> Any:
    return fastavro.parse_schema(load_schema(name))


def _without_timestamp_logic(node: Any) -> Any:
    """The schema with ``timestamp-millis`` read as the plain ``long`` it is on the wire."""
    if isinstance(node, dict):
        if node.get("logicalType") == "timestamp-millis":
            return node["type"]
        return {k: _without_timestamp_logic(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_without_timestamp_logic(v) for v in node]
    return node


@cache
def _parsed_for_reading(name: str) -> Any:
    # Same bytes, same fields: only the datetime round trip (and its cost) is gone.
    return fastavro.parse_schema(_without_timestamp_logic(load_schema(name)))


@cache
def _readers(schema_id: int) -> tuple[Any, Any]:
    """``(writer, reader)`` schemas for fastavro's ``schemaless_reader``: today's schema alone, or a release's
    schema resolved into today's."""
    name = _NAMES_BY_ID[schema_id]
    if schema_id == SCHEMA_IDS[name]:
        return _parsed_for_reading(name), None
    release = RELEASED_IDS[schema_id][1]
    written = json.loads((SCHEMA_DIR / "releases" / release / f"{name}.avsc").read_text())
    return fastavro.parse_schema(_without_timestamp_logic(written)), _parsed_for_reading(name)


_ENCODE_ERRORS = (ValueError, TypeError, KeyError, AttributeError, OverflowError)


def encode(name: str, record: dict[str, Any]) -> bytes:
    """Frame ``record`` as schema ``name``: magic byte, schema id, Avro body."""
    return encoder(name)(record)


@cache
def encoder(name: str, *, int_timestamps: bool = False) -> Callable[[dict[str, Any]], bytes]:
    """The function :func:`encode` calls for schema ``name``, for callers that encode many records.

    Parameters
    ----------
    name : str
        A schema in :data:`SCHEMA_IDS`.
    int_timestamps : bool
        The caller gives every ``timestamp-millis`` field as int milliseconds (the codec's convention) and never
        as a ``datetime``: fastavro's conversion is then skipped; a ``datetime`` would raise :class:`EncodeError`.

    Returns
    -------
    callable
        ``record -> bytes``: the same framed bytes, and the same :class:`EncodeError`, as ``encode(name, record)``.
        A union field may also be given in fastavro's tuple notation, ``("long", 5)``, which spares fastavro
        trying each branch of the union in turn.

    Examples
    --------
    >>> to_bytes = encoder("AgentMetric")
    >>> record = {"event_id": "e1", "ts": 1, "agent_name": "a", "name": "m", "value": 2.0, "task_type": ("null", None)}
    >>> to_bytes(record) == encode("AgentMetric", {**record, "task_type": None})
    True
    """
    header = _HEADER.pack(MAGIC, SCHEMA_IDS[name])
    named_schemas: dict[str, Any] = {}
    # What schemaless_writer resolves on every call. The reading schema is the same one with plain longs.
    schema = fastavro.parse_schema((_parsed_for_reading if int_timestamps else _parsed)(name), named_schemas)
    if _write_data is None:
        return partial(_encode_with_stream, name, header, schema)
    write = _write_data
    options = {"strict_allow_default": True}

    def encode_record(record: dict[str, Any]) -> bytes:
        out = bytearray(header)
        try:
            write(out, record, schema, named_schemas, "", options)
        except _ENCODE_ERRORS as exc:
            raise EncodeError(f"{name}: {exc}") from exc
        return bytes(out)

    return encode_record


def _encode_with_stream(name: str, header: bytes, schema: Any, record: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    buf.write(header)
    try:
        fastavro.schemaless_writer(buf, schema, record, strict_allow_default=True)
    except _ENCODE_ERRORS as exc:
        raise EncodeError(f"{name}: {exc}") from exc
    return buf.getvalue()


def decode(data: bytes | None) -> tuple[str, dict[str, Any]]:
    """Read one framed value; returns ``(schema name, record)`` or raises :class:`DecodeError`."""
    if not data:
        raise DecodeError("empty value")
    if len(data) < _HEADER.size:
        raise DecodeError(f"truncated: {len(data)} bytes, the header alone is {_HEADER.size}")
    magic, schema_id = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise DecodeError(f"unknown magic byte {magic} (expected {MAGIC}: Confluent framing)")
    name = _NAMES_BY_ID.get(schema_id)
    if name is None:
        raise DecodeError(f"unknown schema id {schema_id}")
    body = io.BytesIO(data)
    body.seek(_HEADER.size)
    try:
        record = fastavro.schemaless_reader(body, *_readers(schema_id))
    except (EOFError, ValueError, TypeError, KeyError, IndexError, UnicodeDecodeError, OverflowError) as exc:
        # fastavro names the stream object in some messages ("... from <_io.BytesIO object at 0x7f...>"): the
        # address says nothing to a reader and would differ between two reads of the same bytes
        detail = _OBJECT_REPR.sub("", str(exc))
        raise DecodeError(
            f"body does not match schema {name} (id {schema_id}): {type(exc).__name__}: {detail}"
        ) from exc
    if body.tell() != len(data):
        raise DecodeError(f"{len(data) - body.tell()} trailing bytes after a {name} body")
    return name, record  # type: ignore[return-value]


def decode_as(expected: str, data: bytes | None) -> dict[str, Any]:
    """Decode and check that the value is a ``expected`` record."""
    name, record = decode(data)
    if name != expected:
        raise DecodeError(f"expected a {expected} record, got {name}")
    return record


def decode_many(expected: str, values: Sequence[bytes | None]) -> list[dict[str, Any] | DecodeError]:
    """Decode a batch of framed ``expected`` records; a bad value yields its :class:`DecodeError`, not a failure.

    Each value gets exactly what :func:`decode_as` would give it, in order: the
    record, or (in its place) the error it would raise, with the same reason.
    The batch is read from one buffer, which spares a ``BytesIO`` and a header
    parse per value; the per-record cost left is fastavro's.

    Parameters
    ----------
    expected : str
        The schema every value should be framed with.
    values : sequence of bytes or None
        Framed values, e.g. the message values of one consume call.

    Returns
    -------
    list of dict or DecodeError
        One entry per value.

    Examples
    --------
    >>> good = encode("Approval", {"event_id": "e1", "ts": 1, "proposal_id": "p", "approved": True, "by": "ana"})
    >>> [type(r).__name__ for r in decode_many("Approval", [good, b"\\x00junk", None, good + b"!", good])]
    ['dict', 'DecodeError', 'DecodeError', 'DecodeError', 'dict']
    >>> decode_many("Approval", [b"\\x00junk"])[0].reason
    'unknown schema id 1786080875'
    """
    schema_id = SCHEMA_IDS[expected]
    header = _HEADER.pack(MAGIC, schema_id)
    schema = _parsed_for_reading(expected)
    buf = io.BytesIO(b"".join(v or b"" for v in values))
    read = fastavro.schemaless_reader
    out: list[dict[str, Any] | DecodeError] = []
    end = 0
    for value in values:
        start = end
        end += len(value) if value else 0
        if value and value.startswith(header):
            buf.seek(start + _HEADER.size)
            try:
                record = read(buf, schema, None)
            except Exception:  # whatever it was, decode() below classifies it exactly
                record = None
            # Ending exactly at the value's boundary means only its own bytes were read, so decode() would have
            # read the same record; anything else (an error, a short or long body, which in one buffer may run into
            # the next value) is left to decode() to turn into the error it would raise alone.
            if record is not None and buf.tell() == end:
                out.append(record)  # type: ignore[arg-type]
                continue
        try:
            out.append(decode_as(expected, value))
        except DecodeError as exc:
            out.append(exc)
    return out
