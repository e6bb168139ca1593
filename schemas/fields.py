"""What the event contract says beyond Avro types: the fields that are never negative, the severities, the
outcome numbers, and the units a duration is written in. The SDK, the worker's input check, the processors
and the CLI all read them here, so that one rule is written once.

>>> OUTCOME_NUMBERS
('reward', 'latency_ms', 'cost_usd')
>>> ERROR_SEVERITIES
('info', 'warning', 'error', 'critical')
>>> duration_ms("5m"), duration_ms("500ms"), duration_ms("1.5 h"), duration_ms("2w"), duration_ms("soon")
(300000, 500, 5400000, 1209600000, None)
"""

from __future__ import annotations

import re
from typing import Any

from reverify.schemas.codec import load_schema

#: The numbers of an AgentOutcome that are watched for drift (every key of ``features`` is too).
OUTCOME_NUMBERS = ("reward", "latency_ms", "cost_usd")

#: Fields that hold a number or a class (Avro ``["null", "double", "string"]``), stored in ClickHouse as two
#: columns, ``NAME`` (Float64) and ``NAME_class`` (String).
NUMBER_OR_CLASS = ("prediction", "label")


def join_number_or_class(row: dict[str, Any]) -> dict[str, Any]:
    """A stored row with each :data:`NUMBER_OR_CLASS` field back in one (its ``_class`` column removed).

    >>> join_number_or_class({"prediction": None, "prediction_class": "spam", "label": 1.0, "label_class": None})
    {'prediction': 'spam', 'label': 1.0}
    """
    for name in NUMBER_OR_CLASS:
        text = row.pop(f"{name}_class", None)
        if text is not None:
            row[name] = text
    return row


#: Durations, costs and token counts: never negative (the SDK raises, the worker dead-letters).
NON_NEGATIVE: dict[str, tuple[str, ...]] = {"AgentOutcome": ("latency_ms", "cost_usd", "tokens_in", "tokens_out")}


def _enum_symbols(record: str, field: str) -> tuple[str, ...]:
    (node,) = (f["type"] for f in load_schema(record)["fields"] if f["name"] == field)
    return tuple(node["symbols"])


#: AgentError.severity, from its Avro enum.
ERROR_SEVERITIES = _enum_symbols("AgentError", "severity")

#: Alert.severity, least to most urgent (the position is the rank ``min_severity`` compares).
ALERT_SEVERITIES = ("info", "warning", "critical")

#: Milliseconds per duration unit, for every duration a person types (assurance windows, ``--since``, ``-2h``).
DURATION_UNITS_MS = {
    "ms": 1,
    "s": 1000,
    "sec": 1000,
    "m": 60_000,
    "min": 60_000,
    "h": 3_600_000,
    "d": 86_400_000,
    "w": 604_800_000,
}
_DURATION = re.compile(rf"^\s*(\d+(?:\.\d+)?)\s*({'|'.join(DURATION_UNITS_MS)})\s*$")

#: What a person may type, for error messages.
DURATION_EXAMPLES = "'500ms', '30s', '5m', '2h', '1d', '2w'"


def duration_ms(text: str) -> int | None:
    """Milliseconds of a duration such as ``30s``, ``5m``, ``2h``, ``1d``; ``None`` when ``text`` is not one."""
    match = _DURATION.match(text)
    if match is None:
        return None
    return int(round(float(match.group(1)) * DURATION_UNITS_MS[match.group(2)]))
