"""AgentPipeline: inputs applied fetch by fetch (drift fed in bulk, looks batched) emit what on_event emits."""

from __future__ import annotations

import math
import random
from typing import Any

import pytest
from reverify.processors.drift import DriftSettings, feed_fetch
from reverify.processors.learning import LearningSettings
from reverify.processors.pipeline import AgentPipeline, Input, PipelineConfig

CONFIG = PipelineConfig(
    learning=LearningSettings(publish_interval_ms=0),
    drift=DriftSettings(
        baseline_size=60,
        window=100,
        windows=(25, 50, 100),
        overrides={"ann/latency_ms": {"baseline_size": 40}},
    ),
)


def outcome(rng: random.Random, agent: str, i: int) -> dict[str, Any]:
    features: dict[str, float] = {"x": rng.gauss(0, 1)}
    if rng.random() < 0.05:
        features["y"] = rng.random()  # a feature that comes and goes breaks a run of alike outcomes
    if rng.random() < 0.01:
        features["x"] = math.nan  # skipped by drift, one at a time
    return {
        "event_id": f"{agent}-{i}",
        "ts": 1_000 + i,
        "agent_name": agent,
        "task_type": rng.choice(["t1", "t2"]),
        "variant_id": rng.choice(["v1", "v2"]),
        "success": rng.random() < 0.8,
        "reward": round(rng.random(), 1),  # ties: bootstrap calibration
        "latency_ms": rng.lognormvariate(5, 0.5),
        "cost_usd": 0.01,
        "features": features,
        "attributes": {},
    }


def stream(seed: int, agents: tuple[str, ...] = ("ann", "bob", "cy"), n: int = 3_000) -> list[Input]:
    """Inputs of several agents in offset order: mostly outcomes, some errors and metrics in between."""
    rng = random.Random(seed)
    inputs: list[Input] = []
    for offset in range(n):
        agent = rng.choice(agents)
        kind = rng.random()
        head = {"event_id": f"in-{offset}", "ts": 1_000 + offset, "agent_name": agent, "attributes": {}}
        if kind < 0.03:
            error = {"component": "llm", "error_type": "Timeout", "message": "", "severity": "error"}
            item = ("AgentError", {**head, **error, "variant_id": "v1", "task_type": "t1", "pipeline": False})
        elif kind < 0.06:
            item = ("AgentMetric", {**head, "name": "queue", "value": rng.random()})
        else:
            item = ("AgentOutcome", outcome(rng, agent, offset))
        inputs.append((*item, (0, offset)))
    return inputs


def by_agent(inputs: list[Input]) -> dict[str, list[Input]]:
    grouped: dict[str, list[Input]] = {}
    for item in inputs:
        grouped.setdefault(item[1]["agent_name"], []).append(item)
    return grouped


@pytest.mark.parametrize("seed", [1, 2])
def test_fetches_emit_what_one_event_at_a_time_emits(seed: int) -> None:
    inputs = stream(seed)
    alone = {agent: AgentPipeline(agent, CONFIG) for agent in ("ann", "bob", "cy")}
    expected = [alone[x[1]["agent_name"]].on_event(*x) for x in inputs]

    together = {agent: AgentPipeline(agent, CONFIG) for agent in ("ann", "bob", "cy")}
    got: list[list[Any]] = []
    for start in range(0, len(inputs), 400):  # fetches of 400 inputs
        feed_fetch([together[a].feed(xs, got.append) for a, xs in by_agent(inputs[start : start + 400]).items()])

    assert sorted(map(repr, got)) == sorted(map(repr, expected))
    reports = [e for out in got for e in out if e.record_type == "DriftReport"]
    assert len({e.key for e in reports}) >= 9  # every agent's outcome series reported: the bulk path was taken
    for agent in alone:
        assert together[agent].to_dict() == alone[agent].to_dict()


def test_a_replayed_fetch_emits_nothing_and_changes_nothing() -> None:
    inputs = stream(3, n=1_500)
    pipelines = {agent: AgentPipeline(agent, CONFIG) for agent in ("ann", "bob", "cy")}
    feed_fetch([pipelines[a].feed(xs, lambda out: None) for a, xs in by_agent(inputs).items()])
    before = {a: p.to_dict() for a, p in pipelines.items()}

    again: list[list[Any]] = []
    feed_fetch([pipelines[a].feed(xs, again.append) for a, xs in by_agent(inputs[700:]).items()])

    assert again and not any(again)
    assert {a: p.to_dict() for a, p in pipelines.items()} == before
