"""Notifications: alerts delivered to people, in Alertmanager's vocabulary (receivers, routes, groups).

The functional core of ``reverify notify``, one concept per module:

* :mod:`~reverify.processors.notify.config`: ``[[receivers]]``, ``[[routes]]``, ``[smtp]``, ``[notify]``
  validated into :class:`NotifyConfig` (every mistake named with its receiver or route and field);
* :mod:`~reverify.processors.notify.routing`: the route tree over an alert's labels;
* :mod:`~reverify.processors.notify.grouping`: :class:`NotificationGroups`, Alertmanager's aggregation groups
  (``group_wait``, ``group_interval``, ``repeat_interval``, resolves, acknowledgements, silences);
* :mod:`~reverify.processors.notify.payloads`: the bodies each destination receives (Alertmanager webhook v4,
  Slack, PagerDuty Events API v2, Alertmanager ``/api/v2/alerts``, e-mail), their idempotency keys and signatures.

The shell (:mod:`reverify.streams.notify`) consumes the ``alerts`` topic, delivers with retries and commits.
"""

from reverify.processors.notify.config import NotifyConfig, NotifyConfigError, Receiver, Route, parse_notify_config
from reverify.processors.notify.grouping import Notification, NotificationGroups

__all__ = [
    "Notification",
    "NotificationGroups",
    "NotifyConfig",
    "NotifyConfigError",
    "Receiver",
    "Route",
    "parse_notify_config",
]
