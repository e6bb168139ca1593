"""Thompson sampling over Beta posteriors, and the probability each arm has of being chosen (its propensity).

Each arm has a ``Beta(1 + successes, 1 + failures)`` posterior of its success rate (uniform prior). Thompson
sampling (Thompson 1933; Chapelle & Li 2011) draws one value from every posterior and plays the arm with the
highest draw, so an arm is played as often as it is probably the best one. That probability is the arm's
*propensity*, which an off-policy estimate (inverse propensity scoring) divides by:

* two arms: ``P(X_1 > X_2)`` in closed form (Miller's exact sum, :func:`processors.safety.prob_beta_greater`);
* more arms: a Monte Carlo estimate over ``samples`` joint draws, each arm's count smoothed by one draw
  ((count + 1) / (samples + k)) so that no arm that can be drawn gets a propensity of 0. Computed once per set of
  posteriors and cached: posteriors change when a Q-value is published (at most once a second per arm), not per call.

An exploration cap bounds what a capped arm may get: its share above ``cap`` goes to the uncapped arms in
proportion to their own Thompson probabilities (evenly when those are all 0). :func:`choose_arm` draws exactly from
those capped probabilities, so the propensity it reports is the probability of what it did.

Examples
--------
>>> import random
>>> arms = {"a": (90, 10), "b": (70, 30)}
>>> probs = thompson_probabilities(arms)
>>> round(probs["a"], 4), round(probs["a"] + probs["b"], 12)
(0.9998, 1.0)
>>> capped = apply_cap(probs, capped={"a"}, cap=0.1)
>>> round(capped["a"], 4), round(capped["b"], 4)
(0.1, 0.9)
>>> rng = random.Random(7)
>>> picks = [choose_arm(arms, probs, {"a"}, 0.1, rng) for _ in range(10_000)]
>>> round(picks.count("a") / len(picks), 2)
0.1

References
----------
Thompson, W. R. (1933). On the likelihood that one unknown probability exceeds another in view of the evidence of
two samples. Biometrika 25(3/4), 285-294.
Chapelle, O. and Li, L. (2011). An empirical evaluation of Thompson sampling. NeurIPS 24.
Miller, E. (2015). Formulas for Bayesian A/B Testing. https://www.evanmiller.org/bayesian-ab-testing.html
"""

from __future__ import annotations

import random
from collections.abc import Collection, Mapping

import numpy as np
from reverify.processors.safety import prob_beta_greater

__all__ = ["PropensityCache", "apply_cap", "choose_arm", "thompson_probabilities"]

_FLOOR = 1e-9

Evidence = tuple[int, int]
"""``(successes, failures)`` of one arm's posterior."""


def thompson_probabilities(
    arms: Mapping[str, Evidence], samples: int = 4000, rng: np.random.Generator | None = None
) -> dict[str, float]:
    """P(arm's posterior draw is the highest) for every arm: closed form for two arms, Monte Carlo beyond.

    >>> thompson_probabilities({"only": (3, 4)})
    {'only': 1.0}
    >>> p = thompson_probabilities({"a": (5, 5), "b": (5, 5), "c": (5, 5)}, rng=np.random.default_rng(1))
    >>> [round(x, 1) for x in p.values()]
    [0.3, 0.3, 0.3]
    """
    names = list(arms)
    if len(names) == 1:
        return {names[0]: 1.0}
    if len(names) == 2:
        (s1, f1), (s2, f2) = arms[names[0]], arms[names[1]]
        # 1 - p rounds to 0 for arms far apart; a propensity of 0 for an arm that can still be drawn would make
        # an IPS weight infinite, so the closed form is kept within [_FLOOR, 1 - _FLOOR].
        p = min(1.0 - _FLOOR, max(_FLOOR, prob_beta_greater(1 + s1, 1 + f1, 1 + s2, 1 + f2)))
        return {names[0]: p, names[1]: 1.0 - p}
    rng = rng or np.random.default_rng()
    a = np.array([1 + s for s, _ in arms.values()], dtype=float)
    b = np.array([1 + f for _, f in arms.values()], dtype=float)
    draws = rng.beta(a, b, size=(samples, len(names)))
    counts = np.bincount(draws.argmax(axis=1), minlength=len(names))
    smoothed = (counts + 1.0) / (samples + len(names))
    return {name: float(x) for name, x in zip(names, smoothed, strict=True)}


def apply_cap(probs: Mapping[str, float], capped: Collection[str], cap: float) -> dict[str, float]:
    """Thompson probabilities after capping ``capped`` arms at ``cap``; the excess goes to the uncapped arms.

    With no uncapped arm the cap cannot hold and ``probs`` is returned unchanged.

    >>> apply_cap({"a": 0.6, "b": 0.3, "c": 0.1}, capped={"a", "c"}, cap=0.2)
    {'a': 0.2, 'b': 0.7, 'c': 0.1}
    """
    free = [name for name in probs if name not in capped]
    excess = sum(max(0.0, p - cap) for name, p in probs.items() if name in capped)
    if not free or excess <= 0.0:
        return dict(probs)
    weights = _redirect_weights(probs, free)
    return {name: min(p, cap) if name in capped else p + excess * weights[name] for name, p in probs.items()}


def _redirect_weights(probs: Mapping[str, float], free: list[str]) -> dict[str, float]:
    """How the excess over the cap is split among the uncapped arms: as their own probabilities, else evenly."""
    total = sum(probs[name] for name in free)
    if total <= 0.0:
        return {name: 1.0 / len(free) for name in free}
    return {name: probs[name] / total for name in free}


def choose_arm(
    arms: Mapping[str, Evidence],
    probs: Mapping[str, float],
    capped: Collection[str],
    cap: float,
    rng: random.Random,
) -> str:
    """One Thompson draw, redirected so that capped arms get at most ``cap`` (:func:`apply_cap` gives its law).

    A capped arm whose Thompson probability ``p`` exceeds ``cap`` keeps a draw it won with probability
    ``cap / p``; otherwise the draw goes to an uncapped arm, picked as :func:`apply_cap` splits the excess.
    """
    winner = max(arms, key=lambda name: rng.betavariate(1 + arms[name][0], 1 + arms[name][1]))
    p = probs[winner]
    free = [name for name in arms if name not in capped]
    if winner not in capped or p <= cap or not free or rng.random() < cap / p:
        return winner
    weights = _redirect_weights(probs, free)
    return rng.choices(free, weights=[weights[name] for name in free])[0]


class PropensityCache:
    """:func:`thompson_probabilities` remembered per set of posteriors (bounded; cleared when full).

    >>> cache = PropensityCache(rng=np.random.default_rng(3))
    >>> cache.get({"a": (1, 1), "b": (1, 1)}) is cache.get({"a": (1, 1), "b": (1, 1)})
    True
    """

    def __init__(self, samples: int = 4000, size: int = 4096, rng: np.random.Generator | None = None) -> None:
        self.samples = samples
        self.size = size
        self.rng = rng or np.random.default_rng()
        self._cache: dict[tuple[tuple[str, int, int], ...], dict[str, float]] = {}

    def get(self, arms: Mapping[str, Evidence]) -> dict[str, float]:
        key = tuple((name, s, f) for name, (s, f) in arms.items())
        probs = self._cache.get(key)
        if probs is None:
            if len(self._cache) >= self.size:
                self._cache.clear()
            probs = self._cache[key] = thompson_probabilities(arms, self.samples, self.rng)
        return probs
