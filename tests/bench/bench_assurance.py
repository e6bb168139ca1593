"""Benchmark: assurance evaluation with 0, 100 and 1,000 cases over 100 agents, in one run.

Run by hand: ``python tests/bench/bench_assurance.py [N]``. Feeds N outcomes of 100 agents through
:class:`~processors.assurance.AssuranceEvaluator` (the per-event work of the worker) and prints events/s
for each case count, beside the 0-case run (the routing cost alone) as the baseline.
Cases mix evidence kinds (success rate, error rate, reward mean, p95 latency, cost) and scopes: 99 % name
one agent (ten per agent at 1,000 cases, as a fleet would declare them) and 1 % are fleet-wide (``"*"``,
evaluated per agent), so an outcome is relevant to its agent's cases and the fleet-wide ones.
"""

from __future__ import annotations

import random
import sys
import time

from reverify.processors.assurance import AssuranceEvaluator, parse_cases

EVIDENCE = ("success_rate", "reward_mean", "latency_p95", "cost_mean", "error_rate")


def cases(count: int) -> list[dict]:
    out = []
    for i in range(count):
        evidence = EVIDENCE[i % len(EVIDENCE)]
        scope = {"agent_name": f"agent{i % 100}"} if i % 100 != 99 else {"agent_name": "*"}
        threshold = (
            {"threshold_max": 5000.0}
            if evidence in ("latency_p95", "cost_mean", "error_rate")
            else {"threshold_min": 0.5}
        )
        out.append(
            {
                "name": f"case{i}",
                "evidence": evidence,
                "scope": scope,
                "window": "200 events",
                "min_evidence": 20,
                "for": "30s",
                **threshold,
            }
        )
    return out


def outcomes(n: int) -> list[dict]:
    rng = random.Random(0)
    return [
        {
            "event_id": f"e{i}",
            "ts": 1_700_000_000_000 + 10 * i,
            "agent_name": f"agent{rng.randrange(100)}",
            "task_type": f"t{rng.randrange(5)}",
            "variant_id": f"v{rng.randrange(3)}",
            "success": rng.random() < 0.9,
            "reward": rng.random(),
            "latency_ms": rng.lognormvariate(6, 0.4),
            "cost_usd": 0.002,
            "features": {},
            "attributes": {},
        }
        for i in range(n)
    ]


def rate(count: int, events: list[dict]) -> float:
    evaluator = AssuranceEvaluator(parse_cases(cases(count)))
    start = time.perf_counter()
    for i, event in enumerate(events):
        evaluator.on_outcome(event, (0, i))
    return len(events) / (time.perf_counter() - start)


def main(n: int = 50_000) -> None:
    events = outcomes(n)
    base = rate(0, events)
    print(f"outcomes: {n:,} over 100 agents")
    print(f"    0 cases: {base:>10,.0f} events/s (routing only, the baseline)")
    for count in (100, 1000):
        r = rate(count, events)
        print(f"{count:>5} cases: {r:>10,.0f} events/s  ({r / base:.3f} of the baseline)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 50_000)
