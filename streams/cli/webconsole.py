"""``reverify console``: the web console alone, against a ClickHouse server or the embedded database.

``reverify up`` serves the same pages from its worker; this command is for a production deployment, where
workers and the sink run elsewhere and the history is a ClickHouse server (``REVERIFY_CLICKHOUSE``).
"""

from __future__ import annotations

import dataclasses

import click
from reverify.streams.cli.common import CommandFailed, UserError, console, load_settings
from reverify.streams.settings import Settings


def check_web_access(settings: Settings, by: str | None) -> Settings:
    """``settings`` with the console's ``by`` name; :class:`UserError` when the bind needs a token it lacks."""
    from reverify.streams.console.auth import bind_problem

    problem = bind_problem(settings)
    if problem:
        raise UserError(problem)
    return dataclasses.replace(settings, web_by=by) if by else settings


def console_url(settings: Settings) -> str:
    host = settings.web_bind if ":" not in settings.web_bind else f"[{settings.web_bind}]"
    host = "127.0.0.1" if host in ("0.0.0.0", "[::]") else host
    return f"http://{host}:{settings.web_port}/"


@click.command("console")
@click.option("--by", default=None, help="The name actions are recorded under (default: web_by, else your login).")
def console_cmd(by: str | None) -> None:
    """Serve the web console alone on web_bind:web_port, reading REVERIFY_CLICKHOUSE (Ctrl-C stops)."""
    from aiohttp import web
    from reverify.streams.cli.control import default_operator
    from reverify.streams.cli.history import running_server
    from reverify.streams.console.server import create_web_app

    settings = check_web_access(load_settings(), by)
    if not settings.web_port:
        raise UserError("web_port = 0 turns the web server off; set REVERIFY_WEB_PORT to serve the console")
    if settings.clickhouse.startswith("chdb://"):
        port = running_server(settings)
        if port:
            raise UserError(f"reverify up owns the embedded database and serves the console: http://127.0.0.1:{port}/")
        _migrate_embedded(settings)
    app = create_web_app(settings, settings.web_by or default_operator())
    console.print(f"[green]✓[/] console at {console_url(settings)} (history: {settings.clickhouse.split('@')[-1]})")
    try:
        web.run_app(app, host=settings.web_bind, port=settings.web_port, print=None, access_log=None)
    except OSError as exc:
        raise UserError(f"web_port = {settings.web_port} is taken ({exc}); set REVERIFY_WEB_PORT") from None


def _migrate_embedded(settings: Settings) -> None:
    """A fresh embedded database answers with empty tables rather than "unknown table"."""
    from reverify.sinks.clickhouse import connect
    from reverify.sinks.migrate import MigrationError, migrate

    client = connect(settings.clickhouse)
    try:
        migrate(client)
    except MigrationError as exc:
        raise CommandFailed(str(exc)) from None
    finally:
        client.close()


def register(group: click.Group) -> None:
    """Add ``console`` to the ``reverify`` command group."""
    group.add_command(console_cmd)
