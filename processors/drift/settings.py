"""Every number of the drift monitor, one frozen dataclass: the ``[drift]`` section of ``reverify.toml``.

>>> s = DriftSettings(false_alarm_budget=0.2, n_series=2)
>>> s.rate_per_value  # false-alarm episodes allowed per value of one series
1e-05
>>> DriftSettings(overrides={"*/latency_ms": {"window": 1000}}).for_series("a", "latency_ms").window
1000
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["DETECTORS", "DriftSettings", "make_detector"]


@dataclass(frozen=True)
class DriftSettings:
    """Every number of the drift monitor; field names are the keys of ``[drift]`` in ``reverify.toml``.

    Parameters
    ----------
    baseline_size
        Values learned as the baseline (or the size of a pinned baseline, which may differ).
    bins
        Quantile bins of the baseline for PSI (numpy's default quantile method); outer bins are open.
    window
        The configured count window whose PSI / KS / mean shift / sd ratio head the report.
    evaluate_every
        A DriftReport every this many values (and on an alarm transition in between); a multiple of ``look_every``.
    look_every
        The alarm looks at its statistic every this many values: a look is a few numpy calls, so looking twice
        per report shortens the delay to an alarm by a quarter of a report period on average at no real cost.
    psi_epsilon
        Proportion used for an empty bin (both sides) so ``ln(c / b)`` stays finite.
    windows
        Window lengths the alarm watches at once (multiples of ``look_every``): short ones catch a large shift
        fast, long ones a small one surely; dense short lengths let a shift be judged on a window that just
        covers it. Each is also a row of the report.
    spread_weight
        Weight of the spread (Mood) statistic against the location (Mann-Whitney) one. Below 1 the spread
        statistic takes a smaller share of the false-alarm budget, which lowers the common threshold for
        location shifts; a variance change as large as the seed flags (sd ratio 2) is still caught in 25-50 values.
    false_alarm_budget
        Expected false alarm episodes per ``budget_values`` values of a stationary series.
    budget_values
        See ``false_alarm_budget`` (default 10,000).
    n_series
        Series sharing the budget. The per-series budget is ``false_alarm_budget / n_series`` (Bonferroni). For an
        expected count of false alarms this is exact by linearity; Holm's step-down has no fixed family of
        p-values to step through on a never-ending stream, so it would buy nothing here. Ignored when
        ``fleet_false_alarm_budget`` is set.
    fleet_false_alarm_budget
        Expected false alarm episodes per ``budget_values`` values counted across the whole deployment (every value
        of every series of every worker together), or ``None`` (the default: ``false_alarm_budget`` is per series).
        Each series spends it in proportion to its own values (a rate per value), so the fleet's total is at most
        the budget times its values over ``budget_values`` however many series there are and whenever they appear,
        and nothing is counted: every series' threshold depends on its own values only (two workers alarm as one,
        a replay as the original).
    dependence
        ``"ar1"``: the baseline's serial dependence is estimated (lag-1 rank autocorrelation, as the coefficient of
        a Gaussian AR(1) copula) and the threshold simulated for it; ``"independent"``: values are taken as
        independent (the calibration before serial dependence was accounted for).
    dependence_step
        The estimated coefficient is rounded to this grid (one simulation per grid point per process); estimates
        below ``dependence_step`` count as independent (within the estimate's own noise, ``1 / sqrt(n)``).
    max_dependence
        A series whose estimated coefficient exceeds this cannot be calibrated from its baseline (effective sample
        size ``n (1 - phi) / (1 + phi)`` too small): it reports ``calibrated = false`` and never alarms.
    psi_grades
        PSI cut points for low / medium / high (seed: 0.1, 0.2, 0.25).
    mean_shift_sd
        ``|mean shift|`` in baseline sds above which the seed flags a mean shift.
    variance_ratio_bounds
        Ratio of standard deviations outside which the seed flags a variance change.
    calibration
        ``"rank"``: threshold simulated once for continuous data and shared (rank statistics are distribution-free);
        ``"bootstrap"``: resample this baseline (use for tied / discrete data); ``"auto"``: bootstrap when the
        baseline has ties.
    calibration_replicates, calibration_length, calibration_seed
        Size and seed of the calibration simulation.
    detectors
        river detectors run beside, per series: any of ``"adwin"``, ``"kswin"``, ``"page_hinkley"``.
    categorical
        Outcome ``attributes`` keys monitored as categorical series.
    max_categories
        Baseline categories kept by frequency; the rest and unseen ones share an ``"other"`` bucket.
    per_variant
        Also keep a series per ``variant_id`` beside the agent-level one.
    overrides
        Per-series overrides: ``{"agent/feature": {"window": 1000}}``; ``"*"`` matches any agent or feature.
    """

    baseline_size: int = 1000
    bins: int = 10
    window: int = 500
    evaluate_every: int = 50
    look_every: int = 25
    psi_epsilon: float = 1e-4
    windows: tuple[int, ...] = (25, 50, 75, 100, 150, 200, 300, 500)
    spread_weight: float = 0.9
    false_alarm_budget: float = 0.1
    budget_values: int = 10_000
    n_series: int = 1
    fleet_false_alarm_budget: float | None = None
    psi_grades: tuple[float, float, float] = (0.1, 0.2, 0.25)
    mean_shift_sd: float = 2.0
    variance_ratio_bounds: tuple[float, float] = (0.5, 2.0)
    calibration: str = "auto"
    calibration_replicates: int = 250
    calibration_length: int = 40_000
    calibration_seed: int = 0
    dependence: str = "ar1"
    dependence_step: float = 0.05
    max_dependence: float = 0.9
    detectors: tuple[str, ...] = ()
    categorical: tuple[str, ...] = ()
    max_categories: int = 20
    per_variant: bool = False
    overrides: Mapping[str, Mapping[str, Any]] = field(default_factory=dict, hash=False, compare=False)

    def __post_init__(self) -> None:
        for name in ("windows", "psi_grades", "variance_ratio_bounds", "detectors", "categorical"):
            object.__setattr__(self, name, tuple(getattr(self, name)))  # TOML gives lists
        e = self.look_every
        if e < 1 or self.baseline_size < 2 or self.bins < 1 or not self.windows:
            raise ValueError("look_every, baseline_size, bins and windows must be positive (baseline_size >= 2)")
        for w in (*self.windows, self.window, self.evaluate_every):
            if w < e or w % e:
                raise ValueError(f"window {w} and evaluate_every must be positive multiples of look_every={e}")
        if self.spread_weight <= 0:
            raise ValueError("spread_weight must be positive")
        if self.calibration not in ("rank", "bootstrap", "auto"):
            raise ValueError("calibration must be rank, bootstrap or auto")
        if self.dependence not in ("ar1", "independent"):
            raise ValueError("dependence must be ar1 or independent")
        if not 0 < self.dependence_step < 1 or not 0 <= self.max_dependence < 1:
            raise ValueError("dependence_step must be in (0, 1) and max_dependence in [0, 1)")
        if self.fleet_false_alarm_budget is not None and self.fleet_false_alarm_budget <= 0:
            raise ValueError("fleet_false_alarm_budget must be positive (or unset)")
        unknown = set(self.detectors) - set(DETECTORS)
        if unknown:
            raise ValueError(f"unknown detectors {sorted(unknown)}; use {sorted(DETECTORS)}")

    @property
    def rate_per_value(self) -> float:
        """False-alarm episodes allowed per value of one series: with a fleet budget, the fleet's rate per value."""
        if self.fleet_false_alarm_budget is None:
            return self.false_alarm_budget / self.budget_values / max(self.n_series, 1)
        return self.fleet_false_alarm_budget / self.budget_values

    def dependence_of(self, phi: float) -> float:
        """The AR(1) coefficient a baseline whose estimated coefficient is ``phi`` is calibrated for.

        >>> s = DriftSettings()
        >>> [s.dependence_of(phi) for phi in (-0.2, 0.03, 0.21, 0.5, 0.78)]
        [0.0, 0.0, 0.2, 0.5, 0.8]
        """
        step = self.dependence_step
        if self.dependence == "independent" or phi < step:
            return 0.0
        return round(round(phi / step) * step, 6)

    def dependence_grid(self) -> tuple[float, ...]:
        """Every coefficient :meth:`dependence_of` gives a series that can be calibrated (estimate at most
        ``max_dependence``), in increasing order: one threshold simulation each per process.

        >>> DriftSettings(dependence_step=0.2).dependence_grid()
        (0.0, 0.2, 0.4, 0.6, 0.8)
        >>> len(DriftSettings().dependence_grid()), DriftSettings(dependence="independent").dependence_grid()
        (19, (0.0,))
        """
        step = self.dependence_step
        if self.dependence == "independent" or self.max_dependence < step:
            return (0.0,)
        # estimates in [step, max_dependence] round to the steps 1 .. round(max_dependence / step), as dependence_of
        return (0.0, *sorted({self.dependence_of(k * step) for k in range(1, round(self.max_dependence / step) + 1)}))

    def for_series(self, agent_name: str, feature: str) -> DriftSettings:
        """These settings with the overrides matching the series applied (most specific last)."""
        if not self.overrides:
            return self
        merged: dict[str, Any] = {}
        for key in ("*/*", f"{agent_name}/*", f"*/{feature}", f"{agent_name}/{feature}"):
            merged.update(self.overrides.get(key, {}))
        return dataclasses.replace(self, **merged) if merged else self


def make_detector(name: str) -> Any:
    """A river drift detector run beside the calibrated alarm (``adwin``, ``kswin`` or ``page_hinkley``)."""
    from river import drift

    if name == "adwin":
        return drift.ADWIN()
    if name == "kswin":
        return drift.KSWIN(seed=0)
    return drift.PageHinkley()


DETECTORS = ("adwin", "kswin", "page_hinkley")
