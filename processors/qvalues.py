"""Online statistics of one arm (agent_name, task_type, variant_id): Q-value, success, reward and errors.

The Q-value follows the incremental update of Sutton & Barto (2018, section 2.4-2.5)
with the step size ``a_n = max(1 / n, alpha)``: the exact sample mean while the
arm is young, then a recency-weighted average once ``n > 1 / alpha``, so that Q
follows a world that changes. When an agent reports the state it moved to, an
optional discount ``gamma`` turns the update into the full Q-learning rule of
Watkins (1989): ``Q <- Q + a_n (r + gamma * max_a' Q(s', a') - Q)``.

Reward mean and variance use Welford's (1962) one-pass algorithm, which is
numerically stable and needs O(1) state, like ``river.stats.Var``.

The arm's Beta posterior evidence (:attr:`ArmStats.evidence`, for Thompson sampling) is its successes and
failures, less what :meth:`ArmStats.reopen` forgot: a drift alarm or a rollback keeps only a fraction of the
evidence gathered so far, so that exploration starts again from a weaker belief.

The error rate is the fraction of the arm's events that are errors:
``errors / (outcomes + errors)``. It stays in [0, 1] whether an agent reports a
failed invocation as an outcome, as an error, or as both. Pipeline errors (an
event that could not be judged) are never recorded here.

Examples
--------
>>> arm = ArmStats()
>>> for success, reward in [(True, 1.0), (True, 0.8), (False, 0.0)]:
...     _ = arm.update(success, reward)
>>> round(arm.q, 4), arm.n, round(arm.success_rate, 4)
(0.6, 3, 0.6667)
>>> arm.record_error()
>>> arm.error_rate
0.25
>>> ArmStats.from_dict(arm.to_dict()) == arm
True
>>> arm.evidence, (arm.reopen(0.5), arm.evidence)[1]
((2, 1), (1, 0))

References
----------
Sutton, R. S. and Barto, A. G. (2018). Reinforcement Learning: An Introduction, 2nd ed., MIT Press.
Watkins, C. J. C. H. (1989). Learning from Delayed Rewards. PhD thesis, Cambridge.
Swaminathan, A. and Joachims, T. (2015). The self-normalized estimator for counterfactual learning. NeurIPS 28.
Welford, B. P. (1962). Note on a method for calculating corrected sums of squares and products.
Technometrics 4(3), 419-420.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Any

__all__ = ["ArmStats", "step_size"]


def step_size(n: int, alpha: float) -> float:
    """The step size ``a_n = max(1 / n, alpha)`` of the n-th update (n >= 1).

    >>> step_size(1, 0.1), step_size(5, 0.1), step_size(50, 0.1)
    (1.0, 0.2, 0.1)
    """
    return max(1.0 / n, alpha) if n > 0 else 1.0


def _outcomes(stored: str | list[Any]) -> deque[bool]:
    """``last_outcomes`` as :meth:`ArmStats.to_dict` wrote it: ``"1101"`` (or a list, from older state)."""
    if isinstance(stored, str):
        return deque(ch == "1" for ch in stored)
    return deque(bool(x) for x in stored)


def _ips(stored: list[Any] | None) -> dict[str, Any]:
    """The IPS sums as :meth:`ArmStats.to_dict` wrote them (absent from state written before propensities)."""
    if not stored:
        return {}
    n, weight, reward, weight_sq = stored
    return {
        "ips_n": int(n),
        "ips_weight": float(weight),
        "ips_reward": float(reward),
        "ips_weight_sq": float(weight_sq),
    }


@dataclass(slots=True)
class ArmStats:
    """Learning state of one arm; every field is JSON-compatible through :meth:`to_dict`.

    Parameters
    ----------
    window
        How many of the latest outcomes :attr:`last_outcomes` keeps (the seed's 20).
    """

    window: int = 20
    n: int = 0
    q: float = 0.0
    successes: int = 0
    reward_mean: float = 0.0
    reward_m2: float = 0.0
    errors: int = 0
    last_alpha: float = 0.0
    last_outcomes: deque[bool] = field(default_factory=deque)
    forgotten_successes: int = 0
    forgotten_failures: int = 0
    ips_n: int = 0
    ips_weight: float = 0.0
    ips_reward: float = 0.0
    ips_weight_sq: float = 0.0

    def __post_init__(self) -> None:
        # A bounded deque keeps the window O(1) per update, whatever was passed in.
        self.last_outcomes = deque(self.last_outcomes, maxlen=self.window)

    def update(
        self,
        success: bool,
        reward: float,
        *,
        alpha: float = 0.1,
        gamma: float = 0.0,
        max_next_q: float | None = None,
        propensity: float | None = None,
    ) -> float:
        """Apply one outcome and return the step size used.

        ``propensity``, the probability the router had of choosing this arm for the call, weighs the outcome in
        the self-normalised IPS estimate (:attr:`snips`).

        ``max_next_q`` is ``max_a' Q(s', a')`` for the state the agent moved to;
        with ``gamma > 0`` it makes the update the Q-learning rule, otherwise
        the target is the reward alone (a bandit).

        >>> arm = ArmStats()
        >>> arm.update(True, 0.5, gamma=0.9, max_next_q=0.5)
        1.0
        >>> arm.q
        0.95
        """
        self.n += 1
        a_n = step_size(self.n, alpha)
        target = reward
        if gamma > 0.0 and max_next_q is not None:
            target = reward + gamma * max_next_q
        self.q += a_n * (target - self.q)
        self.last_alpha = a_n
        if success:
            self.successes += 1
        # Welford: the second delta uses the updated mean, which keeps m2 exact in one pass.
        delta = reward - self.reward_mean
        self.reward_mean += delta / self.n
        self.reward_m2 += delta * (reward - self.reward_mean)
        self.last_outcomes.append(bool(success))
        if propensity is not None and propensity > 0.0:
            weight = 1.0 / propensity
            self.ips_n += 1
            self.ips_weight += weight
            self.ips_reward += weight * reward
            self.ips_weight_sq += weight * weight
        return a_n

    def record_error(self) -> None:
        """Count one error event that names this arm (never a pipeline error)."""
        self.errors += 1

    def reopen(self, weight: float) -> None:
        """Keep ``weight`` of the posterior evidence (rounded), forget the rest; the counts of outcomes stay."""
        successes, failures = self.evidence
        self.forgotten_successes += successes - round(weight * successes)
        self.forgotten_failures += failures - round(weight * failures)
        self.ips_weight *= weight
        self.ips_reward *= weight
        self.ips_weight_sq *= weight

    @property
    def snips(self) -> float | None:
        """Self-normalised IPS estimate of the arm's mean reward from its routed outcomes (None without any).

        ``sum(r / p) / sum(1 / p)`` over the outcomes that carried a propensity ``p``: the value of always playing
        this arm, estimated from the traffic a changing routing policy gave it (Swaminathan & Joachims 2015).

        >>> arm = ArmStats()
        >>> _ = arm.update(True, 1.0, propensity=0.5); _ = arm.update(False, 0.0, propensity=0.1)
        >>> round(arm.snips, 3), round(arm.ips_ess, 2)
        (0.167, 1.38)
        """
        return self.ips_reward / self.ips_weight if self.ips_weight > 0.0 else None

    def snips_upper(self, confidence: float) -> float | None:
        """One-sided upper confidence bound of :attr:`snips` at ``confidence`` (None without routed outcomes).

        Normal approximation over the effective sample size :attr:`ips_ess`, with the variance a reward in [0, 1]
        of mean ``m`` can have at most, ``m (1 - m)``: the gate that uses it asks for evidence that the off-policy
        value is below a bar, so an arm whose true value sits on the bar is not held back half of the time.

        >>> arm = ArmStats()
        >>> for i in range(100):
        ...     _ = arm.update(i % 10 != 0, float(i % 10 != 0), propensity=0.1)
        >>> round(arm.snips, 3), round(arm.snips_upper(0.95), 3)
        (0.9, 0.949)
        """
        m = self.snips
        if m is None:
            return None
        return m + NormalDist().inv_cdf(confidence) * math.sqrt(m * (1.0 - m) / self.ips_ess)

    @property
    def ips_ess(self) -> float:
        """Effective sample size of the IPS weights, ``(sum w)^2 / sum w^2`` (Kish)."""
        return self.ips_weight**2 / self.ips_weight_sq if self.ips_weight_sq > 0.0 else 0.0

    @property
    def evidence(self) -> tuple[int, int]:
        """``(successes, failures)`` of the arm's ``Beta(1 + successes, 1 + failures)`` posterior."""
        return self.successes - self.forgotten_successes, self.failures - self.forgotten_failures

    @property
    def failures(self) -> int:
        """Outcomes that were not successes."""
        return self.n - self.successes

    @property
    def success_rate(self) -> float:
        """Fraction of outcomes that succeeded (0 before the first outcome)."""
        return self.successes / self.n if self.n else 0.0

    @property
    def reward_var(self) -> float:
        """Sample variance of the reward (0 with fewer than two outcomes)."""
        return self.reward_m2 / (self.n - 1) if self.n > 1 else 0.0

    @property
    def error_rate(self) -> float:
        """Errors as a fraction of the arm's events, ``errors / (outcomes + errors)``."""
        events = self.n + self.errors
        return self.errors / events if events else 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible state."""
        return {
            "window": self.window,
            "n": self.n,
            "q": self.q,
            "successes": self.successes,
            "reward_mean": self.reward_mean,
            "reward_m2": self.reward_m2,
            "errors": self.errors,
            "last_alpha": self.last_alpha,
            # "1"/"0" text: state is written to the changelog often, and a JSON list of booleans costs
            # several times more to encode.
            "last_outcomes": "".join("1" if ok else "0" for ok in self.last_outcomes),
            "forgotten_successes": self.forgotten_successes,
            "forgotten_failures": self.forgotten_failures,
            "ips": [self.ips_n, self.ips_weight, self.ips_reward, self.ips_weight_sq],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ArmStats:
        """Restore the state written by :meth:`to_dict`."""
        return cls(
            window=int(data["window"]),
            n=int(data["n"]),
            q=float(data["q"]),
            successes=int(data["successes"]),
            reward_mean=float(data["reward_mean"]),
            reward_m2=float(data["reward_m2"]),
            errors=int(data["errors"]),
            last_alpha=float(data["last_alpha"]),
            last_outcomes=_outcomes(data["last_outcomes"]),
            # absent from state written before exploration could be reopened
            forgotten_successes=int(data.get("forgotten_successes", 0)),
            forgotten_failures=int(data.get("forgotten_failures", 0)),
            **_ips(data.get("ips")),
        )
