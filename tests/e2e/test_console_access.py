"""Who may reach the console: loopback by default; on any other bind, a token, or ``reverify up`` and
``reverify console`` refuse to start; with one, every page and API call but the health endpoints needs it."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from reverify.streams.embedded import free_port

from tests.support import stop_process

REVERIFY = str(Path(sys.executable).with_name("reverify"))
TOKEN = "s3cret-token"


def _env(tmp: Path, **extra: str) -> dict[str, str]:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("REVERIFY_")}
    env.update(
        {
            "REVERIFY_DATA_DIR": str(tmp),
            "REVERIFY_CLICKHOUSE": f"chdb://{tmp / 'clickhouse'}",
            "REVERIFY_KAFKA": f"127.0.0.1:{free_port()}",  # nobody listens: reading the history needs no broker
            "REVERIFY_WEB_PORT": str(free_port()),
            "REVERIFY_METRICS_PORT": "0",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra)
    return env


@pytest.mark.parametrize("command", ["console", "up"])
def test_a_non_loopback_bind_without_a_token_is_refused(tmp_path: Path, command: str) -> None:
    done = subprocess.run(
        [REVERIFY, command], env=_env(tmp_path, REVERIFY_WEB_BIND="0.0.0.0"), cwd=tmp_path,
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    assert "web_token (REVERIFY_WEB_TOKEN)" in done.stderr and "Traceback" not in done.stderr


def _call(url: str, token: str | None = None, body: dict | None = None) -> tuple[int, str, dict[str, str]]:
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else None

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: object, **kwargs: object) -> None:
            return None

    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(urllib.request.Request(url, data=data, headers=headers), timeout=30) as answer:
            return answer.status, answer.read().decode(), dict(answer.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(), dict(exc.headers)


@pytest.fixture
def guarded(tmp_path: Path) -> Iterator[str]:
    env = _env(tmp_path, REVERIFY_WEB_BIND="0.0.0.0", REVERIFY_WEB_TOKEN=TOKEN, REVERIFY_WEB_BY="ops")
    with open(tmp_path / "console.log", "wb") as log:
        process = subprocess.Popen([REVERIFY, "console"], env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{env['REVERIFY_WEB_PORT']}"
    try:
        deadline = time.monotonic() + 60
        while _ready(url) is False:
            assert process.poll() is None, (tmp_path / "console.log").read_text()
            assert time.monotonic() < deadline, (tmp_path / "console.log").read_text()
            time.sleep(0.3)
        yield url
    finally:
        stop_process(process)


def _ready(url: str) -> bool:
    try:
        return _call(url + "/readyz")[0] == 200
    except OSError:
        return False


def test_with_a_token_every_call_but_health_needs_it(guarded: str) -> None:
    query = {"name": "leaderboard"}
    assert _call(guarded + "/healthz")[0] == 200 and _call(guarded + "/readyz")[0] == 200
    assert _call(guarded + "/api/query", body=query)[0] == 401
    assert _call(guarded + "/api/query", token="wrong", body=query)[0] == 401
    status, body, _ = _call(guarded + "/api/query", token=TOKEN, body=query)
    assert status == 200 and json.loads(body)["rows"] == []
    assert _call(guarded + "/")[0] == 401 and _call(guarded + "/alerts")[0] == 401
    assert _call(guarded + "/", token=TOKEN)[0] == 200
    # opened once as /?token=: an HttpOnly cookie, and the token leaves the address
    status, _body, headers = _call(guarded + "/alerts?token=" + TOKEN)
    assert status == 303 and headers["Location"] == "/alerts"
    assert "HttpOnly" in headers["Set-Cookie"] and "SameSite=Strict" in headers["Set-Cookie"]
    cookie = headers["Set-Cookie"].split(";", 1)[0]
    request = urllib.request.Request(guarded + "/alerts", headers={"Cookie": cookie})
    with urllib.request.urlopen(request, timeout=30) as answer:
        assert answer.status == 200 and "Content-Security-Policy" in answer.headers
    # /api/query stays read-only with the token too
    status, body, _ = _call(guarded + "/api/query", token=TOKEN, body={"sql": "DROP TABLE agent_outcomes"})
    assert status == 400 and "read-only" in body


def test_an_action_from_another_site_is_refused(guarded: str) -> None:
    request = urllib.request.Request(
        guarded + "/actions/ack", data=b"fingerprint=x", method="POST",
        headers={"Authorization": f"Bearer {TOKEN}", "Origin": "http://evil.example"},
    )  # fmt: skip
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=30)
    assert refused.value.code == 403
