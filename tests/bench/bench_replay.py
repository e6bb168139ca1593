"""Benchmark of ``reverify replay``: outcomes per CPU second, beside baselines measured in the same run.

Run ``python tests/bench/bench_replay.py [--outcomes 100000] [--agents 20] [--rounds 3]``. Not collected by pytest.

The stream: ``--agents`` agents x 3 variants, one task, binary success at p = 0.9 with a continuous reward,
latency and cost, one feature; every rule on at its defaults (learning loop and its degradation trigger,
drift on reward / latency / cost / the feature, the error monitor, alerting). Outcomes are 10 ms apart, so
the worker's timers (time-driven work every second, held Q-values) run as they would live.

Prints medians over ``--rounds`` rounds, each round timing every side in turn (the machine's load then weighs on all
sides alike), in CPU seconds of this process (one core):

- ``replay``: :func:`streams.replay.replay` over the JSON lines (SDK record building, encoding, the worker's
  input step, the pipelines, the timers); the one-off drift calibration (``warm_caches``, as a worker does
  at start) is timed apart;
- ``replay + --json``: the same with each emission written as a JSON line (what ``reverify replay --json`` does);
- baselines: ``json.loads`` of the same lines, and the pipelines fed directly (``feed_fetch`` of the
  decoded records in batches, no timers): their rates and replay's share of them (the ratios).

Target (issue 15): replay >= 20,000 outcomes per second on one core.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from collections.abc import Callable
from typing import Any

from reverify.processors.drift import feed_fetch, warm_caches
from reverify.processors.pipeline import AgentPipeline, PipelineConfig
from reverify.streams.client import outcome_record
from reverify.streams.collector import tune_collector
from reverify.streams.replay import json_line, replay

T0 = 1_700_000_000_000


def make_lines(outcomes: int, agents: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    lines = []
    for i in range(outcomes):
        success = rng.random() < 0.9
        line = {
            "kind": "outcome",
            "agent_name": f"agent{i % agents}",
            "task_type": "answer",
            "variant_id": f"v{rng.randrange(3)}",
            "success": success,
            "reward": rng.betavariate(8, 2) if success else rng.random() * 0.3,
            "latency_ms": rng.lognormvariate(6.5, 0.3),
            "cost_usd": rng.uniform(0.001, 0.003),
            "features": {"intent_score": rng.gauss(50, 10)},
            "ts": T0 + 10 * i,
        }
        lines.append(json.dumps(line))
    return lines


def cpu(f: Callable[[], Any]) -> tuple[float, Any]:
    started = time.process_time()
    result = f()
    return time.process_time() - started, result


def pipelines_directly(lines: list[str], batch: int) -> int:
    """The baseline: the same records straight into the pipelines (no JSON, SDK, Avro or timers)."""
    config = PipelineConfig()
    pipelines: dict[str, AgentPipeline] = {}
    records = []
    for n, line in enumerate(lines, 1):
        fields = json.loads(line)
        del fields["kind"]
        r = outcome_record(**{"tokens_in": None, "tokens_out": None, "attributes": None, "trace_id": None,
                              "next_state": None, "event_id": f"e{n}", **fields})  # fmt: skip
        records.append(("AgentOutcome", r, (0, n)))
    emitted = 0

    def count(out: list[Any]) -> None:
        nonlocal emitted
        emitted += len(out)

    started = time.process_time()
    for at in range(0, len(records), batch):
        by_agent: dict[str, list[Any]] = {}
        for item in records[at : at + batch]:
            by_agent.setdefault(item[1]["agent_name"], []).append(item)
        work = []
        for agent, items in by_agent.items():
            if agent not in pipelines:
                pipelines[agent] = AgentPipeline(agent, config)
            work.append(pipelines[agent].feed(items, count))
        feed_fetch(work)
    return time.process_time() - started  # type: ignore[return-value]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--outcomes", type=int, default=100_000)
    parser.add_argument("--agents", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--default-collector", action="store_true", help="keep Python's garbage collector settings")
    args = parser.parse_args()
    n = args.outcomes
    lines = make_lines(n, args.agents)

    warm, _ = cpu(lambda: warm_caches(PipelineConfig().drift))
    if not args.default_collector:
        tune_collector()  # what `reverify replay` and a worker do once they are set up
    rounds: list[tuple[float, float, float, float]] = []
    for _ in range(args.rounds):
        t_replay, out = cpu(lambda: sum(1 for _ in replay(lines)))
        t_json_out, _ = cpu(lambda: sum(len(json_line(*e)) for e in replay(lines)))
        t_loads, _ = cpu(lambda: [json.loads(line) for line in lines])
        t_direct = pipelines_directly(lines, batch=100)  # replay's batches end at each second: 100 outcomes here
        rounds.append((t_replay, t_json_out, t_loads, t_direct))
    t_replay, t_json_out, t_loads, t_direct = (statistics.median(r[i] for r in rounds) for i in range(4))
    print("replay outcomes/CPU s by round:", ", ".join(f"{n / r[0]:,.0f}" for r in rounds))
    rate = n / t_replay
    print(f"{n:,} outcomes of {args.agents} agents x 3 variants, every rule at its defaults; {out:,} records emitted")
    print(f"drift calibration once at start (warm_caches): {warm:.2f} CPU s")
    print(f"{'':28} {'outcomes/CPU s':>15} {'replay / it':>12}")
    print(f"{'replay':28} {rate:>15,.0f} {1:>12.2f}")
    for name, t in (("replay + --json lines", t_json_out), ("baseline: json.loads", t_loads),
                    ("baseline: pipelines directly", t_direct)):  # fmt: skip
        print(f"{name:28} {n / t:>15,.0f} {t / t_replay:>12.3f}")
    print(f"target >= 20,000 outcomes/s: {'met' if rate >= 20_000 else 'NOT met'}")


if __name__ == "__main__":
    main()
