"""The worker's first step (streams/inputs.py) on fetches that list several topics of one agent."""

from __future__ import annotations

import json
import random
from typing import Any

from reverify.processors.drift import feed_fetch
from reverify.processors.experiments import experiment_record
from reverify.processors.pipeline import AgentPipeline, Emission, PipelineConfig
from reverify.schemas import encode
from reverify.streams.inputs import EXPECTED, Message, sort_inputs

T0 = 1_700_000_000_000
AGENT = "hunter"


def _outcome(i: int, variant: str, success: bool) -> Message:
    record = {"event_id": f"o{i}", "ts": T0 + 1000 + i, "agent_name": AGENT, "task_type": "search",
              "variant_id": variant, "success": success, "reward": 1.0 if success else 0.0}  # fmt: skip
    return Message("agent.outcomes", 0, i, AGENT.encode(), encode("AgentOutcome", record))


def _experiment_start(ts: int) -> Message:
    record = experiment_record("copy", AGENT, "search", ["c", "t"], None, "success_rate", 0.02, ts=ts)
    command = {"event_id": "c1", "ts": ts, "command": "experiment_start", "by": "me",
               "args": {"experiment": json.dumps(record), "task_type": "search"}}  # fmt: skip
    return Message("control.commands", 0, 0, AGENT.encode(), encode("Command", command))


def _sorted(messages: list[Message]) -> list[tuple[str, Any, tuple[int, int]]]:
    dead: list[Any] = []
    by_agent, _ = sort_inputs(messages, EXPECTED, {}, T0, lambda *d: dead.append(d))
    assert dead == []
    return by_agent[AGENT]


def test_a_command_stamped_before_outcomes_of_the_same_fetch_is_applied_before_them() -> None:
    """CI saw this: ``experiment start`` then 1,000 outcomes, read in one fetch that listed agent.outcomes first;
    the treatment degraded while the worker did not know the experiment yet, so nothing stopped it."""
    rng = random.Random(5)
    outcomes = [_outcome(0, "c", True)]  # c is active before the experiment
    outcomes += [_outcome(i, "t" if i % 2 else "c", rng.random() < (0.9 if i < 400 or i % 2 == 0 else 0.2))
                 for i in range(1, 1000)]  # fmt: skip
    inputs = _sorted([*outcomes, _experiment_start(T0 + 1000)])  # a fetch lists its topics one after another
    assert [kind for kind, _, _ in inputs].index("Command") == 1  # a tie goes to the topic listed first
    assert [position for kind, _, position in inputs if kind == "AgentOutcome"] == [(0, i) for i in range(1000)]
    pipeline = AgentPipeline(AGENT, PipelineConfig())
    out: list[Emission] = []
    feed_fetch([pipeline.feed(inputs, out.extend)])
    rollbacks = [e.value for e in out if e.record_type == "Rollback"]
    assert [(r["from_variant"], r["to_variant"]) for r in rollbacks] == [("t", "c")]
    stops = [e.value for e in out if e.record_type == "Experiment"]  # none when the command is applied last
    assert [(s["status"], s["cause_id"]) for s in stops] == [("stopped", rollbacks[0]["rollback_id"])]


def test_each_topic_keeps_its_own_order_whatever_its_stamps() -> None:
    """A partition's order is the replay guard's: an outcome stamped earlier than the one before it stays after it."""
    late_clock = [_outcome(0, "c", True), _outcome(1, "c", True)]
    late_clock[1] = late_clock[1]._replace(value=encode("AgentOutcome", {
        "event_id": "o1", "ts": T0, "agent_name": AGENT, "task_type": "search", "variant_id": "c", "success": True,
        "reward": 1.0}))  # fmt: skip
    inputs = _sorted([*late_clock, _experiment_start(T0 + 999)])
    assert [(kind, position) for kind, _, position in inputs] == [
        ("Command", (0, 0)), ("AgentOutcome", (0, 0)), ("AgentOutcome", (0, 1))
    ]  # fmt: skip
