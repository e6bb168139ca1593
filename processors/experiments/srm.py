"""Sample-ratio mismatch: do the variants' unit counts match the split they were assigned with?

A split of 50/50 that delivers 5,200 units to one variant and 4,800 to the
other did not assign what it claims (a variant that crashes before reporting,
a filter applied to one arm, a cache that pins units): its comparison is biased
whatever the test says. Pearson's chi-square test of the counts against the
split, flagged below p = 0.001 (the customary threshold: an experiment is
looked at many times, and a false flag stops a good one).

>>> sample_ratio([5000, 5000], [0.5, 0.5]).flagged
False
>>> check = sample_ratio([5200, 4800], [0.5, 0.5])
>>> round(check.chi2, 1), round(check.p_value, 5), check.flagged
(16.0, 6e-05, True)
>>> sample_ratio([0, 0], [0.5, 0.5]).p_value
1.0

References
----------
Fabijan, A., Gupchup, J., Gupta, S., Omhover, J., Qin, W., Vermeer, L. and Dmitriev, P. (2019). Diagnosing
sample ratio mismatch in online controlled experiments. KDD.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from scipy.special import chdtrc

SRM_THRESHOLD = 0.001


@dataclass(frozen=True)
class SampleRatio:
    """Pearson's statistic, its p-value and whether it is below ``threshold``."""

    chi2: float
    p_value: float
    flagged: bool
    threshold: float = SRM_THRESHOLD


def sample_ratio(counts: Sequence[int], split: Sequence[float], threshold: float = SRM_THRESHOLD) -> SampleRatio:
    """Chi-square test of unit ``counts`` per variant against the ``split`` shares (summing to 1)."""
    total = sum(counts)
    if total == 0:
        return SampleRatio(0.0, 1.0, False, threshold)
    stat = sum((n - total * share) ** 2 / (total * share) for n, share in zip(counts, split, strict=True))
    p = float(chdtrc(len(counts) - 1, stat))  # the chi-square law's survival function
    return SampleRatio(stat, p, p < threshold, threshold)
