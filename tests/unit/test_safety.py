"""Seed decision matrix edges and the Bayesian promotion gate."""

from __future__ import annotations

import pytest
from reverify.processors.safety import AUTO_APPLY, HUMAN_APPROVAL, NO_ACTION, decide, prob_beats, prob_beta_greater
from scipy import integrate, stats


@pytest.mark.parametrize(
    ("q", "n", "expected"),
    [
        (0.9, 10, AUTO_APPLY),
        (0.8999999999999999, 10, AUTO_APPLY),  # float drift of a running mean still counts as 0.9
        (0.89, 10, HUMAN_APPROVAL),
        (0.95, 9, HUMAN_APPROVAL),
        (0.7, 5, HUMAN_APPROVAL),
        (0.69, 5, NO_ACTION),
        (0.7, 4, NO_ACTION),
        (0.99, 4, NO_ACTION),
        (0.2, 100, NO_ACTION),
    ],
)
def test_decision_matrix_edges(q: float, n: int, expected: str) -> None:
    assert decide(q, n).decision == expected


def test_reasoning_strings_follow_the_seed() -> None:
    assert decide(0.95, 12).reasoning == "High confidence: Q-value 0.95 >= 0.9 and 12 visits >= 10"
    assert decide(0.75, 6).reasoning == (
        "Medium confidence: Q-value 0.75 >= 0.7 and 6 visits >= 5: needs human approval"
    )
    assert decide(0.5, 50).reasoning == "Low confidence: Q-value 0.50 < 0.7"
    assert decide(0.95, 3).reasoning == "Insufficient samples: 3 visits < 5"


def test_degradation_blocks_auto_apply() -> None:
    d = decide(0.95, 30, degraded=True)
    assert d.decision == HUMAN_APPROVAL
    assert "degradation detected" in d.reasoning


def test_nine_of_ten_cannot_replace_ninety_of_hundred() -> None:
    p = prob_beats(9, 1, 90, 10)
    assert p == pytest.approx(0.334, abs=0.001)
    d = decide(0.95, 10, p_beats_active=p, active_variant="incumbent")
    assert d.decision == HUMAN_APPROVAL
    assert d.reasoning.startswith("Q-value 0.95 >= 0.9 and 10 visits >= 10, but P(beats active incumbent) 0.33 < 0.95")


def test_clear_winner_passes_the_gate() -> None:
    p = prob_beats(95, 5, 40, 60)
    assert p > 0.999
    d = decide(0.95, 100, p_beats_active=p, active_variant="old")
    assert d.decision == AUTO_APPLY
    assert "P(beats active old) 1.00 >= 0.95" in d.reasoning


@pytest.mark.parametrize(
    "params", [(10, 2, 91, 11), (3, 9, 2, 2), (51, 8, 301, 41), (7001, 6001, 7021, 5990), (1, 1, 1, 1)]
)
def test_exact_probability_matches_numeric_integration(params: tuple[int, int, int, int]) -> None:
    a1, b1, a2, b2 = params
    mode = (a1 - 1) / (a1 + b1 - 2) if a1 + b1 > 2 else 0.5
    numeric, _ = integrate.quad(
        lambda x: stats.beta.pdf(x, a1, b1) * stats.beta.cdf(x, a2, b2), 0, 1, points=[mode], limit=500
    )
    assert prob_beta_greater(a1, b1, a2, b2) == pytest.approx(numeric, abs=1e-5)
