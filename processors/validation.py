"""Input validation: what makes a decoded input unusable, said in words for the dead-letter topic.

Avro already guarantees the fields exist with their types; this adds what Avro
cannot say: finite numbers, rewards in [0, 1], durations, costs and token counts
never negative (:data:`schemas.fields.NON_NEGATIVE`), bounded strings, non-empty names.

>>> check_input("AgentOutcome", {"agent_name": "a", "task_type": "t", "variant_id": "v", "reward": 1.2,
...                              "latency_ms": 1.0, "cost_usd": 0.0, "features": {}, "attributes": {}})
'reward = 1.2 is outside [0, 1]'
>>> check_input("AgentOutcome", {"agent_name": "a", "task_type": "t", "variant_id": "v", "reward": 1.0,
...                              "latency_ms": -1.0, "cost_usd": 0.0, "features": {}, "attributes": {}})
'latency_ms = -1.0 is negative'
>>> check_input("AgentMetric", {"agent_name": "a", "name": "q", "value": float("nan"), "attributes": {}}) is None
False
>>> check_input("AgentMetric", {"agent_name": "a", "name": "q", "value": 3.0, "attributes": {}}) is None
True
"""

from __future__ import annotations

import json
import math
from typing import Any

from reverify.schemas.fields import NON_NEGATIVE, OUTCOME_NUMBERS

MAX_STRING = 4096
_INF = math.inf

_REQUIRED_NAMES = {
    "AgentOutcome": ("agent_name", "task_type", "variant_id"),
    "AgentError": ("agent_name", "component", "error_type"),
    "AgentMetric": ("agent_name", "name"),
    "AgentFeedback": ("agent_name", "outcome_id"),
    "Approval": ("proposal_id",),
    "Command": ("command",),
}
# The arguments each operator command needs (streams/cli writes them; processors.pipeline.AgentPipeline.on_command
# reads them), and for some what they must parse as.
COMMAND_ARGS: dict[str, tuple[str, ...]] = {
    "baseline_reset": ("feature",),
    "baseline_pin": ("feature", "values"),
    "ack": ("fingerprint",),
    "silence": ("matchers", "until_ms"),
    "rollback": (),
    "experiment_start": ("experiment",),
    "experiment_stop": ("experiment",),
}
# Maps whose keys and values are names or labels, bounded as strings are. A command's args are not: a pinned
# baseline's values, as JSON, run to thousands of characters.
_MAPS = ("features", "attributes")
_NUMBERS = {
    "AgentOutcome": OUTCOME_NUMBERS,
    "AgentMetric": ("value",),
    "AgentFeedback": ("reward",),
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
        tokens_in, tokens_out = record.get("tokens_in"), record.get("tokens_out")
        features = sum(record["features"].values())
        propensity = record.get("propensity")
        prediction = record.get("prediction")
        if (
            record.get("agent_name")
            and record.get("task_type")
            and record.get("variant_id")
            and 0.0 <= reward <= 1.0
            and 0.0 <= latency < _INF  # false for nan too
            and 0.0 <= cost < _INF
            and (tokens_in is None or tokens_in >= 0)
            and (tokens_out is None or tokens_out >= 0)
            and features - features == 0.0
            and (propensity is None or 0.0 < propensity <= 1.0)
            and (prediction is None or type(prediction) is str or prediction - prediction == 0.0)
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
    for field in NON_NEGATIVE.get(record_type, ()):
        value = record.get(field)
        if value is not None and value < 0:
            return f"{field} = {value} is negative"
    if record_type in ("AgentOutcome", "AgentFeedback") and not 0.0 <= record["reward"] <= 1.0:
        return f"reward = {record['reward']} is outside [0, 1]"
    for field in ("prediction", "label"):
        value = record.get(field)
        if isinstance(value, float) and not math.isfinite(value):
            return f"{field} = {value} is not a finite number"
    if record_type == "AgentOutcome":
        if not 0.0 <= record["reward"] <= 1.0:
            return f"reward = {record['reward']} is outside [0, 1]"
        propensity = record.get("propensity")
        if propensity is not None and not 0.0 < propensity <= 1.0:  # false for nan too
            return f"propensity = {propensity} is outside (0, 1]"
        for name, value in record["features"].items():
            if not math.isfinite(value):
                return f"features[{name!r}] = {value} is not a finite number"
    if strings:
        for field in _MAPS:
            for name, value in record.get(field, {}).items():
                problem = _string_problem(f"{field} key", name) or _string_problem(f"{field}[{name!r}]", value)
                if problem:
                    return problem
    if record_type == "Command":
        return command_problem(record["command"], record["args"])
    return None


def command_problem(command: str, args: dict[str, str]) -> str | None:
    """What makes an operator command unusable, or ``None``.

    >>> command_problem("baseline_pin", {"feature": "x", "values": "[1.0]"})
    'baseline_pin: args values must be a JSON list of at least two finite numbers'
    >>> command_problem("reboot", {}) is None
    False
    """
    needed = COMMAND_ARGS.get(command)
    if needed is None:
        return f"unknown command {command!r}; known: {', '.join(COMMAND_ARGS)}"
    for name in needed:
        if not args.get(name):
            return f"{command}: args {name} is missing"
    try:
        if command == "baseline_pin":
            values = json.loads(args["values"])
            if not isinstance(values, list) or not all(map(_number, values)) or sum(map(math.isfinite, values)) < 2:
                return f"{command}: args values must be a JSON list of at least two finite numbers"
        elif command == "silence":
            matchers = json.loads(args["matchers"])
            int(args["until_ms"])
            if not isinstance(matchers, dict) or not matchers:
                return f"{command}: args matchers must be a JSON object of at least one label"
        elif command == "rollback":
            for name in ("value", "threshold"):
                float(args.get(name) or 0.0)
        elif command in ("experiment_start", "experiment_stop"):
            experiment = json.loads(args["experiment"])
            if not isinstance(experiment, dict) or not all(
                experiment.get(k) for k in ("name", "task_type", "variants", "status")
            ):
                return f"{command}: args experiment must be an Experiment record as JSON"
    except (ValueError, TypeError, OverflowError, RecursionError) as exc:
        return f"{command}: args do not parse: {exc}"
    return None


def _number(value: Any) -> bool:
    return type(value) in (int, float)
