"""Assurance cases as declared: the ``[[assurance]]`` tables of ``reverify.toml``, validated into :class:`AssuranceCase`.

A case names its claim, the evidence that verifies it (one of the evidence
kinds below), its scope, window, thresholds, ``for``, severity and action.
:func:`parse_cases` validates a whole list at once and raises one
:class:`AssuranceConfigError` naming every mistake with its case and field, so
that ``reverify assurance check`` can print them all in one go.

Evidence kinds: the plain ones (:data:`PLAIN_EVIDENCE`) and the prefixed ones
(:data:`EVIDENCE_PREFIXES`, ``psi:FEATURE``, ``ks_p:FEATURE``, ``ks:FEATURE``,
``metric:NAME``, ``rate:NAME``); what each measures is in
:mod:`reverify.processors.assurance.evidence`.

References
----------
Goal Structuring Notation (claims and evidence): https://scsc.uk/gsn
Prometheus alerting rules (``for``, ``keep_firing_for``):
https://prometheus.io/docs/prometheus/latest/configuration/alerting_rules/

Examples
--------
>>> [case] = parse_cases([{"name": "enrich", "evidence": "success_rate", "scope": {"agent_name": "enricher"},
...                        "window": "200 events", "threshold_min": 0.8, "for": "30s", "action": "pause"}])
>>> case.window_events, case.for_ms, case.action, case.source_kinds
(200, 30000, 'pause', ('outcome',))
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from reverify.processors.config_tables import Complain, TableMistakes, did_you_mean, parse_named_tables
from reverify.processors.degradation_levels import MAX_LEVEL, MIN_LEVEL
from reverify.schemas.fields import ALERT_SEVERITIES, DURATION_EXAMPLES, duration_ms

__all__ = [
    "EVIDENCE_PREFIXES",
    "PLAIN_EVIDENCE",
    "SCOPE_KEYS",
    "VERDICTS",
    "AssuranceCase",
    "AssuranceConfigError",
    "AssuranceSettings",
    "parse_cases",
    "parse_duration",
]

SCOPE_KEYS = ("agent_name", "task_type", "variant_id")
VERDICTS = ("passed", "failed", "error", "insufficient_evidence")
#: Evidence kinds without an argument.
PLAIN_EVIDENCE = (
    "success_rate",
    "error_rate",
    "reward_mean",
    "latency_p50",
    "latency_p95",
    "latency_p99",
    "cost_mean",
    "q_value",
    "accuracy",
    "brier",
    "ece",
)
#: Evidence from the model monitor's reports (processors.models), per agent and model version.
MODEL_EVIDENCE = ("accuracy", "brier", "ece")
#: Evidence kinds written ``PREFIX:ARGUMENT`` (a feature or metric name).
EVIDENCE_PREFIXES = ("psi", "ks_p", "ks", "metric", "rate")
_ALLOWED_EVIDENCE = ", ".join(
    [*PLAIN_EVIDENCE, "psi:FEATURE", "ks_p:FEATURE", "ks:FEATURE", "metric:NAME", "rate:NAME"]
)
_DRIFT_EVIDENCE = ("psi", "ks_p", "ks")
_ACTIONS = ("alert", "rollback", "pause", "degrade:N")
_FIELDS = (
    "name",
    "claim",
    "evidence",
    "scope",
    "window",
    "threshold_min",
    "threshold_max",
    "resolve_min",
    "resolve_max",
    "for",
    "keep_firing_for",
    "severity",
    "action",
    "min_evidence",
    "dry_run",
    "stale_after",
)
_THRESHOLDS = ("threshold_min", "threshold_max", "resolve_min", "resolve_max")
_EVENTS = re.compile(r"^\s*(\d+)\s*events?\s*$")


class AssuranceConfigError(ValueError):
    """Every mistake in a list of cases, one line each: ``case NAME: field X: what is wrong, allowed ...``."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = list(errors)


@dataclass(frozen=True)
class AssuranceSettings:
    """Defaults for cases that do not say (section ``[assurance_defaults]``).

    Parameters
    ----------
    stale_after_ms
        A case with an event-count window becomes ``insufficient_evidence`` when no
        evidence arrived for this long (a time window goes stale by itself).
    min_evidence
        Observations needed before a verdict other than ``insufficient_evidence``.
    """

    stale_after_ms: int = 600_000
    min_evidence: int = 10


def parse_duration(value: object) -> int:
    """Milliseconds of ``"30s"``, ``"5m"``, ``"2h"``, ``"500ms"``, ``"1d"``; a bare number is seconds.

    >>> parse_duration("5m"), parse_duration("30s"), parse_duration(1.5)
    (300000, 30000, 1500)
    """
    if isinstance(value, bool):
        raise ValueError("a duration such as '30s', '5m', '2h'")
    if isinstance(value, (int, float)):
        if value < 0 or not math.isfinite(value):
            raise ValueError("a duration >= 0")
        return int(round(value * 1000))
    ms = duration_ms(str(value))
    if ms is None:
        raise ValueError(f"a duration such as {DURATION_EXAMPLES}")
    return ms


@dataclass(frozen=True)
class AssuranceCase:
    """One declared case, validated; build with :func:`parse_cases` or :meth:`from_dict`.

    >>> c = AssuranceCase.from_dict({"name": "lat", "evidence": "latency_p95", "window": "5m",
    ...                              "scope": {"agent_name": "*"}, "threshold_max": 2000, "action": "degrade:2"})
    >>> c.window_ms, c.window_events, c.action, c.degrade_level, c.source_kinds
    (300000, None, 'degrade', 2, ('outcome',))
    """

    name: str
    evidence: str
    claim: str = ""
    scope: dict[str, str] = field(default_factory=dict)
    window: str = "100 events"
    window_events: int | None = 100
    window_ms: int | None = None
    threshold_min: float | None = None
    threshold_max: float | None = None
    resolve_min: float | None = None
    resolve_max: float | None = None
    for_ms: int = 0
    keep_firing_for_ms: int = 0
    severity: str = "warning"
    action: str = "alert"
    degrade_level: int | None = None
    min_evidence: int = 10
    dry_run: bool = False
    stale_after_ms: int = 600_000

    @cached_property
    def kind(self) -> str:
        """The evidence kind without its argument: ``psi`` for ``psi:latency_ms``."""
        return self.evidence.split(":", 1)[0]

    @cached_property
    def argument(self) -> str:
        """The feature or metric name of prefixed evidence (``""`` otherwise)."""
        return self.evidence.split(":", 1)[1] if ":" in self.evidence else ""

    @cached_property
    def source_kinds(self) -> tuple[str, ...]:
        """Which input streams feed this case: outcome, error, metric, qvalue, drift."""
        kind, arg = self.kind, self.argument
        if kind == "error_rate":
            return ("outcome", "error")
        if kind == "q_value":
            return ("qvalue",)
        if kind in MODEL_EVIDENCE:
            return ("model",)
        if kind in ("psi", "ks_p", "ks"):
            return ("drift",)
        if kind == "metric":
            return ("metric",)
        if kind == "rate":
            return ({"outcomes": "outcome", "errors": "error"}.get(arg, "metric"),)
        return ("outcome",)

    @property
    def action_label(self) -> str:
        return f"degrade:{self.degrade_level}" if self.action == "degrade" else self.action

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], settings: AssuranceSettings | None = None) -> AssuranceCase:
        """Validate one case; raises :class:`AssuranceConfigError` listing all of its mistakes."""
        (case,) = parse_cases([raw], settings)
        return case

    def to_dict(self) -> dict[str, Any]:
        """The case as it would be written in ``reverify.toml``."""
        out: dict[str, Any] = {"name": self.name, "claim": self.claim, "evidence": self.evidence}
        out["scope"] = dict(self.scope)
        out["window"] = self.window
        for k in ("threshold_min", "threshold_max", "resolve_min", "resolve_max"):
            if getattr(self, k) is not None:
                out[k] = getattr(self, k)
        out["for"] = f"{self.for_ms}ms"
        out["keep_firing_for"] = f"{self.keep_firing_for_ms}ms"
        out.update(severity=self.severity, action=self.action_label, min_evidence=self.min_evidence)
        out.update(dry_run=self.dry_run, stale_after=f"{self.stale_after_ms}ms")
        return out


def parse_cases(raws: Iterable[Mapping[str, Any]], settings: AssuranceSettings | None = None) -> list[AssuranceCase]:
    """Validate a list of case tables (``[[assurance]]``); one :class:`AssuranceConfigError` lists every mistake.

    >>> parse_cases([{"name": "a", "evidence": "succes_rate", "threshold_min": 2, "window": "5 fortnights"}])
    Traceback (most recent call last):
    ...
    reverify.processors.assurance.cases.AssuranceConfigError: case a: field evidence: 'succes_rate' is not an evidence kind (did you mean success_rate?); allowed: success_rate, error_rate, reward_mean, latency_p50, latency_p95, latency_p99, cost_mean, q_value, accuracy, brier, ece, psi:FEATURE, ks_p:FEATURE, ks:FEATURE, metric:NAME, rate:NAME
    case a: field window: '5 fortnights' is not allowed; use 'N events' or a duration such as '500ms', '30s', '5m', '2h', '1d', '2w'
    """
    settings = settings or AssuranceSettings()
    cases, errors = parse_named_tables(raws, "case", _FIELDS, lambda raw, bad: _parse_case(raw, bad, settings))
    if errors:
        raise AssuranceConfigError(errors)
    return cases


def _parse_case(raw: Mapping[str, Any], bad: TableMistakes, settings: AssuranceSettings) -> AssuranceCase | None:
    """One case (its name and keys already checked), or None when it has a mistake (each said to ``bad``,
    in the order of its fields)."""
    name = raw.get("name")
    claim = raw.get("claim", "")
    if not isinstance(claim, str):
        bad("claim", f"{claim!r} is not text")
        claim = ""
    evidence = _parse_evidence(raw, bad)
    scope = _parse_scope(raw, evidence, bad)
    window_events, window_ms = _parse_window(raw, bad)
    tmin, tmax, rmin, rmax = _parse_thresholds(raw, bad)
    durations = _parse_durations(raw, settings, bad)
    severity = raw.get("severity", "warning")
    if severity not in ALERT_SEVERITIES:
        bad("severity", f"{severity!r} is not allowed; allowed values: {', '.join(ALERT_SEVERITIES)}")
    action, degrade_level = _parse_action(raw, scope, bad)
    min_evidence = _parse_min_evidence(raw, settings, window_events, bad)
    dry_run = raw.get("dry_run", False)
    if not isinstance(dry_run, bool):
        bad("dry_run", f"{dry_run!r} is not allowed; use true or false")
        dry_run = False

    if bad.count:
        return None
    return AssuranceCase(
        name=str(name),
        evidence=evidence,
        claim=claim,
        scope=scope,
        window=str(raw.get("window", "100 events")),
        window_events=window_events,
        window_ms=window_ms,
        threshold_min=tmin,
        threshold_max=tmax,
        resolve_min=rmin,
        resolve_max=rmax,
        for_ms=durations["for"],
        keep_firing_for_ms=durations["keep_firing_for"],
        severity=str(severity),
        action=action,
        degrade_level=degrade_level,
        min_evidence=min_evidence,
        dry_run=dry_run,
        stale_after_ms=durations["stale_after"],
    )


def _parse_evidence(raw: Mapping[str, Any], bad: Complain) -> str:
    evidence = raw.get("evidence")
    if not isinstance(evidence, str) or not evidence:
        bad("evidence", f"{evidence!r} is missing; allowed: {_ALLOWED_EVIDENCE}")
        return ""
    if ":" in evidence:
        prefix, arg = evidence.split(":", 1)
        if prefix not in EVIDENCE_PREFIXES or not arg.strip():
            bad("evidence", f"{evidence!r} is not an evidence kind; allowed: {_ALLOWED_EVIDENCE}")
    elif evidence not in PLAIN_EVIDENCE:
        hint = did_you_mean(evidence, PLAIN_EVIDENCE)
        bad("evidence", f"{evidence!r} is not an evidence kind{hint}; allowed: {_ALLOWED_EVIDENCE}")
    return evidence


def _parse_scope(raw: Mapping[str, Any], evidence: str, bad: Complain) -> dict[str, str]:
    scope_raw = raw.get("scope", {})
    scope: dict[str, str] = {}
    if not isinstance(scope_raw, Mapping):
        bad("scope", f'{scope_raw!r} is not a table; use e.g. {{ agent_name = "enricher" }}')
    else:
        for k, v in scope_raw.items():
            if k not in SCOPE_KEYS:
                bad("scope", f"key {k!r} is not allowed; allowed keys: {', '.join(SCOPE_KEYS)}")
            elif not isinstance(v, str) or not v:
                bad("scope", f'{k} = {v!r} is not allowed; use a name or "*" (every value, evaluated per value)')
            else:
                scope[k] = v
    if evidence.split(":", 1)[0] in _DRIFT_EVIDENCE and "task_type" in scope:
        bad("scope", "task_type is not allowed with drift evidence (drift series are per agent, feature, variant)")
    return scope


def _parse_window(raw: Mapping[str, Any], bad: Complain) -> tuple[int | None, int | None]:
    """``(events, ms)`` of ``window``: ``"N events"`` or a duration, the other one None."""
    window = raw.get("window", "100 events")
    m = _EVENTS.match(window) if isinstance(window, str) else None
    if m:
        events = int(m.group(1))
        if events < 1:
            bad("window", f"{window!r} is not allowed; use at least 1 event")
        return events, None
    try:
        if not isinstance(window, str):
            raise ValueError
        ms = parse_duration(window)
        if ms <= 0:
            raise ValueError
        return None, ms
    except ValueError:
        bad(
            "window",
            f"{window!r} is not allowed; use 'N events' or a duration such as {DURATION_EXAMPLES}",
        )
        return None, None


def _parse_thresholds(
    raw: Mapping[str, Any], bad: Complain
) -> tuple[float | None, float | None, float | None, float | None]:
    """``threshold_min``, ``threshold_max``, ``resolve_min``, ``resolve_max``, checked against each other."""
    numbers: dict[str, float | None] = {}
    for k in _THRESHOLDS:
        v = raw.get(k)
        if v is None:
            numbers[k] = None
        elif isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            bad(k, f"{v!r} is not allowed; use a finite number")
            numbers[k] = None
        else:
            numbers[k] = float(v)
    tmin, tmax, rmin, rmax = (numbers[k] for k in _THRESHOLDS)
    if "threshold_min" not in raw and "threshold_max" not in raw:
        bad("threshold_min", "missing: give threshold_min and/or threshold_max")
    if tmin is not None and tmax is not None and tmin > tmax:
        bad("threshold_max", f"{tmax} is below threshold_min {tmin}; nothing could pass")
    if rmin is not None and (tmin is None or rmin < tmin):
        bad("resolve_min", f"{rmin} needs threshold_min <= resolve_min (hysteresis: fire below, resolve above)")
    if rmax is not None and (tmax is None or rmax > tmax):
        bad("resolve_max", f"{rmax} needs resolve_max <= threshold_max (hysteresis: fire above, resolve below)")
    return tmin, tmax, rmin, rmax


def _parse_durations(raw: Mapping[str, Any], settings: AssuranceSettings, bad: Complain) -> dict[str, int]:
    durations: dict[str, int] = {}
    for k, default in (("for", 0), ("keep_firing_for", 0), ("stale_after", settings.stale_after_ms)):
        v = raw.get(k)
        try:
            durations[k] = default if v is None else parse_duration(v)
        except ValueError as exc:
            bad(k, f"{v!r} is not allowed; use {exc}")
            durations[k] = default
    return durations


def _parse_action(raw: Mapping[str, Any], scope: Mapping[str, str], bad: Complain) -> tuple[str, int | None]:
    """``(action, degrade level)``: ``degrade:N`` becomes ``("degrade", N)``; acting needs the scope to say on whom."""
    action = raw.get("action", "alert")
    degrade_level: int | None = None
    if isinstance(action, str) and action.startswith("degrade:"):
        lvl = action.split(":", 1)[1]
        if lvl.isdigit() and MIN_LEVEL < int(lvl) <= MAX_LEVEL:
            degrade_level, action = int(lvl), "degrade"
        else:
            bad("action", f"{action!r} is not allowed; degrade:N takes a level {MIN_LEVEL + 1}-{MAX_LEVEL}")
    elif action not in ("alert", "rollback", "pause"):
        bad("action", f"{action!r} is not allowed; allowed values: {', '.join(_ACTIONS)} (N = level 1-4)")
    if action in ("rollback", "pause", "degrade") and "agent_name" not in scope:
        bad("scope", f'action {action} needs agent_name in scope (a name, or "*" to act per agent)')
    if action == "rollback" and "task_type" not in scope:
        bad("scope", 'action rollback needs task_type in scope (a name, or "*"): a rollback is per agent/task')
    return str(action), degrade_level


def _parse_min_evidence(
    raw: Mapping[str, Any], settings: AssuranceSettings, window_events: int | None, bad: Complain
) -> int:
    min_evidence = raw.get("min_evidence", settings.min_evidence)
    if isinstance(min_evidence, bool) or not isinstance(min_evidence, int) or min_evidence < 0:
        bad("min_evidence", f"{min_evidence!r} is not allowed; use a whole number >= 0")
        min_evidence = settings.min_evidence  # and still checked against the window, as every field is
    if window_events is not None and min_evidence > window_events:
        bad("min_evidence", f"{min_evidence} exceeds the window of {window_events} events; it could never be met")
    return min_evidence
