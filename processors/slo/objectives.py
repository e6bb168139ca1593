"""Service-level objectives as declared: the ``[[slo]]`` tables of ``reverify.toml``, validated into :class:`Slo`.

An SLO names an indicator (the SLI: which events are *good* among the valid
ones), the objective (the fraction of good events promised), the window the
promise is kept over, and the scope of events it counts. The error budget is
``1 - objective`` of the window's events; the burn rules say how fast it may be
spent before someone is paged or ticketed (:class:`BurnRule`, the SRE
workbook's multiwindow, multi-burn-rate alerts).

:func:`parse_slos` validates a whole list at once and raises one
:class:`SloConfigError` naming every mistake with its SLO and field, so that
``reverify slo check`` prints them all in one go.

SLIs (:data:`SLI_KINDS`)::

    success_rate             outcomes with success = true, of all outcomes
    latency_below:MS         outcomes with latency_ms <= MS, of outcomes that report a latency
    error_rate_below         outcomes, of outcomes and errors (severity error or critical)
    metric:NAME<op>VALUE     metrics NAME whose value satisfies <op> VALUE (<, <=, >, >=), of all metrics NAME

References
----------
Google SRE workbook, "Implementing SLOs": https://sre.google/workbook/implementing-slos/
Google SRE workbook, "Alerting on SLOs": https://sre.google/workbook/alerting-on-slos/
Sloth (the same four burn rules by default): https://sloth.dev/

Examples
--------
>>> [slo] = parse_slos([{"name": "shop_success", "sli": "success_rate", "objective": 0.99, "window": "30d",
...                      "scope": {"agent_name": "shop"}}])
>>> slo.window_ms, slo.budget, slo.kind, [r.text for r in slo.burn_rules][:2]
(2592000000, 0.01, 'success_rate', ['page 14.4 1h 5m', 'page 6 6h 30m'])
>>> parse_slo_sli("metric:queue_depth<=50")
('metric', 'queue_depth', '<=', 50.0)
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from reverify.processors.config_tables import TableMistakes, did_you_mean, parse_named_tables
from reverify.schemas.fields import DURATION_EXAMPLES, duration_ms

__all__ = [
    "BURN_SEVERITIES",
    "DEFAULT_BURN_RULES",
    "SLI_KINDS",
    "SLO_SCOPE_KEYS",
    "BurnRule",
    "Slo",
    "SloConfigError",
    "SloSettings",
    "parse_burn_rule",
    "parse_slo_sli",
    "parse_slos",
]

SLO_SCOPE_KEYS = ("agent_name", "task_type")
SLI_KINDS = ("success_rate", "latency_below:MS", "error_rate_below", "metric:NAME<op>VALUE")
#: What a burn rule's name becomes: the alert's severity.
BURN_SEVERITIES = {"page": "critical", "ticket": "warning"}
#: The SRE workbook's page rules and Sloth's ticket rules: severity, burn-rate factor, long window, short window.
DEFAULT_BURN_RULES = ("page 14.4 1h 5m", "page 6 6h 30m", "ticket 3 1d 2h", "ticket 1 3d 6h")

_FIELDS = ("name", "description", "sli", "objective", "window", "scope", "min_events", "burn_rules")
_METRIC = re.compile(r"^metric:([A-Za-z0-9_.:/-]+?)\s*(<=|>=|<|>)\s*(-?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)$")
_SLI_HELP = ", ".join(SLI_KINDS)
_RULE_HELP = "'SEVERITY FACTOR LONG SHORT' such as 'page 14.4 1h 5m' (SEVERITY page or ticket)"


class SloConfigError(ValueError):
    """Every mistake in a list of SLOs, one line each: ``slo NAME: field X: what is wrong, what is allowed``."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = list(errors)


@dataclass(frozen=True)
class BurnRule:
    """Alert when the budget burns ``factor`` times too fast over both the long and the short window.

    The long window makes the alert significant (``factor * long / slo window`` of the budget is gone); the
    short one makes it stop soon after the burn does (workbook, "Multiwindow, Multi-Burn-Rate Alerts").

    >>> r = parse_burn_rule("page 14.4 1h 5m")
    >>> r.severity, r.factor, r.long_ms, r.short_ms, r.alert_severity
    ('page', 14.4, 3600000, 300000, 'critical')
    >>> round(r.budget_spent(30 * 86_400_000), 4)  # of a 30-day budget, when it fires
    0.02
    """

    severity: str
    factor: float
    long_ms: int
    short_ms: int
    text: str = ""

    @property
    def alert_severity(self) -> str:
        return BURN_SEVERITIES[self.severity]

    def budget_spent(self, window_ms: int) -> float:
        """The fraction of a ``window_ms`` budget spent by the time the long window burns at ``factor``."""
        return self.factor * self.long_ms / window_ms


def parse_burn_rule(text: object) -> BurnRule:
    """One rule written ``SEVERITY FACTOR LONG SHORT``; raises ``ValueError`` saying what is allowed."""
    parts = text.split() if isinstance(text, str) else []
    if len(parts) != 4:
        raise ValueError(f"{text!r} is not a burn rule; use {_RULE_HELP}")
    severity, factor_text, long_text, short_text = parts
    if severity not in BURN_SEVERITIES:
        raise ValueError(f"{text!r}: severity {severity!r} is not allowed; use page or ticket")
    try:
        factor = float(factor_text)
    except ValueError:
        factor = math.nan
    if not (math.isfinite(factor) and factor > 0):
        raise ValueError(f"{text!r}: factor {factor_text!r} is not a number > 0")
    long_ms, short_ms = duration_ms(long_text), duration_ms(short_text)
    if not long_ms or not short_ms:
        raise ValueError(f"{text!r}: windows must be durations such as {DURATION_EXAMPLES}")
    if short_ms >= long_ms:
        raise ValueError(f"{text!r}: the short window must be shorter than the long one")
    return BurnRule(severity, factor, long_ms, short_ms, " ".join(parts))


@dataclass(frozen=True)
class SloSettings:
    """The ``[slo_alerting]`` section: burn rules and evaluation cadence for every SLO that does not say.

    Parameters
    ----------
    burn_rules
        :class:`BurnRule` texts; default :data:`DEFAULT_BURN_RULES`.
    evaluate_every_ms
        Event time between evaluations (an SloReport per SLO and scope, alerts raised or resolved).
    fine_bucket_ms, fine_horizon_ms
        Windows up to ``fine_horizon_ms`` are summed from buckets of ``fine_bucket_ms``.
    coarse_bucket_ms
        Longer windows (and the SLO window itself) from buckets of ``coarse_bucket_ms``: a window's edge is
        exact to a bucket, and the state holds at most ``window / bucket`` buckets however busy the agent.
    min_events
        Events the long window must hold before a rule may fire (low-traffic guard); an SLO may say its own.

    >>> SloSettings().evaluate_every_ms, len(SloSettings().rules)
    (60000, 4)
    """

    burn_rules: tuple[str, ...] = DEFAULT_BURN_RULES
    evaluate_every_ms: int = 60_000
    fine_bucket_ms: int = 60_000
    fine_horizon_ms: int = 6 * 3_600_000
    coarse_bucket_ms: int = 3_600_000
    min_events: int = 100

    def __post_init__(self) -> None:
        for name in ("evaluate_every_ms", "fine_bucket_ms", "fine_horizon_ms", "coarse_bucket_ms"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} = {getattr(self, name)} is not allowed; use milliseconds > 0")
        if self.fine_horizon_ms < self.fine_bucket_ms:
            raise ValueError(f"fine_horizon_ms = {self.fine_horizon_ms} is below fine_bucket_ms")
        if self.min_events < 0:
            raise ValueError(f"min_events = {self.min_events} is not allowed; use a whole number >= 0")
        _ = self.rules  # a bad rule fails here, at start-up

    @cached_property
    def rules(self) -> tuple[BurnRule, ...]:
        """:attr:`burn_rules` parsed."""
        return tuple(parse_burn_rule(r) for r in self.burn_rules)


@dataclass(frozen=True)
class Slo:
    """One declared SLO, validated; build with :func:`parse_slos`."""

    name: str
    sli: str
    objective: float
    window: str
    window_ms: int
    scope: dict[str, str] = field(default_factory=dict)
    description: str = ""
    min_events: int = 100
    burn_rules: tuple[BurnRule, ...] = ()

    @property
    def kind(self) -> str:
        """``success_rate``, ``latency_below``, ``error_rate_below`` or ``metric``."""
        return parse_slo_sli(self.sli)[0]

    @property
    def budget(self) -> float:
        """The fraction of events allowed to be bad: ``1 - objective``."""
        return round(1.0 - self.objective, 12)

    def to_dict(self) -> dict[str, Any]:
        """The SLO as it would be written in ``reverify.toml``."""
        return {
            "name": self.name,
            "description": self.description,
            "sli": self.sli,
            "objective": self.objective,
            "window": self.window,
            "scope": dict(self.scope),
            "min_events": self.min_events,
            "burn_rules": [r.text for r in self.burn_rules],
        }


def parse_slo_sli(sli: str) -> tuple[str, str, str, float]:
    """``(kind, metric name, operator, threshold)`` of an SLI text; ``ValueError`` when it is not one.

    >>> parse_slo_sli("latency_below:800"), parse_slo_sli("success_rate")[0]
    (('latency_below', '', '<=', 800.0), 'success_rate')
    """
    if sli in ("success_rate", "error_rate_below"):
        return sli, "", "", 0.0
    if sli.startswith("latency_below:"):
        ms = sli.split(":", 1)[1].strip()
        try:
            value = float(ms)
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"latency_below takes milliseconds > 0, got {ms!r}")
        return "latency_below", "", "<=", value
    match = _METRIC.match(sli)
    if match:
        return "metric", match.group(1), match.group(2), float(match.group(3))
    raise ValueError("not an SLI")


def parse_slos(raws: Iterable[Mapping[str, Any]], settings: SloSettings | None = None) -> list[Slo]:
    """Validate a list of ``[[slo]]`` tables; one :class:`SloConfigError` lists every mistake.

    >>> parse_slos([{"name": "s", "sli": "sucess_rate", "objective": 99, "window": "30 days", "scopes": {}}])
    Traceback (most recent call last):
    ...
    reverify.processors.slo.objectives.SloConfigError: slo s: field scopes: unknown field (did you mean scope?); allowed fields: name, description, sli, objective, window, scope, min_events, burn_rules
    slo s: field sli: 'sucess_rate' is not an SLI (did you mean success_rate?); allowed: success_rate, latency_below:MS, error_rate_below, metric:NAME<op>VALUE
    slo s: field objective: 99 is not allowed; use a fraction between 0 and 1, such as 0.99
    slo s: field window: '30 days' is not allowed; use a duration such as '500ms', '30s', '5m', '2h', '1d', '2w'
    """
    settings = settings or SloSettings()
    slos, errors = parse_named_tables(raws, "slo", _FIELDS, lambda raw, bad: _parse_slo(raw, bad, settings))
    if errors:
        raise SloConfigError(errors)
    return slos


def _parse_slo(raw: Mapping[str, Any], bad: TableMistakes, settings: SloSettings) -> Slo | None:
    """One SLO (its name and keys already checked), or None when it has a mistake (each said to ``bad``, in
    the order of its fields)."""
    name = raw.get("name")
    description = raw.get("description", "")
    if not isinstance(description, str):
        bad("description", f"{description!r} is not text")
    sli = _parse_sli(raw.get("sli"), bad)
    objective = _parse_objective(raw.get("objective"), bad)
    window, window_ms = _parse_window(raw.get("window", "30d"), bad)
    scope = _parse_scope(raw.get("scope", {}), bad)
    min_events = raw.get("min_events", settings.min_events)
    if isinstance(min_events, bool) or not isinstance(min_events, int) or min_events < 0:
        bad("min_events", f"{min_events!r} is not allowed; use a whole number >= 0")
    rules = _parse_rules(raw.get("burn_rules"), settings, window_ms, bad)
    if bad.count:
        return None
    return Slo(str(name), sli, objective, window, window_ms, scope, str(description), int(min_events), rules)


def _parse_sli(sli: Any, bad: Any) -> str:
    if not isinstance(sli, str) or not sli:
        bad("sli", f"{sli!r} is missing; allowed: {_SLI_HELP}")
        return ""
    try:
        parse_slo_sli(sli)
    except ValueError as exc:
        if str(exc) != "not an SLI":
            bad("sli", f"{sli!r}: {exc}")
            return sli
        hint = did_you_mean(sli, ["success_rate", "error_rate_below"])
        bad("sli", f"{sli!r} is not an SLI{hint}; allowed: {_SLI_HELP}")
    return sli


def _parse_objective(objective: Any, bad: Any) -> float:
    if isinstance(objective, bool) or not isinstance(objective, (int, float)) or not 0 < objective < 1:
        bad("objective", f"{objective!r} is not allowed; use a fraction between 0 and 1, such as 0.99")
        return 0.99
    return float(objective)


def _parse_window(window: Any, bad: Any) -> tuple[str, int]:
    ms = duration_ms(window) if isinstance(window, str) else None
    if not ms:
        bad("window", f"{window!r} is not allowed; use a duration such as {DURATION_EXAMPLES}")
        return str(window), 0
    return window, ms


def _parse_scope(scope_raw: Any, bad: Any) -> dict[str, str]:
    scope: dict[str, str] = {}
    if not isinstance(scope_raw, Mapping):
        bad("scope", f'{scope_raw!r} is not a table; use e.g. {{ agent_name = "shop" }}')
        return scope
    for k, v in scope_raw.items():
        if k not in SLO_SCOPE_KEYS:
            bad("scope", f"key {k!r} is not allowed; allowed keys: {', '.join(SLO_SCOPE_KEYS)}")
        elif not isinstance(v, str) or not v:
            bad("scope", f'{k} = {v!r} is not allowed; use a name or "*" (every value, a budget per value)')
        else:
            scope[k] = v
    return scope


def _parse_rules(raw: Any, settings: SloSettings, window_ms: int, bad: Any) -> tuple[BurnRule, ...]:
    if raw is None:
        rules = settings.rules
    elif not isinstance(raw, list) or not raw:
        bad("burn_rules", f"{raw!r} is not allowed; use a list of {_RULE_HELP}")
        return ()
    else:
        parsed = []
        for text in raw:
            try:
                parsed.append(parse_burn_rule(text))
            except ValueError as exc:
                bad("burn_rules", str(exc))
        rules = tuple(parsed)
    for rule in rules:
        if window_ms and rule.long_ms > window_ms:
            bad("burn_rules", f"{rule.text!r}: its long window is longer than the SLO window")
    return rules
