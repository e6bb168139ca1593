"""What every processor shares: the emission type, deterministic ids and alert fingerprints.

>>> e = Emission("alerts", "fp", "Alert", {"event_id": derive_id("x", 1)})
>>> e.topic, e.record_type
('alerts', 'Alert')
>>> derive_id("rollback", "in-1") == derive_id("rollback", "in-1")
True
>>> fingerprint("drift", {"feature": "x", "agent_name": "a"}) == fingerprint("drift", {"agent_name": "a", "feature": "x"})
True
>>> len(fingerprint("drift", {}))
16
>>> unpack_array(pack_array(np.array([1.5, -2.0]))).tolist()
[1.5, -2.0]
>>> unpack_array([1, 2], np.int32).dtype.name   # lists (older state) still load
'int32'
"""

from __future__ import annotations

import base64
import hashlib
import uuid
from dataclasses import dataclass
from typing import Any

import numpy as np

_NAMESPACE = uuid.UUID("6f1f8a0e-6b2c-4c61-9a53-1d2f0c0de001")


@dataclass(frozen=True, slots=True)
class Emission:
    """One record a processor asks the shell to publish.

    ``topic`` is the logical topic name of docs/design.md section 2 (``crl.qvalues``,
    ``alerts`` ...); the shell adds the environment prefix. ``record_type`` is
    the schema name in ``schemas/``.
    """

    topic: str
    key: str
    record_type: str
    value: dict[str, Any]


_UUID5_PREFIX = hashlib.sha1(_NAMESPACE.bytes)  # noqa: S324 - UUID version 5 is defined on SHA-1


def derive_id(*parts: object) -> str:
    """A UUID derived from ``parts``, so a replayed input yields the same output id.

    ``uuid.uuid5`` of the joined parts, at half its cost (one per emission): the namespace's hash state is
    computed once and the UUID text is built from the digest, without a ``uuid.UUID`` object.

    >>> derive_id("qvalue", "e-1", "v1") == str(uuid.uuid5(_NAMESPACE, "qvalue\x1fe-1\x1fv1"))
    True
    """
    h = _UUID5_PREFIX.copy()
    h.update("\x1f".join(str(p) for p in parts).encode())
    b = bytearray(h.digest()[:16])
    b[6] = (b[6] & 0x0F) | 0x50  # version 5
    b[8] = (b[8] & 0x3F) | 0x80  # RFC 4122 variant
    x = b.hex()
    return f"{x[:8]}-{x[8:12]}-{x[12:16]}-{x[16:20]}-{x[20:]}"


def short_hex(*parts: object, length: int = 6) -> str:
    """A short deterministic hex tag, e.g. the ``abc123`` of ``rb-20251119-abc123``."""
    return hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).hexdigest()[:length]


def fingerprint(source: str, labels: dict[str, str]) -> str:
    """Stable hash of the source and the sorted labels (Alertmanager's idea), 16 hex digits."""
    text = source + "\x1e" + "\x1e".join(f"{k}\x1f{labels[k]}" for k in sorted(labels))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def make_alert(
    *,
    source: str,
    status: str,
    severity: str,
    title: str,
    labels: dict[str, str],
    ts: int,
    starts_at: int,
    cause: object,
    message: str = "",
    evidence: dict[str, float] | None = None,
    ends_at: int | None = None,
    flapping: bool = False,
    acknowledged_by: str | None = None,
    settings_version: str = "",
) -> Emission:
    """An ``Alert`` emission keyed by its fingerprint; ``cause`` makes its event id deterministic."""
    fp = fingerprint(source, labels)
    value = {
        "event_id": derive_id("alert", fp, status, cause),
        "ts": ts,
        "fingerprint": fp,
        "source": source,
        "status": status,
        "severity": severity,
        "title": title,
        "message": message,
        "labels": dict(labels),
        "evidence": dict(evidence or {}),
        "starts_at": starts_at,
        "ends_at": ends_at,
        "flapping": flapping,
        "acknowledged_by": acknowledged_by,
        "settings_version": settings_version,
    }
    return Emission("alerts", fp, "Alert", value)


def pack_array(values: np.ndarray) -> str:
    """A numpy array as JSON-safe text: dtype, then base64 of its little-endian bytes.

    State is written to the changelog after every batch; a float list through ``json`` costs
    milliseconds and three times the bytes, this costs microseconds.
    """
    arr = np.ascontiguousarray(values)
    little = arr.astype(arr.dtype.newbyteorder("<"), copy=False)
    return f"{little.dtype.str}:{base64.b64encode(little.tobytes()).decode('ascii')}"


def unpack_array(packed: str | list[Any], dtype: Any = float) -> np.ndarray:
    """The array :func:`pack_array` wrote (a plain list is accepted too, as ``dtype``)."""
    if isinstance(packed, str):
        kind, _, data = packed.partition(":")
        return np.frombuffer(base64.b64decode(data), dtype=np.dtype(kind)).astype(dtype)
    return np.asarray(packed, dtype=dtype)
