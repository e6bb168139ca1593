"""End to end: an agent routed by ``VariantRouter.choose`` in thompson mode, learning through a real ``reverify worker``.

Three variants succeed with 0.5, 0.7 and 0.9. The agent starts on the worst (its default, the first the worker
sees, so the active variant); the others start as candidates with no outcomes. Every call is reported with the
propensity ``choose`` gave it. The best variant must end up with most of the traffic, the worst with little, and
every propensity must be in (0, 1]; the propensities land in ClickHouse with their outcomes.
"""

from __future__ import annotations

import random
import time
import uuid
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from reverify.sinks.clickhouse import connect
from reverify.sinks.writer import ClickHouseSink
from reverify.streams.client import AgentEvents, VariantRouter
from reverify.streams.sink import sink_config

SUCCESS = {"v50": 0.5, "v70": 0.7, "v90": 0.9}
CALLS = 3000
LATER = 1000  # the last calls, after learning
PACE = 0.008  # seconds between calls: about 25 s of traffic, ~25 Q-value publications per arm


# The subject is routing. At the default false-rollback budget (1 % per 2,000 stationary outcomes) about 2 runs in
# 100 see the 0.9 arm rolled back by a false alarm and kept out by its cooldown (tests/unit/test_routing_learning.py
# counts them in process); a budget ten times stricter makes that rare without changing the routing.
LEARNING = "[learning]\nfleet_false_rollbacks = 0.5\n"


@pytest.fixture(scope="module")
def worker(worker_factory: Any) -> Any:
    return worker_factory(LEARNING)


def test_thompson_routing_moves_traffic_to_the_best_variant(worker: Any) -> None:
    settings = worker.settings
    agent, task = f"router-{uuid.uuid4().hex[:6]}", "answer"
    rng = random.Random(18)
    choices = []
    with VariantRouter(settings=settings, mode="thompson", seed=18) as router, AgentEvents(settings=settings) as events:
        for _ in range(CALLS):
            choice = router.choose(agent, task, default="v50", candidates=list(SUCCESS))
            success = rng.random() < SUCCESS[choice.variant_id]
            events.outcome(
                agent_name=agent,
                task_type=task,
                variant_id=choice.variant_id,
                success=success,
                reward=1.0 if success else 0.0,
                propensity=choice.propensity,
            )
            choices.append(choice)
            time.sleep(PACE)
        assert events.flush(30) == 0
    first, later = choices[:LATER], choices[-LATER:]
    share = {v: sum(c.variant_id == v for c in later) / LATER for v in SUCCESS}
    early = {v: sum(c.variant_id == v for c in first) / LATER for v in SUCCESS}
    print(f"\ntraffic shares, first {LATER} calls: {early}; last {LATER}: {share}")
    assert all(0.0 < c.propensity <= 1.0 for c in choices)
    assert share["v90"] > 0.6, share
    assert share["v50"] < 0.1, share
    assert {c.mode for c in later} == {"thompson"}

    # The propensities are stored with the outcomes.
    sink = ClickHouseSink(
        sink_config(settings), topics=["agent.outcomes"], batch_size=1000, max_delay=0.3, registry=CollectorRegistry()
    )
    deadline = time.monotonic() + 60
    try:
        while sum(sink.rows_written.values()) < CALLS:
            assert time.monotonic() < deadline, sink.rows_written
            sink.poll_once(0.5)
    finally:
        sink.close()
    client = connect(settings.clickhouse)
    rows = client.query(
        "SELECT variant_id, count(), min(propensity), max(propensity), countIf(propensity IS NULL) "
        "FROM agent_outcomes FINAL WHERE agent_name = {a:String} GROUP BY variant_id ORDER BY variant_id",
        parameters={"a": agent},
    ).result_rows
    assert sum(r[1] for r in rows) == CALLS
    assert all(r[4] == 0 and 0.0 < r[2] <= r[3] <= 1.0 for r in rows), rows
