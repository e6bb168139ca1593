"""``reverify migrate`` and ``reverify query``: the history in ClickHouse.

While ``reverify up`` runs, it owns the embedded database, so these commands
ask it over HTTP (``{data_dir}/up.json`` names its pid and web port); otherwise
they open the database themselves. A mistake of the user's (unknown query,
bad SQL, a write) prints one line and exits with status 2.

>>> parse_params(("agent=hunter", "n=10"))
{'agent': 'hunter', 'n': '10'}
>>> parse_params(("oops",))
Traceback (most recent call last):
...
click.exceptions.BadParameter: --param 'oops' is not NAME=VALUE
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import click
from reverify.streams.cli.common import CommandFailed, UserError, load_settings, print_table, sink_config
from reverify.streams.settings import Settings

USER_ERROR = 2


def parse_params(items: tuple[str, ...]) -> dict[str, str]:
    """``--param k=v`` options as a dict (ClickHouse converts the text to the declared parameter type)."""
    params = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise click.BadParameter(f"--param {item!r} is not NAME=VALUE")
        params[name.strip()] = value
    return params


def running_server(settings: Settings) -> int | None:
    """The web port of a live ``reverify up`` for this data directory, else None."""
    path = Path(settings.data_dir) / "up.json"
    try:
        info = json.loads(path.read_text())
        pid, port = int(info["pid"]), int(info["web_port"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:  # alive, owned by someone else
        pass
    return port or None


class HistoryError(Exception):
    """The history could not answer: ``message`` for the user, ``code`` the exit status ``run_request`` uses."""

    def __init__(self, message: str, code: int = USER_ERROR) -> None:
        super().__init__(message)
        self.message, self.code = message, code


def ask_history(settings: Settings, request: dict[str, Any]) -> dict[str, Any]:
    """:func:`run_request` for callers that carry on without the history: raises :class:`HistoryError`."""
    port = running_server(settings)
    if port:
        body = json.dumps(request).encode()
        req = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/query", data=body, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            try:
                message = json.loads(exc.read()).get("error") or str(exc)
            except ValueError:
                message = str(exc)
            raise HistoryError(message, USER_ERROR if 400 <= exc.code < 500 else 1) from None
        except (urllib.error.URLError, OSError) as exc:
            raise HistoryError(f"reverify up (port {port}) did not answer: {exc}", 1) from None
    from reverify.sinks.analytics import QueryError, execute
    from reverify.sinks.clickhouse import connect
    from reverify.sinks.migrate import MigrationError, migrate

    try:
        client = connect(settings.clickhouse)
    except Exception as exc:
        raise HistoryError(f"cannot open ClickHouse at {settings.clickhouse}: {exc}", 1) from None
    try:
        migrate(client)  # a fresh data directory answers with empty tables rather than "unknown table"
        return execute(client, request)
    except QueryError as exc:
        raise HistoryError(str(exc)) from None
    except MigrationError as exc:
        raise HistoryError(str(exc), 1) from None
    finally:
        client.close()


def run_request(settings: Settings, request: dict[str, Any]) -> dict[str, Any]:
    """Answer ``request`` through the running process when there is one, else from the database directly."""
    try:
        return ask_history(settings, request)
    except HistoryError as exc:
        raise (UserError if exc.code == USER_ERROR else CommandFailed)(exc.message) from None


def register(group: click.Group) -> None:
    """Add ``migrate`` and ``query`` to the ``reverify`` command group."""

    @group.command("migrate")
    @click.option(
        "--ttl-days",
        type=int,
        default=None,
        help="Keep this many days of history (default: [sink] ttl_days, else forever).",
    )
    def migrate_cmd(ttl_days: int | None) -> None:
        """Create or upgrade the ClickHouse tables (idempotent)."""
        from reverify.sinks.clickhouse import connect
        from reverify.sinks.migrate import MigrationError, current_version, migrate

        settings = load_settings()
        if running_server(settings) and settings.clickhouse.startswith("chdb://"):
            # the user's mistake (exit 2), not a failure: `up` already migrated this database when it started
            raise UserError(
                "reverify up is running and already migrated its embedded database at start: nothing to do "
                "(stop `reverify up` first to migrate by hand)"
            )
        if ttl_days is None:
            ttl_days = (
                sink_config(settings).options.ttl_days or None
            )  # the same TTL the sink keeps, or they would fight
        try:
            client = connect(settings.clickhouse)
        except Exception as exc:
            raise CommandFailed(f"cannot open ClickHouse at {settings.clickhouse}: {exc}") from None
        try:
            applied = migrate(client, ttl_days)
            version = current_version(client)
        except MigrationError as exc:
            raise CommandFailed(str(exc)) from None
        finally:
            client.close()
        done = f"applied {', '.join(map(str, applied))}" if applied else "nothing to apply"
        click.echo(f"schema at version {version} ({done})")

    @group.command("query")
    @click.argument("name", required=False)
    @click.option("--agent", default="", help="Only this agent.")
    @click.option("--task", default="", help="Only this task type.")
    @click.option("--since", default="24h", show_default=True, help="How far back: 30m, 24h, 7d ...")
    @click.option("--sql", default=None, help="Read-only SQL instead of a canned query.")
    @click.option("--param", "params", multiple=True, help="Query parameter NAME=VALUE for {NAME:Type} in --sql.")
    @click.option("--json", "as_json", is_flag=True, help="Print JSON for programs.")
    def query_cmd(
        name: str | None, agent: str, task: str, since: str, sql: str | None, params: tuple[str, ...], as_json: bool
    ) -> None:
        """Canned analytics (leaderboard, rollbacks, proposals, drift, assurance, alerts, errors, slo, timeline) or --sql."""
        """Canned analytics (leaderboard, rollbacks, drift, assurance, alerts, errors, timeline, models) or --sql."""
        from reverify.sinks.analytics import QUERIES

        if bool(name) == bool(sql):
            raise UserError(f"give a query name ({', '.join(QUERIES)}) or --sql, not both or neither")
        request: dict[str, Any]
        if sql:
            request = {"sql": sql, "params": parse_params(params)}
        else:
            request = {"name": name, "agent": agent, "task": task, "since": since}
        answer = run_request(load_settings(), request)
        if as_json:
            click.echo(json.dumps({"columns": answer["columns"], "rows": answer["rows"]}))
            return
        print_table(name or "sql", answer["columns"], answer["rows"], empty="(none)")
