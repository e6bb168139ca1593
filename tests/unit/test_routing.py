"""Routing: Thompson propensities against simulation, the exploration cap, safety exclusions, the fallbacks."""

from __future__ import annotations

import random

import numpy as np
import pytest
from reverify.processors.routing import RoutingSettings, RoutingState
from reverify.processors.thompson import apply_cap, choose_arm, thompson_probabilities

AGENT, TASK = "hunter", "search"
DRAWS = 4000


def _frequencies(arms: dict[str, tuple[int, int]], capped: set[str], cap: float, seed: int) -> dict[str, float]:
    rng = random.Random(seed)
    probs = thompson_probabilities(arms, rng=np.random.default_rng(seed))
    picks = [choose_arm(arms, probs, capped, cap, rng) for _ in range(DRAWS)]
    return {name: picks.count(name) / DRAWS for name in arms}


def _close(expected: float, observed: float) -> bool:
    """Within 4.5 binomial standard errors of ``DRAWS`` draws (and a Monte Carlo allowance for 3+ arms)."""
    sd = (max(expected * (1 - expected), 1e-4) / DRAWS) ** 0.5
    return abs(expected - observed) <= 4.5 * sd + 0.01


GRID = [
    {"a": (0, 0), "b": (0, 0)},
    {"a": (9, 1), "b": (90, 10)},
    {"a": (30, 20), "b": (25, 25)},
    {"a": (5, 1), "b": (1, 5)},
    {"a": (3, 3), "b": (40, 20), "c": (8, 2)},
    {"a": (50, 50), "b": (70, 30), "c": (90, 10)},
    {"a": (1, 1), "b": (1, 1), "c": (1, 1), "d": (2, 1)},
]


@pytest.mark.parametrize("arms", GRID, ids=lambda a: "-".join(f"{s}/{f}" for s, f in a.values()))
def test_thompson_propensities_match_the_simulated_choices(arms: dict[str, tuple[int, int]]) -> None:
    probs = thompson_probabilities(arms, rng=np.random.default_rng(11))
    assert abs(sum(probs.values()) - 1.0) < 1e-9 and all(0.0 < p <= 1.0 for p in probs.values())
    observed = _frequencies(arms, set(), 1.0, seed=5)
    for name in arms:
        assert _close(probs[name], observed[name]), (name, probs[name], observed[name])


@pytest.mark.parametrize("cap", [0.05, 0.1, 0.3])
@pytest.mark.parametrize("arms", GRID[1:], ids=lambda a: "-".join(f"{s}/{f}" for s, f in a.values()))
def test_the_cap_holds_and_the_propensities_say_what_happened(arms: dict[str, tuple[int, int]], cap: float) -> None:
    active = next(iter(arms))
    capped = set(arms) - {active}
    final = apply_cap(thompson_probabilities(arms, rng=np.random.default_rng(2)), capped, cap)
    assert abs(sum(final.values()) - 1.0) < 1e-9
    assert all(final[name] <= cap + 1e-12 for name in capped)
    observed = _frequencies(arms, capped, cap, seed=9)
    for name in arms:
        assert _close(final[name], observed[name]), (name, final[name], observed[name])


def _state(**settings: object) -> RoutingState:
    state = RoutingState(RoutingSettings(mode="thompson", **settings), cooldown_ms=1000, rng=random.Random(3))
    state.apply("ActiveVariant", {"agent_name": AGENT, "task_type": TASK, "variant_id": "v1"})
    for variant, s, f in [("v1", 60, 40), ("v2", 80, 20), ("v3", 10, 40)]:
        qvalue = {"agent_name": AGENT, "task_type": TASK, "variant_id": variant, "n": s + f}
        state.apply("QValue", qvalue | {"success_rate": s / (s + f), "successes": s, "failures": f})
    return state


def _shares(state: RoutingState, now_ms: int = 0, calls: int = 3000) -> tuple[dict[str, float], dict[str, float]]:
    """Traffic share per variant, and the propensity each reported."""
    counts: dict[str, int] = {}
    propensity: dict[str, float] = {}
    for _ in range(calls):
        choice = state.choose(AGENT, TASK, now_ms=now_ms)
        counts[choice.variant_id] = counts.get(choice.variant_id, 0) + 1
        propensity[choice.variant_id] = choice.propensity
        assert 0.0 < choice.propensity <= 1.0
    return {k: v / calls for k, v in counts.items()}, propensity


def _decision(state: RoutingState, variant: str, decision: str) -> None:
    state.apply(
        "VariantDecision", {"agent_name": AGENT, "task_type": TASK, "variant_id": variant, "decision": decision}
    )


def test_arms_off_the_active_variant_get_at_most_the_cap_until_the_gate_passes() -> None:
    state = _state(explore_cap=0.1)
    shares, propensity = _shares(state)
    assert shares["v2"] <= 0.1 + 0.02 and propensity["v2"] == pytest.approx(0.1)
    assert shares["v1"] > 0.85
    _decision(state, "v2", "auto_apply")  # the promotion gate passed: v2 is no longer capped
    shares, _ = _shares(state)
    assert shares["v2"] > 0.9


def test_no_action_arms_with_enough_evidence_get_no_traffic() -> None:
    state = _state(explore_cap=0.5, exclude_min_n=30)
    _decision(state, "v3", "no_action")  # 50 outcomes of evidence
    _decision(state, "v1", "no_action")  # the active variant stays eligible: rollbacks move traffic off it
    assert state.eligible(AGENT, state.tasks[(AGENT, TASK)], 0) == ["v1", "v2"]
    few = _state(explore_cap=0.5, exclude_min_n=100)
    _decision(few, "v3", "no_action")  # too little evidence to shut it out
    assert "v3" in few.eligible(AGENT, few.tasks[(AGENT, TASK)], 0)


def test_rollback_cooldown_open_circuits_and_pauses_stop_traffic() -> None:
    state = _state(explore_cap=0.5)
    state.apply("Rollback", {"agent_name": AGENT, "task_type": TASK, "ts": 10_000, "from_variant": "v2"})
    assert "v2" not in _shares(state, now_ms=10_500)[0]
    assert "v2" in _shares(state, now_ms=11_000)[0]  # cooldown_ms = 1000 over
    control = {"agent_name": AGENT, "degradation_level": 1, "reason": "errors: circuit"}
    state.apply("AgentControl", control | {"kind": "circuit", "component": "variant:v2", "circuit_state": "open"})
    assert "v2" not in _shares(state, now_ms=20_000)[0]
    state.apply("AgentControl", control | {"kind": "pause", "paused": True})
    choice = state.choose(AGENT, TASK, now_ms=20_000)
    assert (choice.variant_id, choice.propensity, choice.reason) == ("v1", 1.0, "paused: no exploration")
    assert state.is_paused(AGENT) and state.degradation_level(AGENT) == 1


def test_an_ineligible_active_variant_lifts_the_cap_rather_than_sending_traffic_nowhere() -> None:
    state = _state(explore_cap=0.1)
    control = {"agent_name": AGENT, "degradation_level": 1, "reason": "errors: circuit", "kind": "circuit"}
    state.apply("AgentControl", control | {"component": "v1", "circuit_state": "open"})
    shares, propensity = _shares(state)
    assert "v1" not in shares and shares["v2"] > 0.9 and propensity["v2"] > 0.9


def test_fallbacks_and_the_active_mode() -> None:
    state = _state()
    assert state.choose("nobody", TASK, now_ms=0, default="safe").variant_id == "safe"
    assert state.choose("nobody", TASK, now_ms=0).mode == "fallback"
    active = state.choose(AGENT, TASK, now_ms=0, mode="active")
    assert (active.variant_id, active.propensity, active.mode) == ("v1", 1.0, "active")


def test_old_qvalues_without_evidence_count_by_n() -> None:
    state = RoutingState(RoutingSettings(mode="thompson"), rng=random.Random(1))
    record = {"agent_name": AGENT, "task_type": TASK, "variant_id": "v1", "n": 20, "success_rate": 0.75}
    state.apply("QValue", record)
    assert state.tasks[(AGENT, TASK)].evidence["v1"] == (15, 5)


def test_candidates_are_what_a_process_can_run_new_ones_start_from_the_prior() -> None:
    state = _state(explore_cap=0.1)
    counts: dict[str, int] = {}
    for _ in range(3000):
        choice = state.choose(AGENT, TASK, now_ms=0, candidates=["v2", "v9"])
        counts[choice.variant_id] = counts.get(choice.variant_id, 0) + 1
        if choice.variant_id == "v9":  # no outcomes yet: Beta(1, 1), capped like any challenger
            assert 0.0 < choice.propensity <= 0.1
    assert set(counts) == {"v1", "v2", "v9"}  # v1 is active: always allowed; v3 is not a candidate
    assert counts["v9"] / 3000 <= 0.12


def test_far_apart_arms_keep_a_positive_propensity() -> None:
    probs = thompson_probabilities({"good": (100_000, 10), "bad": (10, 100_000)})
    assert probs["bad"] > 0.0 and probs["good"] < 1.0
