"""Receivers and routes as declared: ``[[receivers]]``, ``[[routes]]``, ``[smtp]`` and ``[notify]`` of reverify.toml.

The vocabulary is Alertmanager's, so that people who know it feel at home: a
*receiver* names where notifications go (a webhook, a Slack incoming webhook,
e-mail addresses, a PagerDuty routing key, an existing Alertmanager, several at
once), a *route* says which alerts go to which receiver (``match`` and
``match_re`` label matchers, first match wins unless ``continue = true``,
nested ``routes`` inherit from their parent) and how they are grouped
(``group_by``, ``group_wait``, ``group_interval``, ``repeat_interval``).

:func:`parse_notify_config` validates everything at once and raises one
:class:`NotifyConfigError` naming every mistake with its receiver or route and
field, so ``reverify notify check`` (and ``reverify notify`` at start-up) can
print them in one go.

References
----------
Alertmanager configuration: https://prometheus.io/docs/alerting/latest/configuration/

Examples
--------
>>> cfg = parse_notify_config({"receivers": [{"name": "ops", "webhook": "http://hooks/x"}],
...                            "routes": [{"match": {"severity": "critical"}, "receiver": "ops", "group_wait": "10s"}]})
>>> cfg.receivers["ops"].channels, cfg.routes[0].group_wait_ms, cfg.routes[0].repeat_interval_ms
(('webhook',), 10000, 14400000)
>>> parse_notify_config({"receivers": [{"name": "ops", "webhok": "http://x"}]})
Traceback (most recent call last):
...
reverify.processors.notify.config.NotifyConfigError: receivers[0] (ops): 'webhok' is not a receiver setting; did you mean 'webhook'? known: alertmanager, email, hmac_secret, name, pagerduty_routing_key, pagerduty_url, send_resolved, slack, webhook
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from reverify.processors.assurance.cases import parse_duration

__all__ = [
    "CHANNELS",
    "NotifyConfig",
    "NotifyConfigError",
    "NotifySettings",
    "Receiver",
    "Route",
    "SmtpSettings",
    "parse_notify_config",
]

#: The kinds of destination a receiver may have, in the order they are delivered.
CHANNELS = ("webhook", "slack", "email", "pagerduty", "alertmanager")
PAGERDUTY_EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"
_RECEIVER_KEYS = (
    "name",
    "webhook",
    "slack",
    "email",
    "pagerduty_routing_key",
    "pagerduty_url",
    "alertmanager",
    "hmac_secret",
    "send_resolved",
)
_ROUTE_KEYS = (
    "match",
    "match_re",
    "receiver",
    "group_by",
    "group_wait",
    "group_interval",
    "repeat_interval",
    "continue",
    "routes",
)
_TIMINGS = ("group_wait", "group_interval", "repeat_interval")


class NotifyConfigError(ValueError):
    """Every mistake in the notification settings, one line each, naming the receiver or route and the field."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = list(errors)


@dataclass(frozen=True)
class Receiver:
    """Where one receiver's notifications go; every destination given is delivered to.

    ``email`` is one address or a list; ``hmac_secret`` signs webhook bodies
    (``X-Reverify-Signature: sha256=HEX``); ``send_resolved = false`` delivers
    firing notifications only (Alertmanager's option of the same name).
    """

    name: str
    webhook: str = ""
    slack: str = ""
    email: tuple[str, ...] = ()
    pagerduty_routing_key: str = ""
    pagerduty_url: str = PAGERDUTY_EVENTS_URL
    alertmanager: str = ""
    hmac_secret: str = ""
    send_resolved: bool = True

    @property
    def channels(self) -> tuple[str, ...]:
        """The destinations this receiver has, among :data:`CHANNELS`."""
        given = {
            "webhook": self.webhook,
            "slack": self.slack,
            "email": self.email,
            "pagerduty": self.pagerduty_routing_key,
            "alertmanager": self.alertmanager,
        }
        return tuple(c for c in CHANNELS if given[c])


@dataclass(frozen=True)
class Route:
    """One node of the route tree; unset fields were inherited from the parent when parsed.

    ``path`` names the node (``routes[0].routes[1]``) in errors and in the group key.
    """

    path: str
    receiver: str
    match: Mapping[str, str] = field(default_factory=dict)
    match_re: Mapping[str, str] = field(default_factory=dict)
    group_by: tuple[str, ...] = ()
    group_wait_ms: int = 30_000
    group_interval_ms: int = 300_000
    repeat_interval_ms: int = 4 * 3_600_000
    continue_matching: bool = False
    routes: tuple[Route, ...] = ()


@dataclass(frozen=True)
class SmtpSettings:
    """``[smtp]``: the server e-mail receivers are sent through (``starttls`` upgrades a plain connection)."""

    host: str = "localhost"
    port: int = 25
    user: str = ""
    password: str = ""
    starttls: bool = False
    sender: str = "reverify@localhost"


@dataclass(frozen=True)
class NotifySettings:
    """``[notify]``: delivery and the defaults of routes.

    Parameters
    ----------
    console_url
        Base URL of the reverify console; alerts then carry a link to it.
    timeout
        Seconds one request may take before it counts as failed.
    attempts
        Tries per notification and destination before it goes to the dead-letter topic.
    backoff
        Seconds before the first retry; doubled after each failure, up to ``backoff_max``.
    group_by, group_wait, group_interval, repeat_interval
        Defaults of routes that do not say (Alertmanager's: one group per route, 30 s, 5 m, 4 h).
    """

    console_url: str = ""
    timeout: float = 10.0
    attempts: int = 4
    backoff: float = 0.5
    backoff_max: float = 30.0
    group_by: tuple[str, ...] = ()
    group_wait: str | float = "30s"
    group_interval: str | float = "5m"
    repeat_interval: str | float = "4h"
    group: str = "reverify-notify"


@dataclass(frozen=True)
class NotifyConfig:
    """Receivers by name, the top-level routes (children of an implicit root), SMTP and delivery settings."""

    receivers: Mapping[str, Receiver] = field(default_factory=dict)
    routes: tuple[Route, ...] = ()
    smtp: SmtpSettings = field(default_factory=SmtpSettings)
    settings: NotifySettings = field(default_factory=NotifySettings)

    @property
    def enabled(self) -> bool:
        """Whether there is anyone to notify."""
        return bool(self.receivers)


def parse_notify_config(sections: Mapping[str, Any]) -> NotifyConfig:
    """Validate ``receivers``, ``routes``, ``smtp`` and ``notify`` of the settings' sections; every mistake at once.

    With receivers but no routes, every alert goes to every receiver (one route per receiver, ``continue``).
    """
    errors: list[str] = []
    settings = _dataclass_section("notify", sections.get("notify", {}), NotifySettings, errors)
    smtp = _dataclass_section("smtp", sections.get("smtp", {}), SmtpSettings, errors)
    receivers = _receivers(sections.get("receivers", []), errors)
    raw_routes = sections.get("routes", [])
    root = _root(settings, errors)
    routes: tuple[Route, ...] = ()
    if not isinstance(raw_routes, list):
        errors.append("routes must be an array of tables ([[routes]])")
    elif raw_routes:
        routes = tuple(_route(r, f"routes[{i}]", root, receivers, errors) for i, r in enumerate(raw_routes))
    else:
        routes = tuple(
            Route(f"receivers.{name}", name, group_by=root.group_by, group_wait_ms=root.group_wait_ms,
                  group_interval_ms=root.group_interval_ms, repeat_interval_ms=root.repeat_interval_ms,
                  continue_matching=True)
            for name in receivers
        )  # fmt: skip
    if errors:
        raise NotifyConfigError(errors)
    assert settings is not None and smtp is not None
    return NotifyConfig(receivers, routes, smtp, settings)


def _known(key: str, allowed: tuple[str, ...]) -> str:
    close = difflib.get_close_matches(key, allowed, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"{hint}known: {', '.join(sorted(allowed))}"


def _dataclass_section(name: str, raw: Any, cls: type, errors: list[str]) -> Any:
    if not isinstance(raw, Mapping):
        errors.append(f"[{name}] must be a table of settings")
        return cls()
    kinds = {f.name: f.default for f in fields(cls)}
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in kinds:
            errors.append(f"[{name}]: {key!r} is not a setting; {_known(key, tuple(kinds))}")
            continue
        if key in _TIMINGS:
            values[key] = value  # "30s" or seconds as a number: parse_duration below says which is wrong
            continue
        try:
            values[key] = _coerce(value, kinds[key])
        except ValueError as exc:
            errors.append(f"[{name}] {key} = {value!r} is not allowed; use {exc}")
    for key in _TIMINGS:
        if key in values:
            try:
                parse_duration(values[key])
            except ValueError as exc:
                errors.append(f"[{name}] {key} = {values[key]!r} is not allowed; use {exc}")
                del values[key]
    for key in ("timeout", "backoff", "backoff_max", "attempts", "port"):
        if key in values and values[key] <= 0:
            errors.append(f"[{name}] {key} = {values[key]!r} is not allowed; use a number > 0")
            del values[key]
    return cls(**values)


def _coerce(value: Any, default: Any) -> Any:
    """``value`` as the type of ``default``; environment variables arrive as text."""
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        if str(value).lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
            return str(value).lower() in ("1", "true", "yes", "on")
        raise ValueError("true or false")
    if isinstance(default, int):
        try:
            return int(value)
        except (TypeError, ValueError):
            raise ValueError("a whole number") from None
    if isinstance(default, float):
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ValueError("a number") from None
    if isinstance(default, tuple):
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, (list, tuple)) or not all(isinstance(v, str) for v in items):
            raise ValueError("a list of strings")
        return tuple(v.strip() for v in items if v.strip())
    if not isinstance(value, str):
        raise ValueError("a string")
    return value


def _receivers(raw: Any, errors: list[str]) -> dict[str, Receiver]:
    if not isinstance(raw, list):
        errors.append("receivers must be an array of tables ([[receivers]])")
        return {}
    out: dict[str, Receiver] = {}
    defaults = {f.name: f.default for f in fields(Receiver)}
    defaults["name"] = ""
    for i, table in enumerate(raw):
        name = table.get("name") if isinstance(table, Mapping) else None
        where = f"receivers[{i}]" + (f" ({name})" if isinstance(name, str) and name else "")
        if not isinstance(table, Mapping):
            errors.append(f"{where} must be a table")
            continue
        values: dict[str, Any] = {}
        before = len(errors)
        for key, value in table.items():
            if key not in _RECEIVER_KEYS:
                errors.append(f"{where}: {key!r} is not a receiver setting; {_known(key, _RECEIVER_KEYS)}")
                continue
            try:
                values[key] = _coerce([value] if key == "email" and isinstance(value, str) else value, defaults[key])
            except ValueError as exc:
                errors.append(f"{where}: {key} = {value!r} is not allowed; use {exc}")
        if not values.get("name"):
            errors.append(f"{where}: name is missing; every receiver needs a name routes can refer to")
            continue
        if values["name"] in out:
            errors.append(f"{where}: name {values['name']!r} is used twice; receiver names must be unique")
            continue
        for key in ("webhook", "slack", "alertmanager", "pagerduty_url"):
            url = values.get(key, "")
            if url and not re.match(r"^https?://[^/\s]+", url):
                errors.append(f"{where}: {key} = {url!r} is not allowed; use an http:// or https:// URL")
        for address in values.get("email", ()):
            if "@" not in address:
                errors.append(f"{where}: email {address!r} is not an e-mail address")
        receiver = Receiver(**values)
        if not receiver.channels and len(errors) == before:  # a misspelt destination is the mistake to name
            errors.append(
                f"{where}: no destination; set one of webhook, slack, email, pagerduty_routing_key, alertmanager"
            )
        out[receiver.name] = receiver
    return out


def _root(settings: NotifySettings | None, errors: list[str]) -> Route:
    s = settings or NotifySettings()
    timings = {}
    for key in _TIMINGS:
        try:
            timings[key] = parse_duration(getattr(s, key))
        except ValueError:
            timings[key] = parse_duration(getattr(NotifySettings, key))
    return Route(
        "",
        "",
        group_by=s.group_by,
        group_wait_ms=timings["group_wait"],
        group_interval_ms=timings["group_interval"],
        repeat_interval_ms=timings["repeat_interval"],
    )


def _matchers(where: str, key: str, value: Any, errors: list[str]) -> dict[str, str]:
    if not isinstance(value, Mapping) or not all(isinstance(v, str) for v in value.values()):
        errors.append(f'{where}: {key} must be a table of label = "value", e.g. {key} = {{ severity = "critical" }}')
        return {}
    if key == "match_re":
        for label, pattern in value.items():
            try:
                re.compile(pattern)
            except re.error as exc:
                errors.append(f"{where}: match_re.{label} = {pattern!r} is not a regular expression: {exc}")
    return {str(k): v for k, v in value.items()}


def _route(raw: Any, where: str, parent: Route, receivers: Mapping[str, Receiver], errors: list[str]) -> Route:
    if not isinstance(raw, Mapping):
        errors.append(f"{where} must be a table")
        return parent
    for key in raw:
        if key not in _ROUTE_KEYS:
            errors.append(f"{where}: {key!r} is not a route setting; {_known(key, _ROUTE_KEYS)}")
    receiver = raw.get("receiver", parent.receiver)
    if not isinstance(receiver, str) or not receiver:
        errors.append(f"{where}: receiver is missing; name one of the [[receivers]]")
        receiver = ""
    elif receiver not in receivers:
        known = ", ".join(sorted(receivers)) or "none declared"
        errors.append(f"{where}: receiver = {receiver!r} is not a receiver; known: {known}")
    timings = {}
    for key in _TIMINGS:
        inherited = getattr(parent, f"{key}_ms")
        try:
            timings[key] = parse_duration(raw[key]) if key in raw else inherited
        except ValueError as exc:
            errors.append(f"{where}: {key} = {raw[key]!r} is not allowed; use {exc}")
            timings[key] = inherited
    for key in ("group_interval", "repeat_interval"):
        if timings[key] <= 0:
            errors.append(f"{where}: {key} = {raw.get(key)!r} is not allowed; use a duration > 0")
    group_by = raw.get("group_by", parent.group_by)
    if isinstance(group_by, str) or not all(isinstance(g, str) for g in group_by):
        errors.append(f'{where}: group_by must be a list of label names, e.g. group_by = ["agent_name"]')
        group_by = parent.group_by
    cont = raw.get("continue", False)
    if not isinstance(cont, bool):
        errors.append(f"{where}: continue = {cont!r} is not allowed; use true or false")
        cont = False
    node = Route(
        where,
        receiver,
        match=_matchers(where, "match", raw.get("match", {}), errors),
        match_re=_matchers(where, "match_re", raw.get("match_re", {}), errors),
        group_by=tuple(group_by),
        group_wait_ms=timings["group_wait"],
        group_interval_ms=timings["group_interval"],
        repeat_interval_ms=timings["repeat_interval"],
        continue_matching=cont,
    )
    children = raw.get("routes", [])
    if not isinstance(children, list):
        errors.append(f"{where}: routes must be an array of tables ([[{where}.routes]])")
        children = []
    kids = tuple(_route(c, f"{where}.routes[{i}]", node, receivers, errors) for i, c in enumerate(children))
    return Route(**{**vars(node), "routes": kids})
