"""Degradation of one arm: sequential change detection against the arm's own baseline, for any reward law.

The seed's rule (the last 20 invocations against the variant's baseline:
success rate down > 10 %, mean reward down > 15 %, error rate up > 20 %,
relative) is computed here as the *evidence* every rollback reports
(:meth:`DegradationDetector.evidence`). It is not the trigger: re-checked after
every invocation, a 20-event window on a stationary 90 % variant breaches it on
~13 % of looks. The trigger is a CUSUM per signal, which controls false alarms
under repeated looks.

Test
----
Three one-sided CUSUMs (Page 1954), each restarted whenever its statistic
falls to zero, any of which raises the alarm. All three are the same test, a
Bernoulli likelihood ratio on observations in [0, 1] for a fall of their mean
(Reynolds & Stoumbos 1999):

* **success** -- the outcome (1 or 0), for a relative drop ``success_shift``
  (0.25) of the success probability, ``p1 = p0 (1 - 0.25)``, threshold
  10.0 to 11.0 nats by the baseline's success rate (:data:`SUCCESS_THRESHOLD_KNOTS`);
* **reward** -- the reward itself as a fractional observation, for a relative
  drop ``reward_shift`` (the seed's 15 %) of the mean reward, threshold
  ``reward_threshold`` (12.0);
* **errors** -- the arm's event stream (an outcome counts 1, an error naming
  the variant 0) for an absolute rise ``error_shift`` (0.10) of the error
  fraction, threshold ``error_threshold`` (13.0). Pipeline errors never count.

Why the reward's law does not matter
------------------------------------
An observation ``x`` in [0, 1] adds ``g(x) = x log(p1/p0) + (1 - x) log((1 - p1)/(1 - p0))``.
``g`` is linear in ``x``, so ``exp(g)`` is convex and, for any law of ``x`` on [0, 1] with mean
``m >= p0``, ``E exp(g(x)) <= m p1/p0 + (1 - m)(1 - p1)/(1 - p0) <= 1``: the exponential of every
excursion sum is a nonnegative supermartingale whatever the reward's shape, skew or number of levels. By
Ville's inequality each start of an excursion reaches ``h`` with probability at most ``exp(-h)``, so the
average run length is at least ``exp(h)`` for every such law (Lorden 1971; the e-detectors of Shin,
Ramdas and Rinaldo 2023; the same convexity bound underlies the betting confidence sequences of
Waudby-Smith and Ramdas 2024). That bound is loose; the thresholds are simulated, on binary observations,
which are the worst case: round each ``x_i`` to ``B_i ~ Bernoulli(x_i)`` independently, so the ``B_i``
are independent Bernoulli(``m``) draws; ``g`` is linear, so every excursion sum of the ``x_i`` is the
conditional expectation of the same sum of the ``B_i``, and the CUSUM (a maximum of such sums) and its peak
over any horizon are at most the conditional expectation of those of the ``B_i`` (Jensen). The statistic on
any reward law is thus dominated in increasing convex order (Shaked & Shanthikumar 2007) by the statistic
on binary rewards with the same mean: a reward law on [0, 1] can only spread the statistic less than
binary rewards do, so binary rewards are where the thresholds are simulated. The argument is exact for a
known baseline; with the learned one below the grid checks it (binary rewards give the highest
false-alarm rates). A reward outside [0, 1] is rejected upstream (:mod:`processors.validation`); the
detector clips it.

The baseline ``p0`` is unknown and learned from the arm's own history. Two
choices keep its estimation error from turning into false alarms:

1. *Only settled data enter the baseline.* Observations of a running excursion
   (statistic > 0) are held as pending counts and committed to the baseline
   when the statistic returns to 0; on an alarm they are dropped. So a change
   never leaks into the baseline it is tested against, and the state stays
   O(1) (two counters per channel, no lag buffer).
2. *The baseline's uncertainty is integrated out* (a predictive, or
   self-starting, CUSUM in the spirit of Hawkins & Olwell 1998): the null
   likelihood of the ``s`` good and ``f`` bad of the excursion is the
   Beta-binomial marginal under the baseline posterior ``Beta(1 + S, 1 + F)``,
   ``log B(1 + S + s, 1 + F + f) - log B(1 + S, 1 + F)``, against the point
   alternative ``p1``, taken one observation at a time (a fractional
   observation adds ``x`` good and ``1 - x`` bad). For the reward, ``S`` and ``F``
   are sums of rewards and of their complements: a law on [0, 1] with mean
   ``mu`` has variance at most ``mu (1 - mu)`` (Bhatia & Davis 2000), the
   Bernoulli's, so this posterior is never narrower than the truth. With a thin
   baseline the marginal is wide and a run of failures is not surprising; with a
   long one the test becomes the classical Bernoulli CUSUM. Nothing fires before
   ``min_baseline`` (50) settled outcomes.

After an alarm the detector restarts from nothing: the arm's old baseline no
longer describes it.

Thresholds and the fleet budget
-------------------------------
The defaults are simulated for 5 false rollbacks per million stationary
invocations (1 % per 2,000) on binary rewards, the worst case, with a margin: the
success threshold is calibrated per baseline success rate so that a stationary arm
spends 0.25 % per 2,000 (more where the delay targets bind: 0.4 % from 0.93 to
0.97, about 0.55-0.65 % from 0.85 to 0.91; :data:`SUCCESS_THRESHOLD_KNOTS`), because a fixed 10 nats spent 0.2 % at p = 0.5 but 0.7-0.9 % at
p = 0.95 and samples of a few hundred runs then showed cells above 1 %. A CUSUM's false
alarms per invocation fall as ``exp(-h)``, so :func:`thresholds_for_budget`
raises all three thresholds by ``log(5 / budget)`` for a budget of ``budget``
false rollbacks per million invocations (``LearningSettings.fleet_false_rollbacks``,
counted over the whole fleet: docs/decision-rules.md, Fleet budget).

Measured (``tests/quality/rollback_grid.py``, 1,000 seeded runs per cell; success
rate p, five reward laws -- binary, continuous by outcome, five levels, constant,
skewed -- and 30 % of failures also report an error naming the variant),
beside a Bernoulli CUSUM on success that knows p0 (same shift and threshold):

=================================================  ==========  ====================  ==================
scenario (defaults)                                 target      measured              anchor
=================================================  ==========  ====================  ==================
false rollbacks per 2,000 stationary invocations    <= 1 %      0.18 % (p = 0.5) to   0.2 % to 0.7 %
(p in 0.5 ... 0.995, five laws pooled per p)                    0.46 % (p = 0.9)
median (p95) delay 0.95 -> 0.5 after 1,000          <= 15       14-15 (26)            14 (24-25)
median (p95) delay 0.9 -> 0.7 after 1,000           <= 60       58-61 (133-144)       53-56 (116-122)
median (p95) delay 0.95 -> 0.5 after 100            <= 25       21-22 (43-45)         14 (24-25)
=================================================  ==========  ====================  ==================

Per cell (1,000 runs each, standard error ~0.2 %) the rates run from 0.0 % to 0.8 %, the anchor's on the
same streams from 0.1 % to 1.0 %: the false rollbacks come from the success channel, which every reward
law shares, and the law moves the rates by less than that noise. A 0.9 -> 0.7 median has a standard error
of ~2 at 1,000 runs (57 on 8,000 runs of the success channel). With a known baseline the anchor is a few
invocations faster: that is the price of learning ``p0`` from 100 or 1,000 invocations.

Examples
--------
>>> det = DegradationDetector()
>>> alarms = [det.update(i % 10 != 0, 0.9 if i % 10 else 0.1) for i in range(300)]
>>> any(alarms)
False
>>> alarm = None
>>> for i in range(200):
...     alarm = det.update(i % 2 == 0, 0.5)
...     if alarm:
...         break
>>> alarm.channel, i < 30
('success', True)

References
----------
Page, E. S. (1954). Continuous inspection schemes. Biometrika 41(1/2), 100-115.
Reynolds, M. R. and Stoumbos, Z. G. (1999). A CUSUM chart for monitoring a proportion when inspecting
continuously. Journal of Quality Technology 31(1), 87-108.
Hawkins, D. M. and Olwell, D. H. (1998). Cumulative Sum Charts and Charting for Quality Improvement. Springer.
Bhatia, R. and Davis, C. (2000). A better bound on the variance. Amer. Math. Monthly 107(4), 353-357.
Lorden, G. (1971). Procedures for reacting to a change in distribution. Annals of Math. Statistics 42(6).
Ville, J. (1939). Etude critique de la notion de collectif. Gauthier-Villars.
Shin, J., Ramdas, A. and Rinaldo, A. (2023). E-detectors: a nonparametric framework for sequential change
detection. New England Journal of Statistics in Data Science 2(2), 229-260.
Waudby-Smith, I. and Ramdas, A. (2024). Estimating means of bounded random variables by betting. JRSS B 86(1).
Shaked, M. and Shanthikumar, J. G. (2007). Stochastic Orders. Springer (increasing convex order, ch. 4).
Siegmund, D. (1985). Sequential Analysis: Tests and Confidence Intervals. Springer.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from reverify.processors.base import pack_array, unpack_array

__all__ = [
    "DegradationAlarm",
    "DegradationDetector",
    "budget_nats",
    "format_reason",
    "success_threshold_at",
    "thresholds_for_budget",
]

REFERENCE_BUDGET = 5.0
"""False rollbacks per million stationary invocations the default thresholds are simulated for (1 % per 2,000)."""
SUCCESS_THRESHOLD = 10.0
REWARD_THRESHOLD = 12.0
ERROR_THRESHOLD = 13.0

#: The success CUSUM's threshold (nats) by the baseline's success rate, at the reference budget: the ``h`` at
#: which a stationary arm raises 0.25 % false rollbacks per 2,000 invocations (a quarter of the budget's 1 %, so
#: that samples of a few hundred runs stay below 1 % too), never below :data:`SUCCESS_THRESHOLD`. Where issue 15's
#: delay targets bind it spends more: 0.4 % from 0.93 to 0.97 (0.95 -> 0.5), 0.55 % at 0.91, and from 0.85 to 0.9
#: the reference 10 nats (about 0.55-0.65 %), because there each 0.1 nat costs a 0.9 -> 0.7 fall about one
#: invocation of median delay and its target (60) leaves none to spare. Simulated on binary observations by
#: ``tests/quality/rollback_calibration.py`` (40,000 runs per knot); linear between knots. A Bernoulli CUSUM's
#: false-alarm rate at a fixed ``h`` moves with ``p0`` (its steps and overshoot do): for ``h = 10``, 0.18 % at
#: 0.5, 0.66 % at 0.9, 0.71 % at 0.95, 0.15 % at 0.999.
SUCCESS_THRESHOLD_KNOTS: tuple[tuple[float, float], ...] = (
    (0.0, 10.0),
    (0.5, 10.0),
    (0.6, 10.3),
    (0.7, 10.35),
    (0.75, 10.65),
    (0.8, 10.65),
    (0.85, 10.0),
    (0.9, 10.0),
    (0.91, 10.25),
    (0.93, 10.6),
    (0.96, 10.6),
    (0.97, 10.5),
    (0.98, 11.0),
    (0.99, 10.6),
    (0.995, 10.45),
    (0.999, 10.0),
    (1.0, 10.0),
)


def success_threshold_at(p0: float, extra: float = 0.0) -> float:
    """The success CUSUM's threshold for a baseline success rate ``p0``, plus ``extra`` nats of budget.

    >>> success_threshold_at(0.5), success_threshold_at(0.96), round(success_threshold_at(0.91), 3)
    (10.0, 10.6, 10.25)
    """
    knots = SUCCESS_THRESHOLD_KNOTS
    for (x0, h0), (x1, h1) in zip(knots, knots[1:], strict=False):
        if p0 <= x1:
            return extra + h0 + (h1 - h0) * (max(p0, x0) - x0) / (x1 - x0)
    return extra + knots[-1][1]


def budget_nats(false_rollbacks_per_million: float) -> float:
    """Nats added to every threshold for a budget of ``false_rollbacks_per_million`` (0 at the reference).

    A CUSUM's false alarms per invocation fall as ``exp(-h)`` (its average run length grows as ``exp(h)``:
    Lorden 1971, Siegmund 1985), so a budget ``k`` times smaller costs ``log k`` nats on every channel.

    >>> round(budget_nats(0.05), 2)
    4.61
    """
    if not false_rollbacks_per_million > 0:
        raise ValueError(f"fleet_false_rollbacks = {false_rollbacks_per_million} must be > 0")
    return math.log(REFERENCE_BUDGET / false_rollbacks_per_million)


def thresholds_for_budget(false_rollbacks_per_million: float) -> tuple[float, float, float]:
    """The (budget nats, reward, errors) thresholds that spend ``false_rollbacks_per_million`` invocations.

    The success threshold is :func:`success_threshold_at` the arm's baseline plus the budget nats.

    >>> [round(h, 2) for h in thresholds_for_budget(0.05)]
    [4.61, 16.61, 17.61]
    """
    extra = budget_nats(false_rollbacks_per_million)
    return extra, REWARD_THRESHOLD + extra, ERROR_THRESHOLD + extra


@dataclass(slots=True)
class _BernoulliChannel:
    """Predictive Bernoulli CUSUM on observations in [0, 1] ("good" 1, "bad" 0), testing a fall of their mean.

    ``relative`` chooses the alternative: ``p1 = p0 (1 - shift)`` or ``p1 = p0 - shift``. A fractional
    observation ``x`` counts as ``x`` good and ``1 - x`` bad (module docstring: why that keeps the guarantee).
    """

    shift: float
    relative: bool
    good: float = 0
    bad: float = 0
    pending_good: float = 0
    pending_bad: float = 0
    statistic: float = 0.0
    started: int | None = None  # event time of the running excursion's first observation (None: at rest)

    @property
    def baseline_n(self) -> float:
        return self.good + self.bad

    @property
    def baseline_mean(self) -> float:
        """Mean of the settled observations (0 before any)."""
        n = self.good + self.bad
        return self.good / n if n else 0.0

    def observe(self, x: float, ts: int | None = None) -> float:
        at_rest = not self.statistic
        a, b = 1.0 + self.good, 1.0 + self.bad
        s, f = self.pending_good, self.pending_bad
        p0 = a / (a + b)
        p1 = p0 * (1.0 - self.shift) if self.relative else p0 - self.shift
        # Keep the alternative a proper probability strictly inside (0, 1).
        p1 = min(max(p1, 1e-6), 1.0 - 1e-6)
        # The statistic is log P1(excursion) - log P0(excursion), P0 the Beta(a, b)-binomial predictive
        # B(a + s, b + f) / B(a, b). The baseline is fixed during an excursion, so each observation adds its
        # own term: log p1 (or log(1 - p1)) less the sequential predictive (a + s) / (a + b + s + f); a fractional
        # observation adds the same terms weighted by x and 1 - x.
        n = a + b + s + f
        if x >= 1.0:
            ratio = p1 * n / (a + s)
            if ratio <= 1.0 and not self.statistic:
                # At rest, a good observation takes the statistic to log(ratio) <= 0, so it ends there at once:
                # commit() of that one observation, without the log (most observations of a healthy arm).
                self.good += 1
                return 0.0
            self.statistic += math.log(ratio)
            self.pending_good = s + 1
        elif x <= 0.0:
            self.statistic += math.log((1.0 - p1) * n / (b + f))
            self.pending_bad = f + 1
        else:
            self.statistic += x * math.log(p1 * n / (a + s)) + (1.0 - x) * math.log((1.0 - p1) * n / (b + f))
            self.pending_good = s + x
            self.pending_bad = f + 1.0 - x
        if self.statistic <= 0.0:
            self.commit()  # the excursion ended: its data are settled and join the baseline
        elif at_rest:
            self.started = ts  # Page's change-point estimate: the run the alarm will be about begins here
        return self.statistic

    def commit(self) -> None:
        self.good += self.pending_good
        self.bad += self.pending_bad
        self.pending_good = self.pending_bad = 0
        self.statistic = 0.0
        self.started = None

    @property
    def run_length(self) -> float:
        """Observations in the running excursion (a fractional observation counts once)."""
        return self.pending_good + self.pending_bad

    def to_list(self) -> list[float]:
        saved = [self.good, self.bad, self.pending_good, self.pending_bad, self.statistic]
        return saved if self.started is None else [*saved, self.started]


@dataclass(frozen=True, slots=True)
class DegradationAlarm:
    """Which CUSUM fired, its statistic and threshold, and the seed's window evidence.

    ``metrics`` also says where the degraded run began: ``run_length`` observations, the first at event time
    ``run_started_at`` (when the outcomes carried one). That is the first evidence of the failure an incident's
    MTTR counts from (:mod:`processors.incidents`), earlier than the alarm by the detection delay.
    """

    channel: str
    statistic: float
    threshold: float
    metrics: dict[str, float]

    @property
    def run_started_at(self) -> int | None:
        """Event time of the first observation of the excursion that fired (``None`` if not known)."""
        started = self.metrics.get("run_started_at")
        return None if started is None else int(started)

    @property
    def trigger(self) -> str:
        """``cusum:success``, ``cusum:errors`` or ``cusum:reward`` (the Rollback ``trigger`` field)."""
        return f"cusum:{self.channel}"

    @property
    def reason(self) -> str:
        """A sentence in the seed's words, e.g. ``Success rate dropped from 90% to 75% (16.7% drop)``."""
        return format_reason(self.channel, self.metrics)


def format_reason(channel: str, m: dict[str, float]) -> str:
    """The rollback reason for the channel that fired, from the window evidence.

    >>> format_reason("success", {"baseline_success_rate": 0.9, "recent_success_rate": 0.75})
    'Success rate dropped from 90% to 75% (16.7% drop)'
    """
    if channel == "reward":
        base, recent = m["baseline_reward_mean"], m["recent_reward_mean"]
        drop = (base - recent) / base if base > 0 else 0.0
        return f"Mean reward dropped from {base:.2f} to {recent:.2f} ({drop:.1%} drop)"
    if channel == "errors":
        base, recent = m["baseline_error_rate"], m["recent_error_rate"]
        return f"Error rate rose from {base:.0%} to {recent:.0%}"
    base, recent = m["baseline_success_rate"], m["recent_success_rate"]
    drop = (base - recent) / base if base > 0 else 0.0
    return f"Success rate dropped from {base:.0%} to {recent:.0%} ({drop:.1%} drop)"


@dataclass(slots=True)
class DegradationDetector:
    """Sequential degradation test of one arm; see the module docstring for the design and its figures.

    Parameters
    ----------
    success_shift
        Relative fall of the success probability the success CUSUM is tuned to.
    success_threshold
        Alarm threshold of the success CUSUM (log-likelihood ratio, nats); None (the default): calibrated for
        the baseline's success rate (:func:`success_threshold_at`) plus ``threshold_nats``.
    threshold_nats
        Nats of the fleet budget added to the calibrated success threshold (:func:`budget_nats`).
    error_shift, error_threshold
        Absolute rise of the error fraction, and the threshold, of the error CUSUM.
    reward_shift, reward_threshold
        Relative fall of the mean reward (the seed's 15 %), and the threshold, of the reward CUSUM.
    min_baseline
        Settled outcomes needed before any alarm.
    window
        Length of the seed's evidence window (20).
    """

    success_shift: float = 0.25
    success_threshold: float | None = None
    threshold_nats: float = 0.0
    error_shift: float = 0.10
    error_threshold: float = ERROR_THRESHOLD
    reward_shift: float = 0.15
    reward_threshold: float = REWARD_THRESHOLD
    min_baseline: int = 50
    window: int = 20
    _success: _BernoulliChannel = field(init=False, repr=False)
    _errors: _BernoulliChannel = field(init=False, repr=False)
    _reward: _BernoulliChannel = field(init=False, repr=False)
    _recent: deque[tuple[bool, float]] = field(init=False, repr=False)
    _recent_events: deque[bool] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget everything: the next outcomes build a new baseline (after an alarm, or on demand)."""
        self._success = _BernoulliChannel(self.success_shift, relative=True)
        self._errors = _BernoulliChannel(self.error_shift, relative=False)
        self._reward = _BernoulliChannel(self.reward_shift, relative=True)
        self._recent = deque(maxlen=self.window)
        self._recent_events = deque(maxlen=self.window)

    @property
    def baseline_n(self) -> int:
        """Settled outcomes in the baseline."""
        return self._success.baseline_n

    def success_limit(self) -> float:
        """The success CUSUM's threshold now: the set one, or the calibration's for the current baseline."""
        if self.success_threshold is not None:
            return self.success_threshold
        a, b = 1.0 + self._success.good, 1.0 + self._success.bad
        return success_threshold_at(a / (a + b), self.threshold_nats)

    @property
    def armed(self) -> bool:
        """True once the baseline has ``min_baseline`` settled outcomes."""
        return self._success.baseline_n >= self.min_baseline

    def statistics(self) -> dict[str, float]:
        """Current value of each CUSUM."""
        return {
            "success": self._success.statistic,
            "errors": self._errors.statistic,
            "reward": self._reward.statistic,
        }

    def update(self, success: bool, reward: float, ts: int | None = None) -> DegradationAlarm | None:
        """Apply one outcome (of event time ``ts``, when known); return the alarm if a CUSUM crossed its threshold
        (the detector then resets)."""
        success, reward = bool(success), float(reward)
        armed = self.armed
        self._recent.append((success, reward))
        self._recent_events.append(False)
        s = self._success.observe(success, ts)
        e = self._errors.observe(True, ts)
        r = self._reward.observe(min(max(reward, 0.0), 1.0), ts)
        if not armed:
            # Warm-up: everything observed is baseline; no excursion is held back.
            self._success.commit()
            self._errors.commit()
            self._reward.commit()
            return None
        # Every calibrated threshold is >= SUCCESS_THRESHOLD + threshold_nats: most looks stop at that test.
        if s > SUCCESS_THRESHOLD + self.threshold_nats or self.success_threshold is not None:
            limit = self.success_limit()
            if s > limit:
                return self._fire("success", s, limit)
        if r > self.reward_threshold:
            return self._fire("reward", r, self.reward_threshold)
        if e > self.error_threshold:
            return self._fire("errors", e, self.error_threshold)
        return None

    def record_error(self, ts: int | None = None) -> DegradationAlarm | None:
        """Apply one error event naming the arm (never a pipeline error)."""
        armed = self.armed
        self._recent_events.append(True)
        e = self._errors.observe(False, ts)
        if not armed:
            self._errors.commit()
            return None
        if e > self.error_threshold:
            return self._fire("errors", e, self.error_threshold)
        return None

    def _fire(self, channel: str, statistic: float, threshold: float) -> DegradationAlarm:
        metrics = self.evidence()
        metrics["statistic"] = statistic
        metrics["threshold"] = threshold
        run = {"success": self._success, "errors": self._errors, "reward": self._reward}[channel]
        metrics["run_length"] = float(run.run_length)
        if run.started is not None:
            metrics["run_started_at"] = float(run.started)
        alarm = DegradationAlarm(channel, statistic, threshold, metrics)
        self.reset()
        return alarm

    def evidence(self) -> dict[str, float]:
        """The seed's window rule as numbers: baseline vs the last ``window`` invocations (relative changes)."""
        sc, ec, rc = self._success, self._errors, self._reward
        base_n = sc.good + sc.bad
        base_sr = sc.good / base_n if base_n else 0.0
        recent_n = len(self._recent)
        recent_sr = sum(1 for ok, _ in self._recent if ok) / recent_n if recent_n else 0.0
        recent_rm = sum(r for _, r in self._recent) / recent_n if recent_n else 0.0
        base_rm = rc.baseline_mean
        base_events = ec.good + ec.bad
        base_er = ec.bad / base_events if base_events else 0.0
        n_events = len(self._recent_events)
        recent_er = sum(self._recent_events) / n_events if n_events else 0.0
        # An error-free baseline would make any relative increase infinite; one event's worth is the floor.
        er_floor = max(base_er, 1.0 / (base_events + 1))
        stats = self.statistics()
        return {
            "baseline_success_rate": base_sr,
            "recent_success_rate": recent_sr,
            "success_drop_pct": (base_sr - recent_sr) / base_sr if base_sr > 0 else 0.0,
            "baseline_reward_mean": base_rm,
            "recent_reward_mean": recent_rm,
            "reward_drop_pct": (base_rm - recent_rm) / base_rm if base_rm > 0 else 0.0,
            "baseline_error_rate": base_er,
            "recent_error_rate": recent_er,
            "error_increase_pct": (recent_er - base_er) / er_floor,
            "sample_size": float(recent_n),
            "baseline_size": float(base_n),
            "statistic": max(stats.values()),
            "threshold": self.success_limit(),
        }

    def window_breached(
        self, success_drop: float = 0.10, reward_drop: float = 0.15, error_increase: float = 0.20
    ) -> bool:
        """Whether the seed's 20-window rule is met now (reported, never the trigger)."""
        if len(self._recent) < self.window or self._success.baseline_n == 0:
            return False
        m = self.evidence()
        return (
            m["success_drop_pct"] > success_drop
            or m["reward_drop_pct"] > reward_drop
            or m["error_increase_pct"] > error_increase
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible state (the parameters come from the settings on restore)."""
        sc, ec, rc = self._success, self._errors, self._reward
        return {
            "success": sc.to_list(),
            "errors": ec.to_list(),
            "reward": rc.to_list(),
            # Compact forms ("1"/"0" text, packed floats): the state is written to the changelog often.
            "recent_ok": "".join("1" if ok else "0" for ok, _ in self._recent),
            "recent_reward": pack_array(np.fromiter((r for _, r in self._recent), float, len(self._recent))),
            "recent_events": "".join("1" if e else "0" for e in self._recent_events),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], **params: Any) -> DegradationDetector:
        """Restore :meth:`to_dict` output; ``params`` are the constructor parameters."""
        det = cls(**params)
        det._success = _count_channel(data["success"], det.success_shift, True)
        det._errors = _count_channel(data["errors"], det.error_shift, False)
        det._reward = _reward_channel(data["reward"], det.reward_shift)
        if "recent" in data:  # state written before the compact form
            recent = [(bool(ok), float(r)) for ok, r in data["recent"]]
        else:
            rewards = unpack_array(data["recent_reward"]).tolist()
            recent = [(ch == "1", r) for ch, r in zip(data["recent_ok"], rewards, strict=True)]
        det._recent = deque(recent, maxlen=det.window)
        events = data["recent_events"]
        flags = (ch == "1" for ch in events) if isinstance(events, str) else (bool(x) for x in events)
        det._recent_events = deque(flags, maxlen=det.window)
        return det


def _started(saved: list[float]) -> int | None:
    """The excursion's start from a saved channel list (absent at rest, and in state written before it was kept)."""
    return int(saved[5]) if len(saved) > 5 else None


def _count_channel(saved: list[float], shift: float, relative: bool) -> _BernoulliChannel:
    """The success or error channel from its saved list (integer counts).

    >>> _count_channel([40, 2, 3, 1, 1.5, 1700], 0.25, True).started
    1700
    """
    g, b, pg, pb, st = saved[:5]
    return _BernoulliChannel(shift, relative, int(g), int(b), int(pg), int(pb), float(st), _started(saved))


def _reward_channel(saved: list[float], shift: float) -> _BernoulliChannel:
    """The reward channel from its saved list; state of the Gaussian channel it replaced is converted.

    That state, ``[n, mean, m2, pending_n, pending_sum, pending_sq, statistic]``, becomes a baseline of
    ``n + pending_n`` observations with the same total reward: the Gaussian statistic has no meaning for the
    new test, so a running excursion restarts from the settled baseline.

    >>> _reward_channel([10, 0.8, 0.4, 2, 1.0, 0.6, 3.5], 0.15).to_list()
    [9.0, 3.0, 0.0, 0.0, 0.0]
    """
    if len(saved) == 7:
        n, mean, _, pending_n, pending_sum, _, _ = saved
        good = float(n) * float(mean) + float(pending_sum)
        return _BernoulliChannel(shift, True, good, float(n) + float(pending_n) - good, 0.0, 0.0)
    g, b, pg, pb, st = saved[:5]
    return _BernoulliChannel(shift, True, float(g), float(b), float(pg), float(pb), float(st), _started(saved))
