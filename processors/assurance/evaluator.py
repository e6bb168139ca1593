"""Assurance cases, re-verified on the stream: claim, evidence, scope, window, thresholds, ``for``, action.

An assurance case (seed ``DynamicAssurance``) states a claim ("enrichment
success rate remains above 80 %"), the evidence that verifies it, and what to
do when it stops holding. Here the evidence is computed from the event stream
over a rolling window, per scope, on every relevant event and on a timer:

=====================  =====================================================
evidence               value over the window
=====================  =====================================================
``success_rate``       share of outcomes with ``success``
``error_rate``         errors / (errors + outcomes); errors of severity
                       ``error``/``critical``, pipeline errors included
``reward_mean``        mean outcome ``reward``
``latency_p50/95/99``  percentile of outcome ``latency_ms``
``cost_mean``          mean outcome ``cost_usd``
``q_value``            latest Q of each arm in scope (n-weighted mean)
``psi:FEATURE``        latest drift PSI of FEATURE (worst series in scope)
``ks_p:FEATURE``       latest KS p-value (smallest); ``ks:FEATURE`` the statistic
``metric:NAME``        mean of AgentMetric NAME
``rate:NAME``          events per second of AgentMetric NAME
                       (``rate:outcomes`` and ``rate:errors`` count those streams)
=====================  =====================================================

Scope keys ``agent_name``, ``task_type``, ``variant_id``: a value restricts the
case to it, ``"*"`` evaluates the case separately for every value seen, and an
absent key pools all values into one evaluation (the claim "enrichment success
rate > 80 %" is about the enricher, not each of its variants).

The verdict is ``passed``, ``failed``, ``error`` (the evidence cannot be
computed) or ``insufficient_evidence`` (fewer than ``min_evidence``
observations, or none for a whole window) and an ``AssuranceResult`` is
emitted when it changes. A failed verdict is an alert condition: the alert
fires once it has lasted ``for`` (Prometheus's semantics, through
:class:`~processors.alerting.AlertManager`) and so does the case's action.
``resolve_min`` / ``resolve_max`` add hysteresis: a failed case passes again
only once the value is back beyond them.

References
----------
Seed ``fail-safes-rl-assurance-drift.md``, "Dynamic Assurance Cases".
Prometheus alerting rules (``for``, ``keep_firing_for``):
https://prometheus.io/docs/prometheus/latest/configuration/alerting_rules/
Goal Structuring Notation (claims and evidence): https://scsc.uk/gsn

Examples
--------
>>> cases = parse_cases([{"name": "enrich", "evidence": "success_rate", "scope": {"agent_name": "enricher"},
...                       "window": "10 events", "threshold_min": 0.8, "min_evidence": 5, "for": "30s"}])
>>> ev = AssuranceEvaluator(cases)
>>> out = []
>>> for i in range(10):
...     out += ev.on_outcome({"event_id": f"o{i}", "ts": i * 10_000, "agent_name": "enricher", "task_type": "t",
...                           "variant_id": "v", "success": i % 2 == 0, "reward": 0.5}, offset=(0, i))
>>> [(e.record_type, e.value.get("verdict") or e.value.get("status")) for e in out]
[('AssuranceResult', 'insufficient_evidence'), ('AssuranceResult', 'failed'), ('Alert', 'firing')]
"""

from __future__ import annotations

import difflib
import math
import re
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from reverify.processors.alerting import AlertManager
from reverify.processors.base import Emission, derive_id
from reverify.processors.degradation_levels import MAX_LEVEL, MIN_LEVEL
from reverify.schemas.fields import ALERT_SEVERITIES, DURATION_EXAMPLES, duration_ms

SCOPE_KEYS = ("agent_name", "task_type", "variant_id")
VERDICTS = ("passed", "failed", "error", "insufficient_evidence")
_PLAIN_EVIDENCE = (
    "success_rate",
    "error_rate",
    "reward_mean",
    "latency_p50",
    "latency_p95",
    "latency_p99",
    "cost_mean",
    "q_value",
)
_PREFIXES = ("psi", "ks_p", "ks", "metric", "rate")
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
_EVENTS = re.compile(r"^\s*(\d+)\s*events?\s*$")
# Drift reports and Q-values are states, not samples: keyed by series, the latest value counts.
_STATE_SOURCES = ("qvalue", "drift")


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
        errors: list[str] = []
        case = _parse_case(raw, settings or AssuranceSettings(), errors, index=0)
        if errors or case is None:
            raise AssuranceConfigError(errors)
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
    reverify.processors.assurance.evaluator.AssuranceConfigError: case a: field evidence: 'succes_rate' is not an evidence kind (did you mean success_rate?); allowed: success_rate, error_rate, reward_mean, latency_p50, latency_p95, latency_p99, cost_mean, q_value, psi:FEATURE, ks_p:FEATURE, ks:FEATURE, metric:NAME, rate:NAME
    case a: field window: '5 fortnights' is not allowed; use 'N events' or a duration such as '500ms', '30s', '5m', '2h', '1d', '2w'
    """
    settings = settings or AssuranceSettings()
    errors: list[str] = []
    cases: list[AssuranceCase] = []
    seen: dict[str, int] = {}
    for i, raw in enumerate(raws):
        name = raw.get("name") if isinstance(raw, Mapping) else None
        if isinstance(name, str) and name in seen:
            errors.append(f"case {name}: field name: used by case #{seen[name] + 1} too; names must be unique")
        elif isinstance(name, str):
            seen[name] = i
        case = _parse_case(raw, settings, errors, index=i)
        if case is not None:
            cases.append(case)
    if errors:
        raise AssuranceConfigError(errors)
    return cases


def _parse_case(raw: Any, settings: AssuranceSettings, errors: list[str], index: int) -> AssuranceCase | None:
    if not isinstance(raw, Mapping):
        errors.append(f"case #{index + 1}: must be a table of fields ({', '.join(_FIELDS)}), got {type(raw).__name__}")
        return None
    name = raw.get("name")
    label = f"case {name}" if isinstance(name, str) and name.strip() else f"case #{index + 1}"
    n_before = len(errors)

    def bad(fld: str, text: str) -> None:
        errors.append(f"{label}: field {fld}: {text}")

    if not (isinstance(name, str) and re.fullmatch(r"[A-Za-z0-9_.:-]+", name)):
        bad("name", f"{name!r} is missing or not allowed; use letters, digits, _ . : -")
    for key in raw:
        if key not in _FIELDS:
            near = difflib.get_close_matches(str(key), _FIELDS, n=1)
            hint = f" (did you mean {near[0]}?)" if near else ""
            bad(str(key), f"unknown field{hint}; allowed fields: {', '.join(_FIELDS)}")

    claim = raw.get("claim", "")
    if not isinstance(claim, str):
        bad("claim", f"{claim!r} is not text")
        claim = ""

    evidence = raw.get("evidence")
    allowed_ev = ", ".join([*_PLAIN_EVIDENCE, "psi:FEATURE", "ks_p:FEATURE", "ks:FEATURE", "metric:NAME", "rate:NAME"])
    if not isinstance(evidence, str) or not evidence:
        bad("evidence", f"{evidence!r} is missing; allowed: {allowed_ev}")
        evidence = ""
    elif ":" in evidence:
        prefix, arg = evidence.split(":", 1)
        if prefix not in _PREFIXES or not arg.strip():
            bad("evidence", f"{evidence!r} is not an evidence kind; allowed: {allowed_ev}")
    elif evidence not in _PLAIN_EVIDENCE:
        near = difflib.get_close_matches(evidence, _PLAIN_EVIDENCE, n=1)
        hint = f" (did you mean {near[0]}?)" if near else ""
        bad("evidence", f"{evidence!r} is not an evidence kind{hint}; allowed: {allowed_ev}")

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
    if evidence.split(":", 1)[0] in ("psi", "ks_p", "ks") and "task_type" in scope:
        bad("scope", "task_type is not allowed with drift evidence (drift series are per agent, feature, variant)")

    window = raw.get("window", "100 events")
    window_events: int | None = None
    window_ms: int | None = None
    m = _EVENTS.match(window) if isinstance(window, str) else None
    if m:
        window_events = int(m.group(1))
        if window_events < 1:
            bad("window", f"{window!r} is not allowed; use at least 1 event")
    else:
        try:
            if not isinstance(window, str):
                raise ValueError
            window_ms = parse_duration(window)
            if window_ms <= 0:
                raise ValueError
        except ValueError:
            bad(
                "window",
                f"{window!r} is not allowed; use 'N events' or a duration such as {DURATION_EXAMPLES}",
            )

    numbers: dict[str, float | None] = {}
    for k in ("threshold_min", "threshold_max", "resolve_min", "resolve_max"):
        v = raw.get(k)
        if v is None:
            numbers[k] = None
        elif isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            bad(k, f"{v!r} is not allowed; use a finite number")
            numbers[k] = None
        else:
            numbers[k] = float(v)
    tmin, tmax, rmin, rmax = (numbers[k] for k in ("threshold_min", "threshold_max", "resolve_min", "resolve_max"))
    if "threshold_min" not in raw and "threshold_max" not in raw:
        bad("threshold_min", "missing: give threshold_min and/or threshold_max")
    if tmin is not None and tmax is not None and tmin > tmax:
        bad("threshold_max", f"{tmax} is below threshold_min {tmin}; nothing could pass")
    if rmin is not None and (tmin is None or rmin < tmin):
        bad("resolve_min", f"{rmin} needs threshold_min <= resolve_min (hysteresis: fire below, resolve above)")
    if rmax is not None and (tmax is None or rmax > tmax):
        bad("resolve_max", f"{rmax} needs resolve_max <= threshold_max (hysteresis: fire above, resolve below)")

    durations: dict[str, int] = {}
    for k, default in (("for", 0), ("keep_firing_for", 0), ("stale_after", settings.stale_after_ms)):
        v = raw.get(k)
        try:
            durations[k] = default if v is None else parse_duration(v)
        except ValueError as exc:
            bad(k, f"{v!r} is not allowed; use {exc}")
            durations[k] = default

    severity = raw.get("severity", "warning")
    if severity not in ALERT_SEVERITIES:
        bad("severity", f"{severity!r} is not allowed; allowed values: {', '.join(ALERT_SEVERITIES)}")

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

    min_evidence = raw.get("min_evidence", settings.min_evidence)
    if isinstance(min_evidence, bool) or not isinstance(min_evidence, int) or min_evidence < 0:
        bad("min_evidence", f"{min_evidence!r} is not allowed; use a whole number >= 0")
        min_evidence = settings.min_evidence
    if window_events is not None and isinstance(min_evidence, int) and min_evidence > window_events:
        bad("min_evidence", f"{min_evidence} exceeds the window of {window_events} events; it could never be met")

    dry_run = raw.get("dry_run", False)
    if not isinstance(dry_run, bool):
        bad("dry_run", f"{dry_run!r} is not allowed; use true or false")
        dry_run = False

    if len(errors) > n_before:
        return None
    return AssuranceCase(
        name=str(name),
        evidence=evidence,
        claim=claim,
        scope=scope,
        window=str(window),
        window_events=window_events,
        window_ms=window_ms,
        threshold_min=tmin,
        threshold_max=tmax,
        resolve_min=rmin,
        resolve_max=rmax,
        for_ms=durations["for"],
        keep_firing_for_ms=durations["keep_firing_for"],
        severity=str(severity),
        action=str(action),
        degrade_level=degrade_level,
        min_evidence=int(min_evidence),
        dry_run=dry_run,
        stale_after_ms=durations["stale_after"],
    )


# ---------------------------------------------------------------------- evidence windows


class _Samples:
    """Rolling window of ``(ts, value)`` samples, by count or by time, with a running sum."""

    __slots__ = ("events", "ms", "items", "total")

    def __init__(self, events: int | None, ms: int | None) -> None:
        self.events, self.ms = events, ms
        self.items: deque[tuple[int, float]] = deque()
        self.total = 0.0

    def add(self, ts: int, value: float) -> None:
        self.items.append((ts, value))
        self.total += value
        if self.events is not None and len(self.items) > self.events:
            self.total -= self.items.popleft()[1]

    def evict(self, now_ms: int) -> None:
        if self.ms is None:
            return
        horizon = now_ms - self.ms
        while self.items and self.items[0][0] <= horizon:
            self.total -= self.items.popleft()[1]
        if not self.items:
            self.total = 0.0  # no float residue from a long run of additions and removals

    def __len__(self) -> int:
        return len(self.items)

    def to_list(self) -> list[list[float]]:
        return [[ts, v] for ts, v in self.items]

    def load(self, items: Iterable[Iterable[float]]) -> _Samples:
        for ts, v in items:
            self.add(int(ts), float(v))
        return self


class _Latest:
    """Latest ``(ts, value, weight)`` per series; a time window drops series not updated within it."""

    __slots__ = ("ms", "series")

    def __init__(self, ms: int | None) -> None:
        self.ms = ms
        self.series: dict[str, tuple[int, float, float]] = {}

    def set(self, key: str, ts: int, value: float, weight: float) -> None:
        old = self.series.get(key)
        if old is None or ts >= old[0]:
            self.series[key] = (ts, value, weight)

    def evict(self, now_ms: int) -> None:
        if self.ms is not None:
            horizon = now_ms - self.ms
            self.series = {k: v for k, v in self.series.items() if v[0] > horizon}

    def __len__(self) -> int:
        return len(self.series)


@dataclass
class _Group:
    """One case evaluated for one combination of scope values."""

    labels: dict[str, str]
    window: _Samples | _Latest
    verdict: str | None = None
    violating: bool = False  # hysteresis memory: stays True until the resolve threshold is crossed
    failing_since: int | None = None
    acted: bool = False
    alert_open: bool = False
    first_ts: int | None = None
    last_ts: int | None = None


# ---------------------------------------------------------------------- the evaluator


class AssuranceEvaluator:
    """Re-verifies every case on the events in its scope and on :meth:`tick`; emits verdicts, alerts and actions.

    Parameters
    ----------
    cases
        From :func:`parse_cases`.
    alerts
        The shared :class:`~processors.alerting.AlertManager`; when omitted the evaluator owns one and ticks it.
    settings_version
        Stamped on every verdict, alert and action.

    Outputs
    -------
    * ``AssuranceResult`` on ``assurance.results`` (key: case name) when a verdict changes;
    * ``Alert`` on ``alerts`` (source ``assurance``) through the alert lifecycle;
    * for ``rollback``, a ``Command`` (``command = "rollback"``) on ``control.commands``, key ``agent/task``,
      that the learning loop executes (it knows the previous best variant);
    * for ``pause`` and ``degrade:N``, an ``AgentControl`` on ``control.agents``, key ``agent_name``, with the
      agent's state over all cases (paused while any pause case fails; the highest level of failing degrade cases).

    Dry-run cases emit their verdicts and nothing else.
    """

    def __init__(
        self,
        cases: Iterable[AssuranceCase] = (),
        alerts: AlertManager | None = None,
        settings_version: str = "",
    ) -> None:
        self.owns_alerts = alerts is None
        self.alerts = alerts if alerts is not None else AlertManager()
        self.settings_version = settings_version
        self._cases: dict[str, AssuranceCase] = {}
        self._groups: dict[str, dict[tuple[str, ...], _Group]] = {}
        self._index: dict[str, dict[str | None, list[AssuranceCase]]] = {}
        self._offsets: dict[str, dict[int, int]] = {}
        self._pauses: dict[str, set[str]] = {}  # agent -> members (case/group) pausing it
        self._degrades: dict[str, dict[str, int]] = {}  # agent -> member -> level
        self._now = 0
        self._install(list(cases))

    @property
    def cases(self) -> list[AssuranceCase]:
        return list(self._cases.values())

    # ------------------------------------------------------------------ inputs

    def on_outcome(self, event: Mapping[str, Any], offset: tuple[int, int] | None = None) -> list[Emission]:
        """An ``AgentOutcome``: evidence for success, reward, latency, cost, error-rate and outcome-rate cases."""
        return self._consume("outcome", event, offset)

    def on_error(self, event: Mapping[str, Any], offset: tuple[int, int] | None = None) -> list[Emission]:
        """An ``AgentError``: evidence for error-rate and ``rate:errors`` cases."""
        return self._consume("error", event, offset)

    def on_metric(self, event: Mapping[str, Any], offset: tuple[int, int] | None = None) -> list[Emission]:
        """An ``AgentMetric``: evidence for ``metric:NAME`` and ``rate:NAME`` cases."""
        return self._consume("metric", event, offset)

    def on_qvalue(self, event: Mapping[str, Any], offset: tuple[int, int] | None = None) -> list[Emission]:
        """A ``QValue``: the latest Q of an arm, for ``q_value`` cases."""
        return self._consume("qvalue", event, offset)

    def on_drift(self, event: Mapping[str, Any], offset: tuple[int, int] | None = None) -> list[Emission]:
        """A ``DriftReport``: the latest PSI / KS of a series, for ``psi:``, ``ks_p:`` and ``ks:`` cases."""
        return self._consume("drift", event, offset)

    def tick(self, now_ms: int) -> list[Emission]:
        """Re-verify every case at ``now_ms``: windows expire, stale evidence becomes insufficient, ``for`` elapses."""
        self._now = max(self._now, now_ms)
        out: list[Emission] = []
        cause = f"tick:{now_ms}"
        for name, groups in self._groups.items():
            case = self._cases[name]
            for key, group in groups.items():
                out += self._evaluate(case, key, group, self._now, cause)
        if self.owns_alerts:
            out += self.alerts.tick(self._now)
        return out

    def reload(self, cases: Iterable[AssuranceCase], now_ms: int) -> list[Emission]:
        """Switch to a new list of cases; unchanged cases keep their windows, verdicts and pending alerts.

        Removed or changed cases give back what they did: their alerts resolve and
        their pause / degrade contributions are withdrawn.
        """
        self._now = max(self._now, now_ms)
        new = {c.name: c for c in cases}
        out: list[Emission] = []
        for name, old in list(self._cases.items()):
            if new.get(name) == old:
                continue
            for key, group in self._groups.get(name, {}).items():
                out += self._retire(old, key, group, self._now)
            self._groups.pop(name, None)
        self._install(list(new.values()))
        return out

    # ------------------------------------------------------------------ queries

    def verdicts(self) -> list[dict[str, Any]]:
        """Current verdict of every case and scope (for ``reverify assurance status``)."""
        return [
            {"case": name, "scope": dict(g.labels), "verdict": g.verdict or "insufficient_evidence", "acted": g.acted}
            for name, groups in self._groups.items()
            for g in groups.values()
        ]

    def is_paused(self, agent: str) -> bool:
        return bool(self._pauses.get(agent))

    def degradation_level(self, agent: str) -> int:
        return max(self._degrades.get(agent, {}).values(), default=0)

    # ------------------------------------------------------------------ persistence

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible state; each case's state is tagged with its definition so a changed case starts afresh."""
        cases = {}
        for name, groups in self._groups.items():
            case = self._cases[name]
            cases[name] = {
                "definition": case.to_dict(),
                "groups": [self._group_to_dict(key, g) for key, g in groups.items()],
            }
        return {
            "version": 1,
            "now": self._now,
            "offsets": {k: {str(p): o for p, o in v.items()} for k, v in self._offsets.items()},
            "cases": cases,
            "pauses": {a: sorted(m) for a, m in self._pauses.items()},
            "degrades": {a: dict(m) for a, m in self._degrades.items()},
            "alerts": self.alerts.to_dict() if self.owns_alerts else None,
        }

    @classmethod
    def from_dict(
        cls,
        data: Mapping[str, Any],
        cases: Iterable[AssuranceCase],
        alerts: AlertManager | None = None,
        settings_version: str = "",
    ) -> AssuranceEvaluator:
        """Restore :meth:`to_dict`'s state for ``cases`` (the current config); state of changed cases is dropped."""
        ev = cls(cases, alerts, settings_version)
        if alerts is None and data.get("alerts") is not None:
            ev.alerts = AlertManager.from_dict(data["alerts"])
        ev._now = int(data.get("now", 0))
        ev._offsets = {k: {int(p): int(o) for p, o in v.items()} for k, v in data.get("offsets", {}).items()}
        for name, saved in data.get("cases", {}).items():
            case = ev._cases.get(name)
            if case is None or saved["definition"] != case.to_dict():
                continue
            for raw in saved["groups"]:
                key = tuple(raw["key"])
                ev._groups.setdefault(name, {})[key] = ev._group_from_dict(case, raw)
        live = {f"{n}\x1f" + "\x1f".join(k) for n, gs in ev._groups.items() for k in gs}
        ev._pauses = {a: {m for m in ms if m in live} for a, ms in data.get("pauses", {}).items()}
        ev._degrades = {
            a: {m: int(v) for m, v in ms.items() if m in live} for a, ms in data.get("degrades", {}).items()
        }
        return ev

    # ------------------------------------------------------------------ internals: routing

    def _install(self, cases: list[AssuranceCase]) -> None:
        self._cases = {c.name: c for c in cases}
        self._index = {}
        for c in cases:
            agent = c.scope.get("agent_name")
            literal = None if agent in (None, "*") else agent
            for src in c.source_kinds:
                self._index.setdefault(src, {}).setdefault(literal, []).append(c)
        self._groups = {n: g for n, g in self._groups.items() if n in self._cases}

    def _consume(self, stream: str, event: Mapping[str, Any], offset: tuple[int, int] | None) -> list[Emission]:
        if offset is not None:
            partition, off = offset
            seen = self._offsets.setdefault(stream, {})
            if partition in seen and off <= seen[partition]:
                return []  # a replay after a crash: already applied
            seen[partition] = off
        ts = int(event["ts"])
        self._now = max(self._now, ts)
        by_agent = self._index.get(stream)
        if not by_agent:
            return []
        agent = event.get("agent_name")
        candidates = by_agent.get(None, []) if agent is None else by_agent.get(agent, []) + by_agent.get(None, [])
        out: list[Emission] = []
        cause = str(event.get("event_id", ts))
        for case in candidates:
            if not self._relevant(case, stream, event):
                continue
            key = self._group_key(case, event)
            if key is None:
                continue
            group = self._group(case, key, event)
            self._observe(case, stream, group, event, ts)
            out += self._evaluate(case, key, group, self._now, cause)
        return out

    @staticmethod
    def _relevant(case: AssuranceCase, stream: str, event: Mapping[str, Any]) -> bool:
        kind, arg = case.kind, case.argument
        if stream == "metric":
            return event.get("name") == arg
        if stream == "drift":
            return event.get("feature") == arg
        if stream == "error" and kind == "error_rate":
            # Warnings and info are not failures (the same rule as the error monitor's default).
            return event.get("severity", "error") in ("error", "critical")
        return True

    @staticmethod
    def _group_key(case: AssuranceCase, event: Mapping[str, Any]) -> tuple[str, ...] | None:
        key = []
        for dim in SCOPE_KEYS:
            want = case.scope.get(dim)
            if want is None:
                continue
            got = event.get(dim)
            if want == "*":
                if got is None:
                    return None  # cannot say which scope value this event belongs to
                key.append(str(got))
            elif got != want:
                return None
        return tuple(key)

    def _group(self, case: AssuranceCase, key: tuple[str, ...], event: Mapping[str, Any]) -> _Group:
        groups = self._groups.setdefault(case.name, {})
        group = groups.get(key)
        if group is None:
            labels = {dim: (str(event[dim]) if v == "*" else v) for dim, v in case.scope.items()}
            group = groups[key] = _Group(labels=labels, window=self._new_window(case))
        return group

    @staticmethod
    def _new_window(case: AssuranceCase) -> _Samples | _Latest:
        if case.source_kinds[0] in _STATE_SOURCES:
            return _Latest(case.window_ms)
        return _Samples(case.window_events, case.window_ms)

    @staticmethod
    def _observe(case: AssuranceCase, stream: str, group: _Group, event: Mapping[str, Any], ts: int) -> None:
        group.first_ts = ts if group.first_ts is None else min(group.first_ts, ts)
        group.last_ts = ts if group.last_ts is None else max(group.last_ts, ts)
        kind = case.kind
        win = group.window
        if isinstance(win, _Latest):
            if kind == "q_value":
                series = f"{event['agent_name']}/{event['task_type']}/{event['variant_id']}"
                win.set(series, ts, float(event["q"]), float(event.get("n", 1)))
            else:
                series = f"{event['agent_name']}/{event.get('variant_id') or ''}"
                field_name = {"psi": "psi", "ks_p": "ks_pvalue", "ks": "ks_statistic"}[kind]
                win.set(series, ts, float(event[field_name]), float(event.get("window_size", 0)))
            return
        if kind == "rate":
            value = 1.0
        elif kind == "error_rate":
            value = 1.0 if stream == "error" else 0.0
        elif kind == "success_rate":
            value = 1.0 if event["success"] else 0.0
        elif kind == "reward_mean":
            value = float(event["reward"])
        elif kind.startswith("latency_p"):
            value = float(event.get("latency_ms", 0.0))
        elif kind == "cost_mean":
            value = float(event.get("cost_usd", 0.0))
        else:  # metric
            value = float(event["value"])
        win.add(ts, value)

    # ------------------------------------------------------------------ internals: verdicts

    def _measure(self, case: AssuranceCase, group: _Group, now_ms: int) -> tuple[float | None, int, str]:
        """``(value, sample size, why not)``: the evidence now, or why there is none."""
        win = group.window
        win.evict(now_ms)
        kind = case.kind
        if isinstance(win, _Latest):
            if not win.series:
                return None, 0, f"no {case.evidence} reported within {case.window}"
            vals = list(win.series.values())
            if kind == "q_value":
                weight = sum(w for _, _, w in vals)
                value = sum(v * w for _, v, w in vals) / weight if weight > 0 else float("nan")
                return value, int(weight), ""
            pick = min if kind == "ks_p" else max  # the worst series in scope decides
            _, value, size = pick(vals, key=lambda t: t[1])
            return value, int(size), ""
        n = len(win)
        if kind == "rate":
            if case.window_ms is not None:
                return n / (case.window_ms / 1000.0), n, ""
            span = (win.items[-1][0] - win.items[0][0]) / 1000.0 if n > 1 else 0.0
            return ((n - 1) / span if span > 0 else None), n, "" if span > 0 else "all events at one instant"
        if n == 0:
            return None, 0, f"no evidence within {case.window}"
        if kind.startswith("latency_p"):
            q = float(kind[len("latency_p") :])
            return _percentile(sorted(v for _, v in win.items), q), n, ""
        return win.total / n, n, ""

    def _evaluate(
        self, case: AssuranceCase, key: tuple[str, ...], group: _Group, now: int, cause: str
    ) -> list[Emission]:
        value, n, why = self._measure(case, group, now)
        stale = (
            case.window_events is not None and group.last_ts is not None and now - group.last_ts >= case.stale_after_ms
        )
        threshold: float | None = None
        if stale:
            verdict = "insufficient_evidence"
            message = f"no {case.evidence} evidence for {now - group.last_ts} ms (stale after {case.stale_after_ms} ms)"
        elif n < case.min_evidence or (n == 0 and case.kind != "rate"):
            verdict = "insufficient_evidence"
            message = why or f"{n} observations < min_evidence {case.min_evidence} over {case.window}"
        elif value is None or not math.isfinite(value):
            verdict = "error"
            message = f"{case.evidence} cannot be computed: {why or 'not a finite number'}"
            value = None
        else:
            violating, threshold = self._check(case, value, group.violating)
            group.violating = violating
            verdict = "failed" if violating else "passed"
            message = ""  # built only when someone will read it: the explanation is the costly part
        if not message and (verdict != group.verdict or group.alert_open or verdict == "failed"):
            message = self._explain(case, value, n, verdict == "failed", threshold)  # type: ignore[arg-type]
        out: list[Emission] = []
        if verdict != group.verdict:
            out.append(self._result(case, key, group, verdict, value, n, message, now, cause))
            group.verdict = verdict
        if case.dry_run:
            return out
        out += self._alert(case, group, verdict == "failed", value, n, threshold, message, now)
        out += self._act(case, key, group, verdict, value, threshold, message, now, cause)
        return out

    @staticmethod
    def _check(case: AssuranceCase, value: float, was_violating: bool) -> tuple[bool, float | None]:
        """Threshold test with hysteresis; returns ``(violating, the threshold that decided)``."""
        lo = case.resolve_min if was_violating and case.resolve_min is not None else case.threshold_min
        hi = case.resolve_max if was_violating and case.resolve_max is not None else case.threshold_max
        if lo is not None and value < lo:
            return True, lo
        if hi is not None and value > hi:
            return True, hi
        return False, case.threshold_min if case.threshold_min is not None else case.threshold_max

    @staticmethod
    def _explain(case: AssuranceCase, value: float, n: int, violating: bool, threshold: float | None) -> str:
        bounds = f"[{_fmt(case.threshold_min)}, {_fmt(case.threshold_max)}]"
        if case.resolve_min is not None or case.resolve_max is not None:
            bounds += f" (resolve at [{_fmt(case.resolve_min)}, {_fmt(case.resolve_max)}])"
        state = "violates" if violating else "within"
        return f"{case.evidence} = {value:.4g} over {case.window} (n={n}) {state} {bounds}"

    def _result(
        self,
        case: AssuranceCase,
        key: tuple[str, ...],
        group: _Group,
        verdict: str,
        value: float | None,
        n: int,
        message: str,
        now: int,
        cause: str,
    ) -> Emission:
        record = {
            "event_id": derive_id("assurance", case.name, key, verdict, cause),
            "ts": now,
            "case_name": case.name,
            "claim": case.claim,
            "evidence": case.evidence,
            "scope": dict(group.labels),
            "verdict": verdict,
            "previous_verdict": group.verdict,
            "value": value,
            "threshold_min": case.threshold_min,
            "threshold_max": case.threshold_max,
            "window": case.window,
            "sample_size": n,
            "severity": case.severity,
            "action": case.action_label,
            "dry_run": case.dry_run,
            "settings_version": self.settings_version,
            "message": ("dry run: " if case.dry_run else "") + message,
        }
        return Emission("assurance.results", case.name, "AssuranceResult", record)

    def _alert(
        self,
        case: AssuranceCase,
        group: _Group,
        active: bool,
        value: float | None,
        n: int,
        threshold: float | None,
        message: str,
        now: int,
    ) -> list[Emission]:
        if not active and not group.alert_open:
            return []
        group.alert_open = active
        evidence: dict[str, float] = {"sample_size": float(n)}
        if value is not None:
            evidence["value"] = value
        if threshold is not None:
            evidence["threshold"] = threshold
        for k in ("threshold_min", "threshold_max", "resolve_min", "resolve_max"):
            if getattr(case, k) is not None:
                evidence[k] = getattr(case, k)
        return self.alerts.observe(
            "assurance",
            {"case": case.name, **group.labels},
            active,
            now,
            severity=case.severity,
            title=f"assurance case {case.name} failed" + (f": {case.claim}" if case.claim else ""),
            message=message,
            evidence=evidence,
            for_ms=case.for_ms,
            keep_firing_for_ms=case.keep_firing_for_ms,
            settings_version=self.settings_version,
            statistic=case.evidence,
        )

    # ------------------------------------------------------------------ internals: actions

    def _act(
        self,
        case: AssuranceCase,
        key: tuple[str, ...],
        group: _Group,
        verdict: str,
        value: float | None,
        threshold: float | None,
        message: str,
        now: int,
        cause: str,
    ) -> list[Emission]:
        if verdict == "failed":
            if group.failing_since is None:
                group.failing_since = now
        else:
            group.failing_since = None
        if case.action == "alert":
            return []
        if verdict == "failed" and not group.acted and now - (group.failing_since or now) >= case.for_ms:
            group.acted = True
            return self._start_action(case, key, group, value, threshold, message, now, cause)
        if verdict == "passed" and group.acted:
            # A paused agent may never produce evidence again: only a passing verdict lifts the action.
            group.acted = False
            return self._stop_action(case, key, group, now, cause)
        return []

    def _start_action(
        self,
        case: AssuranceCase,
        key: tuple[str, ...],
        group: _Group,
        value: float | None,
        threshold: float | None,
        message: str,
        now: int,
        cause: str,
    ) -> list[Emission]:
        agent = group.labels["agent_name"]
        member = f"{case.name}\x1f" + "\x1f".join(key)
        # "assurance:" first: VariantRouter tells control sources apart by prefix (the error monitor writes "errors:")
        reason = f"assurance:{case.name} failed for {case.for_ms} ms: {message}"
        if case.action == "rollback":
            task = group.labels["task_type"]
            args = {
                "agent_name": agent,
                "task_type": task,
                "case": case.name,
                "reason": reason,
                "trigger": f"assurance:{case.name}",
                "value": _fmt(value),
                "threshold": _fmt(threshold),
            }
            if "variant_id" in group.labels:
                args["variant_id"] = group.labels["variant_id"]
            record = {
                "event_id": derive_id("assurance-rollback", case.name, key, group.failing_since, cause),
                "ts": now,
                "command": "rollback",
                "args": args,
                "by": f"assurance:{case.name}",
            }
            return [Emission("control.commands", f"{agent}/{task}", "Command", record)]
        if case.action == "pause":
            was = self.is_paused(agent)
            self._pauses.setdefault(agent, set()).add(member)
            return [] if was else [self._control(agent, "pause", reason, now, cause)]
        before = self.degradation_level(agent)
        self._degrades.setdefault(agent, {})[member] = case.degrade_level or 0
        after = self.degradation_level(agent)
        return [] if after == before else [self._control(agent, "degrade", reason, now, cause)]

    def _stop_action(
        self, case: AssuranceCase, key: tuple[str, ...], group: _Group, now: int, cause: str
    ) -> list[Emission]:
        agent = group.labels.get("agent_name")
        if agent is None or case.action == "rollback":
            return []  # a rollback is not undone: the learning loop promotes again on evidence
        member = f"{case.name}\x1f" + "\x1f".join(key)
        reason = f"assurance:{case.name} passes again"
        if case.action == "pause":
            members = self._pauses.get(agent, set())
            had = bool(members)
            members.discard(member)
            if not members:
                self._pauses.pop(agent, None)
            return [self._control(agent, "resume", reason, now, cause)] if had and not members else []
        levels = self._degrades.get(agent, {})
        before = self.degradation_level(agent)
        levels.pop(member, None)
        if not levels:
            self._degrades.pop(agent, None)
        after = self.degradation_level(agent)
        return [] if after == before else [self._control(agent, "degrade", reason, now, cause)]

    def _control(self, agent: str, kind: str, reason: str, now: int, cause: str) -> Emission:
        level = self.degradation_level(agent)
        paused = self.is_paused(agent)
        record = {
            "event_id": derive_id("assurance-control", agent, kind, paused, level, cause),
            "ts": now,
            "agent_name": agent,
            "kind": kind,
            "paused": paused,
            "degradation_level": level,
            "component": None,
            "circuit_state": None,
            "reason": reason,
            "cause_id": cause,
        }
        return Emission("control.agents", agent, "AgentControl", record)

    def _retire(self, case: AssuranceCase, key: tuple[str, ...], group: _Group, now: int) -> list[Emission]:
        out: list[Emission] = []
        cause = f"reload:{now}"
        if group.alert_open:
            group.alert_open = False
            out += self.alerts.observe(
                "assurance",
                {"case": case.name, **group.labels},
                False,
                now,
                message=f"assurance case {case.name} was removed or changed",
                statistic=case.evidence,
            )
        if group.acted:
            group.acted = False
            out += self._stop_action(case, key, group, now, cause)
        return out

    # ------------------------------------------------------------------ internals: state

    @staticmethod
    def _group_to_dict(key: tuple[str, ...], g: _Group) -> dict[str, Any]:
        win = g.window
        return {
            "key": list(key),
            "labels": dict(g.labels),
            "samples": win.to_list() if isinstance(win, _Samples) else None,
            "series": {k: list(v) for k, v in win.series.items()} if isinstance(win, _Latest) else None,
            "verdict": g.verdict,
            "violating": g.violating,
            "failing_since": g.failing_since,
            "acted": g.acted,
            "alert_open": g.alert_open,
            "first_ts": g.first_ts,
            "last_ts": g.last_ts,
        }

    def _group_from_dict(self, case: AssuranceCase, raw: Mapping[str, Any]) -> _Group:
        win = self._new_window(case)
        if isinstance(win, _Samples):
            win.load(raw.get("samples") or [])
        else:
            win.series = {k: (int(v[0]), float(v[1]), float(v[2])) for k, v in (raw.get("series") or {}).items()}
        return _Group(
            labels=dict(raw["labels"]),
            window=win,
            verdict=raw["verdict"],
            violating=raw["violating"],
            failing_since=raw["failing_since"],
            acted=raw["acted"],
            alert_open=raw["alert_open"],
            first_ts=raw["first_ts"],
            last_ts=raw["last_ts"],
        )


def _percentile(ordered: list[float], q: float) -> float:
    """Linear-interpolation percentile of sorted values (numpy's default method), without numpy's call overhead.

    >>> _percentile([1.0, 2.0, 3.0, 4.0], 50), _percentile([1.0, 2.0, 3.0, 4.0], 95)
    (2.5, 3.85)
    """
    pos = (len(ordered) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:g}"
