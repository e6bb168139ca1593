"""An experiment's status: per variant n and metric, the lift with its always-valid interval, SRM, a decision.

Given the Experiment record and each variant's :class:`~.sequential.ArmSummary`
(from the history), :func:`evaluate` returns what ``reverify experiment status
--json`` prints. Every treatment is compared with the control (the first
variant) at ``alpha / (number of treatments)`` (Bonferroni), each with the
confidence sequence of :mod:`.sequential`, so the decision may be read at any
look:

* ``continue`` -- fewer than ``min_units`` units on some variant, or no
  interval excludes zero yet and the planned units are not reached;
* ``ship T`` -- T's interval shows it better than the control (the best such T
  by the bound of its interval nearest zero);
* ``keep C`` -- every treatment's interval shows it worse than the control;
* ``inconclusive`` -- the planned units are reached with no interval excluding
  zero; also while the sample ratio is off (the counts do not match the split,
  :mod:`.srm`: the comparison cannot be trusted, whatever it says), and for a
  stopped experiment that reached no conclusion.

The planned units are the record's ``planned_units`` when the experiment was
started with ``--units``; otherwise the units at which a lift of
``min_effect`` would be detected with 80 % power, extrapolated from the
current standard error (:func:`.sequential.planned_units`). Stopping for
futility at the plan never raises the false-positive rate.

>>> from reverify.processors.experiments.record import experiment_record
>>> rec = experiment_record("copy", "a", "t", ["c", "t"], None, "success_rate", 0.05, ts=0)
>>> arms = {"c": ArmSummary(2000, 0.80, 0.0089), "t": ArmSummary(2000, 0.90, 0.0067)}
>>> status = evaluate(rec, arms)
>>> status["decision"], round(status["lift"], 3), status["srm"]["flagged"]
('ship t', 0.125, False)
>>> evaluate(rec, {"c": ArmSummary(50, 0.8, 0.05), "t": ArmSummary(50, 0.9, 0.04)})["decision"]
'continue'
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from reverify.processors.experiments.metrics import BETTER
from reverify.processors.experiments.record import STOPPED
from reverify.processors.experiments.sequential import ArmSummary, LiftTest, lift_test, mixture_rho, planned_units
from reverify.processors.experiments.srm import sample_ratio

#: Units every variant needs before a decision: the interval is asymptotic, and a few dozen units are not.
MIN_UNITS = 100
_EMPTY = ArmSummary(0, 0.0, 0.0)


def _comparison(variant: str, test: LiftTest | None, better: int) -> dict[str, Any]:
    if test is None:
        return {"variant_id": variant, "lift": None, "se": None, "ci": None, "p_value": None, "verdict": "undefined"}
    lo, hi = test.ci
    verdict = "unclear"
    if lo > 0 or hi < 0:  # the interval excludes zero: which side is good depends on the metric
        verdict = "better" if (lo > 0) == (better > 0) else "worse"
    return {
        "variant_id": variant,
        "lift": test.lift,
        "se": test.se,
        "ci": [lo, hi],
        "p_value": test.p_value,
        "verdict": verdict,
    }


def _decide(
    control: str,
    comparisons: list[dict[str, Any]],
    counts: list[int],
    srm_flagged: bool,
    plan: int | None,
    min_units: int,
    better: int,
) -> tuple[str, str]:
    units = sum(counts)
    if min(counts) < min_units:
        return "continue", f"waiting for {min_units} units on every variant (fewest so far: {min(counts)})"
    if srm_flagged:
        return "inconclusive", "sample ratio mismatch: the unit counts do not match the split, the comparison is biased"
    winners = [c for c in comparisons if c["verdict"] == "better"]
    if winners:
        # the winner whose interval stays furthest from zero on the good side
        best = max(winners, key=lambda c: c["ci"][0] if better > 0 else -c["ci"][1])
        lo, hi = best["ci"]
        return f"ship {best['variant_id']}", f"{best['variant_id']} beats {control}: lift in [{lo:+.2%}, {hi:+.2%}]"
    if all(c["verdict"] == "worse" for c in comparisons):
        return f"keep {control}", f"every treatment is worse than {control}"
    if plan is not None and units >= plan:
        return "inconclusive", f"{units} units reached the plan of {plan} without a significant lift"
    left = f" of {plan} planned" if plan is not None else ""
    return "continue", f"no significant lift yet at {units} units{left}"


def evaluate(record: Mapping[str, Any], arms: Mapping[str, ArmSummary], *, min_units: int = MIN_UNITS) -> dict:
    """The status of experiment ``record`` given each variant's summary of its metric (JSON-friendly)."""
    variants, split = list(record["variants"]), list(record["split"])
    control, treatments = variants[0], variants[1:]
    better = BETTER[record["metric"]]
    alpha = float(record["alpha"]) / len(treatments)
    rho = mixture_rho(alpha, float(record["tuning_units"]))
    summaries = [arms.get(v, _EMPTY) for v in variants]
    counts = [s.n for s in summaries]
    tests = [lift_test(summaries[0], s, alpha, rho) for s in summaries[1:]]
    comparisons = [_comparison(v, t, better) for v, t in zip(treatments, tests, strict=True)]
    srm = sample_ratio(counts, split)
    plan = record.get("planned_units")
    if plan is None:
        plans = [
            planned_units(t.se, c + counts[0], float(record["min_effect"]), alpha, rho)
            for t, c in zip(tests, counts[1:], strict=True)
            if t is not None and min(counts) >= min_units
        ]
        plan = max(plans) if plans else None
    decision, reason = _decide(control, comparisons, counts, srm.flagged, plan, min_units, better)
    if record.get("status") == STOPPED and decision == "continue":
        decision, reason = "inconclusive", f"stopped before a conclusion ({reason})"
    first = comparisons[0]
    return {
        "name": record["name"],
        "agent_name": record["agent_name"],
        "task_type": record["task_type"],
        "metric": record["metric"],
        "status": record.get("status"),
        "started_at": record.get("started_at"),
        "stopped_at": record.get("stopped_at"),
        "stop_reason": record.get("reason") or None,
        "control": control,
        "variants": [
            {
                "variant_id": v,
                "role": "control" if i == 0 else "treatment",
                "share": share,
                "n": s.n,
                "value": s.value if s.n else None,
                "se": s.se if s.n else None,
            }
            for i, (v, share, s) in enumerate(zip(variants, split, summaries, strict=True))
        ],
        "lift": first["lift"],
        "ci": first["ci"],
        "p_value": first["p_value"],
        "comparisons": comparisons,
        "srm": {
            "chi2": srm.chi2,
            "p_value": srm.p_value,
            "flagged": srm.flagged,
            "threshold": srm.threshold,
            "counts": dict(zip(variants, counts, strict=True)),
        },
        "units": sum(counts),
        "planned_units": plan,
        "min_units": min_units,
        "alpha": float(record["alpha"]),
        "min_effect": float(record["min_effect"]),
        "decision": decision,
        "reason": reason,
    }
