"""Real local receivers for the notification tests: an HTTP server that records what it is sent and answers as
scripted (an error status, or hanging past the client's timeout), and an SMTP server (aiosmtpd).

Imported as ``from tests.receivers import ...``; every server listens on 127.0.0.1 and a free port.
"""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from typing import Any


@dataclass
class Request:
    """One request a :class:`RecordingServer` received; ``answered`` is 0 while it is held."""

    path: str
    headers: dict[str, str]
    body: bytes
    answered: int

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class RecordingServer:
    """An HTTP server on a free port that records every POST.

    ``script`` answers the first requests in order: an int is the status to answer, ``("hang", seconds)``
    holds the request that long before answering 200. Later requests get ``default``. ``check`` may
    inspect each body and return an error text, answered as 400 (a receiver that checks its JSON).
    """

    script: list[Any] = field(default_factory=list)
    default: int = 200
    check: Callable[[dict[str, str], bytes], str | None] | None = None
    requests: list[Request] = field(default_factory=list)

    def __post_init__(self) -> None:
        server = self
        self._lock = threading.Lock()
        self._seen = 0

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server protocol
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                request = Request(self.path, dict(self.headers), body, 0)  # answered 0: not yet
                with server._lock:
                    step = server.script[server._seen] if server._seen < len(server.script) else server.default
                    server._seen += 1
                    server.requests.append(request)
                status, text = (200, "ok") if isinstance(step, tuple) else (step, "ok" if step < 300 else "boom")
                if isinstance(step, tuple):
                    time.sleep(step[1])
                problem = server.check(dict(self.headers), body) if server.check and status < 300 else None
                if problem:
                    status, text = 400, problem
                request.answered = status
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "text/plain")
                    self.end_headers()
                    self.wfile.write(text.encode())
                except OSError:
                    pass  # the client gave up (its timeout): what a hanging receiver does to it

            def log_message(self, *args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}/hook"

    def accepted(self) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if 200 <= r.answered < 300]

    def wait(self, predicate: Callable[[list[Request]], bool], timeout: float = 30.0) -> list[Request]:
        """The accepted requests once ``predicate`` holds for them (AssertionError after ``timeout`` s)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            accepted = self.accepted()
            if predicate(accepted):
                return accepted
            time.sleep(0.05)
        raise AssertionError(f"receiver got {[(r.answered, r.body[:200]) for r in self.requests]}")

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class MailServer:
    """An SMTP server (aiosmtpd) on a free port keeping every message it accepts."""

    def __init__(self) -> None:
        from aiosmtpd.controller import Controller
        from reverify.streams.embedded import free_port

        self.messages: list[tuple[list[str], Message]] = []

        class Keep:
            async def handle_DATA(inner, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802, N805
                self.messages.append((list(envelope.rcpt_tos), message_from_bytes(envelope.content)))
                return "250 Message accepted for delivery"

        self.port = free_port()
        self._controller = Controller(Keep(), hostname="127.0.0.1", port=self.port)
        self._controller.start()

    def close(self) -> None:
        self._controller.stop()
