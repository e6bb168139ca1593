"""Hostile inputs on every topic the worker reads, sent with a raw producer between good outcomes.

Random bytes, truncated and corrupted records, unknown schema ids, huge strings, non-finite and out-of-range
numbers, negative durations, costs and token counts, empty keys, commands that do not parse: the worker stays
up, applies every good outcome exactly once (the Q-value counts of the arms add up to them) and dead-letters
every hostile input once, with the reason it was refused.
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
import time
from collections import Counter
from typing import Any

import pytest
from confluent_kafka import Producer
from reverify.schemas import encode
from reverify.streams.app import INPUTS
from reverify.streams.embedded import free_port
from reverify.streams.settings import Settings

from tests.support import WorkerProcess, read_all

pytestmark = pytest.mark.integration

GOOD_OUTCOMES = 600
AGENTS = ("h0", "h1", "h2")
HUGE = "x" * 10_000


def _outcome(i: int, **change: Any) -> dict[str, Any]:
    return {
        "event_id": f"good-{i}",
        "ts": 1_700_000_000_000 + i,
        "agent_name": AGENTS[i % len(AGENTS)],
        "task_type": "t",
        "variant_id": f"v{i % 2}",
        "success": i % 5 != 0,
        "reward": (i % 10) / 10,
        "latency_ms": 100.0 + i % 7,
        "cost_usd": 0.002,
        "tokens_in": 10,
        "tokens_out": None,
        "features": {"x": float(i % 3)},
        **change,
    }


def _error(**change: Any) -> dict[str, Any]:
    return {"event_id": "e", "ts": 1, "agent_name": "h0", "component": "db", "error_type": "Timeout", **change}


def _metric(**change: Any) -> dict[str, Any]:
    return {"event_id": "m", "ts": 1, "agent_name": "h0", "name": "queue", "value": 1.0, **change}


def _feedback(**change: Any) -> dict[str, Any]:
    return {"event_id": "f", "ts": 1, "agent_name": "h0", "outcome_id": "o", "success": True, "reward": 1.0, **change}


def _approval(**change: Any) -> dict[str, Any]:
    return {"event_id": "a", "ts": 1, "proposal_id": "p-1", "approved": True, "by": "ana", "comment": "", **change}


def _command(command: str, **args: str) -> dict[str, Any]:
    return {"event_id": "c", "ts": 1, "command": command, "args": args, "by": "ana"}


def _hostile(rng: random.Random) -> list[tuple[str, bytes | None, bytes, str]]:
    """``(logical topic, key, value, what the dead-letter reason must say)``."""
    good = encode("AgentOutcome", _outcome(0))
    key = b"h0"
    garbage = bytes([rng.randrange(1, 256)]) + rng.randbytes(60)  # never magic byte 0
    out = [
        ("agent.outcomes", key, garbage, "magic byte"),
        ("agent.outcomes", key, b"", "empty value"),
        ("agent.outcomes", key, good[:3], "truncated"),
        ("agent.outcomes", key, good[: len(good) // 2], "does not match"),
        ("agent.outcomes", key, good + b"\x02\x04", "trailing bytes"),
        ("agent.outcomes", key, b"\x00\x00\x00\x03\xe7" + good[5:], "unknown schema id 999"),
        ("agent.outcomes", key, encode("AgentMetric", _metric()), "expected a AgentOutcome"),
        ("agent.outcomes", key, encode("AgentOutcome", _outcome(0, agent_name=HUGE)), "limit is 4096"),
        ("agent.outcomes", key, encode("AgentOutcome", _outcome(0, attributes={"k": HUGE})), "limit is 4096"),
        ("agent.outcomes", key, encode("AgentOutcome", _outcome(0, agent_name="")), "agent_name is empty"),
        ("agent.outcomes", key, encode("AgentOutcome", _outcome(0, reward=math.nan)), "reward = nan"),
        ("agent.outcomes", key, encode("AgentOutcome", _outcome(0, reward=1.5)), "outside [0, 1]"),
        ("agent.outcomes", key, encode("AgentOutcome", _outcome(0, reward=-1e300)), "outside [0, 1]"),
        ("agent.outcomes", key, encode("AgentOutcome", _outcome(0, latency_ms=math.inf)), "latency_ms = inf"),
        ("agent.outcomes", key, encode("AgentOutcome", _outcome(0, latency_ms=-1.0)), "latency_ms = -1.0 is negative"),
        ("agent.outcomes", key, encode("AgentOutcome", _outcome(0, cost_usd=-5.0)), "cost_usd = -5.0 is negative"),
        ("agent.outcomes", key, encode("AgentOutcome", _outcome(0, tokens_in=-3)), "tokens_in = -3 is negative"),
        ("agent.outcomes", key, encode("AgentOutcome", _outcome(0, features={"x": -math.inf})), "features['x']"),
        ("agent.outcomes", key, encode("AgentOutcome", _outcome(0, prediction=math.nan)), "prediction = nan"),
        ("agent.outcomes", b"", good, "empty key"),
        ("agent.outcomes", None, good, "empty key"),
        ("agent.errors", key, garbage, "magic byte"),
        ("agent.errors", key, encode("AgentError", _error(message=HUGE)), "limit is 4096"),
        ("agent.errors", key, encode("AgentError", _error(component="")), "component is empty"),
        ("agent.errors", None, encode("AgentError", _error()), "empty key"),
        ("agent.metrics", key, encode("AgentMetric", _metric(value=math.nan)), "value = nan"),
        ("agent.metrics", key, encode("AgentMetric", _metric(value=-math.inf)), "value = -inf"),
        ("agent.metrics", key, encode("AgentMetric", _metric(name="")), "name is empty"),
        ("agent.metrics", key, encode("AgentMetric", _metric())[:-2], "does not match"),
        ("agent.feedback", key, encode("AgentFeedback", _feedback(reward=math.nan)), "reward = nan"),
        ("agent.feedback", key, encode("AgentFeedback", _feedback(reward=1.5)), "outside [0, 1]"),
        ("agent.feedback", key, encode("AgentFeedback", _feedback(outcome_id="")), "outcome_id is empty"),
        ("agent.feedback", key, encode("AgentFeedback", _feedback(label=math.inf)), "label = inf"),
        ("agent.feedback", key, encode("AgentOutcome", _outcome(0)), "expected a AgentFeedback"),
        ("control.approvals", key, encode("Approval", _approval(proposal_id="")), "proposal_id is empty"),
        ("control.approvals", b"", encode("Approval", _approval()), "empty key"),
        ("control.approvals", key, b"\x00\x00\x00\x00\x0e" + rng.randbytes(3), "does not match"),
        ("control.commands", key, encode("Command", _command("reboot")), "unknown command 'reboot'"),
        ("control.commands", key, encode("Command", _command("baseline_pin", feature="x", values="[1")), "parse"),
        ("control.commands", key, encode("Command", _command("baseline_pin", feature="x", values='["a", 1]')), "list"),
        ("control.commands", key, encode("Command", _command("baseline_pin", feature="x", values="[" * 2000)), "parse"),
        ("control.commands", key, encode("Command", _command("ack")), "fingerprint is missing"),
        ("control.commands", key, encode("Command", _command("silence", matchers="{}", until_ms="9")), "matchers"),
        ("control.commands", key, encode("Command", _command("silence", matchers='{"a": "b"}', until_ms="x")), "parse"),
        ("control.commands", key, encode("Command", _command("rollback", value="high")), "parse"),
        ("control.commands", key, encode("Command", {**_command("ack", fingerprint="f"), "by": HUGE}), "limit is 4096"),
    ]
    assert {topic for topic, *_ in out} == set(INPUTS), "every input topic gets hostile inputs"
    return out


def _latest_counts(settings: Settings) -> dict[tuple[str, str], int]:
    latest: dict[tuple[str, str], int] = {}
    for _p, _o, q in read_all(settings, "crl.qvalues"):
        latest[(q["agent_name"], q["variant_id"])] = max(latest.get((q["agent_name"], q["variant_id"]), 0), q["n"])
    return latest


def test_hostile_inputs_are_dead_lettered_and_every_good_outcome_is_applied(settings: Settings) -> None:
    rng = random.Random(14)
    hostile = _hostile(rng)
    producer = Producer(settings.kafka_config(**{"partitioner": "murmur2_random", "linger.ms": 5}))
    expected: dict[tuple[str, int, int], str] = {}  # (topic, partition, offset) of each hostile input -> reason

    def delivered(reason: str) -> Any:
        def on_delivery(err: Any, msg: Any) -> None:
            assert err is None, err
            expected[(msg.topic(), msg.partition(), msg.offset())] = reason

        return on_delivery

    every = GOOD_OUTCOMES // len(hostile)
    for i in range(GOOD_OUTCOMES):
        record = _outcome(i)
        producer.produce(
            settings.topic("agent.outcomes"), encode("AgentOutcome", record), record["agent_name"].encode()
        )
        if i % every == 0 and i // every < len(hostile):
            topic, key, value, reason = hostile[i // every]
            producer.produce(settings.topic(topic), value, key, on_delivery=delivered(reason))
        producer.poll(0)
    assert producer.flush(30) == 0
    assert len(expected) == len(hostile)

    worker = WorkerProcess(dataclasses.replace(settings, metrics_port=free_port()))
    try:
        deadline = time.monotonic() + 120
        while True:
            letters = read_all(settings, "reverify.deadletter")
            counts = _latest_counts(settings)
            if len(letters) >= len(hostile) and sum(counts.values()) >= GOOD_OUTCOMES:
                break
            assert worker.process.poll() is None, f"the worker stopped:\n{worker.tail()}"
            assert time.monotonic() < deadline, (
                f"{len(letters)} of {len(hostile)} dead letters, {sum(counts.values())} of {GOOD_OUTCOMES} "
                f"outcomes applied within 120 s:\n{worker.tail()}"
            )
            time.sleep(1.0)
        time.sleep(2.0)  # anything applied or dead-lettered twice would show by now
        assert worker.process.poll() is None, f"the worker stopped:\n{worker.tail()}"
        letters = read_all(settings, "reverify.deadletter")
        counts = _latest_counts(settings)
    finally:
        worker.stop()

    per_arm = Counter((r["agent_name"], r["variant_id"]) for r in map(_outcome, range(GOOD_OUTCOMES)))
    assert counts == dict(per_arm)  # every good outcome applied, once
    reasons = {(r["topic"], r["partition"], r["offset"]): r["reason"] for _p, _o, r in letters}
    assert len(letters) == len(reasons) == len(hostile)  # each hostile input dead-lettered once
    assert reasons.keys() == expected.keys()
    wrong = {where: (reasons[where], want) for where, want in expected.items() if want not in reasons[where]}
    assert not wrong, json.dumps([list(v) for v in wrong.values()], indent=1)
