"""Service-level objectives and error budgets: declarations, bucketed counts, budget arithmetic, evaluation.

One concept per module: :mod:`~reverify.processors.slo.objectives` (the ``[[slo]]`` tables and burn rules,
validated), :mod:`~reverify.processors.slo.counts` (good/total counts in two resolutions of time buckets),
:mod:`~reverify.processors.slo.budget` (burn rate and budget arithmetic),
:mod:`~reverify.processors.slo.evaluator` (:class:`SloEvaluator`: reports and alerts on event time).
"""

from reverify.processors.slo.budget import budget, burn_rate, detection_ms
from reverify.processors.slo.counts import BucketedCounts
from reverify.processors.slo.evaluator import SOURCE, SloEvaluator, window_label
from reverify.processors.slo.objectives import (
    DEFAULT_BURN_RULES,
    SLI_KINDS,
    BurnRule,
    Slo,
    SloConfigError,
    SloSettings,
    parse_burn_rule,
    parse_slos,
)

__all__ = [
    "DEFAULT_BURN_RULES",
    "SLI_KINDS",
    "SOURCE",
    "BucketedCounts",
    "BurnRule",
    "Slo",
    "SloConfigError",
    "SloEvaluator",
    "SloSettings",
    "budget",
    "burn_rate",
    "detection_ms",
    "parse_burn_rule",
    "parse_slos",
    "window_label",
]
