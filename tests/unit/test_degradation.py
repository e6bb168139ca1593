"""The degradation detector: evidence numbers, pipeline errors, state, and the seeded false-alarm / delay simulation."""

from __future__ import annotations

import json
import math
import random
import statistics

import numpy as np
import pytest
from reverify.processors.degradation import (
    REFERENCE_BUDGET,
    SUCCESS_THRESHOLD_KNOTS,
    DegradationDetector,
    _BernoulliChannel,
    format_reason,
    success_threshold_at,
    thresholds_for_budget,
)
from reverify.processors.learning import LearningSettings

from tests.quality import rollback_calibration as calibration
from tests.quality import rollback_grid as grid

FAST_RUNS = 40  # per cell of the false-alarm grid here; tests/quality/rollback_grid.py runs 400
DELAY_RUNS = 600


def _invoke(det: DegradationDetector, rng: random.Random, p: float) -> bool:
    """One simulated invocation: success w.p. p, reward 0.7 + 0.3U on success and 0.3U on failure,
    and 30 % of failures also report an AgentError naming the variant. Returns True on an alarm."""
    ok = rng.random() < p
    reward = 0.7 + 0.3 * rng.random() if ok else 0.3 * rng.random()
    if det.update(ok, reward) is not None:
        return True
    return not ok and rng.random() < 0.3 and det.record_error() is not None


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
    assert alarm.statistic > alarm.threshold >= 10.0
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


def test_fractional_observations_weigh_both_terms() -> None:
    """A reward x adds x of the good term and 1 - x of the bad one; 0 and 1 are the Bernoulli channel's steps."""
    frac, plain = _BernoulliChannel(0.15, True), _BernoulliChannel(0.15, True)
    for i in range(300):
        frac.observe(1.0 if i % 10 else 0.0)
        plain.observe(i % 10 != 0)
    assert frac.to_list() == plain.to_list()
    a, b = 1.0 + frac.good, 1.0 + frac.bad
    p1 = a / (a + b) * 0.85
    x = 0.3
    expected = x * math.log(p1 * (a + b) / a) + (1 - x) * math.log((1 - p1) * (a + b) / b)
    assert frac.observe(x) == pytest.approx(expected)
    assert (frac.pending_good, frac.pending_bad) == pytest.approx((0.3, 0.7))


def test_state_of_the_gaussian_reward_channel_still_loads() -> None:
    """State written before the distribution-free reward channel: its baseline is kept, its excursion restarts."""
    rng = random.Random(4)
    det = DegradationDetector()
    for _ in range(300):
        _invoke(det, rng, 0.9)
    old = json.loads(json.dumps(det.to_dict()))
    old["reward"] = [300, 0.78, 12.0, 3, 2.1, 1.6, 4.2]  # [n, mean, m2, pending n, sum, sum of squares, statistic]
    restored = DegradationDetector.from_dict(old)
    assert restored.to_dict()["reward"] == pytest.approx([300 * 0.78 + 2.1, 303 - 300 * 0.78 - 2.1, 0, 0, 0])
    assert restored.evidence()["baseline_reward_mean"] == pytest.approx((300 * 0.78 + 2.1) / 303)
    alarms = [restored.update(False, 0.0) for _ in range(50)]  # and it goes on deciding: a collapse fires
    assert any(alarm is not None and alarm.channel in ("success", "reward") for alarm in alarms)


def test_the_fleet_budget_sets_every_threshold() -> None:
    default = LearningSettings().detector_params()
    assert (default["threshold_nats"], default["reward_threshold"], default["error_threshold"]) == (
        thresholds_for_budget(REFERENCE_BUDGET)
    )
    assert default["threshold_nats"] == 0.0 and default["success_threshold"] is None  # calibrated by baseline
    tight = LearningSettings(fleet_false_rollbacks=REFERENCE_BUDGET / 1000).detector_params()
    assert tight["threshold_nats"] == pytest.approx(math.log(1000))
    assert tight["error_threshold"] == pytest.approx(default["error_threshold"] + math.log(1000))
    det = DegradationDetector(**tight)
    for i in range(200):
        det.update(i % 10 != 0, 0.9)
    assert det.success_limit() == pytest.approx(success_threshold_at(det._success.baseline_mean, math.log(1000)), 0.01)
    assert LearningSettings(success_threshold=8.0).detector_params()["success_threshold"] == 8.0  # explicit wins
    assert DegradationDetector(success_threshold=8.0).success_limit() == 8.0
    with pytest.raises(ValueError, match="fleet_false_rollbacks"):
        LearningSettings(fleet_false_rollbacks=0.0)


@pytest.mark.slow
def test_the_threshold_table_matches_a_fresh_simulation() -> None:
    """Two knots of SUCCESS_THRESHOLD_KNOTS against tests/quality/rollback_calibration.py's simulation."""
    table = dict(SUCCESS_THRESHOLD_KNOTS)
    for p in (0.91, 0.96):
        fresh = calibration.knot(p, runs=8_000)
        assert abs(fresh - table[p]) <= 0.35, (p, fresh, table[p])  # 8,000 runs: ~32 alarms at 0.4 %


@pytest.mark.slow
def test_false_rollbacks_stay_within_one_percent_for_every_success_rate_and_reward_law() -> None:
    """The real detector on issue 15's grid (6 success rates x 5 reward laws, 2,000 stationary invocations).

    40 runs per cell here, pooled; tests/quality/rollback_grid.py prints every cell over 400 runs beside a
    Bernoulli CUSUM that knows the baseline.
    """
    cells = grid.false_alarm_grid(FAST_RUNS)
    pooled = sum(rate for rate, _ in cells.values()) / len(cells)
    worst_law = sum(cells["binary", p][0] for p in grid.P_GRID) / len(grid.P_GRID)
    print(f"\nfalse rollbacks per 2,000: pooled {pooled:.2%}, binary rewards {worst_law:.2%}")
    assert pooled <= 0.01
    assert worst_law <= 0.01  # binary rewards: the worst case in convex order (module docstring)
    assert max(rate for rate, _ in cells.values()) <= 1 / FAST_RUNS  # no cell with two false rollbacks in 40


@pytest.mark.slow
def test_median_detection_delays_meet_the_targets() -> None:
    """0.95 -> 0.5 and 0.9 -> 0.7 after 1,000 healthy invocations, 0.95 -> 0.5 after 100 (continuous rewards)."""
    table = grid.delay_grid(DELAY_RUNS, laws=("continuous",))
    for i, target in enumerate(grid.DELAY_TARGETS):
        got, early, anchor = table["continuous", i]
        print(
            f"\n{grid.CHANGES[i]}: median {statistics.median(got)} (anchor {statistics.median(anchor)}), early {early}"
        )
        assert statistics.median(got) <= target
        assert early <= 0.02 * DELAY_RUNS


def test_grid_streams_are_what_they_say() -> None:
    ok, reward, err = grid.streams("levels", 0.9, 0.5, 1_000, 2_000, 50, seed=1)
    assert ok[:, :1_000].mean() == pytest.approx(0.9, abs=0.01) and ok[:, 1_000:].mean() == pytest.approx(0.5, abs=0.02)
    assert set(np.unique(reward[ok])) == {0.5, 0.75, 1.0} and set(np.unique(reward[~ok])) == {0.0, 0.25}
    assert not err[ok].any() and err[~ok].mean() == pytest.approx(grid.ERROR_SHARE, abs=0.02)
