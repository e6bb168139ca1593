"""The degradation detector: evidence numbers, pipeline errors, state, and the seeded false-alarm / delay simulation."""

from __future__ import annotations

import json
import math
import random
import statistics

import pytest
from reverify.processors.degradation import DegradationDetector, _BernoulliChannel, format_reason

RUNS = 500
HEALTHY = 1_000  # invocations of healthy history before the change in the delay scenarios


def _invoke(det: DegradationDetector, rng: random.Random, p: float) -> bool:
    """One simulated invocation: success w.p. p, reward 0.7 + 0.3U on success and 0.3U on failure,
    and 30 % of failures also report an AgentError naming the variant. Returns True on an alarm."""
    ok = rng.random() < p
    reward = 0.7 + 0.3 * rng.random() if ok else 0.3 * rng.random()
    if det.update(ok, reward) is not None:
        return True
    return not ok and rng.random() < 0.3 and det.record_error() is not None


def _first_alarm(rng: random.Random, p_before: float, p_after: float, change: int, horizon: int) -> int | None:
    det = DegradationDetector()
    for t in range(horizon):
        if _invoke(det, rng, p_before if t < change else p_after):
            return t
    return None


def test_seed_reason_text() -> None:
    assert format_reason("success", {"baseline_success_rate": 0.90, "recent_success_rate": 0.75}) == (
        "Success rate dropped from 90% to 75% (16.7% drop)"
    )
    assert format_reason("reward", {"baseline_reward_mean": 0.8, "recent_reward_mean": 0.6}) == (
        "Mean reward dropped from 0.80 to 0.60 (25.0% drop)"
    )


def test_evidence_reports_the_seed_window_rule() -> None:
    det = DegradationDetector()
    for i in range(200):
        det.update(i % 10 != 0, 0.8 if i % 10 else 0.2)
    for i in range(20):
        det.update(i % 4 != 0, 0.8 if i % 4 else 0.2)  # 75 % in the last 20
    m = det.evidence()
    assert m["baseline_success_rate"] == pytest.approx(0.9, abs=0.02)
    assert m["recent_success_rate"] == pytest.approx(0.75)
    assert m["sample_size"] == 20
    assert m["success_drop_pct"] == pytest.approx((m["baseline_success_rate"] - 0.75) / m["baseline_success_rate"])
    assert det.window_breached()
    expected = {"baseline_reward_mean", "recent_reward_mean", "reward_drop_pct", "baseline_error_rate"}
    assert expected | {"recent_error_rate", "error_increase_pct", "statistic", "threshold"} <= set(m)


def test_no_alarm_during_warm_up_and_reset_after_alarm() -> None:
    det = DegradationDetector()
    for _ in range(det.min_baseline - 1):
        assert det.update(False, 0.0) is None  # a terrible start is the baseline, not a change
    det = DegradationDetector()
    for _ in range(100):
        det.update(True, 0.9)
    alarm = None
    for _ in range(50):
        alarm = det.update(False, 0.0)
        if alarm:
            break
    assert alarm is not None and alarm.channel == "success"
    assert alarm.statistic > alarm.threshold == det.success_threshold
    assert alarm.metrics["statistic"] == alarm.statistic
    assert det.baseline_n == 0 and not det.armed  # the old baseline no longer describes the arm


def test_errors_alone_can_fire() -> None:
    det = DegradationDetector()
    for _ in range(200):
        det.update(True, 0.9)
    fired = None
    for _ in range(100):
        det.update(True, 0.9)
        fired = det.record_error() or det.record_error()
        if fired:
            break
    assert fired is not None and fired.channel == "errors"
    assert fired.reason.startswith("Error rate rose from 0% to")


def test_bernoulli_channel_is_the_predictive_cusum_recursion() -> None:
    """The channel (with its shortcut for a good observation at rest) against the recursion written out plainly."""
    for relative, shift in ((True, 0.25), (False, 0.10)):
        channel = _BernoulliChannel(shift, relative)
        good = bad = pending_good = pending_bad = 0
        stat = 0.0
        rng = random.Random(3)
        excursions = 0
        for t in range(20_000):
            ok = rng.random() < (0.9 if t % 4_000 < 3_000 else 0.55)  # healthy stretches, then falls
            a, b = 1.0 + good, 1.0 + bad
            p0 = a / (a + b)
            p1 = min(max(p0 * (1.0 - shift) if relative else p0 - shift, 1e-6), 1.0 - 1e-6)
            n = a + b + pending_good + pending_bad
            if ok:
                stat += math.log(p1 * n / (a + pending_good))
                pending_good += 1
            else:
                stat += math.log((1.0 - p1) * n / (b + pending_bad))
                pending_bad += 1
            if stat <= 0.0:
                good, bad, pending_good, pending_bad, stat = good + pending_good, bad + pending_bad, 0, 0, 0.0
            excursions += stat > 0.0
            assert channel.observe(ok) == stat
            assert (channel.good, channel.bad, channel.pending_good, channel.pending_bad) == (
                good,
                bad,
                pending_good,
                pending_bad,
            )
        assert excursions > 1_000  # the statistic was away from rest often, not just in the shortcut


def test_round_trip_keeps_the_statistics() -> None:
    rng = random.Random(1)
    det = DegradationDetector()
    for _ in range(300):
        _invoke(det, rng, 0.85)
    clone = DegradationDetector.from_dict(json.loads(json.dumps(det.to_dict())))
    assert clone.to_dict() == det.to_dict()
    rng_a, rng_b = random.Random(2), random.Random(2)
    assert [_invoke(det, rng_a, 0.6) for _ in range(200)] == [_invoke(clone, rng_b, 0.6) for _ in range(200)]


@pytest.mark.slow
def test_false_alarms_and_delays_meet_the_targets() -> None:
    rng = random.Random(20251119)
    false_alarms = sum(_first_alarm(rng, 0.9, 0.9, 10**9, 2_000) is not None for _ in range(RUNS))
    fa_rate = false_alarms / RUNS

    def delays(p_before: float, p_after: float) -> tuple[list[int], int]:
        out, early = [], 0
        for _ in range(RUNS):
            t = _first_alarm(rng, p_before, p_after, HEALTHY, HEALTHY + 500)
            if t is not None and t < HEALTHY:
                early += 1  # a false alarm before the change: not a detection
                continue
            out.append(t - HEALTHY + 1 if t is not None else 10**6)
        return out, early

    d_small, early_small = delays(0.9, 0.7)
    d_big, early_big = delays(0.95, 0.5)
    med_small, med_big = statistics.median(d_small), statistics.median(d_big)
    p95_big = sorted(d_big)[int(0.95 * len(d_big))]
    print(
        f"\nfalse alarms per 2,000 stationary invocations (p=0.9): {fa_rate:.1%} ({false_alarms}/{RUNS})"
        f"\n0.9 -> 0.7 after {HEALTHY} healthy: median delay {med_small} (early alarms {early_small})"
        f"\n0.95 -> 0.5 after {HEALTHY} healthy: median delay {med_big}, p95 {p95_big} (early alarms {early_big})"
    )
    assert fa_rate <= 0.02
    assert med_small <= 50
    assert med_big <= 15
