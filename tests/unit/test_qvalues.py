"""Q-value update numbers and arm statistics."""

from __future__ import annotations

import json
import statistics

import pytest
from reverify.processors.qvalues import ArmStats, step_size


def test_step_size_is_sample_mean_then_alpha() -> None:
    assert [step_size(n, 0.1) for n in (1, 2, 4, 10, 11, 100)] == [1.0, 0.5, 0.25, 0.1, 0.1, 0.1]


def test_q_is_the_sample_mean_while_young() -> None:
    arm = ArmStats()
    rewards = [1.0, 0.0, 0.5, 1.0, 0.8]
    for r in rewards:
        arm.update(r > 0.4, r)
    assert arm.q == pytest.approx(statistics.mean(rewards))
    assert arm.reward_mean == pytest.approx(statistics.mean(rewards))
    assert arm.reward_var == pytest.approx(statistics.variance(rewards))
    assert arm.success_rate == pytest.approx(0.8)


def test_q_is_recency_weighted_after_one_over_alpha() -> None:
    arm = ArmStats()
    for _ in range(10):
        arm.update(True, 1.0)
    assert arm.q == pytest.approx(1.0)
    arm.update(False, 0.0)  # n = 11: a_n = 0.1
    assert arm.q == pytest.approx(0.9)
    arm.update(False, 0.0)
    assert arm.q == pytest.approx(0.81)
    assert arm.last_alpha == pytest.approx(0.1)


def test_discounted_q_learning_rule() -> None:
    arm = ArmStats()
    arm.update(True, 0.5)  # Q = 0.5
    arm.update(True, 0.5, gamma=0.9, max_next_q=1.0)  # a = 0.5: 0.5 + 0.5 (0.5 + 0.9 - 0.5)
    assert arm.q == pytest.approx(0.95)
    arm.update(True, 0.5, gamma=0.0, max_next_q=1.0)  # no discount: bandit target
    assert arm.q == pytest.approx(0.95 + (0.5 - 0.95) / 3)


def test_errors_window_and_round_trip() -> None:
    arm = ArmStats(window=20)
    for i in range(30):
        arm.update(i % 3 != 0, 0.7)
    arm.record_error()
    arm.record_error()
    assert arm.errors == 2
    assert arm.error_rate == pytest.approx(2 / 32)
    assert len(arm.last_outcomes) == 20
    assert list(arm.last_outcomes) == [i % 3 != 0 for i in range(10, 30)]
    restored = ArmStats.from_dict(json.loads(json.dumps(arm.to_dict())))
    assert restored == arm
    restored.update(True, 1.0)
    assert len(restored.last_outcomes) == 20
