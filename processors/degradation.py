"""Degradation of one arm: sequential change detection against the arm's own baseline.

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
falls to zero, any of which raises the alarm:

* **success** -- a Bernoulli CUSUM (Reynolds & Stoumbos 1999) for a relative
  drop ``success_shift`` (0.25) of the success probability, ``p1 = p0 (1 - 0.25)``,
  threshold ``success_threshold`` (9.3 nats);
* **errors** -- the same test on the arm's event stream (an outcome counts 0,
  an error naming the variant counts 1) for an absolute rise ``error_shift``
  (0.10) of the error fraction, threshold ``error_threshold`` (12.0);
* **reward** -- Page's Gaussian CUSUM for a mean drop of ``reward_shift`` (the
  seed's 15 %) of the baseline mean, scaled by the largest variance a reward
  in [0, 1] with that mean can have, ``mu (1 - mu)`` (Bhatia & Davis 2000), so
  a thin baseline never understates the noise; threshold ``reward_threshold`` (20.0).

The baseline ``p0`` is unknown and learned from the arm's own history. Two
choices keep its estimation error from turning into false alarms:

1. *Only settled data enter the baseline.* Observations of a running excursion
   (statistic > 0) are held as pending counts and committed to the baseline
   when the statistic returns to 0; on an alarm they are dropped. So a change
   never leaks into the baseline it is tested against, and the state stays
   O(1) (two counters per channel, no lag buffer).
2. *The baseline's uncertainty is integrated out* (a predictive, or
   self-starting, CUSUM in the spirit of Hawkins & Olwell 1998): the null
   likelihood of the ``s`` successes and ``f`` failures of the excursion is the
   Beta-binomial marginal under the baseline posterior ``Beta(1 + S, 1 + F)``,
   ``log B(1 + S + s, 1 + F + f) - log B(1 + S, 1 + F)``, against the point
   alternative ``p1``. With a thin baseline the marginal is wide and a run of
   failures is not surprising; with a long one the test becomes the classical
   Bernoulli CUSUM. Nothing fires before ``min_baseline`` (50) settled outcomes.

After an alarm the detector restarts from nothing: the arm's old baseline no
longer describes it.

Measured (``tests/unit/test_degradation.py``, 500 seeded runs each; the
invocation outcome is success with probability p, its reward is ``0.7 + 0.3 U``
on success and ``0.3 U`` on failure, and 30 % of failures also report an error
naming the variant):

====================================================  ==========  =============
scenario (defaults)                                    target      measured
====================================================  ==========  =============
false alarms, 2,000 invocations, stationary p = 0.9    <= 2 %      2.0 %
median delay 0.9 -> 0.7 after 1,000 healthy            <= 50       50
median delay 0.95 -> 0.5 after 1,000 healthy           <= 15       12 (p95 22)
====================================================  ==========  =============

With a shorter healthy history the baseline is less certain and detection is
slower (0.9 -> 0.7 after 200 healthy invocations: median ~70; 0.95 -> 0.5:
~13). A known baseline would give the classical figures (Bernoulli CUSUM,
``p1 = 0.675``, h = 9: 1.5 % false alarms, median delay 46).

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
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from reverify.processors.base import pack_array, unpack_array

__all__ = ["DegradationAlarm", "DegradationDetector", "format_reason"]


@dataclass(slots=True)
class _BernoulliChannel:
    """Predictive Bernoulli CUSUM on "good" (1) / "bad" (0) observations, testing a fall of P(good).

    ``relative`` chooses the alternative: ``p1 = p0 (1 - shift)`` or ``p1 = p0 - shift``.
    """

    shift: float
    relative: bool
    good: int = 0
    bad: int = 0
    pending_good: int = 0
    pending_bad: int = 0
    statistic: float = 0.0

    @property
    def baseline_n(self) -> int:
        return self.good + self.bad

    def observe(self, good: bool) -> float:
        a, b = 1.0 + self.good, 1.0 + self.bad
        s, f = self.pending_good, self.pending_bad
        p0 = a / (a + b)
        p1 = p0 * (1.0 - self.shift) if self.relative else p0 - self.shift
        # Keep the alternative a proper probability strictly inside (0, 1).
        p1 = min(max(p1, 1e-6), 1.0 - 1e-6)
        # The statistic is log P1(excursion) - log P0(excursion), P0 the Beta(a, b)-binomial predictive
        # B(a + s, b + f) / B(a, b). The baseline is fixed during an excursion, so each observation adds its
        # own term: log p1 (or log(1 - p1)) less the sequential predictive (a + s) / (a + b + s + f).
        n = a + b + s + f
        if good:
            ratio = p1 * n / (a + s)
            if ratio <= 1.0 and not self.statistic:
                # At rest, a good observation takes the statistic to log(ratio) <= 0, so it ends there at once:
                # commit() of that one observation, without the log (most observations of a healthy arm).
                self.good += 1
                return 0.0
            self.statistic += math.log(ratio)
            self.pending_good = s + 1
        else:
            self.statistic += math.log((1.0 - p1) * n / (b + f))
            self.pending_bad = f + 1
        if self.statistic <= 0.0:
            self.commit()  # the excursion ended: its data are settled and join the baseline
        return self.statistic

    def commit(self) -> None:
        self.good += self.pending_good
        self.bad += self.pending_bad
        self.pending_good = self.pending_bad = 0
        self.statistic = 0.0


@dataclass(slots=True)
class _GaussianChannel:
    """Page's CUSUM for a fall of a mean by ``shift`` x baseline mean, with a plug-in baseline."""

    shift: float
    n: int = 0
    mean: float = 0.0
    m2: float = 0.0
    pending_n: int = 0
    pending_sum: float = 0.0
    pending_sq: float = 0.0
    statistic: float = 0.0

    def observe(self, x: float, armed: bool) -> float:
        self.pending_n += 1
        self.pending_sum += x
        self.pending_sq += x * x
        if armed and self.n > 1:
            # Scale by the largest variance a [0, 1] reward with this mean can have (Bhatia & Davis 2000):
            # a thin or lucky baseline then never understates the noise, which would make the test fire.
            var = max(self.mean * (1.0 - self.mean), 1e-3)
            delta = self.shift * self.mean
            self.statistic = max(0.0, self.statistic + delta * (self.mean - x - delta / 2.0) / var)
        else:
            self.statistic = 0.0
        if self.statistic <= 0.0:
            self.commit()
        return self.statistic

    def commit(self) -> None:
        # Chan et al. (1979) merge of the pending batch into the Welford baseline.
        nb = self.pending_n
        if nb:
            mean_b = self.pending_sum / nb
            m2_b = max(self.pending_sq - nb * mean_b * mean_b, 0.0)
            total = self.n + nb
            d = mean_b - self.mean
            self.m2 += m2_b + d * d * self.n * nb / total
            self.mean += d * nb / total
            self.n = total
        self.pending_n = 0
        self.pending_sum = self.pending_sq = 0.0
        self.statistic = 0.0


@dataclass(frozen=True, slots=True)
class DegradationAlarm:
    """Which CUSUM fired, its statistic and threshold, and the seed's window evidence."""

    channel: str
    statistic: float
    threshold: float
    metrics: dict[str, float]

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
        Alarm threshold of the success CUSUM (log-likelihood ratio, nats).
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
    success_threshold: float = 9.3
    error_shift: float = 0.10
    error_threshold: float = 12.0
    reward_shift: float = 0.15
    reward_threshold: float = 20.0
    min_baseline: int = 50
    window: int = 20
    _success: _BernoulliChannel = field(init=False, repr=False)
    _errors: _BernoulliChannel = field(init=False, repr=False)
    _reward: _GaussianChannel = field(init=False, repr=False)
    _recent: deque[tuple[bool, float]] = field(init=False, repr=False)
    _recent_events: deque[bool] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget everything: the next outcomes build a new baseline (after an alarm, or on demand)."""
        self._success = _BernoulliChannel(self.success_shift, relative=True)
        self._errors = _BernoulliChannel(self.error_shift, relative=False)
        self._reward = _GaussianChannel(self.reward_shift)
        self._recent = deque(maxlen=self.window)
        self._recent_events = deque(maxlen=self.window)

    @property
    def baseline_n(self) -> int:
        """Settled outcomes in the baseline."""
        return self._success.baseline_n

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

    def update(self, success: bool, reward: float) -> DegradationAlarm | None:
        """Apply one outcome; return the alarm if a CUSUM crossed its threshold (the detector then resets)."""
        success, reward = bool(success), float(reward)
        armed = self.armed
        self._recent.append((success, reward))
        self._recent_events.append(False)
        s = self._success.observe(success)
        e = self._errors.observe(True)
        r = self._reward.observe(reward, armed)
        if not armed:
            # Warm-up: everything observed is baseline; no excursion is held back.
            self._success.commit()
            self._errors.commit()
            return None
        if s > self.success_threshold:
            return self._fire("success", s, self.success_threshold)
        if r > self.reward_threshold:
            return self._fire("reward", r, self.reward_threshold)
        if e > self.error_threshold:
            return self._fire("errors", e, self.error_threshold)
        return None

    def record_error(self) -> DegradationAlarm | None:
        """Apply one error event naming the arm (never a pipeline error)."""
        armed = self.armed
        self._recent_events.append(True)
        e = self._errors.observe(False)
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
            "baseline_reward_mean": rc.mean,
            "recent_reward_mean": recent_rm,
            "reward_drop_pct": (rc.mean - recent_rm) / rc.mean if rc.mean > 0 else 0.0,
            "baseline_error_rate": base_er,
            "recent_error_rate": recent_er,
            "error_increase_pct": (recent_er - base_er) / er_floor,
            "sample_size": float(recent_n),
            "baseline_size": float(base_n),
            "statistic": max(stats.values()),
            "threshold": self.success_threshold,
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
            "success": [sc.good, sc.bad, sc.pending_good, sc.pending_bad, sc.statistic],
            "errors": [ec.good, ec.bad, ec.pending_good, ec.pending_bad, ec.statistic],
            "reward": [rc.n, rc.mean, rc.m2, rc.pending_n, rc.pending_sum, rc.pending_sq, rc.statistic],
            # Compact forms ("1"/"0" text, packed floats): the state is written to the changelog often.
            "recent_ok": "".join("1" if ok else "0" for ok, _ in self._recent),
            "recent_reward": pack_array(np.fromiter((r for _, r in self._recent), float, len(self._recent))),
            "recent_events": "".join("1" if e else "0" for e in self._recent_events),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], **params: Any) -> DegradationDetector:
        """Restore :meth:`to_dict` output; ``params`` are the constructor parameters."""
        det = cls(**params)
        g, b, pg, pb, st = data["success"]
        det._success = _BernoulliChannel(det.success_shift, True, int(g), int(b), int(pg), int(pb), float(st))
        g, b, pg, pb, st = data["errors"]
        det._errors = _BernoulliChannel(det.error_shift, False, int(g), int(b), int(pg), int(pb), float(st))
        n, mean, m2, pn, ps, pq, st = data["reward"]
        det._reward = _GaussianChannel(
            det.reward_shift, int(n), float(mean), float(m2), int(pn), float(ps), float(pq), float(st)
        )
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
