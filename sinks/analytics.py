"""Canned analytics and read-only SQL over the history, as JSON-friendly tables.

Each canned query is a file ``sinks/queries/NAME.sql`` using ClickHouse query
parameters ``{agent:String}``, ``{task:String}`` (empty = any) and
``{since_ms:Int64}``; values are never formatted into SQL text. Free SQL runs
with the ClickHouse ``readonly = 1`` setting, so the server itself refuses
writes, DDL and setting changes.

>>> parse_since("24h"), parse_since("90m"), parse_since("7d"), parse_since("45s")
(86400.0, 5400.0, 604800.0, 45.0)
>>> parse_since("soon")
Traceback (most recent call last):
...
reverify.sinks.analytics.QueryError: --since 'soon' is not a duration; use e.g. 30m, 24h, 7d
>>> "leaderboard" in QUERIES and "timeline" in QUERIES
True
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError
from reverify.schemas.fields import duration_ms
from reverify.sinks.dashboard import dashboard
from reverify.sinks.jsonable import jsonable

QUERY_DIR = Path(__file__).parent / "queries"
QUERIES: dict[str, str] = {p.stem: p.read_text() for p in sorted(QUERY_DIR.glob("*.sql"))}
_READONLY = re.compile(r"\(READONLY\)")
_PARAM_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class QueryError(ValueError):
    """A mistake in the request (unknown query, bad SQL, a write attempted): one line for the user."""


def parse_since(text: str) -> float:
    """Seconds in a duration such as ``30m``, ``24h``, ``7d`` or ``2w``."""
    ms = duration_ms(str(text))
    if ms is None:
        raise QueryError(f"--since {text!r} is not a duration; use e.g. 30m, 24h, 7d")
    return ms / 1000


def _one_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    first = next((line for line in text if "DB::Exception" in line or "Code:" in line), text[0] if text else "")
    first = first.split("DB::Exception:", 1)[-1].strip()
    return re.sub(r"\s*\(version [^)]*\)\.?\s*$", "", first)


def run_sql(client: Client, sql: str, params: dict[str, Any] | None = None, *, readonly: int = 1) -> dict:
    """Run ``sql`` with ClickHouse query parameters ``params``; returns ``{"columns", "rows"}``.

    ``readonly`` is ClickHouse's setting: 1 (the default, for anyone's SQL)
    refuses writes and setting changes; 2 (our canned queries) refuses writes
    but lets a query set its own join options.
    """
    params = dict(params or {})
    for key in params:
        if not _PARAM_NAME.match(key):
            raise QueryError(f"parameter name {key!r} is not an identifier")
    settings = {"readonly": readonly} if readonly else {}
    try:
        if readonly:
            # clickhouse-connect sends commands and INSERTs with SET ... then restores the settings; the restore
            # itself is refused once readonly is on, which would leave the shared handle read-only for good.
            # So what it classifies as a command or an insert is refused here; the rest carries a SETTINGS
            # clause, and ClickHouse enforces readonly on it.
            context = client.create_query_context(query=sql, parameters=params)
            if context.is_command or context.is_insert:
                verb = sql.split(None, 1)[0].upper() if sql.split() else "(empty)"
                raise QueryError(f"refused: queries are read-only ({verb} is not a read)")
        result = client.query(sql, parameters=params, settings=settings)
    except ClickHouseError as exc:
        message = _one_line(exc)
        if _READONLY.search(str(exc)):
            raise QueryError(f"refused: queries are read-only ({message})") from None
        raise QueryError(message) from None
    return {
        "columns": list(result.column_names),
        "rows": [[jsonable(v) for v in row] for row in result.result_rows],
    }


def canned(client: Client, name: str, agent: str = "", task: str = "", since: str = "24h") -> dict:
    """Run canned query ``name`` with its filters; see :data:`QUERIES`."""
    if name not in QUERIES:
        raise QueryError(f"unknown query {name!r}; known: {', '.join(QUERIES)}")
    if name == "timeline" and not agent:
        raise QueryError("timeline needs --agent")
    since_ms = int((time.time() - parse_since(since)) * 1000)
    params = {"agent": agent or "", "task": task or "", "since_ms": since_ms}
    return run_sql(client, QUERIES[name], params, readonly=2)


def execute(client: Client, request: dict[str, Any]) -> dict:
    """Answer one query request, as ``reverify query`` sends it (directly or over HTTP).

    Parameters
    ----------
    client : Client
        A clickhouse-connect client on the history database.
    request : dict
        ``{"name": NAME, "agent": ..., "task": ..., "since": "24h"}`` for a
        canned query, ``{"name": "dashboard"}`` for the safety dashboard (also
        under the key ``"dashboard"`` of the answer), or ``{"sql": "SELECT ...", "params": {...}}`` for
        read-only SQL.

    Returns
    -------
    dict
        ``{"columns": [...], "rows": [[...], ...]}`` with JSON-friendly values;
        raises :class:`QueryError` for a mistake in the request.
    """
    if not isinstance(request, dict):
        raise QueryError("a query request is a JSON object")
    sql = request.get("sql")
    if sql:
        params = request.get("params") or {}
        if not isinstance(params, dict):
            raise QueryError("params must be an object of name -> value")
        return run_sql(client, str(sql), params)
    name = request.get("name")
    if name == "dashboard":
        board = dashboard(client)
        return {"columns": ["dashboard"], "rows": [[board]], "dashboard": board}
    if not name:
        raise QueryError(f"say which query: one of {', '.join(QUERIES)}, or sql")
    return canned(
        client,
        str(name),
        agent=str(request.get("agent") or ""),
        task=str(request.get("task") or ""),
        since=str(request.get("since") or "24h"),
    )
