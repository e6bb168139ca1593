"""``reverify slo check``: validate the ``[[slo]]`` tables of a file before a worker loads them.

Budgets and burn rates are read with ``reverify query slo`` and ``reverify dashboard`` (:mod:`.history`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from reverify.streams.cli.common import config_file, console, print_json, print_mistakes, print_table, toml_tables
from rich.markup import escape


def check_slo_file(path: Path) -> tuple[list[Any], list[str]]:
    """``(slos, mistakes)`` of ``path``: its ``[[slo]]`` tables, read with its ``[slo_alerting]`` section as a
    worker reads them (:meth:`PipelineConfig.from_settings <reverify.processors.pipeline.PipelineConfig>`)."""
    from reverify.processors.slo import SloConfigError, SloSettings, parse_slos
    from reverify.streams.settings import Settings, SettingsError

    raw, mistakes = toml_tables(path, "slo")
    if mistakes:
        return [], mistakes
    try:
        settings = Settings.load(env={}, path=path).section("slo_alerting", SloSettings)
    except SettingsError as exc:
        mistakes, settings = [str(exc)], SloSettings()  # the tables are still checked, against the defaults
    try:
        slos = parse_slos(raw, settings)
    except SloConfigError as exc:
        return [], mistakes + list(exc.errors)
    return ([], mistakes) if mistakes else (slos, [])


def register(group: click.Group) -> None:
    """Add ``slo check`` to the ``reverify`` group."""

    @group.group()
    def slo() -> None:
        """Service-level objectives: check a file before a worker loads it."""

    @slo.command("check")
    @click.argument("file", required=False, type=click.Path(dir_okay=False, path_type=Path))
    @click.option("--json", "as_json", is_flag=True, help="Valid SLOs as JSON.")
    def slo_check(file: Path | None, as_json: bool) -> None:
        """Validate the [[slo]] tables of FILE (default: REVERIFY_CONFIG, else ./reverify.toml)."""
        file = config_file(file)
        slos, mistakes = check_slo_file(file)
        if mistakes:
            print_mistakes(mistakes)
        if as_json:
            print_json([s.to_dict() for s in slos])
            return
        if not slos:
            console.print(f"[yellow]![/] {escape(str(file))} declares no {escape('[[slo]]')} tables")
            return
        print_table(
            f"{len(slos)} SLOs in {file}",
            ["name", "sli", "objective", "window", "scope", "budget", "burn rules (budget spent when each fires)"],
            [
                [
                    s.name,
                    s.sli,
                    f"{s.objective:g}",
                    s.window,
                    ", ".join(f"{k}={v}" for k, v in s.scope.items()) or "every agent",
                    f"{s.budget:.3g} of events",
                    "; ".join(f"{r.text} ({r.budget_spent(s.window_ms):.0%})" for r in s.burn_rules),
                ]
                for s in slos
            ],
        )
