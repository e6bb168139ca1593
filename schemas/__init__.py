"""The event contract: Avro schemas (``*.avsc``) and the codec that frames them.

Every value on a reverify topic is Avro in the Confluent wire format: magic
byte 0, a 4-byte big-endian schema id, then the schemaless Avro body. Without
a Schema Registry the ids come from :data:`SCHEMA_IDS`, a fixed table that only
ever grows; an id names one exact schema, and the ids a previous release wrote
(:data:`~reverify.schemas.codec.RELEASED_IDS`) are read into today's schemas.

>>> from reverify.schemas import encode, decode
>>> raw = encode("AgentMetric", {"event_id": "e1", "ts": 1700000000000,
...                              "agent_name": "hunter", "name": "queue_depth", "value": 12.0})
>>> raw[:5]
b'\\x00\\x00\\x00\\x00\\x03'
>>> name, record = decode(raw)
>>> name, record["value"], record["ts"]
('AgentMetric', 12.0, 1700000000000)
"""

from reverify.schemas.codec import (
    SCHEMA_IDS,
    DecodeError,
    EncodeError,
    decode,
    decode_as,
    encode,
    load_schema,
    schema_names,
)

__all__ = [
    "SCHEMA_IDS",
    "DecodeError",
    "EncodeError",
    "decode",
    "decode_as",
    "encode",
    "load_schema",
    "schema_names",
]
