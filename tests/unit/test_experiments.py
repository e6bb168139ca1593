"""A/B experiments: the hash split, the always-valid test under repeated looks, SRM, records, rollbacks, routing.

The statistical checks are seeded simulations of the decision ``evaluate`` makes at every look (numbers in
docs/experiments.md): an A/A test looked at after every 100 units calls a winner in at most the nominal 5 % of
1,000 runs (a fixed-horizon z-test re-run at the same looks: far more), the interval covers the true lift, and a
real lift is found.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys

import numpy as np
import pytest
from reverify.processors.experiments import ArmSummary, ExperimentError, assign, evaluate, experiment_record, stopped
from reverify.processors.experiments.assignment import unit_point
from reverify.processors.experiments.metrics import mean_summary, quantile_levels, quantile_summary
from reverify.processors.experiments.srm import sample_ratio
from reverify.processors.learning import LearningLoop
from reverify.processors.pipeline import AgentPipeline, PipelineConfig
from reverify.processors.routing import RoutingSettings, RoutingState
from reverify.processors.validation import command_problem

LOOK_EVERY, LOOKS = 100, 30  # a look after every 100 units, up to 3,000


# ---------------------------------------------------------------------------------------------- the hash split


@pytest.mark.parametrize("split", [(0.5, 0.5), (0.9, 0.1), (0.2, 0.3, 0.5)])
def test_the_hash_split_delivers_its_shares(split: tuple[float, ...]) -> None:
    variants = [f"v{i}" for i in range(len(split))]
    n = 20_000
    counts = dict.fromkeys(variants, 0)
    for i in range(n):
        choice = assign("split-test", variants, split, unit_id=f"user-{i}")
        counts[choice.variant_id] += 1
        assert choice.propensity == split[variants.index(choice.variant_id)]
    for variant, share in zip(variants, split, strict=True):
        sd = (n * share * (1 - share)) ** 0.5
        assert abs(counts[variant] - n * share) < 4.5 * sd, counts
    assert not sample_ratio(list(counts.values()), list(split)).flagged


def test_a_unit_keeps_its_variant_in_every_process_and_experiments_hash_independently() -> None:
    units = [f"u{i}" for i in range(200)]
    here = [assign("exp-a", ("c", "t"), (0.5, 0.5), unit_id=u).variant_id for u in units]
    assert here == [assign("exp-a", ("c", "t"), (0.5, 0.5), unit_id=u).variant_id for u in units]
    code = (
        "import json, sys; from reverify.processors.experiments import assign; "
        "print(json.dumps([assign('exp-a', ('c', 't'), (0.5, 0.5), unit_id=u).variant_id for u in sys.argv[1:]]))"
    )
    # another interpreter, another hash seed: Python's own hash() would differ there
    env = {"PYTHONHASHSEED": "12345"}
    other = subprocess.run([sys.executable, "-c", code, *units], capture_output=True, text=True, env=env, check=True)
    assert json.loads(other.stdout) == here
    # pinned: a change of the hash would reassign every running experiment's units
    assert [round(unit_point("exp-a", u), 6) for u in ("u0", "u1", "u2")] == PINNED_POINTS
    # two experiments place a unit independently: the four cells of the cross-table are near a quarter each
    pairs = [(unit_point("exp-a", f"x{i}") < 0.5, unit_point("exp-b", f"x{i}") < 0.5) for i in range(20_000)]
    for cell in ((True, True), (True, False), (False, True), (False, False)):
        assert abs(pairs.count(cell) / 20_000 - 0.25) < 0.015


PINNED_POINTS = [0.133129, 0.301831, 0.703233]  # BLAKE2b of "5:exp-a" + the unit id, 8 bytes


def test_without_a_unit_id_each_call_draws_anew() -> None:
    rng = random.Random(3)
    picks = [assign("e", ("c", "t"), (0.7, 0.3), rng=rng).variant_id for _ in range(10_000)]
    assert 0.68 < picks.count("c") / 10_000 < 0.72
    assert len(set(picks[:20])) == 2  # not one variant for all calls


# ---------------------------------------------------------------------------------------------- the sequential test


def _looks(p_control: float, p_treatment: float, runs: int, seed: int, looks: int = LOOKS) -> list[list[dict]]:
    """Every run's status at each look: units assigned 50/50 at random, one binary outcome each."""
    rng = np.random.default_rng(seed)
    record = experiment_record("sim", "a", "t", ["c", "t"], None, "success_rate", 0.02, ts=0)
    units = looks * LOOK_EVERY
    treated = rng.random((runs, units)) < 0.5
    success = rng.random((runs, units)) < np.where(treated, p_treatment, p_control)
    ends = np.arange(LOOK_EVERY, units + 1, LOOK_EVERY)
    n_t = np.cumsum(treated, axis=1)[:, ends - 1]
    s_t = np.cumsum(success & treated, axis=1)[:, ends - 1]
    s_c = np.cumsum(success & ~treated, axis=1)[:, ends - 1]
    out = []
    for r in range(runs):
        row = []
        for k, m in enumerate(ends):
            nt, nc = int(n_t[r, k]), int(m - n_t[r, k])
            arms = {
                "c": mean_summary(nc, float(s_c[r, k]), float(s_c[r, k]), binary=True),
                "t": mean_summary(nt, float(s_t[r, k]), float(s_t[r, k]), binary=True),
            }
            row.append(evaluate(record, arms))
        out.append(row)
    return out


def _called(status: dict) -> bool:
    return status["decision"].startswith(("ship", "keep"))


@pytest.fixture(scope="module")
def aa_runs() -> list[list[dict]]:
    return _looks(0.8, 0.8, runs=1000, seed=11)


def test_an_aa_test_looked_at_every_100_units_calls_a_winner_at_most_5_percent_of_the_time(aa_runs) -> None:
    false_positives = sum(any(_called(s) for s in run) for run in aa_runs) / len(aa_runs)
    # the same looks with a fixed-horizon z-test (|lift / se| > 1.96 once both arms have 100 units)
    peeking = sum(
        any(s["lift"] is not None and s["units"] >= 200 and abs(s["lift"] / s["comparisons"][0]["se"]) > 1.96
            for s in run)
        for run in aa_runs
    ) / len(aa_runs)  # fmt: skip
    print(f"A/A over {LOOKS} looks: always-valid {false_positives:.1%}, fixed-horizon peeking {peeking:.1%}")
    assert false_positives <= 0.05
    assert peeking > 0.15  # the simulation is one where peeking does inflate: the bound above means something


def test_the_interval_holds_the_true_lift_at_every_look(aa_runs) -> None:
    covered = sum(all(s["ci"] is None or s["ci"][0] <= 0.0 <= s["ci"][1] for s in run) for run in aa_runs)
    assert covered / len(aa_runs) >= 0.95


def test_a_real_lift_is_found_and_its_interval_holds_it() -> None:
    runs = _looks(0.80, 0.90, runs=200, seed=12, looks=20)
    found = [next((i for i, s in enumerate(run) if _called(s)), None) for run in runs]
    assert sum(f is not None for f in found) / len(runs) >= 0.95  # power by 2,000 units
    assert all(run[f]["decision"] == "ship t" for run, f in zip(runs, found, strict=True) if f is not None)
    assert np.median([(f + 1) * LOOK_EVERY for f in found if f is not None]) <= 1200
    final = [run[-1]["ci"] for run in runs]
    assert sum(lo <= 0.125 <= hi for lo, hi in final) / len(final) >= 0.95


def test_power_at_the_planned_units_for_the_minimum_effect() -> None:
    """0.80 vs 0.85 (a lift of 6.25 %) planned for that effect: found by the plan in at least 80 % of runs."""
    record = experiment_record("p", "a", "t", ["c", "t"], None, "success_rate", 0.0625, ts=0)
    sd = (0.8 * 0.2 / 1000) ** 0.5
    plan = evaluate(record, {"c": ArmSummary(1000, 0.8, sd), "t": ArmSummary(1000, 0.8, sd)})["planned_units"]
    assert 3000 < plan < 5000
    runs = _looks(0.80, 0.85, runs=150, seed=13, looks=plan // LOOK_EVERY + 1)
    assert sum(any(s["decision"] == "ship t" for s in run) for run in runs) / len(runs) >= 0.8
    assert all(not any(s["decision"] == "keep c" for s in run) for run in runs)


def test_an_aa_test_ends_inconclusive_at_its_plan() -> None:
    record = experiment_record("p", "a", "t", ["c", "t"], None, "success_rate", 0.05, ts=0, planned_units=4000)
    sd = (0.8 * 0.2 / 2000) ** 0.5
    status = evaluate(record, {"c": ArmSummary(2000, 0.8, sd), "t": ArmSummary(2000, 0.801, sd)})
    assert status["decision"] == "inconclusive" and status["planned_units"] == 4000


def test_lower_is_better_for_latency_and_cost() -> None:
    record = experiment_record("l", "a", "t", ["c", "t"], None, "latency_p95", 0.05, ts=0)
    lo, hi = quantile_levels(5000)
    faster = {
        "c": quantile_summary(5000, 900.0, 880.0, 920.0),
        "t": quantile_summary(5000, 700.0, 685.0, 715.0),
    }
    assert 0.94 < lo < 0.95 < hi < 0.96
    assert evaluate(record, faster)["decision"] == "ship t"
    slower = {"c": faster["t"], "t": faster["c"]}
    assert evaluate(record, slower)["decision"] == "keep c"


# ---------------------------------------------------------------------------------------------- sample ratio


def test_srm_is_flagged_on_a_broken_split_and_rarely_on_a_sound_one() -> None:
    rng = np.random.default_rng(5)
    sound = rng.binomial(10_000, 0.5, size=1000)
    flagged = sum(sample_ratio([int(a), 10_000 - int(a)], [0.5, 0.5]).flagged for a in sound)
    assert flagged <= 5  # 0.1 % expected
    # a treatment that loses 10 % of its units before they report (crashes, a filter): 50/50 becomes 52.6/47.4
    broken = rng.binomial(20_000, 0.5 / 0.95, size=200)
    assert all(sample_ratio([int(a), 20_000 - int(a)], [0.5, 0.5]).flagged for a in broken)
    record = experiment_record("srm", "a", "t", ["c", "t"], [50, 50], "success_rate", 0.02, ts=0)
    status = evaluate(record, {"c": ArmSummary(5300, 0.8, 0.0055), "t": ArmSummary(4700, 0.9, 0.0044)})
    assert status["srm"]["flagged"] and status["decision"] == "inconclusive"
    assert "sample ratio" in status["reason"]


# ---------------------------------------------------------------------------------------------- the record


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"variants": ["c"]}, "--variants must name 2 or more"),
        ({"split": [50, 30, 20]}, "--split has 3 shares for 2 variants"),
        ({"split": [50, -1]}, "--split shares must be positive"),
        ({"metric": "happiness"}, "--metric must be one of"),
        ({"min_effect": 0.0}, "--min-effect must be a positive"),
        ({"name": "has space"}, "experiment name"),
        ({"planned_units": 1}, "--units must be at least 4"),
    ],
)
def test_a_bad_experiment_is_refused_with_the_option_to_fix(kwargs: dict, message: str) -> None:
    args = {"name": "e", "variants": ["c", "t"], "split": None, "metric": "success_rate", "min_effect": 0.02}
    args.update(kwargs)
    planned = args.pop("planned_units", None)
    with pytest.raises(ExperimentError, match=message):
        experiment_record(
            args["name"], "a", "t", args["variants"], args["split"], args["metric"], args["min_effect"], ts=0,
            planned_units=planned,
        )  # fmt: skip


# ---------------------------------------------------------------------------------------------- with the learning loop


def _outcome(i: int, variant: str, success: bool) -> dict:
    return {"event_id": f"o{i}", "ts": 1_700_000_000_000 + i, "variant_id": variant, "success": success,
            "reward": 1.0 if success else 0.0}  # fmt: skip


def _experiment_loop() -> tuple[LearningLoop, dict]:
    loop = LearningLoop("hunter", "search")
    record = experiment_record("copy", "hunter", "search", ["c", "t"], None, "success_rate", 0.02, ts=1)
    loop.on_outcome(_outcome(0, "c", True), (0, 0))  # c is active (first seen)
    loop.on_experiment(record)
    return loop, record


def test_a_degrading_treatment_is_rolled_back_to_control_and_stops_its_experiment() -> None:
    loop, record = _experiment_loop()
    rng = random.Random(2)
    out = []
    for i in range(1, 2000):
        variant = "c" if i % 2 else "t"
        p = 0.9 if variant == "c" or i < 600 else 0.3
        out += loop.on_outcome(_outcome(i, variant, rng.random() < p), (0, i))
        if any(e.record_type == "Rollback" for e in out):
            break
    rollback = next(e.value for e in out if e.record_type == "Rollback")
    assert (rollback["from_variant"], rollback["to_variant"]) == ("t", "c")
    assert i > 600  # not before it degraded
    stop = next(e for e in out if e.record_type == "Experiment")
    assert stop.topic == "crl.experiments" and stop.key == "copy"
    assert stop.value["status"] == "stopped" and stop.value["cause_id"] == rollback["rollback_id"]
    assert "t degraded" in stop.value["reason"] and stop.value["by"] == "worker"
    assert not any(e.record_type == "ActiveVariant" for e in out)  # c was active already
    assert loop.experiments == {}
    restored = LearningLoop.from_dict(loop.to_dict())
    assert restored.to_dict() == loop.to_dict()


def test_the_pipeline_follows_experiment_commands() -> None:
    pipeline = AgentPipeline("hunter", PipelineConfig())
    record = experiment_record("copy", "hunter", "search", ["c", "t"], None, "success_rate", 0.02, ts=1)
    command = {"event_id": "c1", "ts": 2, "command": "experiment_start", "by": "me",
               "args": {"experiment": json.dumps(record), "task_type": "search"}}  # fmt: skip
    assert command_problem(command["command"], command["args"]) is None  # the worker does not dead-letter it
    assert command_problem("experiment_stop", {"experiment": "[1]"}) is not None
    assert pipeline.on_event("Command", command, (0, 1)) == []
    assert set(pipeline.loops["search"].experiments) == {"copy"}
    done = stopped(record, ts=3, reason="by hand")
    pipeline.on_event("Command", {**command, "command": "experiment_stop", "args": {"experiment": json.dumps(done)}},
                      (0, 2))  # fmt: skip
    assert pipeline.loops["search"].experiments == {}
    assert AgentPipeline.from_dict(pipeline.to_dict(), PipelineConfig()).to_dict() == pipeline.to_dict()


def test_routing_assigns_units_while_the_experiment_runs_and_stops_with_it() -> None:
    state = RoutingState(RoutingSettings(mode="active"), rng=random.Random(1))
    state.apply("ActiveVariant", {"agent_name": "hunter", "task_type": "search", "variant_id": "c"})
    record = experiment_record("copy", "hunter", "search", ["c", "t"], [90, 10], "success_rate", 0.02, ts=1)
    state.apply("Experiment", record)
    choices = [state.choose("hunter", "search", unit_id=f"u{i}", now_ms=5) for i in range(2000)]
    assert all(c.mode == "experiment" and c.experiment == "copy" for c in choices)
    assert 0.08 < sum(c.variant_id == "t" for c in choices) / 2000 < 0.12
    assert {c.propensity for c in choices if c.variant_id == "t"} == {0.1}
    assert choices[7].attributes == {"experiment": "copy", "unit_id": "u7"}
    state.apply("AgentControl", {"agent_name": "hunter", "kind": "pause", "paused": True, "degradation_level": 0})
    assert state.choose("hunter", "search", unit_id="u1", now_ms=5).mode == "active"
    state.apply("AgentControl", {"agent_name": "hunter", "kind": "resume", "paused": False, "degradation_level": 0})
    other = stopped({**record, "name": "older"}, ts=2, reason="x")  # another experiment's stop changes nothing
    state.apply("Experiment", other)
    assert state.choose("hunter", "search", unit_id="u1", now_ms=5).mode == "experiment"
    state.apply("Experiment", stopped(record, ts=3, reason="by hand"))
    after = state.choose("hunter", "search", unit_id="u1", now_ms=5)
    assert (after.variant_id, after.mode, after.attributes) == ("c", "active", {})
