"""A/B experiments end to end: ``reverify experiment`` with a real ``reverify worker``, the ClickHouse sink, routers.

Units are assigned by ``VariantRouter.choose(agent, task, unit_id=...)`` from the experiment record on
``crl.experiments``, their outcomes go through the broker into the history (the sink runs in this process, which
then owns the embedded ClickHouse, so the CLI runs in-process too), and ``experiment status --json`` computes the
lift from the history: 0.80 vs 0.90 is found (its interval holds the true lift of 12.5 % and excludes 0), an A/A
experiment calls no winner, and a treatment that degrades is rolled back by the worker, which stops the experiment.
"""

from __future__ import annotations

import json
import random
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from click.testing import CliRunner, Result
from reverify.sinks import clickhouse
from reverify.sinks.runner import prepare_history, start_sink
from reverify.streams.cli import cli
from reverify.streams.client import AgentEvents, VariantRouter
from reverify.streams.settings import Settings
from reverify.streams.sink import sink_config

from tests.support import settings_env

TASK = "answer"


@pytest.fixture(scope="module")
def settings(worker_factory: Any) -> Iterator[Settings]:
    """A worker subprocess, and the ClickHouse sink on a thread of this process."""
    worker = worker_factory()
    config = sink_config(worker.settings)
    prepare_history(config)
    stop = threading.Event()
    thread = start_sink(config, stop)
    yield worker.settings
    stop.set()
    thread.join(30)


@pytest.fixture(scope="module")
def router(settings: Settings) -> Iterator[VariantRouter]:
    with VariantRouter(settings=settings, seed=7) as r:
        yield r


def reverify(settings: Settings, *args: str) -> Result:
    env = {k: v for k, v in settings_env(settings).items() if k.startswith("REVERIFY_")}
    return CliRunner().invoke(cli, list(args), env=env)


def status(settings: Settings, name: str) -> dict[str, Any]:
    done = reverify(settings, "experiment", "status", name, "--json")
    assert done.exit_code == 0, done.output
    return json.loads(done.output)


def start(settings: Settings, name: str, agent: str, variants: str, *extra: str) -> dict[str, Any]:
    done = reverify(settings, "experiment", "start", name, "--agent", agent, "--task", TASK, "--variants", variants,
                    "--json", *extra)  # fmt: skip
    assert done.exit_code == 0, done.output
    return json.loads(done.output)


def wait_for_experiment(router: VariantRouter, agent: str, running: bool, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while (router.choose(agent, TASK, unit_id="probe").mode == "experiment") != running:
        assert time.monotonic() < deadline, f"the router did not see the experiment of {agent} {running=}"
        time.sleep(0.05)


def stored(settings: Settings, agent: str, count: int, timeout: float = 60.0) -> None:
    """Wait until the history holds ``count`` outcomes of ``agent``."""
    client = clickhouse.connect(settings.clickhouse)
    sql = "SELECT count() FROM agent_outcomes FINAL WHERE agent_name = {a:String}"
    try:
        deadline = time.monotonic() + timeout
        while client.query(sql, parameters={"a": agent}).result_rows[0][0] < count:
            assert time.monotonic() < deadline, f"the sink did not store {count} outcomes of {agent}"
            time.sleep(0.2)
    finally:
        client.close()


def run_units(
    events: AgentEvents, router: VariantRouter, agent: str, rates: dict[str, float], units: range, rng: random.Random
) -> dict[str, int]:
    """One outcome per unit on the variant the router assigns, successful with that variant's rate."""
    seen: dict[str, int] = {}
    for i in units:
        choice = router.choose(agent, TASK, unit_id=f"user-{i}")
        assert choice.mode == "experiment" and choice.propensity == 0.5
        success = rng.random() < rates[choice.variant_id]
        events.outcome(agent_name=agent, task_type=TASK, variant_id=choice.variant_id, success=success,
                       reward=1.0 if success else 0.0, attributes=choice.attributes)  # fmt: skip
        seen[choice.variant_id] = seen.get(choice.variant_id, 0) + 1
    assert events.flush(30) == 0
    return seen


def test_an_ab_experiment_finds_the_true_lift(settings: Settings, router: VariantRouter) -> None:
    agent, name = f"ab-{uuid.uuid4().hex[:6]}", f"copy-{uuid.uuid4().hex[:6]}"
    record = start(settings, name, agent, "c,t", "--split", "50,50", "--min-effect", "0.05")
    assert record["status"] == "running" and record["split"] == [0.5, 0.5]
    refused = reverify(settings, "experiment", "start", "other", "--agent", agent, "--task", TASK, "--variants", "a,b")
    assert refused.exit_code == 2 and f"already runs on {agent}/{TASK}" in refused.output
    wait_for_experiment(router, agent, running=True)
    with AgentEvents(settings=settings) as events:
        seen = run_units(events, router, agent, {"c": 0.80, "t": 0.90}, range(4000), random.Random(3))
    stored(settings, agent, 4000)

    result = status(settings, name)
    assert [v["n"] for v in result["variants"]] == [seen["c"], seen["t"]]
    lo, hi = result["ci"]
    assert lo <= 0.9 / 0.8 - 1 <= hi and lo > 0.0, result
    assert result["variants"][1]["value"] > result["variants"][0]["value"]
    assert not result["srm"]["flagged"] and result["decision"] == "ship t", result

    listed = json.loads(reverify(settings, "experiment", "list", "--json").output)
    assert any(r["name"] == name and r["status"] == "running" for r in listed)
    board = json.loads(reverify(settings, "dashboard", "--json").output)
    shown = next(r for r in board["running_experiments"] if r["name"] == name)
    assert shown["decision"] == "ship t" and shown["units"] == 4000

    done = reverify(settings, "experiment", "stop", name, "--reason", "shipping t")
    assert done.exit_code == 0, done.output
    wait_for_experiment(router, agent, running=False)
    after = status(settings, name)
    assert after["status"] == "stopped" and after["stop_reason"] == "shipping t" and after["decision"] == "ship t"
    again = reverify(settings, "experiment", "stop", name)
    assert again.exit_code == 2 and "already stopped" in again.output


def test_an_aa_experiment_calls_no_winner(settings: Settings, router: VariantRouter) -> None:
    agent, name = f"aa-{uuid.uuid4().hex[:6]}", f"same-{uuid.uuid4().hex[:6]}"
    start(settings, name, agent, "c,c2")
    wait_for_experiment(router, agent, running=True)
    with AgentEvents(settings=settings) as events:
        run_units(events, router, agent, {"c": 0.85, "c2": 0.85}, range(3000), random.Random(4))
    stored(settings, agent, 3000)
    result = status(settings, name)
    assert result["units"] == 3000 and result["ci"][0] <= 0.0 <= result["ci"][1]
    assert result["decision"] in ("continue", "inconclusive"), result


def test_a_degrading_treatment_is_rolled_back_and_stops_the_experiment(
    settings: Settings, router: VariantRouter, e2e: Any
) -> None:
    agent, name = f"rb-{uuid.uuid4().hex[:6]}", f"risky-{uuid.uuid4().hex[:6]}"
    experiments = e2e.Follower(settings, "crl.experiments")
    rollbacks = e2e.Follower(settings, "control.rollbacks")
    rng = random.Random(5)
    try:
        with AgentEvents(settings=settings) as events:
            for _ in range(20):  # c is the active variant before the experiment
                events.outcome(agent_name=agent, task_type=TASK, variant_id="c", success=True, reward=1.0)
            events.flush(30)
            start(settings, name, agent, "c,t")
            wait_for_experiment(router, agent, running=True)
            run_units(events, router, agent, {"c": 0.9, "t": 0.9}, range(400), rng)
            # t falls to 0.2: its test fires within a few dozen of its outcomes
            run_units(events, router, agent, {"c": 0.9, "t": 0.2}, range(400, 1000), rng)
        _, rollback = rollbacks.wait(lambda r: r["agent_name"] == agent, timeout=60)
        _, stop = experiments.wait(lambda r: r["name"] == name and r["status"] == "stopped", timeout=60)
    finally:
        experiments.close()
        rollbacks.close()
    assert (rollback["from_variant"], rollback["to_variant"]) == ("t", "c")
    assert stop["cause_id"] == rollback["rollback_id"] and stop["by"] == "worker"
    wait_for_experiment(router, agent, running=False)
    assert router.choose(agent, TASK, unit_id="user-1").variant_id == "c"
    result = status(settings, name)
    assert result["status"] == "stopped" and rollback["rollback_id"] in result["stop_reason"]
