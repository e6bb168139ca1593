"""What every ``reverify`` command shares: the consoles, one kind of user error, settings, tables and JSON.

A user's mistake is a :class:`UserError`: one line on stderr, exit status 2, no traceback.

>>> UserError("set REVERIFY_KAFKA").exit_code
2
"""

from __future__ import annotations

import json
import logging
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click
from reverify.streams.settings import Settings, SettingsError
from rich.console import Console
from rich.markup import escape
from rich.table import Table

if TYPE_CHECKING:
    from reverify.sinks.config import SinkConfig

console = Console(stderr=False)
err = Console(stderr=True)


class UserError(click.ClickException):
    """A mistake the user can fix: one line, exit code 2, no traceback."""

    exit_code = 2

    def show(self, file: Any = None) -> None:
        # soft_wrap: one line however narrow the terminal; escape: messages quote TOML like [[assurance]]
        err.print(f"[bold red]error:[/] {escape(self.message)}", soft_wrap=True, highlight=False)


class CommandFailed(UserError):
    """The command could not do its work (a database away or refusing): one line, exit code 1, no traceback."""

    exit_code = 1


def load_settings(check_processors: bool = False) -> Settings:
    """Settings from ``reverify.toml`` and ``REVERIFY_*``; with ``check_processors`` every section is validated too."""
    from reverify.processors.assurance import AssuranceConfigError
    from reverify.processors.slo import SloConfigError

    try:
        settings = Settings.load()
        if check_processors:
            from reverify.processors.pipeline import PipelineConfig

            PipelineConfig.from_settings(settings)
        return settings
    except (AssuranceConfigError, SloConfigError) as exc:
        raise UserError(str(exc)) from None
    except SettingsError as exc:
        raise UserError(str(exc)) from None


def print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


def cell(value: Any) -> str:
    """A value as a table shows it: floats to 4 significant digits, nested values as compact JSON.

    >>> cell(None), cell(0.123456), cell({"a": [1, 2]}), cell(7)
    ('', '0.1235', '{"a":[1,2]}', '7')
    """
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def fmt_ms(ms: int | None) -> str:
    """An epoch-ms time for people, in UTC ("" for none).

    >>> fmt_ms(1_700_000_000_000)
    '2023-11-14 22:13:20Z'
    """
    if ms is None:
        return ""
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")


def print_table(title: str, columns: list[str], rows: list[list[Any]], empty: str | None = None) -> None:
    """One table for people; with ``empty``, a single line ``title: empty`` instead of a table without rows."""
    if not rows and empty is not None:
        console.print(f"[bold]{escape(title)}[/bold]: {escape(empty)}")
        return
    table = Table(title=title, header_style="bold cyan")
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*[cell(v) for v in row])
    console.print(table)


def admin(settings: Settings) -> Any:
    """A Kafka admin client whose librdkafka logs go where ``-v`` sends them."""
    from confluent_kafka.admin import AdminClient

    return AdminClient(settings.kafka_config(logger=logging.getLogger("reverify.sdk.librdkafka")))


def require_broker(settings: Settings) -> None:
    """Nothing, or a :class:`UserError` saying how to get a broker when none answers at ``settings.kafka``."""
    from reverify.streams.embedded import port_is_open, split_bootstrap

    host, port = split_bootstrap(settings.kafka)
    if not port_is_open(host, port, timeout=2.0):
        raise UserError(
            f"no Kafka broker answers at {settings.kafka}; start one with `reverify up` or set REVERIFY_KAFKA"
        )


def sink_config(settings: Settings) -> SinkConfig:
    """The sink's configuration (its ``[sink]`` section checked), or one line and exit 2."""
    from reverify.streams.sink import sink_config

    try:
        return sink_config(settings)
    except SettingsError as exc:
        raise UserError(str(exc)) from None


def settings_or_fail() -> Settings:
    """Settings with the broker reachable, or one line and exit 2."""
    settings = load_settings()
    require_broker(settings)
    return settings


def config_file(file: Path | None) -> Path:
    """The file a ``check`` command reads: ``file``, else ``REVERIFY_CONFIG``, else ``./reverify.toml``."""
    if file is not None:
        return file
    env = os.environ.get("REVERIFY_CONFIG")
    path = Path(env) if env else Path("reverify.toml")
    if not env and not path.exists():
        raise UserError("no file given, REVERIFY_CONFIG is not set and there is no ./reverify.toml")
    return path


def toml_tables(path: Path, key: str) -> tuple[list[Any], list[str]]:
    """``(tables, mistakes)``: the array of tables ``[[key]]`` in ``path``; a file that cannot be read is a mistake."""
    import tomllib

    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        return [], [f"{path}: no such file"]
    except (OSError, UnicodeDecodeError) as exc:
        return [], [f"{path}: cannot be read: {exc}"]
    except tomllib.TOMLDecodeError as exc:
        return [], [f"{path}: not valid TOML: {exc}"]
    raw = data.get(key, [])
    if not isinstance(raw, list):
        return [], [f"{path}: {key} must be an array of tables ([[{key}]]), got {type(raw).__name__}"]
    return raw, []


def print_mistakes(mistakes: list[str]) -> NoReturn:
    """Each mistake on its own ``error:`` line, then exit status 2."""
    for line in mistakes:
        err.print(f"[bold red]error:[/] {escape(line)}", highlight=False, soft_wrap=True)
    raise SystemExit(2)
