"""Assurance cases, re-verified on the stream: claim, evidence, scope, window, thresholds, ``for``, action.

An assurance case (seed ``DynamicAssurance``) states a claim ("enrichment
success rate remains above 80 %"), the evidence that verifies it, and what to
do when it stops holding. Here the evidence is computed from the event stream
over a rolling window, per scope, on every relevant event and on a timer.

The package, one concept per module:

* :mod:`~reverify.processors.assurance.cases`: the cases as declared, validated
  (:class:`AssuranceCase`, :func:`parse_cases`, :class:`AssuranceConfigError`, the evidence kinds);
* :mod:`~reverify.processors.assurance.evidence`: the window a case's observations go into and the
  value measured over it, for each evidence kind;
* :mod:`~reverify.processors.assurance.evaluator`: :class:`AssuranceEvaluator`, which routes events to
  cases, keeps verdicts, raises alerts and takes actions.

Scope keys ``agent_name``, ``task_type``, ``variant_id``: a value restricts the
case to it, ``"*"`` evaluates the case separately for every value seen, and an
absent key pools all values into one evaluation (the claim "enrichment success
rate > 80 %" is about the enricher, not each of its variants).

The verdict is ``passed``, ``failed``, ``error`` (the evidence cannot be
computed) or ``insufficient_evidence`` (fewer than ``min_evidence``
observations, or none for a whole window) and an ``AssuranceResult`` is
emitted when it changes. A failed verdict is an alert condition: the alert
fires once it has lasted ``for`` and so does the case's action.

References
----------
Seed "Dynamic Assurance Cases" (the rules as built: docs/decision-rules.md, "Assurance cases").
Prometheus alerting rules (``for``, ``keep_firing_for``):
https://prometheus.io/docs/prometheus/latest/configuration/alerting_rules/
Goal Structuring Notation (claims and evidence): https://scsc.uk/gsn

Examples
--------
>>> ev = AssuranceEvaluator(parse_cases([{"name": "cost", "evidence": "cost_mean", "threshold_max": 0.01,
...                                       "min_evidence": 1}]))
>>> _ = ev.on_outcome({"event_id": "o1", "ts": 0, "agent_name": "a", "task_type": "t", "variant_id": "v",
...                    "success": True, "reward": 1.0, "cost_usd": 0.05})
>>> ev.verdicts()
[{'case': 'cost', 'scope': {}, 'verdict': 'failed', 'acted': False}]
"""

from reverify.processors.assurance.cases import (
    SCOPE_KEYS,
    VERDICTS,
    AssuranceCase,
    AssuranceConfigError,
    AssuranceSettings,
    parse_cases,
    parse_duration,
)
from reverify.processors.assurance.evaluator import AssuranceEvaluator

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
