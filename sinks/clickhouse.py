"""Open a ClickHouse client from the ``clickhouse`` setting: ``chdb://PATH`` (embedded) or ``http[s]://`` (server).

Both go through clickhouse-connect, so every caller speaks to one client API.
The embedded engine (chdb) can host exactly one data directory per process:
handles on the same path share the engine, and opening another path fails
while any handle is open. :func:`connect` therefore tracks the chdb handles it
made and, when asked for a different path, closes them first (tests and the
CLI move between directories; a worker only ever uses one).

>>> parse_url("chdb://./.reverify/clickhouse").path.endswith(".reverify/clickhouse")
True
>>> t = parse_url("https://me:s%40cret@ch.example.com/history")
>>> (t.scheme, t.host, t.port, t.username, t.password, t.database)
('https', 'ch.example.com', 8443, 'me', 's@cret', 'history')
>>> parse_url("http://localhost:8123").database
'default'
>>> parse_url("mysql://x")
Traceback (most recent call last):
...
reverify.sinks.clickhouse.ClickHouseURLError: clickhouse = 'mysql://x' is not allowed; use chdb://PATH or http[s]://user:pass@host:8123/db
"""

from __future__ import annotations

import contextlib
import os
import threading
import weakref
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import clickhouse_connect
from clickhouse_connect.driver.client import Client


class ClickHouseURLError(ValueError):
    """The ``clickhouse`` setting is not a URL we can open."""


@dataclass(frozen=True)
class Target:
    """Where a ClickHouse lives: the parts of a ``chdb://`` or ``http[s]://`` URL."""

    scheme: str
    path: str = ""
    host: str = ""
    port: int = 0
    username: str = "default"
    password: str = ""
    database: str = "default"
    options: tuple[tuple[str, str], ...] = ()

    @property
    def embedded(self) -> bool:
        return self.scheme == "chdb"


def parse_url(url: str) -> Target:
    """Split the ``clickhouse`` setting into a :class:`Target`.

    ``chdb://PATH`` takes everything after ``chdb://`` as a directory, so both
    ``chdb://./rel/dir`` and ``chdb:///abs/dir`` mean what they look like.
    """
    scheme, sep, rest = url.partition("://")
    if scheme == "chdb" and sep and rest:
        return Target("chdb", path=os.path.realpath(os.path.expanduser(rest)))
    if scheme in ("http", "https") and sep:
        parts = urlsplit(url)
        if not parts.hostname:
            raise ClickHouseURLError(f"clickhouse = {url!r} has no host; use http[s]://user:pass@host:8123/db")
        database = unquote(parts.path.strip("/")) or "default"
        return Target(
            scheme,
            host=parts.hostname,
            port=parts.port or (8443 if scheme == "https" else 8123),
            username=unquote(parts.username) if parts.username else "default",
            password=unquote(parts.password) if parts.password else "",
            database=database,
            options=tuple(parse_qsl(parts.query)),
        )
    raise ClickHouseURLError(
        f"clickhouse = {url!r} is not allowed; use chdb://PATH or http[s]://user:pass@host:8123/db"
    )


_lock = threading.Lock()
_engine_path: str | None = None
_handles: weakref.WeakSet[Client] = weakref.WeakSet()


def connect(url: str, *, settings: dict[str, Any] | None = None, connect_timeout: float = 3.0) -> Client:
    """A new client for ``url``; raises clickhouse-connect's ``OperationalError`` when nobody answers.

    Each call returns its own handle so that threads (sink, web queries) never
    share session state; chdb handles on one path share one engine.

    Parameters
    ----------
    url : str
        ``chdb://PATH`` or ``http[s]://user:pass@host:port/db``.
    settings : dict, optional
        ClickHouse settings applied to every query of this client.
    connect_timeout : float
        Seconds to wait for a server to accept the connection (HTTP only).
    """
    target = parse_url(url)
    if target.embedded:
        return _connect_chdb(target.path, settings)
    return clickhouse_connect.get_client(
        host=target.host,
        port=target.port,
        username=target.username,
        password=target.password,
        database=target.database,
        secure=target.scheme == "https",
        connect_timeout=connect_timeout,
        send_receive_timeout=300,
        settings=settings,
        **dict(target.options),
    )


def _connect_chdb(path: str, settings: dict[str, Any] | None) -> Client:
    global _engine_path
    from clickhouse_connect.driver._chdbclient import ChdbClient

    with _lock:
        if _engine_path not in (None, path):
            # chdb refuses a second path while handles are open: release ours (the only ones we know of)
            close_embedded()
        os.makedirs(path, exist_ok=True)
        client = ChdbClient(path=path, settings=settings)
        _engine_path = path
        _handles.add(client)
        return client


def close_embedded() -> None:
    """Close every chdb handle :func:`connect` made, so that this process can open another path (or a child can)."""
    global _engine_path
    for client in list(_handles):
        with contextlib.suppress(Exception):  # a handle that is already closed is what we want anyway
            client.close()
        _handles.discard(client)
    _engine_path = None


def database_of(url: str) -> str:
    """The database the tables live in for ``url`` (chdb uses ``default``)."""
    return parse_url(url).database
