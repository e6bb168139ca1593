"""Input checks: the common outcome's one-expression path says what the field-by-field path says; durations,
costs and token counts are never negative."""

from __future__ import annotations

import itertools
import json
import math
from typing import Any

from reverify.processors.validation import MAX_STRING, check_input

GOOD: dict[str, Any] = {
    "agent_name": "a",
    "task_type": "t",
    "variant_id": "v",
    "reward": 0.5,
    "latency_ms": 12.0,
    "cost_usd": 0.001,
    "features": {"x": 1.0},
    "attributes": {},
}
BAD: dict[str, list[Any]] = {
    "agent_name": [""],
    "task_type": [""],
    "variant_id": [""],
    "reward": [-0.1, 1.5, math.nan, math.inf],
    "latency_ms": [math.nan, -math.inf, -1.0],
    "cost_usd": [math.inf, math.nan, -5.0],
    "tokens_in": [-1],
    "tokens_out": [-3],
    "features": [{"x": math.nan}, {"x": -math.inf, "y": 1.0}],
}
FINE: dict[str, list[Any]] = {
    "reward": [0.0, 1.0],
    "latency_ms": [0.0],
    "cost_usd": [0.0, 1e300],
    "tokens_in": [None, 0],
    "tokens_out": [None, 10**12],
    "features": [{}, {"x": 1e308, "y": 1e308}],  # the sum overflows: the general path decides
}


def variants(values: dict[str, list[Any]]) -> list[dict[str, Any]]:
    return [{**GOOD, field: value} for field, choices in values.items() for value in choices]


def test_the_common_outcome_path_agrees_with_the_general_one() -> None:
    pairs = [{**GOOD, a: BAD[a][0], b: BAD[b][0]} for a, b in itertools.combinations(BAD, 2)]
    for records, fine in ((variants(FINE) + [GOOD], True), (variants(BAD) + pairs, False)):
        for record in records:
            general = check_input("AgentOutcome", record)  # no encoded size: the field-by-field path
            assert (general is None) == fine, record
            assert check_input("AgentOutcome", record, MAX_STRING) == general, record


def test_a_long_string_is_caught_when_the_record_may_hold_one() -> None:
    record = {**GOOD, "agent_name": "a" * (MAX_STRING + 1)}
    expected = f"agent_name is {MAX_STRING + 1} characters long; the limit is {MAX_STRING}"
    assert check_input("AgentOutcome", record, MAX_STRING + 200) == expected


def test_negative_amounts_are_named() -> None:
    assert check_input("AgentOutcome", {**GOOD, "latency_ms": -1.0}) == "latency_ms = -1.0 is negative"
    assert check_input("AgentOutcome", {**GOOD, "cost_usd": -5.0}, MAX_STRING) == "cost_usd = -5.0 is negative"
    assert check_input("AgentOutcome", {**GOOD, "tokens_out": -2}) == "tokens_out = -2 is negative"


def test_a_pinned_baseline_of_many_values_is_a_usable_command() -> None:
    values = json.dumps([i / 7 for i in range(2000)])  # ~40,000 characters: args are not bounded like names
    record = {"command": "baseline_pin", "args": {"feature": "x", "values": values}, "by": "ana"}
    assert check_input("Command", record, len(values) + 50) is None
    assert check_input("Command", {**record, "args": {"feature": "x", "values": "[1]"}}) is not None
