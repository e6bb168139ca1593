"""Which routes an alert takes: Alertmanager's route tree over the alert's labels.

An ``Alert`` record becomes a label set (:func:`alert_labels`): its own labels
plus ``alertname``, ``source`` and ``severity``. A route matches when every
``match`` label equals and every ``match_re`` label fully matches its regular
expression (a label the alert lacks is the empty string, as in Alertmanager).
The top-level routes are the children of an implicit root; in each list the
first matching route wins unless it says ``continue = true``; a matching route
hands the alert to its first matching child, and keeps it when none matches.

References
----------
Alertmanager routing: https://prometheus.io/docs/alerting/latest/configuration/#route

Examples
--------
>>> from reverify.processors.notify.config import parse_notify_config
>>> cfg = parse_notify_config({
...     "receivers": [{"name": "ops", "webhook": "http://h/1"}, {"name": "pager", "pagerduty_routing_key": "k"}],
...     "routes": [{"match": {"severity": "critical"}, "receiver": "pager", "continue": True},
...                {"match_re": {"agent_name": "enrich.*"}, "receiver": "ops"}]})
>>> labels = alert_labels({"source": "rollback", "severity": "critical", "labels": {"agent_name": "enricher"}})
>>> labels["alertname"], [r.receiver for r in match_routes(cfg.routes, labels)]
('rollback', ['pager', 'ops'])
>>> [r.receiver for r in match_routes(cfg.routes, {**labels, "severity": "warning"})]
['ops']
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any

from reverify.processors.notify.config import Route

__all__ = ["alert_labels", "group_labels", "match_routes", "route_matches"]


def alert_labels(alert: Mapping[str, Any]) -> dict[str, str]:
    """The label set routes and receivers see: the alert's labels, ``alertname``, ``source`` and ``severity``.

    ``alertname`` is the alert's ``source`` (``rollback``, ``assurance``, ``degradation`` ...) unless its labels
    carry one already.
    """
    labels = {str(k): str(v) for k, v in (alert.get("labels") or {}).items()}
    labels.setdefault("alertname", str(alert["source"]))
    labels["source"] = str(alert["source"])
    labels["severity"] = str(alert["severity"])
    return labels


@lru_cache(maxsize=512)
def _regex(pattern: str) -> re.Pattern[str]:
    return re.compile(f"(?:{pattern})")


def route_matches(route: Route, labels: Mapping[str, str]) -> bool:
    """Whether every matcher of ``route`` holds for ``labels``."""
    if any(labels.get(k, "") != v for k, v in route.match.items()):
        return False
    return all(_regex(p).fullmatch(labels.get(k, "")) for k, p in route.match_re.items())


def match_routes(routes: Iterable[Route], labels: Mapping[str, str]) -> list[Route]:
    """The routes that take an alert with ``labels``, deepest match of each branch, in declaration order."""
    out: list[Route] = []
    for route in routes:
        if not route_matches(route, labels):
            continue
        deeper = match_routes(route.routes, labels)
        out.extend(deeper or [route])
        if not route.continue_matching:
            break
    return out


def group_labels(route: Route, labels: Mapping[str, str]) -> dict[str, str]:
    """The labels that name an alert's group on ``route`` (``group_by = ["..."]`` groups by every label).

    >>> group_labels(Route("r", "ops", group_by=("agent_name", "team")), {"agent_name": "a", "severity": "x"})
    {'agent_name': 'a'}
    """
    if "..." in route.group_by:
        return dict(sorted(labels.items()))
    return {k: labels[k] for k in route.group_by if k in labels}
