"""SLO evaluation: error budgets over each SLO's window, burn rates over the alert windows, and their alerts.

One :class:`SloEvaluator` per agent pipeline counts every outcome, error and
metric in scope of a declared :class:`~reverify.processors.slo.objectives.Slo`
into bucketed counters (:class:`~reverify.processors.slo.counts.BucketedCounts`),
one *series* per SLO and scope value (``scope = { task_type = "*" }`` keeps a
budget per task type; an SLO that does not name the agent keeps one per agent).

Its clock is event time: the latest ``ts`` of the inputs it counted. Each time
the clock passes a multiple of ``evaluate_every_ms`` it evaluates every series:

* the budget over the SLO window (consumed, remaining) and the burn rate over
  each window the burn rules name, published as an ``SloReport``;
* each burn rule (workbook: multiwindow, multi-burn-rate): the burn rate over
  the long window *and* over the short one above the rule's factor, with at
  least ``min_events`` events in the long window. The ``page`` rules together
  are one alert condition (severity critical), the ``ticket`` rules another
  (warning), observed through the shared
  :class:`~reverify.processors.alerting.AlertManager` with ``source = "slo"``,
  so routing, acks, silences and notifications apply, and an alert resolves as
  soon as the short window stops burning.

Event time makes a replay of the same inputs give the same reports and alerts
as the worker. When no input comes for a whole evaluation interval, the
worker's timer (:meth:`SloEvaluator.tick`) moves the clock instead, so a burn
stops, and its alert resolves, even when the agent has gone quiet.

References
----------
Google SRE workbook, "Alerting on SLOs": https://sre.google/workbook/alerting-on-slos/
Sloth's generated rules (the same burn rules and windows): https://sloth.dev/introduction/

Examples
--------
>>> from reverify.processors.slo.objectives import parse_slos
>>> [slo] = parse_slos([{"name": "ok", "sli": "success_rate", "objective": 0.99, "window": "30d"}])
>>> ev = SloEvaluator([slo])
>>> out = []
>>> for i in range(600):            # ten minutes, one outcome a second, 10 % failing: a 10x burn
...     out += ev.on_outcome({"ts": i * 1000, "agent_name": "a", "task_type": "t", "success": i % 10 != 0})
>>> [(e.value["status"], e.value["labels"]["alert"], e.value["severity"]) for e in out if e.record_type == "Alert"]
[('firing', 'page', 'critical'), ('firing', 'ticket', 'warning')]
>>> report = [e.value for e in out if e.record_type == "SloReport"][-1]
>>> report["ts"], round(report["burn_rates"]["6h"], 1), report["alerting"], round(report["error_budget_remaining"], 1)
(540000, 10.2, 'page', -9.2)
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from reverify.processors.alerting import AlertManager
from reverify.processors.applied import AppliedOffsets
from reverify.processors.base import Emission, derive_id
from reverify.processors.slo.budget import budget, burn_rate
from reverify.processors.slo.counts import BucketedCounts
from reverify.processors.slo.objectives import BURN_SEVERITIES, BurnRule, Slo, SloSettings, parse_slo_sli
from reverify.schemas.fields import DURATION_UNITS_MS

SOURCE = "slo"
_OPS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
_BAD_ERRORS = ("error", "critical")

#: ``good(event) -> bool | None`` (None: the event is not valid for the SLI), per input kind.
Judge = Callable[[Mapping[str, Any]], "bool | None"]


def window_label(ms: int) -> str:
    """``5m``, ``1h``, ``30d``: the largest unit that divides ``ms`` (the key of a window's burn rate).

    >>> window_label(300_000), window_label(5_400_000), window_label(2_592_000_000)
    ('5m', '90m', '30d')
    """
    for unit in ("w", "d", "h", "m", "s"):
        size = DURATION_UNITS_MS[unit]
        if ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


def judges(slo: Slo) -> dict[str, Judge]:
    """How each input kind (``outcome``, ``error``, ``metric``) counts for ``slo``'s SLI.

    >>> from reverify.processors.slo.objectives import parse_slos
    >>> j = judges(parse_slos([{"name": "fast", "sli": "latency_below:800", "objective": 0.99}])[0])
    >>> j["outcome"]({"latency_ms": 650.0}), j["outcome"]({"latency_ms": 900.0}), j["outcome"]({"latency_ms": None})
    (True, False, None)
    """
    kind, name, op, threshold = parse_slo_sli(slo.sli)
    if kind == "success_rate":
        return {"outcome": lambda e: bool(e["success"])}
    if kind == "latency_below":
        return {"outcome": lambda e: None if e.get("latency_ms") is None else e["latency_ms"] <= threshold}
    if kind == "error_rate_below":
        return {"outcome": lambda e: True, "error": lambda e: False if e.get("severity") in _BAD_ERRORS else None}
    compare = _OPS[op]
    return {"metric": lambda e: compare(e["value"], threshold) if e["name"] == name else None}


class _Series:
    """One SLO's counts for one scope value, and which of its alert conditions held at the last evaluation."""

    __slots__ = ("agent", "alerting", "counts", "task")

    def __init__(self, agent: str, task: str | None, counts: BucketedCounts) -> None:
        self.agent, self.task, self.counts = agent, task, counts
        self.alerting: list[str] = []  # burn-rule severities (page, ticket) active at the last evaluation


class SloEvaluator:
    """Counts the events of every SLO's scope and evaluates budgets, burn rates and alerts on event time.

    Parameters
    ----------
    slos
        From :func:`~reverify.processors.slo.objectives.parse_slos`.
    alerts
        The shared :class:`~reverify.processors.alerting.AlertManager` (the pipeline's); its own when omitted.
    settings_version
        Stamped on every report and alert.
    settings
        :class:`~reverify.processors.slo.objectives.SloSettings` (evaluation cadence, bucket widths).

    Outputs
    -------
    * ``SloReport`` on ``slo.reports`` (key ``slo/agent[/task]``) per series at each evaluation;
    * ``Alert`` on ``alerts`` (source ``slo``, labels ``slo``, ``agent_name``, [``task_type``], ``alert`` =
      ``page`` | ``ticket``) through the alert lifecycle.
    """

    def __init__(
        self,
        slos: Iterable[Slo] = (),
        alerts: AlertManager | None = None,
        settings_version: str = "",
        settings: SloSettings | None = None,
    ) -> None:
        self.slos = {s.name: s for s in slos}
        self.alerts = alerts if alerts is not None else AlertManager()
        self.settings_version = settings_version
        self.settings = settings or SloSettings()
        self._judges = {name: judges(slo) for name, slo in self.slos.items()}
        self._alert_windows = {
            s.name: sorted({w for r in s.burn_rules for w in (r.short_ms, r.long_ms)}) for s in self.slos.values()
        }
        self._by_kind = {k: [s for s in self.slos.values() if k in self._judges[s.name]] for k in _KINDS}
        self._series: dict[str, dict[tuple[str, str | None], _Series]] = {name: {} for name in self.slos}
        self._offsets = {k: AppliedOffsets() for k in _KINDS}
        self._clock: int | None = None
        self._last_input: int | None = None

    # ------------------------------------------------------------------ inputs

    def on_outcome(self, event: Mapping[str, Any], offset: tuple[int, int] | None = None) -> list[Emission]:
        """An ``AgentOutcome``: counted by success-rate, latency and error-rate SLOs in scope."""
        return self._consume("outcome", event, offset)

    def on_error(self, event: Mapping[str, Any], offset: tuple[int, int] | None = None) -> list[Emission]:
        """An ``AgentError`` (severity error or critical): a bad event for error-rate SLOs in scope."""
        return self._consume("error", event, offset)

    def on_metric(self, event: Mapping[str, Any], offset: tuple[int, int] | None = None) -> list[Emission]:
        """An ``AgentMetric``: counted by ``metric:NAME...`` SLOs in scope."""
        return self._consume("metric", event, offset)

    def tick(self, now_ms: int) -> list[Emission]:
        """The worker's timer: after a whole evaluation interval without inputs, evaluate at ``now_ms``."""
        if self._clock is None or self._last_input is None:
            return []
        if now_ms - self._last_input < self.settings.evaluate_every_ms or now_ms < self._next_evaluation():
            return []
        self._clock = max(self._clock, now_ms)
        return self.evaluate(self._clock)

    # ------------------------------------------------------------------ evaluation

    def evaluate(self, now_ms: int) -> list[Emission]:
        """Reports and alert changes of every series at ``now_ms``; series with nothing left in their window go."""
        out: list[Emission] = []
        for name, series in self._series.items():
            slo = self.slos[name]
            for key in list(series):
                s = series[key]
                s.counts.prune(now_ms)
                out += self._evaluate(slo, s, now_ms)
                if s.counts.empty() and not s.alerting:
                    del series[key]
        return out

    def series_count(self) -> int:
        """Series held (SLO x scope value): what bounds the state with the bucket limits."""
        return sum(len(s) for s in self._series.values())

    def _consume(self, kind: str, event: Mapping[str, Any], offset: tuple[int, int] | None) -> list[Emission]:
        slos = self._by_kind[kind]
        if not slos or self._offsets[kind].replayed(offset):
            return []
        ts = int(event["ts"])
        agent, task = str(event.get("agent_name", "")), event.get("task_type")
        counted = False
        for slo in slos:
            if not _in_scope(slo.scope, agent, task):
                continue
            good = self._judges[slo.name][kind](event)
            if good is None:
                continue
            self._series_of(slo, agent, task).counts.add(ts, good)
            counted = True
        if not counted:
            return []
        self._last_input = ts if self._last_input is None else max(self._last_input, ts)
        if self._clock is None:
            self._clock = ts
            return []
        if ts < self._next_evaluation():
            return []
        self._clock = ts
        return self.evaluate(ts)

    def _next_evaluation(self) -> int:
        assert self._clock is not None
        every = self.settings.evaluate_every_ms
        return (self._clock // every + 1) * every

    def _series_of(self, slo: Slo, agent: str, task: str | None) -> _Series:
        task_key = task if slo.scope.get("task_type", "") else None  # a task named or "*": a series per task
        series = self._series[slo.name]
        found = series.get((agent, task_key))
        if found is None:
            s = self.settings
            counts = BucketedCounts(s.fine_bucket_ms, s.fine_horizon_ms, s.coarse_bucket_ms, slo.window_ms)
            found = series[(agent, task_key)] = _Series(agent, task_key, counts)
        return found

    def _evaluate(self, slo: Slo, s: _Series, now_ms: int) -> list[Emission]:
        counts = s.counts
        alert_windows = self._alert_windows[slo.name]
        sums = counts.windows(now_ms, [slo.window_ms, *alert_windows])
        good, total = sums[slo.window_ms]
        consumed, remaining = budget(good, total, slo.objective)
        rates = {w: burn_rate(*sums[w], slo.objective) for w in alert_windows}
        out: list[Emission] = []
        alerting: list[str] = []
        for severity in BURN_SEVERITIES:
            rules = [r for r in slo.burn_rules if r.severity == severity]
            if not rules:
                continue
            firing = [r for r in rules if self._fires(slo, r, rates, sums)]
            if firing:
                alerting.append(severity)
            if firing or severity in s.alerting:
                out += self._observe(slo, s, severity, firing or rules, rates, sums, remaining, now_ms)
        s.alerting = alerting
        report = {
            "event_id": derive_id("slo-report", slo.name, s.agent, s.task, now_ms),
            "ts": now_ms,
            "slo": slo.name,
            "sli": slo.sli,
            "objective": slo.objective,
            "window": slo.window,
            "window_ms": slo.window_ms,
            "agent_name": s.agent,
            "task_type": s.task,
            "good": good,
            "total": total,
            "sli_value": good / total if total else None,
            "error_budget_consumed": consumed,
            "error_budget_remaining": remaining,
            "burn_rates": {window_label(w): r for w, r in rates.items()},
            "alerting": alerting[0] if alerting else "none",
            "settings_version": self.settings_version,
        }
        key = "/".join(p for p in (slo.name, s.agent, s.task) if p is not None)
        return [Emission("slo.reports", key, "SloReport", report), *out]

    def _fires(self, slo: Slo, rule: BurnRule, rates: dict[int, float], sums: dict[int, tuple[int, int]]) -> bool:
        enough = sums[rule.long_ms][1] >= slo.min_events
        return enough and rates[rule.long_ms] > rule.factor and rates[rule.short_ms] > rule.factor

    def _observe(
        self,
        slo: Slo,
        s: _Series,
        severity: str,
        rules: list[BurnRule],
        rates: dict[int, float],
        sums: dict[int, tuple[int, int]],
        remaining: float,
        now_ms: int,
    ) -> list[Emission]:
        """Tell the alert manager whether ``severity``'s condition holds; evidence from its worst-burning rule."""
        active = any(self._fires(slo, r, rates, sums) for r in rules)
        worst = max(rules, key=lambda r: rates[r.long_ms] / r.factor)
        labels = {"slo": slo.name, "agent_name": s.agent, "alert": severity}
        if s.task is not None:
            labels["task_type"] = s.task
        long_label, short_label = window_label(worst.long_ms), window_label(worst.short_ms)
        evidence = {
            "value": rates[worst.long_ms],
            "threshold": worst.factor,
            "sample_size": sums[worst.long_ms][1],
            "burn_rate_short": rates[worst.short_ms],
            "error_budget_remaining": remaining,
            "objective": slo.objective,
        }
        title = f"SLO {slo.name} ({s.agent}{'/' + s.task if s.task else ''}) burns its error budget"
        message = (
            f"burn rate {rates[worst.long_ms]:g} over {long_label} and {rates[worst.short_ms]:g} over {short_label} "
            f"(rule '{worst.text}': above {worst.factor:g} over both spends {worst.budget_spent(slo.window_ms):.0%} "
            f"of the {slo.window} budget); {remaining:.1%} of the budget left"
        )
        return self.alerts.observe(
            SOURCE,
            labels,
            active,
            now_ms,
            severity=BURN_SEVERITIES[severity],
            title=title,
            message=message,
            evidence=evidence,
            settings_version=self.settings_version,
            statistic="burn_rate",
        )

    # ------------------------------------------------------------------ persistence

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": 1,
            "clock": self._clock,
            "last_input": self._last_input,
            "offsets": {k: v.to_dict() for k, v in self._offsets.items()},
            "series": {
                name: [[s.agent, s.task, s.counts.to_dict(), s.alerting] for s in series.values()]
                for name, series in self._series.items()
                if series
            },
        }

    @classmethod
    def from_dict(
        cls,
        data: Mapping[str, Any],
        slos: Iterable[Slo] = (),
        alerts: AlertManager | None = None,
        settings_version: str = "",
        settings: SloSettings | None = None,
    ) -> SloEvaluator:
        """Restore what :meth:`to_dict` saved; series of SLOs no longer declared are dropped."""
        ev = cls(slos, alerts, settings_version, settings)
        ev._clock, ev._last_input = data.get("clock"), data.get("last_input")
        ev._offsets = {k: AppliedOffsets.from_dict(data.get("offsets", {}).get(k, {})) for k in _KINDS}
        for name, rows in data.get("series", {}).items():
            if name not in ev.slos:
                continue
            for agent, task, counts, alerting in rows:
                s = ev._series[name][(agent, task)] = _Series(agent, task, BucketedCounts.from_dict(counts))
                s.alerting = list(alerting)
        return ev


_KINDS = ("outcome", "error", "metric")


def _in_scope(scope: Mapping[str, str], agent: str, task: str | None) -> bool:
    want_agent, want_task = scope.get("agent_name", "*"), scope.get("task_type", "*")
    if want_agent != "*" and want_agent != agent:
        return False
    return want_task == "*" or want_task == task
