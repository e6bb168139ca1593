"""The ``Experiment`` record (schemas/Experiment.avsc): what an experiment is, checked, and how it ends.

An experiment lives on the compacted topic ``crl.experiments`` keyed by its
name: ``reverify experiment start`` publishes it ``running``, and either
``experiment stop`` or a worker (a rollback of one of its variants) publishes
the same record ``stopped`` with the reason. The latest record of a name is
the experiment.

>>> r = experiment_record("copy", "hunter", "scrape", ["c", "t"], [50, 50], "success_rate", 0.02, ts=1000)
>>> r["status"], r["split"], r["started_at"], r["tuning_units"]
('running', [0.5, 0.5], 1000, 5000)
>>> stopped(r, ts=2000, reason="rolled back t", cause_id="rb-1")["status"]
'stopped'
>>> experiment_record("copy", "hunter", "scrape", ["c", "c"], None, "success_rate", 0.02, ts=0)
Traceback (most recent call last):
...
reverify.processors.experiments.record.ExperimentError: --variants must name 2 or more different variants, got c,c
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

from reverify.processors.base import derive_id
from reverify.processors.experiments.metrics import METRICS

RUNNING, STOPPED = "running", "stopped"
DEFAULT_TUNING_UNITS = 5000
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")


class ExperimentError(ValueError):
    """An experiment that cannot run as asked: the message says what to change."""


def normalise_split(split: Sequence[float] | None, k: int) -> list[float]:
    """Shares summing to 1 (``50,50`` and ``0.5,0.5`` alike); an even split when ``None``.

    >>> normalise_split([1, 3], 2), normalise_split(None, 3)[0]
    ([0.25, 0.75], 0.3333333333333333)
    """
    if split is None:
        return [1.0 / k] * k
    if len(split) != k:
        raise ExperimentError(f"--split has {len(split)} shares for {k} variants; give one share per variant")
    if not all(math.isfinite(s) and s > 0 for s in split):
        raise ExperimentError(f"--split shares must be positive numbers, got {','.join(map(str, split))}")
    total = float(sum(split))
    return [s / total for s in split]


def experiment_record(
    name: str,
    agent_name: str,
    task_type: str,
    variants: Sequence[str],
    split: Sequence[float] | None,
    metric: str,
    min_effect: float,
    *,
    ts: int,
    alpha: float = 0.05,
    planned_units: int | None = None,
    tuning_units: int | None = None,
    by: str = "",
) -> dict[str, Any]:
    """A ``running`` Experiment record, every argument checked (:class:`ExperimentError` names the option)."""
    if not _NAME.match(name):
        raise ExperimentError(f"experiment name {name!r} must be 1-128 letters, digits, '_', '.', ':' or '-'")
    if not agent_name or not task_type:
        raise ExperimentError("--agent and --task must not be empty")
    variants = [v.strip() for v in variants]
    if len(variants) < 2 or len(set(variants)) != len(variants) or not all(variants):
        raise ExperimentError(f"--variants must name 2 or more different variants, got {','.join(variants)}")
    if metric not in METRICS:
        raise ExperimentError(f"--metric must be one of {', '.join(METRICS)}, got {metric!r}")
    if not (math.isfinite(min_effect) and min_effect > 0):
        raise ExperimentError(f"--min-effect must be a positive relative lift (0.02 = 2 %), got {min_effect}")
    if not 0 < alpha < 0.5:
        raise ExperimentError(f"alpha must be within (0, 0.5), got {alpha}")
    if planned_units is not None and planned_units < 2 * len(variants):
        raise ExperimentError(f"--units must be at least {2 * len(variants)}, got {planned_units}")
    return {
        "event_id": derive_id("experiment", name, ts),
        "ts": ts,
        "name": name,
        "agent_name": agent_name,
        "task_type": task_type,
        "variants": variants,
        "split": normalise_split(split, len(variants)),
        "metric": metric,
        "min_effect": float(min_effect),
        "alpha": float(alpha),
        "planned_units": planned_units,
        "tuning_units": int(tuning_units or planned_units or DEFAULT_TUNING_UNITS),
        "status": RUNNING,
        "started_at": ts,
        "stopped_at": None,
        "reason": "",
        "by": by,
        "cause_id": None,
    }


def stopped(record: dict[str, Any], *, ts: int, reason: str, cause_id: str | None = None, by: str = "") -> dict:
    """The record of ``record`` stopped at ``ts`` because of ``reason`` (``cause_id``: the rollback, if any)."""
    return {
        **record,
        "event_id": derive_id("experiment-stop", record["name"], record["started_at"], cause_id or ts),
        "ts": ts,
        "status": STOPPED,
        "stopped_at": ts,
        "reason": reason,
        "cause_id": cause_id,
        "by": by or record.get("by", ""),
    }
