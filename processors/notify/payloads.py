"""What each destination receives for a :class:`~reverify.processors.notify.grouping.Notification`.

* **webhook**: Alertmanager's webhook body, version ``"4"`` (``receiver``, ``status``, ``alerts`` with
  ``labels``, ``annotations``, ``startsAt``, ``endsAt``, ``generatorURL``, ``fingerprint``; ``groupLabels``,
  ``commonLabels``, ``commonAnnotations``, ``externalURL``, ``groupKey``, ``truncatedAlerts``), so every
  receiver built for Alertmanager (chat bridges, incident tools) accepts it;
* **slack**: an incoming-webhook message a person can read (title, message, the evidence, the link);
* **pagerduty**: an Events API v2 event, ``trigger`` / ``acknowledge`` / ``resolve``, whose ``dedup_key`` is the
  group's (so the incident a trigger opened is the one the resolve closes, and a duplicate is merged);
* **alertmanager**: the ``POST /api/v2/alerts`` body that forwards the alerts to an existing Alertmanager;
* **email**: a plain-text message in Alertmanager's subject style (``[FIRING:2] ...``).

Labels are :func:`~reverify.processors.notify.routing.alert_labels` (``alertname``, ``source``,
``severity``, ``agent_name``, ``task_type`` ... as the alert carries them); annotations carry ``title``,
``message``, the evidence (``value``, ``threshold``, ``statistic``, ``sample_size`` and a one-line
``evidence``) and ``console`` when a console URL is configured.

References
----------
Alertmanager webhook: https://github.com/prometheus/alertmanager/blob/main/notify/webhook/webhook.go
Alertmanager template data: https://github.com/prometheus/alertmanager/blob/main/template/template.go
PagerDuty Events API v2: https://developer.pagerduty.com/docs/events-api-v2/trigger-events/
Slack incoming webhooks: https://api.slack.com/messaging/webhooks

Examples
--------
>>> alert = {"fingerprint": "f1", "source": "rollback", "status": "firing", "severity": "critical",
...          "title": "enricher/lookup rolled back", "message": "success fell", "ts": 0, "starts_at": 0,
...          "labels": {"agent_name": "enricher", "task_type": "lookup", "statistic": "success_rate"},
...          "evidence": {"value": 0.61, "threshold": 0.8, "sample_size": 120}}
>>> from reverify.processors.notify.grouping import Notification
>>> n = Notification("ops", "routes[0]", 'routes[0]:{agent_name="enricher"}', {"agent_name": "enricher"},
...                  [alert], "firing", "new", "k1")
>>> body = webhook_body(n)
>>> body["version"], body["status"], body["alerts"][0]["labels"]["alertname"], body["alerts"][0]["endsAt"]
('4', 'firing', 'rollback', '0001-01-01T00:00:00Z')
>>> body["alerts"][0]["annotations"]["evidence"]
'value 0.61 vs threshold 0.8 (success_rate, n=120)'
>>> pagerduty_body(n, "KEY")["event_action"], pagerduty_body(n, "KEY")["payload"]["severity"]
('trigger', 'critical')
>>> signature("s3cret", b"{}")
'sha256=adbde1ce40c89c14215687d5d762a47df6dfaefcfad61e2e86718ffc8498571b'
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from email.message import EmailMessage
from typing import Any
from urllib.parse import quote

from reverify.processors.base import make_alert
from reverify.processors.notify.grouping import Notification
from reverify.processors.notify.routing import alert_labels

__all__ = [
    "IDEMPOTENCY_HEADER",
    "SIGNATURE_HEADER",
    "alertmanager_body",
    "am_alert",
    "delivery_failed_alert",
    "email_message",
    "evidence_text",
    "pagerduty_body",
    "signature",
    "slack_body",
    "sample_notification",
    "webhook_body",
]

IDEMPOTENCY_HEADER = "X-Reverify-Idempotency-Key"
SIGNATURE_HEADER = "X-Reverify-Signature"
_GO_ZERO_TIME = "0001-01-01T00:00:00Z"  # what Alertmanager sends as endsAt of a firing alert
_PD_SEVERITY = {"critical": "critical", "warning": "warning", "info": "info"}
_SLACK_COLOR = {"critical": "#d62728", "warning": "#ff7f0e", "info": "#1f77b4", "resolved": "#2ca02c"}


def rfc3339(ms: int | None) -> str:
    """Milliseconds since the epoch as RFC 3339 in UTC (``None``: Go's zero time, Alertmanager's "not set").

    >>> rfc3339(1_700_000_000_123), rfc3339(None)
    ('2023-11-14T22:13:20.123Z', '0001-01-01T00:00:00Z')
    """
    if ms is None:
        return _GO_ZERO_TIME
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def evidence_text(alert: Mapping[str, Any]) -> str:
    """One line saying what decided the alert: ``value V vs threshold T (statistic, n=N)``."""
    ev = alert.get("evidence") or {}
    if "value" not in ev:
        return ""
    parts = [s for s in ((alert.get("labels") or {}).get("statistic", ""),) if s]
    if "sample_size" in ev:
        parts.append(f"n={ev['sample_size']:.0f}")
    where = f" ({', '.join(parts)})" if parts else ""
    threshold = f" vs threshold {ev['threshold']:.4g}" if "threshold" in ev else ""
    return f"value {ev['value']:.4g}{threshold}{where}"


def console_link(console_url: str, alert: Mapping[str, Any]) -> str:
    """The console page of ``alert`` (empty when no console URL is configured)."""
    if not console_url:
        return ""
    return f"{console_url.rstrip('/')}/alerts?fingerprint={quote(str(alert['fingerprint']))}"


def annotations(alert: Mapping[str, Any], console_url: str = "") -> dict[str, str]:
    """Title, message, evidence and console link of ``alert`` as Alertmanager annotations (strings)."""
    out = {"title": str(alert.get("title", "")), "summary": str(alert.get("title", ""))}
    if alert.get("message"):
        out["message"] = out["description"] = str(alert["message"])
    ev = alert.get("evidence") or {}
    for name in ("value", "threshold", "sample_size"):
        if name in ev:
            out[name] = f"{ev[name]:g}"
    statistic = (alert.get("labels") or {}).get("statistic")
    if statistic:
        out["statistic"] = str(statistic)
    text = evidence_text(alert)
    if text:
        out["evidence"] = text
    if alert.get("acknowledged_by"):
        out["acknowledged_by"] = str(alert["acknowledged_by"])
    link = console_link(console_url, alert)
    if link:
        out["console"] = link
    return out


def am_alert(alert: Mapping[str, Any], console_url: str = "") -> dict[str, Any]:
    """One alert as Alertmanager's template data shows it (``template.Alert``)."""
    resolved = alert["status"] == "resolved"
    return {
        "status": alert["status"],
        "labels": alert_labels(alert),
        "annotations": annotations(alert, console_url),
        "startsAt": rfc3339(alert["starts_at"]),
        "endsAt": rfc3339((alert.get("ends_at") or alert["ts"]) if resolved else None),
        "generatorURL": console_link(console_url, alert),
        "fingerprint": str(alert["fingerprint"]),
    }


def _common(dicts: Sequence[Mapping[str, str]]) -> dict[str, str]:
    if not dicts:
        return {}
    first = dict(dicts[0])
    return {k: v for k, v in first.items() if all(d.get(k) == v for d in dicts[1:])}


def webhook_body(n: Notification, console_url: str = "") -> dict[str, Any]:
    """Alertmanager's webhook message (``notify/webhook.Message``), version ``"4"``."""
    alerts = [am_alert(a, console_url) for a in n.alerts]
    return {
        "receiver": n.receiver,
        "status": n.status,
        "alerts": alerts,
        "groupLabels": dict(n.group_labels),
        "commonLabels": _common([a["labels"] for a in alerts]),
        "commonAnnotations": _common([a["annotations"] for a in alerts]),
        "externalURL": console_url,
        "version": "4",
        "groupKey": n.group_key,
        "truncatedAlerts": 0,
    }


def _facts(alert: Mapping[str, Any]) -> list[str]:
    """What a person reads under an alert's title: its message, the evidence, who acknowledged it."""
    lines = [str(alert["message"])] if alert.get("message") else []
    if evidence_text(alert):
        lines.append(f"Evidence: {evidence_text(alert)}")
    if alert.get("acknowledged_by"):
        lines.append(f"Acknowledged by {alert['acknowledged_by']}")
    return lines


def _headline(n: Notification) -> str:
    firing = sum(a["status"] == "firing" for a in n.alerts)
    status = n.status.upper() + (f":{firing}" if n.status == "firing" else "")
    names = " ".join(n.group_labels.values()) or " ".join(sorted({str(a["source"]) for a in n.alerts}))
    return f"[{status}] {names}".strip()


def slack_body(n: Notification, console_url: str = "") -> dict[str, Any]:
    """A Slack incoming-webhook message: a headline, then each alert's title, message, evidence and link."""
    blocks: list[dict[str, Any]] = [{"type": "header", "text": {"type": "plain_text", "text": _headline(n)[:150]}}]
    for a in n.alerts:
        labels = alert_labels(a)
        icon = ":white_check_mark:" if a["status"] == "resolved" else ":rotating_light:"
        lines = [f"{icon} *{a['title']}* ({a['severity']}, {a['status']})", *_facts(a)]
        link = console_link(console_url, a)
        if link:
            lines.append(f"<{link}|Open in the reverify console>")
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(lines)[:3000]}})
        who = [f"*{k}*: {labels[k]}" for k in ("agent_name", "task_type", "alertname") if k in labels]
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": "  ".join(who)}]})
    fallback = "; ".join(f"{a['status']}: {a['title']}" for a in n.alerts)
    color = _SLACK_COLOR["resolved" if n.status == "resolved" else n.alerts[0]["severity"]]
    return {"text": f"{_headline(n)} {fallback}"[:3000], "blocks": blocks, "attachments": [{"color": color}]}


def dedup_key(n: Notification) -> str:
    """The group's PagerDuty ``dedup_key`` (Alertmanager's: SHA-256 of the group key, hex)."""
    return hashlib.sha256(f"{n.receiver}/{n.group_key}".encode()).hexdigest()


def pagerduty_body(n: Notification, routing_key: str, console_url: str = "") -> dict[str, Any]:
    """A PagerDuty Events API v2 event: ``resolve`` when all resolved, ``acknowledge`` on an ack, else ``trigger``."""
    key = dedup_key(n)
    if n.status == "resolved":
        return {"routing_key": routing_key, "event_action": "resolve", "dedup_key": key}
    if n.reason == "ack":
        return {"routing_key": routing_key, "event_action": "acknowledge", "dedup_key": key}
    firing = [a for a in n.alerts if a["status"] == "firing"]
    worst = max(firing, key=lambda a: ("info", "warning", "critical").index(a["severity"]))
    labels = alert_labels(worst)
    body: dict[str, Any] = {
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": key,
        "client": "reverify",
        "payload": {
            "summary": (_headline(n) + " " + "; ".join(a["title"] for a in firing))[:1024],
            "source": labels.get("agent_name", "reverify"),
            "severity": _PD_SEVERITY.get(worst["severity"], "error"),
            "timestamp": rfc3339(worst["starts_at"]),
            "component": labels.get("agent_name", ""),
            "group": labels.get("task_type", ""),
            "class": labels["alertname"],
            "custom_details": {
                "firing": len(firing),
                "alerts": [
                    {"title": a["title"], "message": a.get("message", ""), "evidence": evidence_text(a),
                     "labels": alert_labels(a)}
                    for a in firing
                ],
            },
        },
    }  # fmt: skip
    link = console_link(console_url, worst)
    if link:
        body["client_url"] = link
        body["links"] = [{"href": link, "text": "reverify console"}]
    return body


def alertmanager_body(n: Notification, console_url: str = "", valid_for_ms: int = 0) -> list[dict[str, Any]]:
    """``POST /api/v2/alerts``: the alerts as postable alerts.

    A firing alert's ``endsAt`` is ``valid_for_ms`` after the notification (the route's repeat interval and
    then some), so the receiving Alertmanager keeps it until reverify repeats or resolves it.
    """
    out = []
    for a in n.alerts:
        am = am_alert(a, console_url)
        posted = {k: am[k] for k in ("labels", "annotations", "startsAt", "generatorURL")}
        if a["status"] == "resolved":
            posted["endsAt"] = am["endsAt"]
        elif valid_for_ms:
            posted["endsAt"] = rfc3339(n.ts + valid_for_ms)
        out.append(posted)
    return out


def email_message(n: Notification, sender: str, to: Sequence[str], console_url: str = "") -> EmailMessage:
    """A plain-text e-mail; its ``Message-ID`` carries the idempotency key (a duplicate has the same one)."""
    msg = EmailMessage()
    msg["Subject"] = _headline(n) + " " + "; ".join(a["title"] for a in n.alerts)[:200]
    msg["From"] = sender
    msg["To"] = ", ".join(to)
    msg["Message-ID"] = f"<{n.key}@reverify>"
    msg[IDEMPOTENCY_HEADER] = n.key
    parts = []
    for a in n.alerts:
        lines = [f"{a['status'].upper()} {a['severity']}: {a['title']}"]
        lines += _facts(a)
        lines.append("Labels: " + ", ".join(f"{k}={v}" for k, v in sorted(alert_labels(a).items())))
        lines.append(f"Since: {rfc3339(a['starts_at'])}")
        link = console_link(console_url, a)
        if link:
            lines.append(f"Console: {link}")
        parts.append("\n".join(lines))
    msg.set_content("\n\n".join(parts) + f"\n\n-- reverify, receiver {n.receiver}, group {n.group_key}\n")
    return msg


def signature(secret: str, body: bytes) -> str:
    """``X-Reverify-Signature``: ``sha256=`` and the hex HMAC-SHA256 of the exact body bytes under ``secret``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def sample_notification(receiver: str, now_ms: int) -> Notification:
    """A harmless notification for ``reverify notify test RECEIVER``: one info alert, firing."""
    alert = make_alert(
        source="notify",
        status="firing",
        severity="info",
        title=f"Test notification from reverify to {receiver}",
        labels={"alertname": "ReverifyTest", "receiver": receiver},
        ts=now_ms,
        starts_at=now_ms,
        cause=("test", now_ms),
        message="Sent by `reverify notify test`; nothing is wrong.",
        evidence={"value": 1.0, "threshold": 1.0, "sample_size": 1.0},
    ).value
    group = {"alertname": "ReverifyTest"}
    return Notification(receiver, "test", 'test:{alertname="ReverifyTest"}', group, [alert], "firing", "new",
                        alert["event_id"], ts=now_ms)  # fmt: skip


def delivery_failed_alert(receiver: str, channel: str, reason: str, attempts: int, now_ms: int, status: str) -> Any:
    """reverify's own ``notify`` alert: notifications to ``receiver`` failed (or, ``resolved``, work again).

    Its ``failed_receiver`` label keeps it away from the receiver that cannot be reached.
    """
    return make_alert(
        source="notify",
        status=status,
        severity="warning",
        title=f"Notifications to {receiver} ({channel}) fail",
        labels={"alertname": "NotificationsFailing", "failed_receiver": receiver, "channel": channel},
        ts=now_ms,
        starts_at=now_ms,
        cause=(receiver, channel, status, now_ms),
        message=f"{attempts} attempts failed; the last: {reason}. The notification is on reverify.deadletter.",
        evidence={"value": float(attempts), "threshold": float(attempts), "sample_size": float(attempts)},
        ends_at=now_ms if status == "resolved" else None,
    )
