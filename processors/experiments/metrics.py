"""The metrics an experiment compares, and each variant's estimate of one from what the history sums up.

``success_rate``, ``reward_mean`` and ``cost_mean`` are means over units (a
unit's own mean when it reported several outcomes), estimated with their
standard error from the count, sum and sum of squares. ``latency_p95`` is the
95th percentile of the outcomes' latencies, its standard error from the
order statistics around it (the distribution-free interval of ranks
``n q +- z sqrt(n q (1 - q))``, Deng et al. 2018): the history is asked for
the quantiles at :func:`quantile_levels`, nothing else.

>>> mean_summary(4, 3.0, 3.0, binary=True)   # 3 successes of 4: the Laplace-smoothed rate's variance
ArmSummary(n=4, value=0.75, se=0.2...)
>>> BETTER["latency_p95"], BETTER["success_rate"]
(-1, 1)
>>> [round(x, 4) for x in quantile_levels(10_000)]
[0.9457, 0.9543]

References
----------
Deng, A., Knoblich, U. and Lu, J. (2018). Applying the delta method in metric analytics: a practical guide
with novel ideas. KDD, section 4.3 (quantile metrics).
"""

from __future__ import annotations

import math

from reverify.processors.experiments.sequential import ArmSummary

#: +1 where a higher value is better, -1 where lower is better.
BETTER: dict[str, int] = {"success_rate": 1, "reward_mean": 1, "latency_p95": -1, "cost_mean": -1}
METRICS = tuple(BETTER)
#: The outcome column each mean metric averages (latency_p95 is a quantile of latency_ms).
COLUMNS: dict[str, str] = {
    "success_rate": "success",
    "reward_mean": "reward",
    "cost_mean": "cost_usd",
    "latency_p95": "latency_ms",
}
QUANTILE = 0.95
_Z = 1.959963984540054


def mean_summary(n: int, total: float, total_sq: float, binary: bool = False) -> ArmSummary:
    """The mean of ``n`` unit values from their sum and sum of squares, with its standard error.

    A ``binary`` metric uses the Laplace-smoothed rate ``(s + 1) / (n + 2)`` for its variance, so that 0 of 50
    or 50 of 50 is not an estimate without uncertainty.
    """
    if n <= 0:
        return ArmSummary(0, 0.0, 0.0)
    mean = total / n
    if binary:
        smoothed = (total + 1.0) / (n + 2.0)
        variance = smoothed * (1.0 - smoothed)
    else:
        variance = max(total_sq / n - mean * mean, 0.0) * n / max(n - 1, 1)
    return ArmSummary(n, mean, math.sqrt(variance / n))


def quantile_levels(n: int, q: float = QUANTILE) -> tuple[float, float]:
    """The quantile levels whose values bound a 95 % interval of the ``q`` quantile of ``n`` values."""
    half = _Z * math.sqrt(q * (1.0 - q) / max(n, 1))
    return max(q - half, 0.0), min(q + half, 1.0)


def quantile_summary(n: int, value: float, lower: float, upper: float) -> ArmSummary:
    """A quantile ``value`` of ``n`` values, its standard error from the values at :func:`quantile_levels`.

    >>> quantile_summary(1000, 200.0, 190.0, 210.0).se
    5.1...
    """
    return ArmSummary(n, value, max(upper - lower, 0.0) / (2.0 * _Z))
