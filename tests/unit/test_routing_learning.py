"""What the learning loop gives routing: posterior evidence in the Q-values, reopenings, the off-policy gate."""

from __future__ import annotations

import random

import numpy as np
from reverify.processors.base import Emission
from reverify.processors.learning import LearningLoop, LearningSettings
from reverify.processors.pipeline import AgentPipeline, PipelineConfig
from reverify.processors.routing import RoutingSettings, RoutingState

from tests.unit.test_learning import EVERY_UPDATE, TS0, _degrade, feed, of, outcome


def test_qvalues_carry_the_posterior_evidence() -> None:
    loop = LearningLoop("a", "t", EVERY_UPDATE)
    out = feed(loop, [outcome("v1", i % 4 != 0) for i in range(20)])
    last = of(out, "QValue")[-1]
    assert (last["successes"], last["failures"]) == (15, 5)


def test_a_rollback_reopens_exploration_keeping_reopen_weight_of_the_evidence() -> None:
    loop = LearningLoop("backend-architect", "api-design", LearningSettings(publish_interval_ms=0, reopen_weight=0.1))
    feed(loop, [outcome("default", i % 5 != 0) for i in range(30)])  # 24 / 6
    out = _degrade(loop, "v1")
    assert of(out, "Rollback")
    qvalues = {q["variant_id"]: q for q in of(out, "QValue")}
    assert (qvalues["default"]["successes"], qvalues["default"]["failures"]) == (2, 1)  # round(2.4), round(0.6)
    assert loop.arms["default"].n == 30 and loop.arms["default"].successes == 24  # the counts themselves stay
    restored = LearningLoop.from_dict(loop.to_dict(), loop.settings)
    assert restored.arms["default"].evidence == (2, 1) and restored.reopened_at == loop.reopened_at


def test_state_written_before_routing_loads_with_the_full_evidence() -> None:
    loop = LearningLoop("a", "t")
    feed(loop, [outcome("v1", i % 2 == 0, ts=TS0 + i) for i in range(10)])
    state = loop.to_dict()
    del state["reopened_at"]
    for arm in state["arms"].values():
        del arm["forgotten_successes"], arm["forgotten_failures"], arm["ips"]
    restored = LearningLoop.from_dict(state)
    assert restored.arms["v1"].evidence == (5, 5) and restored.arms["v1"].snips is None


def _drift_alarm(ts: int) -> dict[str, object]:
    return {"event_id": f"d-{ts}", "ts": ts, "agent_name": "a", "feature": "reward", "alarm": True}


def test_a_drift_alarm_reopens_every_loop_of_the_agent_once_per_cooldown() -> None:
    config = PipelineConfig(
        learning=LearningSettings(publish_interval_ms=0, reopen_weight=0.5, cooldown_ms=1000, reopen_on_drift=True)
    )
    pipeline = AgentPipeline("a", config)
    for task in ("t1", "t2"):
        feed(pipeline.loop(task), [outcome("v1", True, ts=TS0 + i) for i in range(40)])
    out = pipeline._reopen(_drift_alarm(TS0 + 100))
    assert {(q["task_type"], q["successes"]) for q in of(out, "QValue")} == {("t1", 20), ("t2", 20)}
    assert pipeline._reopen(_drift_alarm(TS0 + 500)) == []  # the same alarm's next look: within the cooldown
    assert {q["successes"] for q in of(pipeline._reopen(_drift_alarm(TS0 + 1100)), "QValue")} == {10}


def test_drift_alarms_reopen_only_when_asked() -> None:
    pipeline = AgentPipeline("a", PipelineConfig(learning=LearningSettings(publish_interval_ms=0)))
    feed(pipeline.loop("t1"), [outcome("v1", True, ts=TS0 + i) for i in range(40)])
    report = _drift_alarm(TS0 + 100) | {"record_type": "DriftReport"}
    pipeline._follow([Emission("drift.reports", "a/reward", "DriftReport", report)])
    assert pipeline.loop("t1").arms["v1"].evidence == (40, 0)


def _routed(variant: str, success: bool, propensity: float) -> dict[str, object]:
    return outcome(variant, success) | {"propensity": propensity}


def test_the_off_policy_value_holds_back_an_auto_apply_and_shows_in_the_reasoning() -> None:
    loop = LearningLoop("a", "t", LearningSettings(approval_n=10))  # the first decision comes at n = 10
    feed(loop, [outcome("inc", i % 2 == 0) for i in range(100)])  # the incumbent, 50 %
    # Q = 0.9 after 9 successes in 10, but the failure came on a call routing rarely made (p = 0.01):
    # weighed by 1 / propensity, the value of always playing the challenger is far lower.
    feed(loop, [_routed("chal", False, 0.01)])
    out = feed(loop, [_routed("chal", True, 0.9) for _ in range(9)])
    (decision,) = of(out, "VariantDecision")
    assert loop.active == "inc" and loop.arms["chal"].q >= 0.9 - 1e-9 and loop.arms["chal"].snips < 0.1
    assert decision["decision"] == "human_approval"
    assert "but its off-policy value 0.091 is below 0.9 (at most 0.521, 95% upper bound)" in decision["reasoning"]
    assert "(SNIPS value 0.091 over 10 routed outcomes, ESS 1)" in decision["reasoning"]


def test_a_challenger_with_a_good_off_policy_value_is_applied_with_it_in_the_reasoning() -> None:
    loop = LearningLoop("a", "t")
    feed(loop, [outcome("inc", i % 2 == 0) for i in range(100)])
    out = feed(loop, [_routed("chal", i % 20 != 0, 0.1) for i in range(60)])
    applied = [d for d in of(out, "VariantDecision") if d["decision"] == "auto_apply"]
    assert loop.active == "chal" and applied
    assert "SNIPS value" in applied[0]["reasoning"] and "routed outcomes" in applied[0]["reasoning"]


def test_an_arm_whose_off_policy_value_sits_on_the_bar_is_applied() -> None:
    """SNIPS 0.89 over 300 routed outcomes is no evidence against a 0.9 bar: the gate asks for its upper bound."""
    loop = LearningLoop("a", "t")
    feed(loop, [outcome("inc", i % 2 == 0) for i in range(100)])
    # 267 of 300 (0.89), the last 20 all successes so that the Q-value (recent outcomes) is above 0.9
    results = [i % 10 != 0 for i in range(280)]
    results[:13] = [False] * 13
    feed(loop, [_routed("chal", ok, 0.1) for ok in results[:280]])
    assert loop.active == "inc"  # held back so far: Q below 0.9 or P(beats) too small
    out = feed(loop, [_routed("chal", True, 0.1) for _ in range(20)])
    arm = loop.arms["chal"]
    assert arm.snips < 0.9 <= arm.snips_upper(0.95)
    applied = [d for d in of(out, "VariantDecision") if d["decision"] == "auto_apply"]
    assert loop.active == "chal" and applied and "off-policy value" not in applied[0]["reasoning"]


def _routed_run(seed: int, calls: int = 3000, publish_every: int = 125) -> tuple[float, str | None]:
    """An agent routed by Thompson sampling over 0.5 / 0.7 / 0.9 arms, starting on the worst (the e2e test's setting,
    in process): the share of the last 1,000 calls that went to the best arm, and the active variant at the end."""
    rates = {"v50": 0.5, "v70": 0.7, "v90": 0.9}
    rng = random.Random(seed)
    loop = LearningLoop("a", "t")
    state = RoutingState(RoutingSettings(mode="thompson"), rng=random.Random(seed), np_rng=np.random.default_rng(seed))
    chosen = []
    for i in range(calls):
        ts = TS0 + 8 * i
        choice = state.choose("a", "t", now_ms=ts, default="v50", candidates=list(rates))
        ok = rng.random() < rates[choice.variant_id]
        event = outcome(choice.variant_id, ok, ts=ts) | {"propensity": choice.propensity}
        out = loop.on_outcome(event) + (loop.flush_qvalues() if i % publish_every == 0 else [])
        for e in out:
            state.apply(e.record_type, e.value)
        chosen.append(choice.variant_id)
    return chosen[-1000:].count("v90") / 1000, loop.active


def test_thompson_routing_ends_on_the_best_arm_in_nearly_every_seeded_run() -> None:
    """Before the gate used the SNIPS bound and the exclusion the posterior, 11 of these 100 runs lost the 0.9 arm:
    9 held it at explore_cap (its cumulative SNIPS just under 0.9) or excluded it for good (a momentary Q dip below
    approval_q), 2 rolled it back on a false alarm. What is left is those 2: the detector's designed false-rollback
    rate (1 % per 2,000 stationary outcomes), whose cooldown keeps the arm out."""
    runs = [_routed_run(seed) for seed in range(100)]
    lost = [(seed, share, active) for seed, (share, active) in enumerate(runs) if share <= 0.6]
    print(f"\nbest arm under 60 % of the last 1,000 calls in {len(lost)} of 100 runs: {lost}")
    assert len(lost) <= 3, lost
