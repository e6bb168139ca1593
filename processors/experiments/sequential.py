"""Always-valid inference on a treatment's relative lift: a Gaussian-mixture confidence sequence and its p-value.

An experiment's status may be looked at any time, as often as anyone likes.
A fixed-horizon test re-run at every look calls a winner in an A/A test far
more often than its 5 % (about 30 % over 30 looks). The interval here is a
*confidence sequence*: with probability at least 1 - alpha it holds the true
lift at every sample size at once, so stopping the first time it excludes zero
keeps the false-positive rate at alpha however many looks are taken. The
p-value is the matching always-valid p-value (the reciprocal of the mixture
likelihood ratio, an e-value): it is at most alpha exactly when the interval
excludes zero.

The method is the asymptotic confidence sequence of Waudby-Smith et al.,
which GrowthBook's sequential engine uses (``gbstats.frequentist.tests``:
``sequential_rho``, ``sequential_interval_halfwidth``, ``SequentialTwoSidedTTest``),
the Gaussian-mixture SPRT of Johari et al. for a difference of means, applied
to the delta-method relative lift. For ``n`` units whose estimate has variance
``sigma^2 / n``, the half-width is

    sigma * sqrt(2 (n rho^2 + 1) / (n^2 rho^2) * log(sqrt(n rho^2 + 1) / alpha))

where ``rho`` is the mixture's spread, tuned so that the interval is tightest at
``tuning_units`` (GrowthBook's default: 5,000). ``n`` is the units of both arms,
``sigma^2 = n * se^2`` with ``se`` the lift's delta-method standard error.

>>> rho = mixture_rho(0.05, 5000)
>>> round(rho, 5)
0.03984
>>> c, t = ArmSummary(2000, 0.80, (0.8 * 0.2 / 2000) ** 0.5), ArmSummary(2000, 0.90, (0.9 * 0.1 / 2000) ** 0.5)
>>> test = lift_test(c, t, alpha=0.05, rho=rho)
>>> round(test.lift, 4), [round(x, 3) for x in test.ci], test.p_value < 1e-6
(0.125, [0.079, 0.171], True)
>>> lift_test(c, ArmSummary(2000, 0.81, (0.81 * 0.19 / 2000) ** 0.5), 0.05, rho).p_value
1.0

References
----------
Johari, R., Pekelis, L. and Walsh, D. (2017). Always valid inference: bringing sequential analysis to A/B
testing. arXiv:1512.04922 (Operations Research 70(3), 2022).
Waudby-Smith, I., Arbour, D., Sinha, R., Kennedy, E. H. and Ramdas, A. (2023). Time-uniform central limit
theory and asymptotic confidence sequences. arXiv:2103.06476v7, equations 9, 155 and 161.
GrowthBook, ``packages/stats/gbstats/frequentist/tests.py`` (sequential testing).
Deng, A., Knoblich, U. and Lu, J. (2018). Applying the delta method in metric analytics. KDD (relative lift
and quantile metrics).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist


@dataclass(frozen=True)
class ArmSummary:
    """One variant's estimate of the metric: ``n`` units, the estimate ``value`` and its standard error ``se``."""

    n: int
    value: float
    se: float


@dataclass(frozen=True)
class LiftTest:
    """Relative lift ``treatment / control - 1`` with its standard error, confidence sequence and p-value."""

    lift: float
    se: float
    ci: tuple[float, float]
    p_value: float


def mixture_rho(alpha: float, tuning_units: float) -> float:
    """The mixture spread that makes a two-sided interval tightest at ``tuning_units`` (Waudby-Smith eq. 161)."""
    log_term = -2.0 * math.log(alpha)
    return math.sqrt((log_term + math.log(log_term + 1.0)) / tuning_units)


def halfwidth(variance: float, n: float, alpha: float, rho: float) -> float:
    """Half-width of the 1 - ``alpha`` confidence sequence of a mean over ``n`` units of per-unit ``variance``.

    >>> round(halfwidth(1.0, 5000, 0.05, mixture_rho(0.05, 5000)) / (1.96 / 5000 ** 0.5), 2)  # vs fixed-n 95 %
    1.55
    """
    nr2 = n * rho * rho
    return math.sqrt(variance * 2.0 * (nr2 + 1.0) / (n * nr2) * math.log(math.sqrt(nr2 + 1.0) / alpha))


def always_valid_p(estimate: float, se: float, n: float, rho: float) -> float:
    """The always-valid p-value of ``estimate = 0`` (1 / the mixture likelihood ratio, capped at 1; eq. 155)."""
    z2 = (estimate / se) ** 2
    nr2 = n * rho * rho
    log_e = nr2 * z2 / (2.0 * (nr2 + 1.0)) - 0.5 * math.log(nr2 + 1.0)
    return 1.0 if log_e <= 0.0 else math.exp(-log_e)


def relative_lift(control: ArmSummary, treatment: ArmSummary) -> tuple[float, float]:
    """``(lift, se)`` of ``treatment / control - 1`` by the delta method; ``control.value`` must not be 0.

    >>> lift, se = relative_lift(ArmSummary(100, 2.0, 0.1), ArmSummary(100, 3.0, 0.1))
    >>> lift, round(se, 4)
    (0.5, 0.0901)
    """
    c, t = control.value, treatment.value
    lift = t / c - 1.0
    variance = (treatment.se / c) ** 2 + (t * control.se / (c * c)) ** 2
    return lift, math.sqrt(variance)


def lift_test(control: ArmSummary, treatment: ArmSummary, alpha: float, rho: float) -> LiftTest | None:
    """The sequential test of the lift; ``None`` while it is undefined (a control of 0, no variation at all)."""
    if control.value == 0.0 or control.n < 2 or treatment.n < 2:
        return None
    lift, se = relative_lift(control, treatment)
    if not se > 0.0:
        return None
    n = control.n + treatment.n
    half = halfwidth(se * se * n, n, alpha, rho)
    return LiftTest(lift, se, (lift - half, lift + half), always_valid_p(lift, se, n, rho))


def planned_units(se: float, n: int, min_effect: float, alpha: float, rho: float, power: float = 0.8) -> int:
    """Units (both arms) at which a true lift of ``min_effect`` is detected with probability ``power``.

    Extrapolated from the lift's standard error ``se`` at ``n`` units: the smallest ``N`` with
    ``halfwidth(N) + z_power * sigma / sqrt(N) <= min_effect``, ``sigma^2 = n se^2``.

    >>> sigma2 = 0.16 / 0.64 + 0.16 / 0.64  # per-unit variance of the lift of 0.8 vs 0.8, both arms
    >>> planned_units((sigma2 / 1000) ** 0.5, 1000, 0.10, 0.05, mixture_rho(0.05, 5000))
    907
    """
    variance = se * se * n
    z = NormalDist().inv_cdf(power)

    def enough(units: int) -> bool:
        return halfwidth(variance, units, alpha, rho) + z * math.sqrt(variance / units) <= min_effect

    hi = 2
    while not enough(hi):
        if hi > 10**12:
            return hi
        hi *= 2
    lo = hi // 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if enough(mid) else (mid, hi)
    return hi
