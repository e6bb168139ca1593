"""The seed's gauges on a worker's /metrics follow what its pipelines emit (streams.metrics.SeedGauges)."""

from __future__ import annotations

import random
import time

from prometheus_client import REGISTRY
from reverify.processors.pipeline import AgentPipeline, PipelineConfig
from reverify.streams.metrics import SeedGauges


def _value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_rollback_qvalues_circuit_and_level_reach_the_gauges() -> None:
    agent, rng = f"gauges-{time.time_ns()}", random.Random(5)
    pipeline, gauges = AgentPipeline(agent, PipelineConfig()), SeedGauges()
    seen: list[str] = []
    recoveries = _value("recovery_time_count")

    def apply(record_type: str, record: dict, offset: int) -> None:
        out = pipeline.on_event(record_type, record, (0, offset)) + pipeline.flush()
        for e in out:
            gauges.observe(e.record_type, e.value)
            seen.append(e.record_type)

    now = int(time.time() * 1000) - 5_000
    for i in range(400):  # v1 active from the start; it falls to 0.3 half-way, v2 holds 0.85
        variant = "v1" if i % 2 else "v2"
        p = 0.85 if variant == "v2" else (0.95 if i < 200 else 0.3)
        ok = rng.random() < p
        record = {
            "event_id": f"o{i}",
            "ts": now + i,
            "agent_name": agent,
            "task_type": "t",
            "variant_id": variant,
            "success": ok,
            "reward": 1.0 if ok else 0.0,
            "latency_ms": 10.0,
            "cost_usd": None,
            "features": {},
            "attributes": {},
        }
        apply("AgentOutcome", record, i)
    assert "Rollback" in seen
    assert _value("reverify_rollbacks_total", agent_name=agent, task_type="t") == seen.count("Rollback")
    assert _value("recovery_time_count") == recoveries + seen.count("Rollback")
    v2 = pipeline.loops["t"].arms["v2"]
    assert _value("rl_avg_reward", agent_name=agent, task_type="t", variant_id="v2") == v2.reward_mean

    for j in range(5):  # five failures of one component open its circuit and lower the agent's service level
        error = {
            "event_id": f"x{j}",
            "ts": now + 1_000 + j,
            "agent_name": agent,
            "component": "clay_api",
            "error_type": "Timeout",
            "severity": "error",
            "pipeline": False,
            "task_type": None,
            "variant_id": None,
        }
        apply("AgentError", error, 1_000 + j)
    assert _value("circuit_breaker_state", agent_name=agent, component="clay_api") == 2.0
    assert _value("degradation_level", agent_name=agent) == pipeline.errors.degradation_level(agent) > 0


def test_slo_reports_reach_the_budget_and_burn_rate_gauges() -> None:
    slo = f"gauges-{time.time_ns()}"
    gauges = SeedGauges()
    for remaining, rates in ((0.5, {"5m": 20.0, "1h": 3.0}), (0.25, {"5m": 0.0, "1h": 2.5})):
        report = {"slo": slo, "agent_name": "a", "task_type": None, "error_budget_remaining": remaining,
                  "burn_rates": rates}  # fmt: skip
        gauges.observe("SloReport", report)
    assert _value("reverify_slo_error_budget_remaining", slo=slo, agent_name="a", task_type="") == 0.25
    assert _value("reverify_slo_burn_rate", slo=slo, agent_name="a", task_type="", window="1h") == 2.5
    assert REGISTRY.get_sample_value("reverify_slo_burn_rate", {"slo": slo, "agent_name": "a", "task_type": "",
                                                                "window": "5m"}) == 0.0  # fmt: skip
