"""The default drift settings' thresholds come from a table (processors/drift/presimulated.py), nothing else does.

The table must hold exactly what the simulation gives: a few of its points are simulated afresh here (~0.3 s
each); ``python -m tests.quality.drift_thresholds --check`` simulates all 20 (~7 s).
"""

from __future__ import annotations

import dataclasses

import pytest
from reverify.processors.drift import DriftMonitor, DriftSettings, calibration, presimulated

from tests.quality.drift_thresholds import fingerprint, points, simulate

DEFAULTS = DriftSettings()


def test_the_table_holds_the_default_settings_at_every_grid_point_and_a_constant_baseline() -> None:
    assert fingerprint(DEFAULTS) == presimulated.FINGERPRINT
    assert list(presimulated.THRESHOLDS) == points(DEFAULTS)
    assert len(presimulated.THRESHOLDS) == 20  # 19 grid points (0, 0.05, ..., 0.9) and a constant baseline
    grid = [h for (ties, _), h in presimulated.THRESHOLDS.items() if ties is None]
    assert grid == sorted(grid)  # more dependence, a higher threshold


@pytest.mark.parametrize(("ties", "phi"), [(None, 0.0), (None, 0.05), (None, 0.5), (None, 0.9), ((1000,), 0.0)])
def test_the_table_equals_a_fresh_simulation(ties: tuple[int, ...] | None, phi: float) -> None:
    assert presimulated.THRESHOLDS[(ties, phi)] == simulate(DEFAULTS, ties, phi)


ARGS = tuple(fingerprint(DEFAULTS).values())


@pytest.mark.parametrize("field", list(fingerprint(DEFAULTS)))
def test_a_lookup_answers_only_the_exact_arguments(field: str) -> None:
    assert presimulated.lookup(ARGS[0], None, *ARGS[1:], 0.35) == presimulated.THRESHOLDS[(None, 0.35)]
    changed = dict(fingerprint(DEFAULTS))
    value = changed[field]
    changed[field] = value[:-1] if isinstance(value, tuple) else value * 1.000001 if value else 1
    other = tuple(changed.values())
    assert presimulated.lookup(other[0], None, *other[1:], 0.35) is None
    assert presimulated.lookup(ARGS[0], None, *ARGS[1:], 0.33) is None  # off the grid
    assert presimulated.lookup(ARGS[0], (999, 1), *ARGS[1:], 0.0) is None  # a tie pattern not in the table


def test_monitors_use_the_table_for_the_defaults_and_simulate_anything_else(monkeypatch) -> None:
    simulated: list[tuple] = []
    real = calibration._simulated_threshold

    def spy(*args):
        simulated.append(args)
        return real(*args)

    monkeypatch.setattr(calibration, "_simulated_threshold", spy)
    calibration._threshold.cache_clear()
    try:
        for phi in DEFAULTS.dependence_grid():
            assert calibration.alarm_threshold(DEFAULTS, phi=phi) == presimulated.THRESHOLDS[(None, phi)]
        constant = DriftMonitor(DEFAULTS)
        constant.pin_baseline([0.002] * 1000)
        assert constant.threshold == 0.0
        assert simulated == []
        # Same rate per value from other numbers: the same simulation, so the same table entry.
        same_rate = DriftSettings(false_alarm_budget=0.2, n_series=2)
        assert same_rate.rate_per_value == DEFAULTS.rate_per_value
        assert calibration.alarm_threshold(same_rate) == presimulated.THRESHOLDS[(None, 0.0)]
        assert simulated == []
        small = dataclasses.replace(DEFAULTS, calibration_replicates=20, calibration_length=2_000)
        for settings, n in [(small, None), (DEFAULTS, 999)]:
            calibration.alarm_threshold(settings, n)
        assert [args[0] for args in simulated] == [1000, 999]
        assert [args[6] for args in simulated] == [20, 250]
    finally:
        calibration._threshold.cache_clear()
