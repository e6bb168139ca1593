"""The alert lifecycle: pending, firing, resolved, with repeat, flapping, acknowledgement, silences and inhibition.

Sources (assurance cases, circuit breakers, the degradation level ...) do not
emit alerts themselves: they report an alert *condition* with
:meth:`AlertManager.observe` each time they evaluate it, and the manager turns
the stream of conditions into the few ``Alert`` records a person wants to see.

The lifecycle is Prometheus's (``inactive -> pending -> firing -> inactive``,
``for``, ``keep_firing_for``) and the notification policy is Alertmanager's
(fingerprint dedup, fire once, repeat after ``repeat_interval``, resolve at
once, silences, inhibition). On top of them, what their users keep asking for:

* **flapping**: more than ``flap_threshold`` firing/resolved changes within
  ``flap_period_ms`` and the alert stays firing with ``flapping=true``, one
  update saying so and no further notification until it settles (the
  condition changes at most ``flap_threshold // 2`` times in a period);
* **acknowledge**: ``acknowledged_by`` is set on the firing alert, stops its
  repeats, and is cleared when it resolves;
* **silences** that mute matching alerts until a time, with who and why;
* every alert carries ``value``, ``threshold`` and ``sample_size`` in its
  evidence and the ``statistic`` among its labels.

A muted (silenced or inhibited) alert is not emitted while it fires; if
people already saw it firing before the mute, its resolution is still emitted,
so ``alerts list`` never keeps a ghost.

References
----------
Prometheus alerting rules: https://prometheus.io/docs/prometheus/latest/configuration/alerting_rules/
Alertmanager concepts: https://prometheus.io/docs/alerting/latest/alertmanager/
Nagios flap detection: https://assets.nagios.com/downloads/nagioscore/docs/nagioscore/4/en/flapping.html

Examples
--------
>>> am = AlertManager()
>>> ev = {"value": 0.6, "threshold": 0.8, "sample_size": 200}
>>> am.observe("assurance", {"case": "c"}, True, 0, severity="warning", title="c failed", evidence=ev, for_ms=30_000)
[]
>>> [e.value["status"] for e in am.tick(30_000)]
['firing']
>>> am.tick(60_000)
[]
>>> [e.value["status"] for e in am.observe("assurance", {"case": "c"}, False, 61_000)]
['resolved']
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from reverify.processors.base import Emission, derive_id, fingerprint, make_alert
from reverify.schemas.fields import ALERT_SEVERITIES

REQUIRED_EVIDENCE = ("value", "threshold", "sample_size")
_HOUR_MS = 3_600_000


@dataclass(frozen=True)
class AlertingSettings:
    """The ``[alerting]`` section of ``reverify.toml``.

    Parameters
    ----------
    repeat_interval_ms
        How long a still-firing alert waits before it is sent again (Alertmanager's default, 4 h).
    flap_threshold
        More than this many firing/resolved changes within ``flap_period_ms`` marks the alert flapping.
    flap_period_ms
        The period over which changes are counted.

    >>> AlertingSettings().repeat_interval_ms
    14400000
    """

    repeat_interval_ms: int = 4 * _HOUR_MS
    flap_threshold: int = 4
    flap_period_ms: int = _HOUR_MS

    def __post_init__(self) -> None:
        if self.repeat_interval_ms <= 0:
            raise ValueError(f"repeat_interval_ms = {self.repeat_interval_ms} is not allowed; use milliseconds > 0")
        if self.flap_threshold < 1:
            raise ValueError(f"flap_threshold = {self.flap_threshold} is not allowed; use a whole number >= 1")
        if self.flap_period_ms <= 0:
            raise ValueError(f"flap_period_ms = {self.flap_period_ms} is not allowed; use milliseconds > 0")


@dataclass(frozen=True)
class InhibitRule:
    """Alertmanager's inhibit rule: a firing *source* alert mutes matching *target* alerts.

    ``equal`` labels must agree where the target carries them, and the target must
    carry at least one: a rollback of ``enricher/lookup`` explains the agent-wide
    degradation warning of ``enricher`` (which has no ``task_type`` label) too.
    """

    source_sources: tuple[str, ...] = ("rollback",)
    source_severities: tuple[str, ...] = ("critical",)
    target_sources: tuple[str, ...] = ("degradation", "assurance")
    target_severities: tuple[str, ...] = ("warning", "info")
    equal: tuple[str, ...] = ("agent_name", "task_type")

    def is_source(self, source: str, severity: str) -> bool:
        return source in self.source_sources and severity in self.source_severities

    def inhibits(self, src_labels: Mapping[str, str], source: str, severity: str, labels: Mapping[str, str]) -> bool:
        if source not in self.target_sources or severity not in self.target_severities:
            return False
        shared = [k for k in self.equal if k in labels]
        return bool(shared) and all(src_labels.get(k) == labels[k] for k in shared)


DEFAULT_INHIBIT_RULES: tuple[InhibitRule, ...] = (InhibitRule(),)


@dataclass
class Silence:
    """Mute alerts whose labels match every matcher (``fnmatch`` globs; ``source``/``severity`` match those fields)."""

    silence_id: str
    matchers: dict[str, str]
    until_ms: int
    by: str
    comment: str = ""
    created_ms: int = 0

    def matches(self, source: str, severity: str, fp: str, labels: Mapping[str, str]) -> bool:
        fields = {**labels, "source": source, "severity": severity, "fingerprint": fp}
        return all(k in fields and fnmatch.fnmatchcase(fields[k], v) for k, v in self.matchers.items())


@dataclass
class _State:
    """Everything known about one fingerprint; plain fields so ``to_dict`` is ``vars``."""

    fingerprint: str
    source: str
    labels: dict[str, str]
    severity: str = "warning"
    title: str = ""
    message: str = ""
    evidence: dict[str, float] = field(default_factory=dict)
    for_ms: int = 0
    keep_firing_for_ms: int = 0
    settings_version: str = ""
    active: bool = False  # the condition as last observed
    active_since: int | None = None  # start of the current active stretch (pending since)
    last_active_ms: int | None = None  # last observation with the condition active
    inactive_since: int | None = None  # first observation with it cleared (keep_firing_for counts from here)
    state: str = "inactive"  # Prometheus's state of the rule: inactive | pending | firing
    changes: list[int] = field(default_factory=list)  # times of firing<->inactive changes (flap detection)
    flapping: bool = False
    published: str | None = None  # what subscribers last saw: firing | resolved | None
    published_flapping: bool = False
    starts_at: int | None = None  # when subscribers were first told it fires, this episode
    last_sent_ms: int | None = None
    acknowledged_by: str | None = None
    last_change_ms: int = 0


class AlertManager:
    """Turns alert conditions into deduplicated ``Alert`` emissions on the ``alerts`` topic.

    Parameters
    ----------
    settings
        :class:`AlertingSettings` (repeat interval, flap detection).
    inhibit_rules
        Which firing alerts mute which others; default: a critical ``rollback``
        alert mutes ``degradation`` and ``assurance`` warnings of the same agent/task.

    Examples
    --------
    Hysteresis and ``for`` belong to the source; the manager only needs to be told
    whether the condition holds. A silence mutes, an ack stops repeats:

    >>> am = AlertManager(AlertingSettings(repeat_interval_ms=1_000))
    >>> ev = {"value": 3.0, "threshold": 1.0, "sample_size": 10}
    >>> fp = am.observe("circuit", {"agent_name": "a"}, True, 0, severity="critical", title="t", evidence=ev)[0].key
    >>> [e.value["acknowledged_by"] for e in am.acknowledge(fp, "ann", 10)]
    ['ann']
    >>> am.tick(5_000)
    []
    >>> sid = am.add_silence({"agent_name": "a"}, until_ms=100_000, by="bob", comment="deploy", now_ms=6_000)
    >>> am.observe("circuit", {"agent_name": "a"}, False, 7_000)[0].value["status"]
    'resolved'
    """

    def __init__(
        self,
        settings: AlertingSettings | None = None,
        inhibit_rules: Iterable[InhibitRule] = DEFAULT_INHIBIT_RULES,
    ) -> None:
        self.settings = settings or AlertingSettings()
        self.inhibit_rules = tuple(inhibit_rules)
        self._states: dict[str, _State] = {}
        self._silences: dict[str, Silence] = {}
        # fingerprint -> (source, severity, labels) of firing alerts that can inhibit others,
        # ours and those noted from other processors (note_alert).
        self._inhibitors: dict[str, tuple[str, str, dict[str, str]]] = {}
        self._external: set[str] = set()

    # ------------------------------------------------------------------ conditions

    def observe(
        self,
        source: str,
        labels: Mapping[str, str],
        active: bool,
        now_ms: int,
        *,
        severity: str = "warning",
        title: str = "",
        message: str = "",
        evidence: Mapping[str, float] | None = None,
        for_ms: int = 0,
        keep_firing_for_ms: int = 0,
        settings_version: str = "",
        statistic: str = "",
    ) -> list[Emission]:
        """Report whether the condition ``(source, labels)`` holds at ``now_ms``; returns alerts to publish.

        An active observation must carry ``value``, ``threshold`` and ``sample_size``
        in ``evidence`` (what decided it); ``statistic`` (e.g. ``success_rate``)
        becomes the ``statistic`` label. An inactive observation keeps the last
        evidence unless it brings its own, so the resolution says what recovered.
        """
        if severity not in ALERT_SEVERITIES:
            raise ValueError(f"severity {severity!r} is not one of {', '.join(ALERT_SEVERITIES)}")
        labels = {str(k): str(v) for k, v in labels.items()}
        if statistic:
            labels.setdefault("statistic", statistic)
        ev = {str(k): float(v) for k, v in (evidence or {}).items() if v is not None}
        if active:
            missing = [k for k in REQUIRED_EVIDENCE if k not in ev]
            if missing:
                raise ValueError(f"alert {source} {labels}: evidence lacks {', '.join(missing)}")
        fp = fingerprint(source, labels)
        st = self._states.get(fp)
        if st is None:
            if not active:
                return []  # nothing to resolve: do not grow state for healthy conditions
            st = self._states[fp] = _State(fingerprint=fp, source=source, labels=labels)
        if active:  # a resolution keeps the severity the alert fired with
            st.severity = severity
        st.for_ms, st.keep_firing_for_ms = int(for_ms), int(keep_firing_for_ms)
        if title:
            st.title = title
        if message:
            st.message = message
        if ev:
            st.evidence = ev
        if settings_version:
            st.settings_version = settings_version
        if active:
            if not st.active:
                st.active_since = now_ms
            st.last_active_ms = now_ms
        elif st.active or st.inactive_since is None:
            st.inactive_since = now_ms
        st.active = active
        return self._step(st, now_ms)

    def tick(self, now_ms: int) -> list[Emission]:
        """Advance every alert to ``now_ms``: ``for`` elapsing, ``keep_firing_for`` ending, repeats, expiries."""
        out: list[Emission] = []
        for sid in [s for s, sil in self._silences.items() if sil.until_ms <= now_ms]:
            del self._silences[sid]
        for st in list(self._states.values()):
            out.extend(self._step(st, now_ms))
        # Forget conditions that have been quiet for a whole flap period: nothing left to tell.
        horizon = now_ms - self.settings.flap_period_ms
        for fp in [fp for fp, st in self._states.items() if self._forgettable(st, horizon)]:
            del self._states[fp]
        return out

    # ------------------------------------------------------------------ people

    def acknowledge(self, fp: str, by: str, now_ms: int) -> list[Emission]:
        """Mark a pending or firing alert acknowledged by ``by``; its repeats stop until it resolves.

        Returns the updated firing alert (empty when the fingerprint is not active,
        so a late ``ack`` command replayed from the topic is harmless).
        """
        st = self._states.get(fp)
        if st is None or (st.state == "inactive" and st.published != "firing"):
            return []
        st.acknowledged_by = by
        if st.published == "firing" and not self._muted(st, now_ms):
            return [self._send(st, "firing", now_ms, cause=("ack", by))]
        return []

    def add_silence(
        self,
        matchers: Mapping[str, str],
        until_ms: int,
        by: str,
        comment: str = "",
        now_ms: int = 0,
        silence_id: str | None = None,
    ) -> str:
        """Mute alerts matching every ``label=glob`` matcher until ``until_ms``; returns the silence id."""
        if not matchers:
            raise ValueError("a silence needs at least one matcher, e.g. {'agent_name': 'enricher'}")
        m = {str(k): str(v) for k, v in matchers.items()}
        sid = silence_id or derive_id("silence", sorted(m.items()), until_ms, by, comment, now_ms)
        self._silences[sid] = Silence(sid, m, int(until_ms), by, comment, now_ms)
        return sid

    def remove_silence(self, silence_id: str, now_ms: int) -> list[Emission]:
        """Expire a silence now; alerts it muted that still fire are sent."""
        if self._silences.pop(silence_id, None) is None:
            return []
        return self.tick(now_ms)

    def silences(self, now_ms: int) -> list[Silence]:
        """Silences in force at ``now_ms``."""
        return [s for s in self._silences.values() if s.until_ms > now_ms]

    def note_alert(self, record: Mapping[str, Any]) -> list[Emission]:
        """Learn an ``Alert`` published by another processor (e.g. the learning loop's rollback alert).

        Only its power to inhibit is kept; it is never re-published. Returns
        alerts whose mute state changed because of it.
        """
        fp = str(record["fingerprint"])
        if fp in self._states:
            return []
        if not any(r.is_source(record["source"], record["severity"]) for r in self.inhibit_rules):
            return []
        if record["status"] == "firing":
            self._inhibitors[fp] = (record["source"], record["severity"], dict(record.get("labels") or {}))
            self._external.add(fp)
        else:
            self._inhibitors.pop(fp, None)
            self._external.discard(fp)
        now_ms = int(record["ts"])
        return [em for st in list(self._states.values()) for em in self._sync(st, now_ms)]

    # ------------------------------------------------------------------ queries

    def firing(self) -> list[dict[str, Any]]:
        """Alerts subscribers currently see as firing, as plain dicts (for ``alerts list``)."""
        return [
            {
                "fingerprint": st.fingerprint,
                "source": st.source,
                "severity": st.severity,
                "title": st.title,
                "labels": dict(st.labels),
                "evidence": dict(st.evidence),
                "starts_at": st.starts_at,
                "flapping": st.flapping,
                "acknowledged_by": st.acknowledged_by,
            }
            for st in self._states.values()
            if st.published == "firing"
        ]

    def state_of(self, fp: str) -> str:
        """``inactive``, ``pending`` or ``firing`` (the rule's state, before muting)."""
        st = self._states.get(fp)
        return st.state if st else "inactive"

    # ------------------------------------------------------------------ persistence

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible state (pending alerts and their ``for`` clocks survive a restart)."""
        return {
            "version": 1,
            "states": [dict(vars(st)) for st in self._states.values()],
            "silences": [dict(vars(s)) for s in self._silences.values()],
            "inhibitors": {fp: [s, sev, dict(lab)] for fp, (s, sev, lab) in self._inhibitors.items()},
            "external": sorted(self._external),
        }

    @classmethod
    def from_dict(
        cls,
        data: Mapping[str, Any],
        settings: AlertingSettings | None = None,
        inhibit_rules: Iterable[InhibitRule] = DEFAULT_INHIBIT_RULES,
    ) -> AlertManager:
        """Restore what :meth:`to_dict` saved (settings come from the current config)."""
        am = cls(settings, inhibit_rules)
        for raw in data.get("states", []):
            st = _State(**{**raw, "labels": dict(raw["labels"]), "evidence": dict(raw["evidence"])})
            st.changes = list(raw.get("changes", []))
            am._states[st.fingerprint] = st
        for raw in data.get("silences", []):
            am._silences[raw["silence_id"]] = Silence(**{**raw, "matchers": dict(raw["matchers"])})
        am._inhibitors = {fp: (v[0], v[1], dict(v[2])) for fp, v in data.get("inhibitors", {}).items()}
        am._external = set(data.get("external", []))
        return am

    # ------------------------------------------------------------------ internals

    def _step(self, st: _State, now_ms: int) -> list[Emission]:
        was_inhibitor = st.fingerprint in self._inhibitors
        self._advance(st, now_ms)
        out = self._sync(st, now_ms)
        if any(r.is_source(st.source, st.severity) for r in self.inhibit_rules):
            if st.state == "firing":
                self._inhibitors[st.fingerprint] = (st.source, st.severity, st.labels)
            else:
                self._inhibitors.pop(st.fingerprint, None)
            if (st.fingerprint in self._inhibitors) != was_inhibitor:
                # The alerts it explains change their mute state now, not at the next tick.
                for other in list(self._states.values()):
                    if other is not st:
                        out.extend(self._sync(other, now_ms))
        return out

    def _advance(self, st: _State, now_ms: int) -> None:
        """Prometheus's rule state machine, with ``for`` and ``keep_firing_for``."""
        if st.active:
            if st.state == "inactive":
                st.state = "pending"
            if st.state == "pending" and now_ms - (now_ms if st.active_since is None else st.active_since) >= st.for_ms:
                st.state = "firing"
                self._changed(st, now_ms)
        elif st.state == "pending":
            st.state = "inactive"  # a pending alert was never shown: it just goes away
        elif st.state == "firing":
            since = st.inactive_since if st.inactive_since is not None else now_ms
            if now_ms - since >= st.keep_firing_for_ms:
                st.state = "inactive"
                self._changed(st, now_ms)

    def _changed(self, st: _State, now_ms: int) -> None:
        st.changes.append(now_ms)
        st.last_change_ms = now_ms

    def _update_flapping(self, st: _State, now_ms: int) -> None:
        horizon = now_ms - self.settings.flap_period_ms
        st.changes = [t for t in st.changes if t > horizon]
        n = len(st.changes)
        if not st.flapping and n > self.settings.flap_threshold:
            st.flapping = True
        elif st.flapping and n <= self.settings.flap_threshold // 2:
            # Settle at half the threshold (Nagios's low/high flap thresholds) so the flag itself does not flap.
            st.flapping = False

    def _sync(self, st: _State, now_ms: int) -> list[Emission]:
        """Decide what subscribers must be told, given the rule state, flapping and mutes."""
        self._update_flapping(st, now_ms)
        if st.state == "firing" or (st.flapping and st.published == "firing"):
            if self._muted(st, now_ms):
                return []
            if st.published != "firing":
                st.starts_at = now_ms
                return [self._send(st, "firing", now_ms, cause="fire")]
            if st.flapping and not st.published_flapping:
                return [self._send(st, "firing", now_ms, cause="flapping")]
            due = now_ms - (st.last_sent_ms or 0) >= self.settings.repeat_interval_ms
            if due and not st.flapping and st.acknowledged_by is None:
                return [self._send(st, "firing", now_ms, cause="repeat")]
            return []
        if st.published == "firing":
            # Resolve once and at once, muted or not: subscribers saw it firing.
            em = self._send(st, "resolved", now_ms, cause="resolve")
            st.acknowledged_by = None
            st.starts_at = None
            return [em]
        if st.state == "inactive":
            st.acknowledged_by = None  # an ack given while pending ends with the condition
        return []

    def _send(self, st: _State, status: str, now_ms: int, cause: object) -> Emission:
        starts = st.starts_at if st.starts_at is not None else now_ms
        em = make_alert(
            source=st.source,
            status=status,
            severity=st.severity,
            title=st.title or f"{st.source} {status}",
            labels=st.labels,
            ts=now_ms,
            starts_at=starts,
            cause=(starts, now_ms, cause),
            message=st.message,
            evidence=st.evidence,
            ends_at=now_ms if status == "resolved" else None,
            flapping=st.flapping,
            acknowledged_by=st.acknowledged_by,
            settings_version=st.settings_version,
        )
        st.published = status
        st.published_flapping = st.flapping and status == "firing"
        st.last_sent_ms = now_ms
        return em

    def _muted(self, st: _State, now_ms: int) -> bool:
        for sil in self._silences.values():
            if sil.until_ms > now_ms and sil.matches(st.source, st.severity, st.fingerprint, st.labels):
                return True
        for fp, (src, sev, labels) in self._inhibitors.items():
            if fp == st.fingerprint:
                continue
            for rule in self.inhibit_rules:
                if rule.is_source(src, sev) and rule.inhibits(labels, st.source, st.severity, st.labels):
                    return True
        return False

    def _forgettable(self, st: _State, horizon: int) -> bool:
        return (
            st.state == "inactive"
            and not st.active
            and st.published != "firing"
            and not st.flapping
            and st.last_change_ms <= horizon
            and st.fingerprint not in self._inhibitors
        )
