"""Sending one notification to one destination, with a per-request timeout and retries with exponential backoff.

The bodies come from :mod:`reverify.processors.notify.payloads`; this module only
speaks HTTP (``urllib``) and SMTP (``smtplib``). A destination that answers 5xx,
408 or 429, refuses the connection or does not answer within ``timeout`` is
tried again after ``backoff``, ``2 backoff``, ... (at most ``backoff_max``)
until ``attempts`` tries are spent; any other 4xx is final at once (the request
itself is wrong, Alertmanager's rule). Every HTTP request carries
``X-Reverify-Idempotency-Key`` (the same for a duplicate sent after a crash)
and, when the receiver has an ``hmac_secret``, webhooks carry
``X-Reverify-Signature: sha256=HEX`` over the exact body bytes.
"""

from __future__ import annotations

import json
import smtplib
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from reverify.processors.notify.config import NotifyConfig, Receiver
from reverify.processors.notify.grouping import Notification
from reverify.processors.notify.payloads import (
    IDEMPOTENCY_HEADER,
    SIGNATURE_HEADER,
    alertmanager_body,
    email_message,
    pagerduty_body,
    signature,
    slack_body,
    webhook_body,
)

_RETRYABLE_STATUS = {408, 429}
_EXCERPT = 300


@dataclass
class Answer:
    """What a destination answered to one request: HTTP status (250 for an SMTP acceptance) and a body excerpt."""

    status: int
    body: str


@dataclass
class Outcome:
    """How delivering one notification to one destination ended."""

    receiver: str
    channel: str
    ok: bool
    attempts: int
    answer: Answer | None = None
    reason: str = ""
    payload: bytes = b""
    seconds: float = 0.0
    skipped: bool = False
    errors: list[str] = field(default_factory=list)
    done_ms: int = field(default_factory=lambda: int(time.time() * 1000))  # wall clock when it ended


class DeliveryError(Exception):
    """One failed attempt; ``retryable`` says whether another attempt may succeed."""

    def __init__(self, reason: str, retryable: bool, answer: Answer | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable
        self.answer = answer


def skips(receiver: Receiver, channel: str, n: Notification) -> bool:
    """Whether ``channel`` has nothing to say about ``n``: an ack is PagerDuty's business only, and
    ``send_resolved = false`` keeps resolves away."""
    if n.reason == "ack" and channel != "pagerduty":
        return True
    return n.status == "resolved" and not receiver.send_resolved


class Deliverer:
    """Delivers notifications to the destinations of their receiver (``deliver``), each with its retries.

    Parameters
    ----------
    config
        Receivers, SMTP server and the ``[notify]`` delivery settings.
    stop
        Set to end backoff waits early (a stopping process does not sleep out its retries).
    on_retry
        Called with ``(receiver, channel)`` after each failed attempt that will be retried (metrics).
    """

    def __init__(
        self,
        config: NotifyConfig,
        stop: threading.Event | None = None,
        on_retry: Callable[[str, str], None] | None = None,
    ) -> None:
        self.config = config
        self.stop = stop or threading.Event()
        self.on_retry = on_retry or (lambda _r, _c: None)

    def deliver(self, n: Notification, channels: tuple[str, ...] | None = None) -> list[Outcome]:
        """Every destination of ``n.receiver`` (or those in ``channels``), one after the other."""
        receiver = self.config.receivers[n.receiver]
        return [self.deliver_to(receiver, c, n) for c in receiver.channels if channels is None or c in channels]

    def deliver_to(self, receiver: Receiver, channel: str, n: Notification) -> Outcome:
        """One destination, retried until it accepts or the attempts are spent."""
        s = self.config.settings
        started = time.monotonic()
        if skips(receiver, channel, n):
            return Outcome(receiver.name, channel, True, 0, skipped=True)
        payload = self.payload(receiver, channel, n)
        errors: list[str] = []
        for attempt in range(1, s.attempts + 1):
            try:
                answer = self.send_once(receiver, channel, n, payload)
                return Outcome(receiver.name, channel, True, attempt, answer, payload=payload,
                               seconds=time.monotonic() - started, errors=errors)  # fmt: skip
            except DeliveryError as exc:
                errors.append(exc.reason)
                last = exc
                if not exc.retryable or attempt == s.attempts or self.stop.is_set():
                    break
                self.on_retry(receiver.name, channel)
                if self.stop.wait(min(s.backoff_max, s.backoff * 2 ** (attempt - 1))):
                    break
        return Outcome(receiver.name, channel, False, len(errors), last.answer, reason=last.reason,
                       payload=payload, seconds=time.monotonic() - started, errors=errors)  # fmt: skip

    def payload(self, receiver: Receiver, channel: str, n: Notification) -> bytes:
        """The exact bytes sent (for an e-mail, the message as text)."""
        url = self.config.settings.console_url
        if channel == "email":
            smtp = self.config.smtp
            return email_message(n, smtp.sender, receiver.email, url).as_bytes()
        if channel == "webhook":
            body: Any = webhook_body(n, url)
        elif channel == "slack":
            body = slack_body(n, url)
        elif channel == "pagerduty":
            body = pagerduty_body(n, receiver.pagerduty_routing_key, url)
        else:
            body = alertmanager_body(n, url, valid_for_ms=2 * n.repeat_interval_ms)
        return json.dumps(body, separators=(",", ":")).encode()

    def send_once(self, receiver: Receiver, channel: str, n: Notification, payload: bytes) -> Answer:
        """One attempt; raises :class:`DeliveryError`."""
        if channel == "email":
            return self._smtp(receiver, payload)
        headers = {IDEMPOTENCY_HEADER: n.key}
        if channel == "webhook":
            url = receiver.webhook
            if receiver.hmac_secret:
                headers[SIGNATURE_HEADER] = signature(receiver.hmac_secret, payload)
        elif channel == "slack":
            url = receiver.slack
        elif channel == "pagerduty":
            url = receiver.pagerduty_url
        else:
            url = receiver.alertmanager.rstrip("/") + "/api/v2/alerts"
        return self._post(url, payload, headers)

    def _post(self, url: str, payload: bytes, headers: dict[str, str]) -> Answer:
        request = urllib.request.Request(
            url,
            data=payload,
            method="POST",
            headers={"Content-Type": "application/json", "User-Agent": "reverify-notify", **headers},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.config.settings.timeout) as response:  # noqa: S310
                return Answer(response.status, response.read(_EXCERPT * 4).decode(errors="replace")[:_EXCERPT])
        except urllib.error.HTTPError as exc:
            answer = Answer(exc.code, (exc.read() or b"")[: _EXCERPT * 4].decode(errors="replace")[:_EXCERPT])
            retryable = exc.code >= 500 or exc.code in _RETRYABLE_STATUS
            raise DeliveryError(
                f"HTTP {exc.code} from {_redact(url)}: {answer.body[:120]}", retryable, answer
            ) from None
        except TimeoutError:
            raise DeliveryError(
                f"no answer from {_redact(url)} within {self.config.settings.timeout:g}s", True
            ) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            if isinstance(reason, TimeoutError):
                raise DeliveryError(
                    f"no answer from {_redact(url)} within {self.config.settings.timeout:g}s", True
                ) from None
            raise DeliveryError(f"{_redact(url)}: {reason}", True) from None

    def _smtp(self, receiver: Receiver, payload: bytes) -> Answer:
        smtp = self.config.smtp
        try:
            with smtplib.SMTP(smtp.host, smtp.port, timeout=self.config.settings.timeout) as client:
                if smtp.starttls:
                    client.starttls()
                if smtp.user:
                    client.login(smtp.user, smtp.password)
                refused = client.sendmail(smtp.sender, list(receiver.email), payload)
        except smtplib.SMTPResponseException as exc:
            retryable = exc.smtp_code >= 400 and exc.smtp_code < 500
            raise DeliveryError(
                f"SMTP {exc.smtp_code} from {smtp.host}:{smtp.port}: {exc.smtp_error!r}", retryable
            ) from None
        except smtplib.SMTPRecipientsRefused as exc:
            raise DeliveryError(f"SMTP {smtp.host}:{smtp.port} refused {', '.join(exc.recipients)}", False) from None
        except (smtplib.SMTPException, OSError) as exc:
            raise DeliveryError(f"SMTP {smtp.host}:{smtp.port}: {exc}", True) from None
        if refused:
            return Answer(250, f"accepted, refused: {', '.join(refused)}")
        return Answer(250, f"accepted for {', '.join(receiver.email)}")


def _redact(url: str) -> str:
    """The URL without its path: Slack and other webhook URLs carry their secret there (Alertmanager's RedactURL).

    >>> _redact("https://hooks.slack.com/services/T0/B0/XXXX")
    'https://hooks.slack.com/...'
    """
    scheme, sep, rest = url.partition("://")
    host = rest.split("/", 1)[0].rsplit("@", 1)[-1]
    return f"{scheme}{sep}{host}/..." if sep else url
