"""``reverify dashboard``: the seed's CRL safety dashboard from the history, and the running experiments.

The sections come from :func:`reverify.sinks.dashboard.dashboard` (through a running ``reverify up`` when there is
one); each running experiment gets its lift, interval and decision from ``reverify experiment status``.
"""

from __future__ import annotations

import json
from typing import Any

import click
from reverify.streams.cli.common import console, load_settings, print_table
from reverify.streams.cli.experiment import experiment_status, load_experiments
from reverify.streams.cli.history import run_request
from reverify.streams.settings import Settings


def _nested(value: Any) -> bool:
    return isinstance(value, (dict, list)) or (isinstance(value, str) and value.startswith(("{", "[")))


def add_experiment_status(settings: Settings, running: list[dict[str, Any]]) -> None:
    """Add each running experiment's ``units``, ``lift``, ``ci`` and ``decision`` (``reverify experiment status``)."""
    if not running:
        return
    records = load_experiments(settings)
    for row in running:
        record = records.get(row["name"])
        if record is None:
            continue
        status = experiment_status(settings, record)
        row.update({k: status[k] for k in ("units", "lift", "ci", "p_value", "decision")})


def print_experiments(running: list[dict[str, Any]]) -> None:
    """The running experiments, one line each."""
    print_table(
        "Running experiments",
        ["name", "agent/task", "variants", "metric", "units", "lift", "interval", "decision"],
        [
            [
                r["name"],
                f"{r['agent_name']}/{r['task_type']}",
                ",".join(r["variants"]),
                r["metric"],
                r.get("units"),
                None if r.get("lift") is None else f"{r['lift']:+.2%}",
                "" if not r.get("ci") else f"[{r['ci'][0]:+.2%}, {r['ci'][1]:+.2%}]",
                r.get("decision"),
            ]
            for r in running
        ],
        empty="(none)",
    )


def register(group: click.Group) -> None:
    """Add ``dashboard`` to the ``reverify`` command group."""

    @group.command("dashboard")
    @click.option("--json", "as_json", is_flag=True, help="Print JSON for programs.")
    def dashboard_cmd(as_json: bool) -> None:
        """The CRL safety dashboard: health, rollbacks, proposals, auto-apply candidates, degradation alerts."""
        settings = load_settings()
        board = run_request(settings, {"name": "dashboard"}).get("dashboard") or {}
        add_experiment_status(settings, board.get("running_experiments") or [])
        if as_json:
            click.echo(json.dumps(board))
            return
        console.rule("[bold]CRL SAFETY DASHBOARD")
        console.print(f"Generated: {board.get('generated')}")
        overview = board.get("overview", {})
        colour = {"HEALTHY": "green", "DEGRADED": "yellow", "CRITICAL": "red"}.get(board.get("status", ""), "white")
        print_table(
            "System health overview", ["measure", "value"], [[k, v] for k, v in overview.items()], empty="(none)"
        )
        console.print(f"System status: [{colour}]{board.get('status')}[/{colour}]")
        for key, title in (
            ("recent_rollbacks", "Recent rollbacks (last 10)"),
            ("pending_proposals", "Pending proposals"),
            ("ready_for_auto_apply", "High-confidence variants (Q >= 0.9, n >= 10)"),
            ("degradation_alerts", "Degradation alerts"),
            ("recent_incidents", "Incidents (last 10): MTTR from the first evidence to the verified recovery"),
            ("error_budgets", "Error budgets (SLOs)"),
        ):
            records = board.get(key) or []
            # nested evidence (degradation_metrics, supporting_data, labels) is for --json; people get the summary
            columns = [c for c in records[0] if not _nested(records[0][c])] if records else []
            print_table(title, columns, [[r[c] for c in columns] for r in records], empty="(none)")
        print_experiments(board.get("running_experiments") or [])
