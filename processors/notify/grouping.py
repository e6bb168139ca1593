"""Alertmanager's aggregation groups: when a receiver hears of which alerts, firing and resolved.

Every alert is routed (:mod:`~reverify.processors.notify.routing`) and put in
one group per matching route and value of the route's ``group_by`` labels. A
new group waits ``group_wait`` for the alerts that come together, then
notifies its receiver of all its alerts; later changes (a new alert, a
resolve) wait until ``group_interval`` has passed since the last notification;
a group whose alerts still fire and nothing changed notifies again after
``repeat_interval``. A notification carries every alert of the group (the
resolved ones once); resolved alerts then leave the group and an empty group
is forgotten.

reverify's additions, as the worker's alert manager keeps them:

* **acknowledgements**: an alert re-published with ``acknowledged_by`` is not a
  new notification for people (its ``reason`` is ``ack``: PagerDuty hears
  ``acknowledge``, the others nothing) and a group whose firing alerts are all
  acknowledged repeats no more;
* **silences**: a firing alert matching a silence is left out of
  notifications; a resolve is delivered when the receiver saw it firing.

The group state is plain data (:meth:`NotificationGroups.to_dict`). Each input
may carry an opaque ``token`` (the shell's Kafka position); a notification
lists the tokens it answers for, and :meth:`NotificationGroups.offer` says
when an input needs no notification at all, so the shell commits an offset
only once its alert was delivered.

The clock is given: ``now_ms`` of each call, taken as the later of it and
every earlier one, so replayed alerts (old times) and the wall clock mix.

References
----------
Alertmanager dispatcher: https://github.com/prometheus/alertmanager/blob/main/dispatch/dispatch.go

Examples
--------
>>> from reverify.processors.notify.config import parse_notify_config
>>> cfg = parse_notify_config({"receivers": [{"name": "ops", "webhook": "http://h/1"}],
...     "routes": [{"receiver": "ops", "group_by": ["agent_name"], "group_wait": "30s", "group_interval": "5m"}]})
>>> groups = NotificationGroups(cfg.routes)
>>> fire = {"fingerprint": "f1", "source": "rollback", "status": "firing", "severity": "critical",
...         "labels": {"agent_name": "a"}, "ts": 0, "starts_at": 0}
>>> groups.offer(fire, now_ms=0, token=[0, 7])
1
>>> groups.advance(29_000)
[]
>>> [n] = groups.advance(30_000)
>>> n.receiver, n.status, n.reason, n.tokens, n.group_key
('ops', 'firing', 'new', [[0, 7]], 'routes[0]:{agent_name="a"}')
>>> groups.offer({**fire, "status": "resolved", "ts": 60_000}, now_ms=60_000)
1
>>> groups.advance(300_000)
[]
>>> [(n.status, n.reason) for n in groups.advance(330_000)]
[('resolved', 'update')]
>>> groups.to_dict()["groups"]
[]
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from reverify.processors.alerting import Silence
from reverify.processors.base import derive_id
from reverify.processors.notify.config import Route
from reverify.processors.notify.routing import alert_labels, group_labels, match_routes

__all__ = ["Notification", "NotificationGroups"]


@dataclass
class Notification:
    """What one receiver is told about one group at one time.

    ``reason`` is ``new`` (the group's first), ``update`` (alerts came or
    resolved), ``repeat`` (nothing changed for ``repeat_interval``) or ``ack``
    (only acknowledgements changed). ``key`` is stable for the same content, so
    a notification sent again after a crash carries the same idempotency key.
    """

    receiver: str
    route: str
    group_key: str
    group_labels: dict[str, str]
    alerts: list[dict[str, Any]]
    status: str
    reason: str
    key: str
    tokens: list[Any] = field(default_factory=list)
    ts: int = 0
    repeat_interval_ms: int = 0


@dataclass
class _Group:
    key: str
    receiver: str
    route: str
    labels: dict[str, str]
    group_wait_ms: int
    group_interval_ms: int
    repeat_interval_ms: int
    alerts: dict[str, dict[str, Any]] = field(default_factory=dict)  # fingerprint -> latest record
    sent: dict[str, list[Any]] = field(default_factory=dict)  # fingerprint -> [status, acknowledged_by] told
    tokens: list[Any] = field(default_factory=list)
    next_flush_ms: int | None = None
    last_flush_ms: int | None = None
    repeats: int = 0


def _group_key(route: Route, labels: Mapping[str, str]) -> str:
    inner = ",".join(f"{k}={json.dumps(v)}" for k, v in sorted(labels.items()))
    return f"{route.path}:{{{inner}}}"


class NotificationGroups:
    """The aggregation groups of every route; :meth:`offer` alerts, :meth:`advance` the clock to get notifications.

    Parameters
    ----------
    routes
        The top-level routes of :class:`~reverify.processors.notify.config.NotifyConfig`.
    exclude_receiver_label
        An alert carrying this label is not routed to the receiver it names (reverify's own ``notify`` alert
        about a receiver that cannot be reached goes to the others).
    """

    def __init__(self, routes: Iterable[Route], exclude_receiver_label: str = "failed_receiver") -> None:
        self.routes = tuple(routes)
        self.exclude_receiver_label = exclude_receiver_label
        self._groups: dict[str, _Group] = {}
        self._silences: dict[str, Silence] = {}
        self._released: list[Any] = []
        self._clock = 0

    # ------------------------------------------------------------------ inputs

    def offer(self, alert: Mapping[str, Any], now_ms: int, token: Any = None) -> int:
        """Put ``alert`` (an ``Alert`` record) in its groups; returns how many groups now hold ``token``.

        Each of them answers for it once, in a notification's ``tokens`` or in :meth:`released`. ``0`` means
        nothing will be sent because of it (no route, silenced, or the receivers already know): ``token`` is done.
        """
        now = self._tick(now_ms)
        labels = alert_labels(alert)
        fp = str(alert["fingerprint"])
        held = 0
        for route in match_routes(self.routes, labels):
            if labels.get(self.exclude_receiver_label) == route.receiver:
                continue
            glabels = group_labels(route, labels)
            key = _group_key(route, glabels)
            group = self._groups.get(key)
            if group is None:
                if self._muted(alert):
                    continue  # silenced before anyone was told: nothing to say, now or at its resolve
                group = self._groups[key] = _Group(
                    key, route.receiver, route.path, glabels,
                    route.group_wait_ms, route.group_interval_ms, route.repeat_interval_ms,
                    next_flush_ms=now + route.group_wait_ms,
                )  # fmt: skip
            group.alerts[fp] = dict(alert)
            if not self._changes(group, fp):
                continue
            if group.next_flush_ms is None:
                last = group.last_flush_ms if group.last_flush_ms is not None else now
                group.next_flush_ms = max(now, last + group.group_interval_ms)
            if token is not None:
                group.tokens.append(token)
            held += 1
        return held

    def add_silence(self, silence: Silence) -> None:
        """Mute firing alerts matching ``silence`` until its ``until_ms`` (the ``alerts silence`` command's)."""
        self._silences[silence.silence_id] = silence

    def advance(self, now_ms: int) -> list[Notification]:
        """Notifications due at ``now_ms``: group waits and intervals that elapsed, repeats."""
        now = self._tick(now_ms)
        for sid in [s for s, sil in self._silences.items() if sil.until_ms <= now]:
            del self._silences[sid]
        out: list[Notification] = []
        for key in list(self._groups):
            group = self._groups[key]
            if group.next_flush_ms is not None and group.next_flush_ms <= now:
                note = self._flush(group, now, repeat=False)
            elif group.next_flush_ms is None and self._repeat_due(group, now):
                note = self._flush(group, now, repeat=True)
            else:
                continue
            if note is not None:
                out.append(note)
            if not group.alerts:
                del self._groups[key]
        return out

    def next_due_ms(self) -> int | None:
        """When :meth:`advance` will next have something to do (``None``: nothing waits)."""
        times = [g.next_flush_ms for g in self._groups.values() if g.next_flush_ms is not None]
        times += [
            g.last_flush_ms + g.repeat_interval_ms
            for g in self._groups.values()
            if g.next_flush_ms is None and g.last_flush_ms is not None and self._unacked_firing(g)
        ]
        return min(times) if times else None

    def released(self) -> list[Any]:
        """Tokens of flushes that had nothing to send (every alert silenced); taken once."""
        out, self._released = self._released, []
        return out

    # ------------------------------------------------------------------ persistence

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible state: the groups, the silences and the clock."""
        return {
            "version": 1,
            "clock": self._clock,
            "groups": [dict(vars(g)) for g in self._groups.values()],
            "silences": [dict(vars(s)) for s in self._silences.values()],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], routes: Iterable[Route]) -> NotificationGroups:
        """Restore what :meth:`to_dict` saved (the routes come from the current config)."""
        groups = cls(routes)
        groups._clock = int(data.get("clock", 0))
        for raw in data.get("groups", []):
            g = _Group(**raw)
            groups._groups[g.key] = g
        for raw in data.get("silences", []):
            groups._silences[raw["silence_id"]] = Silence(**{**raw, "matchers": dict(raw["matchers"])})
        return groups

    # ------------------------------------------------------------------ internals

    def _tick(self, now_ms: int) -> int:
        self._clock = max(self._clock, int(now_ms))
        return self._clock

    def _muted(self, alert: Mapping[str, Any]) -> bool:
        labels = {str(k): str(v) for k, v in (alert.get("labels") or {}).items()}
        return any(
            s.until_ms > self._clock and s.matches(alert["source"], alert["severity"], alert["fingerprint"], labels)
            for s in self._silences.values()
        )

    @staticmethod
    def _state(alert: Mapping[str, Any]) -> list[Any]:
        return [alert["status"], alert.get("acknowledged_by")]

    def _changes(self, group: _Group, fp: str) -> bool:
        """Whether the alert's state differs from what the receiver was told (``None``: never told)."""
        told = group.sent.get(fp)
        alert = group.alerts[fp]
        if told is None:
            return not (alert["status"] == "resolved" and group.last_flush_ms is not None and fp not in group.sent)
        return told != self._state(alert)

    def _unacked_firing(self, group: _Group) -> bool:
        return any(
            a["status"] == "firing" and a.get("acknowledged_by") is None and not self._muted(a)
            for a in group.alerts.values()
        )

    def _repeat_due(self, group: _Group, now: int) -> bool:
        last = group.last_flush_ms
        return last is not None and now - last >= group.repeat_interval_ms and self._unacked_firing(group)

    def _flush(self, group: _Group, now: int, repeat: bool) -> Notification | None:
        visible = {
            fp: a
            for fp, a in group.alerts.items()
            if not self._muted(a) or (a["status"] == "resolved" and (group.sent.get(fp) or [""])[0] == "firing")
        }
        changed = {fp for fp, a in visible.items() if group.sent.get(fp) != self._state(a)}
        status_changed = {fp for fp in changed if (group.sent.get(fp) or [None])[0] != visible[fp]["status"]}
        tokens, group.tokens = group.tokens, []
        group.next_flush_ms = None
        first = group.last_flush_ms is None
        group.last_flush_ms = now
        for fp in [fp for fp, a in group.alerts.items() if a["status"] == "resolved"]:
            del group.alerts[fp]  # told once (or muted all along): it leaves the group
            group.sent.pop(fp, None)
        if not visible or (not changed and not repeat):
            self._released.extend(tokens)
            return None
        for fp, a in visible.items():
            if a["status"] == "firing":
                group.sent[fp] = self._state(a)
        reason = "repeat" if repeat else "new" if first else "update" if status_changed else "ack"
        group.repeats = group.repeats + 1 if repeat else 0
        alerts = sorted(visible.values(), key=lambda a: (a["status"] != "firing", a["fingerprint"]))
        content = [(a["fingerprint"], a["status"], a["starts_at"], a.get("acknowledged_by")) for a in alerts]
        return Notification(
            receiver=group.receiver,
            route=group.route,
            group_key=group.key,
            group_labels=dict(group.labels),
            alerts=[dict(a) for a in alerts],
            status="firing" if any(a["status"] == "firing" for a in alerts) else "resolved",
            reason=reason,
            key=derive_id("notification", group.receiver, group.key, content, reason, group.repeats),
            tokens=tokens,
            ts=now,
            repeat_interval_ms=group.repeat_interval_ms,
        )
