"""A synthetic agent fleet published through the SDK: ``reverify simulate`` and the demo of ``reverify up --demo``.

Each agent picks the variant :class:`~streams.client.VariantRouter` says is
active (exploring the others a share of the time, as a bandit would), and
reports an outcome drawn from that variant's success probability. In the demo
scenario one variant of every agent degrades after a while and one feature
drifts, so rollbacks, drift reports and alerts appear within a minute.

>>> fleet = Fleet(FleetSpec(agents=2, tasks=1, variants=2, seed=1))
>>> [o["variant_id"] for o in fleet.step(lambda agent, task: "v0")][:2]
['v0', 'v0']
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class FleetSpec:
    """What to simulate. ``degrade_after``/``drift_after`` count steps (one outcome per agent/task a step)."""

    agents: int = 5
    tasks: int = 2
    variants: int = 3
    seed: int = 0
    explore: float = 0.2
    degrade_after: int | None = None
    degrade_to: float = 0.5
    drift_after: int | None = None
    drift_shift: float = 1.5
    error_rate: float = 0.02
    variant_gap: float = 0.08  # success probability lost per variant after v0


class Fleet:
    """Deterministic (seeded) agents, tasks and variants with their own success probabilities."""

    def __init__(self, spec: FleetSpec) -> None:
        self.spec = spec
        self.rng = random.Random(spec.seed)
        self.steps = 0
        self.agents = [f"agent-{i}" for i in range(spec.agents)]
        self.tasks = [f"task-{j}" for j in range(spec.tasks)]
        self.variants = [f"v{k}" for k in range(spec.variants)]
        # v0 is strong, later variants weaker: the learning loop has something to find
        self.p_success = {v: max(0.5, 0.96 - spec.variant_gap * k) for k, v in enumerate(self.variants)}

    def _p(self, variant: str) -> float:
        spec = self.spec
        if spec.degrade_after is not None and self.steps >= spec.degrade_after and variant == self.variants[0]:
            return spec.degrade_to
        return self.p_success[variant]

    def step(self, active: Callable[[str, str], str]) -> list[dict[str, Any]]:
        """One outcome per agent/task, as keyword arguments for :meth:`AgentEvents.outcome`."""
        spec, rng = self.spec, self.rng
        drifting = spec.drift_after is not None and self.steps >= spec.drift_after
        out = []
        for agent in self.agents:
            for task in self.tasks:
                variant = active(agent, task)
                if variant not in self.p_success or rng.random() < spec.explore:
                    variant = rng.choice(self.variants)
                success = rng.random() < self._p(variant)
                reward = min(1.0, max(0.0, rng.gauss(0.85 if success else 0.2, 0.08)))
                intent = rng.gauss(50.0 + (10.0 * spec.drift_shift if drifting else 0.0), 10.0)
                out.append(
                    dict(
                        agent_name=agent,
                        task_type=task,
                        variant_id=variant,
                        success=success,
                        reward=reward,
                        latency_ms=max(1.0, rng.lognormvariate(6.5, 0.4)),
                        cost_usd=round(rng.uniform(0.001, 0.004), 6),
                        tokens_in=rng.randint(200, 2000),
                        tokens_out=rng.randint(50, 800),
                        features={"intent_score": intent},
                    )
                )
        self.steps += 1
        return out

    def errors(self) -> list[dict[str, Any]]:
        """A few errors per step, as keyword arguments for :meth:`AgentEvents.error`."""
        out = []
        for agent in self.agents:
            if self.rng.random() < self.spec.error_rate * len(self.tasks):
                out.append(
                    dict(
                        agent_name=agent,
                        component="llm_api",
                        error_type="Timeout",
                        message="upstream timed out",
                        retryable=True,
                        severity="warning",
                    )
                )
        return out


def run(
    events: Any,
    fleet: Fleet,
    active: Callable[[str, str], str],
    *,
    steps: int | None,
    rate: float,
    stop: Any = None,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Publish ``steps`` steps (forever when ``None``) at ``rate`` outcomes per second; returns outcomes sent."""
    sent = 0
    per_step = max(1, len(fleet.agents) * len(fleet.tasks))
    interval = per_step / rate if rate > 0 else 0.0
    next_at = time.monotonic()
    while steps is None or fleet.steps < steps:
        if stop is not None and stop.is_set():
            break
        for kwargs in fleet.step(active):
            events.outcome(**kwargs)
            sent += 1
        for kwargs in fleet.errors():
            events.error(**kwargs)
        if progress:
            progress(fleet.steps, sent)
        if interval:
            next_at += interval
            delay = next_at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
    return sent
