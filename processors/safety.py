"""The safety decision of an arm (seed decision matrix) and the Bayesian promotion gate.

Decision matrix (seed "CRL Safety Mechanisms"): ``Q >= 0.9`` and ``n >= 10``
and no degradation in the last window -> ``auto_apply``; ``Q >= 0.7`` and
``n >= 5`` -> ``human_approval``; otherwise ``no_action``. The reasoning
string says which thresholds were met, in the seed's words ("High confidence:
Q-value 0.95 >= 0.9 and 12 visits >= 10 ...").

Promotion gate: an arm that is not the active variant is auto-applied only if
the posterior probability that its success rate beats the active variant's is
at least ``promotion_probability`` (0.95), with independent ``Beta(1 + s, 1 + f)``
posteriors (uniform priors). Otherwise the decision falls back to
``human_approval``. So 9 successes out of 10 (P = 0.33) cannot replace an
incumbent at 90 of 100.

``P(X > Y)`` for ``X ~ Beta(a1, b1)``, ``Y ~ Beta(a2, b2)`` with integer
parameters is computed exactly by the finite sum of Miller (2015), choosing
among its four equivalent forms (by ``X -> 1 - X`` and complement) the one
with the fewest terms; beyond 5,000 terms, where every form has big counts,
the normal approximation of the two posteriors is used (error far below 1e-3
at such counts).

Examples
--------
>>> round(prob_beats(9, 1, 90, 10), 2)
0.33
>>> d = decide(0.95, 12)
>>> d.decision, d.reasoning
('auto_apply', 'High confidence: Q-value 0.95 >= 0.9 and 12 visits >= 10')
>>> decide(0.8, 6).decision, decide(0.95, 4).decision
('human_approval', 'no_action')

References
----------
Miller, E. (2015). Formulas for Bayesian A/B Testing. https://www.evanmiller.org/bayesian-ab-testing.html
Seed document: CRL Safety Mechanisms Guide, "Decision Matrix".
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = [
    "AUTO_APPLY",
    "HUMAN_APPROVAL",
    "NO_ACTION",
    "SafetyDecision",
    "classify",
    "decide",
    "prob_beats",
    "prob_beta_greater",
]

AUTO_APPLY = "auto_apply"
HUMAN_APPROVAL = "human_approval"
NO_ACTION = "no_action"

# Q is a running float average: 0.9 reached through ten updates may read 0.8999999999999999.
_EPS = 1e-9
# Above this many terms in the shortest exact form, the normal approximation is both fast and accurate.
_EXACT_TERMS = 5000


def _miller(a1: int, b1: int, a2: int, b2: int) -> float:
    """P(X > Y), X ~ Beta(a1, b1), Y ~ Beta(a2, b2), as Miller's sum of ``a1`` terms."""
    lb = math.lgamma(a2) + math.lgamma(b2) - math.lgamma(a2 + b2)
    total = 0.0
    for i in range(a1):
        # log of B(a2 + i, b1 + b2) / ((b1 + i) B(1 + i, b1) B(a2, b2)), summed in linear space.
        log_term = (
            math.lgamma(a2 + i)
            + math.lgamma(b1 + b2)
            - math.lgamma(a2 + i + b1 + b2)
            - math.log(b1 + i)
            - (math.lgamma(1 + i) + math.lgamma(b1) - math.lgamma(1 + i + b1))
            - lb
        )
        total += math.exp(log_term)
    return total


def prob_beta_greater(a1: int, b1: int, a2: int, b2: int) -> float:
    """P(X > Y) for independent ``X ~ Beta(a1, b1)`` and ``Y ~ Beta(a2, b2)`` (integer parameters >= 1).

    >>> round(prob_beta_greater(1, 1, 1, 1), 12)
    0.5
    >>> round(prob_beta_greater(91, 11, 10, 2), 4) == round(1 - prob_beta_greater(10, 2, 91, 11), 4)
    True
    """
    forms = [
        (a1, lambda: _miller(a1, b1, a2, b2)),
        (b2, lambda: _miller(b2, a2, b1, a1)),
        (a2, lambda: 1.0 - _miller(a2, b2, a1, b1)),
        (b1, lambda: 1.0 - _miller(b1, a1, b2, a2)),
    ]
    terms, form = min(forms, key=lambda f: f[0])
    if terms <= _EXACT_TERMS:
        return min(1.0, max(0.0, form()))
    m1, m2 = a1 / (a1 + b1), a2 / (a2 + b2)
    v1 = a1 * b1 / ((a1 + b1) ** 2 * (a1 + b1 + 1))
    v2 = a2 * b2 / ((a2 + b2) ** 2 * (a2 + b2 + 1))
    return 0.5 * math.erfc(-(m1 - m2) / math.sqrt(2.0 * (v1 + v2)))


def prob_beats(successes: int, failures: int, other_successes: int, other_failures: int) -> float:
    """Posterior probability that an arm's success rate beats another's, under uniform Beta priors.

    >>> round(prob_beats(90, 10, 9, 1), 2)
    0.67
    """
    return prob_beta_greater(1 + successes, 1 + failures, 1 + other_successes, 1 + other_failures)


@dataclass(frozen=True, slots=True)
class SafetyDecision:
    """A decision and the sentence that explains it."""

    decision: str
    reasoning: str
    p_beats_active: float | None = None


def classify(
    q: float,
    n: int,
    degraded: bool = False,
    p_beats_active: float | None = None,
    auto_apply_q: float = 0.9,
    auto_apply_n: int = 10,
    approval_q: float = 0.7,
    approval_n: int = 5,
    promotion_probability: float = 0.95,
) -> str:
    """The decision :func:`decide` makes, without its reasoning string.

    The learning loop re-decides after every outcome but publishes only changes; formatting the
    reasoning each time would cost more than the rule. ``tests/unit/test_learning.py`` checks over a grid
    of inputs that it agrees with :func:`decide`.

    >>> classify(0.9, 10), classify(0.95, 12, p_beats_active=0.33), classify(0.7, 5), classify(0.99, 4)
    ('auto_apply', 'human_approval', 'human_approval', 'no_action')
    """
    if n < approval_n:
        return NO_ACTION
    if q >= auto_apply_q - _EPS and n >= auto_apply_n:
        if degraded or (p_beats_active is not None and p_beats_active < promotion_probability):
            return HUMAN_APPROVAL
        return AUTO_APPLY
    if q >= approval_q - _EPS:
        return HUMAN_APPROVAL
    return NO_ACTION


def decide(
    q: float,
    n: int,
    *,
    degraded: bool = False,
    p_beats_active: float | None = None,
    active_variant: str | None = None,
    auto_apply_q: float = 0.9,
    auto_apply_n: int = 10,
    approval_q: float = 0.7,
    approval_n: int = 5,
    promotion_probability: float = 0.95,
) -> SafetyDecision:
    """Apply the seed's decision matrix, then the promotion gate.

    Parameters
    ----------
    q, n
        The arm's Q-value and visit count.
    degraded
        The arm's degradation test fired within its last window: no ``auto_apply``.
    p_beats_active
        ``P(arm beats the active variant)``; ``None`` when the arm is the active
        variant or there is none, so the gate does not apply.
    active_variant
        Name of the active variant, for the reasoning string.

    Examples
    --------
    >>> decide(0.9, 10).decision, decide(0.7, 5).decision, decide(0.99, 4).decision
    ('auto_apply', 'human_approval', 'no_action')
    >>> decide(0.95, 12, p_beats_active=0.33, active_variant="v1").reasoning
    'Q-value 0.95 >= 0.9 and 12 visits >= 10, but P(beats active v1) 0.33 < 0.95: needs human approval'
    """
    if n < approval_n:
        return SafetyDecision(NO_ACTION, f"Insufficient samples: {n} visits < {approval_n}", p_beats_active)
    high = q >= auto_apply_q - _EPS and n >= auto_apply_n
    if high:
        met = f"Q-value {q:.2f} >= {auto_apply_q:g} and {n} visits >= {auto_apply_n}"
        if degraded:
            return SafetyDecision(
                HUMAN_APPROVAL, f"{met}, but degradation detected in the last window: needs human approval", None
            )
        if p_beats_active is None:
            return SafetyDecision(AUTO_APPLY, f"High confidence: {met}", None)
        gate = f"P(beats active {active_variant}) {p_beats_active:.2f}"
        if p_beats_active >= promotion_probability:
            return SafetyDecision(
                AUTO_APPLY, f"High confidence: {met}, {gate} >= {promotion_probability:g}", p_beats_active
            )
        return SafetyDecision(
            HUMAN_APPROVAL, f"{met}, but {gate} < {promotion_probability:g}: needs human approval", p_beats_active
        )
    if q >= approval_q - _EPS:
        return SafetyDecision(
            HUMAN_APPROVAL,
            f"Medium confidence: Q-value {q:.2f} >= {approval_q:g} and {n} visits >= {approval_n}: "
            "needs human approval",
            p_beats_active,
        )
    return SafetyDecision(NO_ACTION, f"Low confidence: Q-value {q:.2f} < {approval_q:g}", p_beats_active)
