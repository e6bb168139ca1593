"""Online statistics of one arm (agent_name, task_type, variant_id): Q-value, success, reward and errors.

The Q-value follows the incremental update of Sutton & Barto (2018, section 2.4-2.5)
with the step size ``a_n = max(1 / n, alpha)``: the exact sample mean while the
arm is young, then a recency-weighted average once ``n > 1 / alpha``, so that Q
follows a world that changes. When an agent reports the state it moved to, an
optional discount ``gamma`` turns the update into the full Q-learning rule of
Watkins (1989): ``Q <- Q + a_n (r + gamma * max_a' Q(s', a') - Q)``.

Reward mean and variance use Welford's (1962) one-pass algorithm, which is
numerically stable and needs O(1) state, like ``river.stats.Var``.

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

References
----------
Sutton, R. S. and Barto, A. G. (2018). Reinforcement Learning: An Introduction, 2nd ed., MIT Press.
Watkins, C. J. C. H. (1989). Learning from Delayed Rewards. PhD thesis, Cambridge.
Welford, B. P. (1962). Note on a method for calculating corrected sums of squares and products.
Technometrics 4(3), 419-420.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
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
    ) -> float:
        """Apply one outcome and return the step size used.

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
        return a_n

    def record_error(self) -> None:
        """Count one error event that names this arm (never a pipeline error)."""
        self.errors += 1

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
        )
