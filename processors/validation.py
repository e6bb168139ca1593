"""Input validation: what makes a decoded input unusable, said in words for the dead-letter topic.

Avro already guarantees the fields exist with their types; this adds what Avro
cannot say: finite numbers, rewards in [0, 1], bounded strings, non-empty names.

>>> check_input("AgentOutcome", {"agent_name": "a", "task_type": "t", "variant_id": "v", "reward": 1.2,
...                              "latency_ms": 1.0, "cost_usd": 0.0, "features": {}, "attributes": {}})
'reward = 1.2 is outside [0, 1]'
>>> check_input("AgentMetric", {"agent_name": "a", "name": "q", "value": float("nan"), "attributes": {}}) is None
False
>>> check_input("AgentMetric", {"agent_name": "a", "name": "q", "value": 3.0, "attributes": {}}) is None
True
"""

from __future__ import annotations

import math
from typing import Any

MAX_STRING = 4096

_REQUIRED_NAMES = {
    "AgentOutcome": ("agent_name", "task_type", "variant_id"),
    "AgentError": ("agent_name", "component", "error_type"),
    "AgentMetric": ("agent_name", "name"),
}
_NUMBERS = {
    "AgentOutcome": ("reward", "latency_ms", "cost_usd"),
    "AgentMetric": ("value",),
}


def _string_problem(field: str, value: Any) -> str | None:
    if isinstance(value, str) and len(value) > MAX_STRING:
        return f"{field} is {len(value)} characters long; the limit is {MAX_STRING}"
    return None


def check_input(record_type: str, record: dict[str, Any], encoded_size: int | None = None) -> str | None:
    """The reason ``record`` cannot be used, or ``None`` when it is fine.

    ``encoded_size``, the bytes the record was decoded from, spares the string checks when it is at most
    ``MAX_STRING``: no string of it can be longer than that (a UTF-8 character takes a byte at least).

    >>> check_input("AgentMetric", {"agent_name": "a", "name": "q" * 5000, "value": 1.0, "attributes": {}})
    'name is 5000 characters long; the limit is 4096'
    """
    strings = encoded_size is None or encoded_size > MAX_STRING
    if record_type == "AgentOutcome" and not strings:
        # The common input in one expression (x - x == 0.0 is false for nan and +-inf only); anything off takes
        # the path below, which names the problem.
        reward, latency, cost = record["reward"], record["latency_ms"], record["cost_usd"]
        features = sum(record["features"].values())
        if (
            record.get("agent_name")
            and record.get("task_type")
            and record.get("variant_id")
            and 0.0 <= reward <= 1.0
            and latency - latency == 0.0
            and cost - cost == 0.0
            and features - features == 0.0
        ):
            return None
    for field in _REQUIRED_NAMES.get(record_type, ()):
        if not record.get(field):
            return f"{field} is empty"
    if strings:
        for field, value in record.items():
            if type(value) is str and len(value) > MAX_STRING:  # inline: this loop runs for every input field
                return _string_problem(field, value)
    for field in _NUMBERS.get(record_type, ()):
        value = record[field]
        if value - value != 0.0:  # nan and +-inf only; cheaper than math.isfinite
            return f"{field} = {value} is not a finite number"
    if record_type == "AgentOutcome":
        if not 0.0 <= record["reward"] <= 1.0:
            return f"reward = {record['reward']} is outside [0, 1]"
        for name, value in record["features"].items():
            if not math.isfinite(value):
                return f"features[{name!r}] = {value} is not a finite number"
    if strings:
        for name, value in record.get("attributes", {}).items():
            problem = _string_problem(f"attributes[{name!r}]", value)
            if problem:
                return problem
    return None
