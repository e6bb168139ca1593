"""Error-budget arithmetic: burn rate, budget consumed and remaining, and when a burn rule fires.

The error budget of an SLO with objective ``o`` is the fraction ``1 - o`` of
the window's valid events that may be bad. Over any window, the *burn rate* is
the observed error ratio divided by ``1 - o``: 1 spends the budget exactly in
the SLO window, 14.4 spends a 30-day budget in 50 hours. Over the SLO window
itself the burn rate is the budget consumed.

References
----------
Google SRE workbook, "Alerting on SLOs", burn rate and table 5-8: https://sre.google/workbook/alerting-on-slos/

Examples
--------
The workbook's first example: 99.9 % over 30 days, a burn rate of 14.4 for an
hour consumes 2 % of the budget; a 100 % outage reaches it in 0.864 minutes.

>>> burn_rate(good=9_856, total=10_000, objective=0.999)   # 1.44 % errors
14.4
>>> round(14.4 * 3_600_000 / (30 * 86_400_000), 4)           # consumed in one hour
0.02
>>> round(detection_ms(error_ratio=1.0, objective=0.999, factor=14.4, window_ms=3_600_000) / 60_000, 3)
0.864
>>> budget(good=995_000, total=1_000_000, objective=0.999)  # 5 times the budget spent: -4 left
(5.0, -4.0)
"""

from __future__ import annotations


def burn_rate(good: int, total: int, objective: float) -> float:
    """The error ratio of ``good`` among ``total`` over the allowed one, ``1 - objective`` (0 with no events)."""
    if total <= 0:
        return 0.0
    return round((total - good) / total / (1.0 - objective), 9)


def budget(good: int, total: int, objective: float) -> tuple[float, float]:
    """``(consumed, remaining)`` fractions of the error budget of ``total`` events, ``good`` of them good.

    Remaining goes below 0 when more than the budget is spent (Sloth and Pyrra show it so too).

    >>> budget(0, 0, 0.99)
    (0.0, 1.0)
    """
    consumed = burn_rate(good, total, objective)
    return consumed, round(1.0 - consumed, 9)


def detection_ms(error_ratio: float, objective: float, factor: float, window_ms: int) -> float:
    """How long a constant ``error_ratio`` takes to fire a ``factor`` rule over ``window_ms`` (workbook 5-1).

    From a clean window, the error ratio over the window after ``t`` is ``error_ratio * t / window``; it passes
    ``factor * (1 - objective)`` at ``t = factor * (1 - objective) / error_ratio * window``.

    >>> detection_ms(error_ratio=0.001, objective=0.999, factor=14.4, window_ms=3_600_000)  # never: 1x < 14.4x
    inf
    """
    allowed = factor * (1.0 - objective)
    if error_ratio <= allowed:
        return float("inf")
    return allowed / error_ratio * window_ms
