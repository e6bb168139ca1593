"""Values read from ClickHouse as JSON can carry them, for ``--json`` output and the query API.

>>> jsonable(float("nan")), jsonable(b"\\xff"), jsonable([1, (2, 3)])
(None, '\\\\xff', [1, [2, 3]])
>>> import datetime as dt
>>> jsonable(dt.datetime(2025, 1, 2, 3, 4, 5))
'2025-01-02T03:04:05.000Z'
"""

from __future__ import annotations

import datetime as dt
import decimal
import math
import uuid
from typing import Any


def jsonable(value: Any) -> Any:
    """A value as JSON can carry it: times in ISO 8601 (UTC), NaN/inf as null, bytes escaped."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.timezone.utc)
        return value.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", "backslashreplace")
    if isinstance(value, (list, tuple, set)):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (decimal.Decimal, uuid.UUID)):
        return str(value)
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    return value
