"""Error monitoring: error rates, consecutive failures, circuit breakers and the degradation level per agent.

From ``agent.errors`` (and ``agent.outcomes`` as the denominator: an outcome
means the invocation finished, so it counts as a success of the agent and of
the components it used) the :class:`ErrorMonitor` keeps, per agent and per
``(agent, component)``:

* the error rate over the last ``window`` events and the consecutive failures;
* a :class:`CircuitBreaker` per component, with the seed's numbers: ``closed``
  -> ``open`` after 5 consecutive failures -> ``half_open`` once 60 s passed
  since the last failure -> ``closed`` after 3 successes (a failure while
  half-open opens it again);
* the agent's graceful-degradation level (:mod:`processors.degradation_levels`):
  the worst level implied by its components whose circuit is not closed.

Circuit and level changes are published as ``AgentControl`` records on
``control.agents`` (key ``agent_name``) and as alerts (sources ``circuit`` and
``degradation``) through an :class:`~processors.alerting.AlertManager`.

Only errors of severity ``error`` or ``critical`` count as failures; ``info``
and ``warning`` are counted apart. Pipeline errors (``pipeline = true``: the
event could not be judged) never count against the agent's error rate, but do
count for the component, whose health is what its circuit is about.

References
----------
Michael T. Nygard, *Release It!* (2nd ed., 2018), "Circuit Breaker".
Martin Fowler, CircuitBreaker: https://martinfowler.com/bliki/CircuitBreaker.html
Seed ``fail-safes-rl-assurance-drift.md``: ``CircuitBreaker(failure_threshold=5, recovery_timeout=60)``.

Examples
--------
>>> mon = ErrorMonitor()
>>> err = {"event_id": "e", "agent_name": "enricher", "component": "clay_api", "error_type": "Timeout",
...        "severity": "error", "pipeline": False}
>>> out = []
>>> for i in range(5):
...     out += mon.on_error({**err, "event_id": f"e{i}", "ts": 1_000 * i}, offset=(0, i))
>>> [(e.record_type, e.value.get("circuit_state") or e.value.get("status")) for e in out]
[('AgentControl', 'open'), ('Alert', 'firing'), ('AgentControl', None)]
>>> mon.degradation_level("enricher"), mon.circuit_state("enricher", "clay_api")
(1, 'open')
>>> [e.value["circuit_state"] for e in mon.tick(64_000) if e.record_type == "AgentControl"]
['half_open']
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from reverify.processors.alerting import AlertManager
from reverify.processors.applied import AppliedOffsets
from reverify.processors.base import Emission, derive_id
from reverify.processors.degradation_levels import COMPONENT_LEVELS, level_for_components, level_name
from reverify.schemas.fields import ERROR_SEVERITIES

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"
CIRCUIT_STATE_CODES = {CLOSED: 0.0, HALF_OPEN: 1.0, OPEN: 2.0}  # circuit_breaker_state gauge values


@dataclass(frozen=True)
class ErrorSettings:
    """The ``[errors]`` section of ``reverify.toml`` (seed defaults).

    Parameters
    ----------
    failure_threshold
        Consecutive failures that open a closed circuit (seed: 5).
    recovery_timeout_ms
        Time since the last failure after which an open circuit lets calls try again (seed: 60 s).
    success_threshold
        Successes in a row that close a half-open circuit (3).
    window
        Events (errors and outcomes) over which error rates are computed.
    failure_severities
        Error severities that count as failures.
    degradation_alert_level
        Alert when an agent's degradation level reaches this (seed's dashboard: level > 2).
    """

    failure_threshold: int = 5
    recovery_timeout_ms: int = 60_000
    success_threshold: int = 3
    window: int = 100
    failure_severities: tuple[str, ...] = ("error", "critical")
    degradation_alert_level: int = 3

    def __post_init__(self) -> None:
        for name in ("failure_threshold", "success_threshold", "window"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} = {getattr(self, name)} is not allowed; use a whole number >= 1")
        if self.recovery_timeout_ms < 0:
            raise ValueError(f"recovery_timeout_ms = {self.recovery_timeout_ms} is not allowed; use milliseconds >= 0")
        bad = [s for s in self.failure_severities if s not in ERROR_SEVERITIES]
        if bad:
            raise ValueError(f"failure_severities: {bad} not allowed; use some of {', '.join(ERROR_SEVERITIES)}")
        if not 0 <= self.degradation_alert_level <= 5:
            raise ValueError(f"degradation_alert_level = {self.degradation_alert_level}; use 0-4 (5 = never alert)")


class CircuitBreaker:
    """Nygard's circuit breaker, driven by event time instead of a clock.

    >>> cb = CircuitBreaker()
    >>> [cb.record_failure(t) for t in range(5)]
    [None, None, None, None, 'open']
    >>> cb.tick(59_999), cb.tick(60_004)
    (None, 'half_open')
    >>> cb.record_success(60_010), cb.record_success(60_020), cb.record_success(60_030)
    (None, None, 'closed')
    """

    def __init__(self, failure_threshold: int = 5, recovery_timeout_ms: int = 60_000, success_threshold: int = 3):
        self.failure_threshold = failure_threshold
        self.recovery_timeout_ms = recovery_timeout_ms
        self.success_threshold = success_threshold
        self.state = CLOSED
        self.failures = 0  # consecutive failures while closed
        self.successes = 0  # consecutive successes while half-open
        self.last_failure_ms: int | None = None
        self.opened_ms: int | None = None
        self.run_started_ms: int | None = None  # first failure of the run that opened (or may open) the circuit

    def allows(self, now_ms: int) -> bool:
        """Whether a call at ``now_ms`` would be let through (closed, half-open, or open past its timeout)."""
        return self.state != OPEN or self._timed_out(now_ms)

    def record_failure(self, now_ms: int) -> str | None:
        """A failed call; returns the new state when it changed."""
        before = self._refresh(now_ms)
        self.last_failure_ms = now_ms if self.last_failure_ms is None else max(self.last_failure_ms, now_ms)
        self.successes = 0
        if self.state == HALF_OPEN:
            self._open(now_ms)  # the trial call failed: back to open, the timeout starts again
        elif self.state == CLOSED:
            if self.failures == 0:
                self.run_started_ms = now_ms
            self.failures += 1
            if self.failures >= self.failure_threshold:
                self._open(now_ms)
        # While open, a failure only pushes the recovery back (the seed times out from the last failure).
        return self.state if self.state != before else None

    def record_success(self, now_ms: int) -> str | None:
        """A successful call; returns the new state when it changed."""
        before = self._refresh(now_ms)
        if self.state == CLOSED:
            self.failures = 0
        elif self.state == HALF_OPEN:
            self.successes += 1
            if self.successes >= self.success_threshold:
                self.state, self.failures, self.successes, self.opened_ms = CLOSED, 0, 0, None
        # Successes reported while open came from calls the breaker would have blocked: ignore them.
        return self.state if self.state != before else None

    def tick(self, now_ms: int) -> str | None:
        """Let the recovery timeout elapse; returns ``half_open`` when it did."""
        before = self.state
        self._refresh(now_ms)
        return self.state if self.state != before else None

    def _refresh(self, now_ms: int) -> str:
        before = self.state
        if self.state == OPEN and self._timed_out(now_ms):
            self.state, self.successes = HALF_OPEN, 0
        return before

    def _timed_out(self, now_ms: int) -> bool:
        return self.last_failure_ms is None or now_ms - self.last_failure_ms >= self.recovery_timeout_ms

    def _open(self, now_ms: int) -> None:
        self.state, self.opened_ms, self.successes = OPEN, now_ms, 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "failures": self.failures,
            "successes": self.successes,
            "last_failure_ms": self.last_failure_ms,
            "opened_ms": self.opened_ms,
            "run_started_ms": self.run_started_ms,
        }

    def load(self, data: Mapping[str, Any]) -> CircuitBreaker:
        self.state, self.failures, self.successes = data["state"], data["failures"], data["successes"]
        self.last_failure_ms, self.opened_ms = data["last_failure_ms"], data["opened_ms"]
        self.run_started_ms = data.get("run_started_ms")  # absent from state written before incidents
        return self


@dataclass(slots=True)
class _Tally:
    """Error rate over the last ``window`` events and consecutive failures."""

    window: int
    recent: deque[int] = field(default_factory=deque)  # 1 = failure, 0 = success
    failures_in_window: int = 0
    consecutive: int = 0
    errors: int = 0
    successes: int = 0
    ignored: int = 0  # info/warning errors, kept apart

    def push(self, failed: bool) -> None:
        self.recent.append(int(failed))
        self.failures_in_window += int(failed)
        if len(self.recent) > self.window:
            self.failures_in_window -= self.recent.popleft()
        if failed:
            self.errors += 1
            self.consecutive += 1
        else:
            self.successes += 1
            self.consecutive = 0

    @property
    def error_rate(self) -> float:
        return self.failures_in_window / len(self.recent) if self.recent else 0.0

    def stats(self) -> dict[str, float]:
        return {
            "error_rate": self.error_rate,
            "sample_size": float(len(self.recent)),
            "consecutive_failures": float(self.consecutive),
            "errors": float(self.errors),
            "successes": float(self.successes),
            "ignored": float(self.ignored),
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "recent": list(self.recent),
            "consecutive": self.consecutive,
            "errors": self.errors,
            "successes": self.successes,
            "ignored": self.ignored,
        }

    @classmethod
    def from_dict(cls, window: int, data: Mapping[str, Any]) -> _Tally:
        t = cls(window)
        for v in list(data["recent"])[-window:]:
            t.recent.append(int(v))
        t.failures_in_window = sum(t.recent)
        t.consecutive, t.errors, t.successes, t.ignored = (
            data["consecutive"],
            data["errors"],
            data["successes"],
            data["ignored"],
        )
        return t


class ErrorMonitor:
    """Per-agent and per-component error rates, circuit breakers and degradation levels.

    Parameters
    ----------
    settings
        :class:`ErrorSettings`.
    alerts
        The :class:`~processors.alerting.AlertManager` to report circuit and
        degradation conditions to; share one with the assurance evaluator so
        inhibition sees them all. When omitted the monitor owns one and ticks it.
    component_levels
        Which degradation level a failed component implies (default: the seed's map).
    settings_version
        Stamped on every alert.
    """

    def __init__(
        self,
        settings: ErrorSettings | None = None,
        alerts: AlertManager | None = None,
        component_levels: Mapping[str, int] | None = None,
        settings_version: str = "",
    ) -> None:
        self.settings = settings or ErrorSettings()
        self.owns_alerts = alerts is None
        self.alerts = alerts if alerts is not None else AlertManager()
        self.component_levels = dict(COMPONENT_LEVELS if component_levels is None else component_levels)
        self.settings_version = settings_version
        self._agents: dict[str, _Tally] = {}
        self._components: dict[str, dict[str, tuple[_Tally, CircuitBreaker]]] = {}
        self._levels: dict[str, int] = {}
        self._offsets = {"error": AppliedOffsets(), "outcome": AppliedOffsets()}
        self._now = 0

    # ------------------------------------------------------------------ inputs

    def on_error(self, event: Mapping[str, Any], offset: tuple[int, int] | None = None) -> list[Emission]:
        """Apply one ``AgentError``; returns control records and alerts."""
        if self._offsets["error"].replayed(offset):
            return []
        ts = int(event["ts"])
        self._now = max(self._now, ts)
        agent, component = str(event["agent_name"]), str(event["component"])
        tally, breaker = self._component(agent, component)
        if event.get("severity", "error") not in self.settings.failure_severities:
            tally.ignored += 1
            self._agent(agent).ignored += 1
            return []
        if not event.get("pipeline", False):
            self._agent(agent).push(True)
        tally.push(True)
        out: list[Emission] = []
        new_state = breaker.record_failure(ts)
        if new_state:
            out += self._circuit_changed(agent, component, new_state, ts, str(event["event_id"]))
        return out

    def on_outcome(self, event: Mapping[str, Any], offset: tuple[int, int] | None = None) -> list[Emission]:
        """Apply one ``AgentOutcome`` as a success of the agent and of the components it used.

        The components are those named in ``attributes["components"]`` (comma
        separated) when the agent says; otherwise every component of the agent
        seen so far.
        """
        if self._offsets["outcome"].replayed(offset):
            return []
        ts = int(event["ts"])
        if ts > self._now:
            self._now = ts
        agent = str(event["agent_name"])
        self._agent(agent).push(False)
        named = (event.get("attributes") or {}).get("components")
        if not named and agent not in self._components:
            return []  # no component to credit: most agents, most outcomes
        comps = [c.strip() for c in named.split(",") if c.strip()] if named else list(self._components[agent])
        out: list[Emission] = []
        for component in comps:
            tally, breaker = self._component(agent, component)
            tally.push(False)
            new_state = breaker.record_success(ts)
            if new_state:
                out += self._circuit_changed(agent, component, new_state, ts, str(event["event_id"]))
        return out

    def tick(self, now_ms: int) -> list[Emission]:
        """Let recovery timeouts elapse (open -> half_open) at ``now_ms``."""
        self._now = max(self._now, now_ms)
        out: list[Emission] = []
        for agent, comps in self._components.items():
            for component, (_, breaker) in comps.items():
                new_state = breaker.tick(now_ms)
                if new_state:
                    out += self._circuit_changed(agent, component, new_state, now_ms, f"tick:{now_ms}")
        if self.owns_alerts:
            out += self.alerts.tick(now_ms)
        return out

    # ------------------------------------------------------------------ queries

    def agent_stats(self, agent: str) -> dict[str, float]:
        """``error_rate``, ``sample_size``, ``consecutive_failures``, totals and ``degradation_level``."""
        stats = self._agents[agent].stats() if agent in self._agents else _Tally(self.settings.window).stats()
        stats["degradation_level"] = float(self._levels.get(agent, 0))
        return stats

    def component_stats(self, agent: str, component: str) -> dict[str, float]:
        """Like :meth:`agent_stats` for one component, with ``circuit_state`` as 0 closed, 1 half-open, 2 open."""
        tally, breaker = self._components.get(agent, {}).get(component, (_Tally(self.settings.window), None))
        stats = tally.stats()
        stats["circuit_state"] = CIRCUIT_STATE_CODES[breaker.state if breaker else CLOSED]
        return stats

    def circuit_state(self, agent: str, component: str) -> str:
        """``closed``, ``open`` or ``half_open`` (as of the last event or tick)."""
        entry = self._components.get(agent, {}).get(component)
        return entry[1].state if entry else CLOSED

    def degradation_level(self, agent: str) -> int:
        """The agent's graceful-degradation level 0-4."""
        return self._levels.get(agent, 0)

    def failing_since(self, agent: str, component: str) -> int | None:
        """Event time of the first failure of the run that opened the component's circuit (``None``: unknown)."""
        entry = self._components.get(agent, {}).get(component)
        return entry[1].run_started_ms if entry else None

    def open_circuits(self, agent: str) -> list[str]:
        """The agent's components whose circuit is not closed, sorted."""
        return sorted(c for c, (_, b) in self._components.get(agent, {}).items() if b.state != CLOSED)

    # ------------------------------------------------------------------ persistence

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible state (the alert manager's too when this monitor owns it)."""
        return {
            "version": 1,
            "now": self._now,
            "offsets": {k: v.to_dict() for k, v in self._offsets.items()},
            "agents": {a: t.to_dict() for a, t in self._agents.items()},
            "components": {
                a: {c: {"tally": t.to_dict(), "breaker": b.to_dict()} for c, (t, b) in comps.items()}
                for a, comps in self._components.items()
            },
            "levels": dict(self._levels),
            "alerts": self.alerts.to_dict() if self.owns_alerts else None,
        }

    @classmethod
    def from_dict(
        cls,
        data: Mapping[str, Any],
        settings: ErrorSettings | None = None,
        alerts: AlertManager | None = None,
        component_levels: Mapping[str, int] | None = None,
        settings_version: str = "",
    ) -> ErrorMonitor:
        """Restore what :meth:`to_dict` saved; pass the shared ``alerts`` manager if there is one."""
        if alerts is None and data.get("alerts") is not None:
            mon = cls(settings, None, component_levels, settings_version)
            mon.alerts = AlertManager.from_dict(data["alerts"])
        else:
            mon = cls(settings, alerts, component_levels, settings_version)
        w = mon.settings.window
        mon._now = int(data.get("now", 0))
        offsets = data.get("offsets", {})
        mon._offsets = {k: AppliedOffsets.from_dict(offsets.get(k, {})) for k in ("error", "outcome")}
        mon._agents = {a: _Tally.from_dict(w, t) for a, t in data.get("agents", {}).items()}
        for a, comps in data.get("components", {}).items():
            for c, raw in comps.items():
                breaker = mon._breaker().load(raw["breaker"])
                mon._components.setdefault(a, {})[c] = (_Tally.from_dict(w, raw["tally"]), breaker)
        mon._levels = {a: int(v) for a, v in data.get("levels", {}).items()}
        return mon

    # ------------------------------------------------------------------ internals

    def _agent(self, agent: str) -> _Tally:
        tally = self._agents.get(agent)
        if tally is None:
            tally = self._agents[agent] = _Tally(self.settings.window)
        return tally

    def _breaker(self) -> CircuitBreaker:
        s = self.settings
        return CircuitBreaker(s.failure_threshold, s.recovery_timeout_ms, s.success_threshold)

    def _component(self, agent: str, component: str) -> tuple[_Tally, CircuitBreaker]:
        comps = self._components.setdefault(agent, {})
        entry = comps.get(component)
        if entry is None:
            entry = comps[component] = (_Tally(self.settings.window), self._breaker())
        return entry

    def _circuit_changed(self, agent: str, component: str, state: str, ts: int, cause: str) -> list[Emission]:
        tally, breaker = self._components[agent][component]
        level = self._level_now(agent)
        reason = f"errors: circuit {component} {state}"
        out = [self._control(agent, "circuit", ts, cause, reason, level, component=component, circuit_state=state)]
        out += self.alerts.observe(
            "circuit",
            {"agent_name": agent, "component": component},
            state != CLOSED,
            ts,
            severity="critical",
            title=f"circuit {component} of {agent} is {state}",
            message=(
                f"{component} failed {tally.consecutive} times in a row (threshold {self.settings.failure_threshold}); "
                f"error rate {tally.error_rate:.2f} over {len(tally.recent)} events"
            ),
            evidence={
                "value": float(max(tally.consecutive, breaker.failures)),
                "threshold": float(self.settings.failure_threshold),
                "sample_size": float(len(tally.recent)),
                "error_rate": tally.error_rate,
                "circuit_state": CIRCUIT_STATE_CODES[state],
            },
            settings_version=self.settings_version,
            statistic="consecutive_failures",
        )
        if level != self._levels.get(agent, 0):
            out += self._level_changed(agent, level, ts, cause)
        return out

    def _level_now(self, agent: str) -> int:
        failed = [c for c, (_, b) in self._components.get(agent, {}).items() if b.state != CLOSED]
        return level_for_components(failed, self.component_levels)

    def _level_changed(self, agent: str, level: int, ts: int, cause: str) -> list[Emission]:
        self._levels[agent] = level
        failed = self.open_circuits(agent)
        reason = f"errors: {level_name(level)}" + (f" ({', '.join(failed)} failing)" if failed else "")
        out = [self._control(agent, "degrade", ts, cause, reason, level)]
        threshold = self.settings.degradation_alert_level
        out += self.alerts.observe(
            "degradation",
            {"agent_name": agent},
            level >= threshold,
            ts,
            severity="critical" if level >= 4 else "warning",
            title=f"{agent} degraded to level {level} {level_name(level)}",
            message=reason,
            evidence={"value": float(level), "threshold": float(threshold), "sample_size": float(len(failed))},
            settings_version=self.settings_version,
            statistic="degradation_level",
        )
        return out

    def _control(
        self,
        agent: str,
        kind: str,
        ts: int,
        cause: str,
        reason: str,
        level: int,
        component: str | None = None,
        circuit_state: str | None = None,
    ) -> Emission:
        # ``paused`` is not this monitor's business: readers take it from pause/resume records only.
        value = {
            "event_id": derive_id("control", kind, agent, component, circuit_state, level, cause),
            "ts": ts,
            "agent_name": agent,
            "kind": kind,
            "paused": False,
            "degradation_level": level,
            "component": component,
            "circuit_state": circuit_state,
            "reason": reason,
            "cause_id": cause,
        }
        return Emission("control.agents", agent, "AgentControl", value)
