"""Assurance cases, re-verified on the stream (see :mod:`reverify.processors.assurance.evaluator`)."""

from reverify.processors.assurance.evaluator import (
    SCOPE_KEYS,
    VERDICTS,
    AssuranceCase,
    AssuranceConfigError,
    AssuranceEvaluator,
    AssuranceSettings,
    parse_cases,
    parse_duration,
)

__all__ = [
    "SCOPE_KEYS",
    "VERDICTS",
    "AssuranceCase",
    "AssuranceConfigError",
    "AssuranceEvaluator",
    "AssuranceSettings",
    "parse_cases",
    "parse_duration",
]
