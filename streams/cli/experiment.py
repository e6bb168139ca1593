"""``reverify experiment start | status | stop | list``: A/B experiments on one agent/task.

``start`` publishes a running ``Experiment`` record to the compacted
``crl.experiments`` (keyed by name: routers following it assign units at once)
and an ``experiment_start`` command on the agent's partition of
``control.commands`` (so the worker that owns the agent knows its experiment
and stops it when it rolls one of its variants back). ``stop`` publishes the
record stopped, both ways.

``status`` reads the experiment (the topic and the history, the newer record
wins) and computes everything else from the ClickHouse history, so it survives
restarts: the outcomes of the agent/task between the experiment's start and
stop, per variant, summed per unit (the ``unit_id`` attribute when the agent
passes it, else each outcome is its own unit), then
:func:`reverify.processors.experiments.evaluate`.

>>> parse_split("50,50"), parse_split("0.9, 0.1"), parse_split(None)
([50.0, 50.0], [0.9, 0.1], None)
>>> parse_split("half,half")
Traceback (most recent call last):
...
reverify.streams.cli.common.UserError: --split must be numbers separated by commas (50,50), got 'half,half'
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import click
from reverify.processors.experiments import ArmSummary, ExperimentError, evaluate, experiment_record, stopped
from reverify.processors.experiments.metrics import COLUMNS, METRICS, mean_summary, quantile_levels, quantile_summary
from reverify.processors.experiments.record import RUNNING
from reverify.streams.cli.common import UserError, admin, console, load_settings, print_json, print_table
from reverify.streams.restore import EXPERIMENT_FIELDS, LATEST_EXPERIMENTS_SQL
from reverify.streams.settings import Settings

# The outcomes of the experiment: its agent/task, its variants, its window, and not tagged with another
# experiment. A unit is the unit_id attribute when the agent passes it, else the outcome. FINAL: each event once.
_OUTCOMES = """
FROM agent_outcomes FINAL
WHERE agent_name = {agent:String} AND task_type = {task:String} AND has({variants:Array(String)}, variant_id)
  AND ts >= fromUnixTimestamp64Milli({start_ms:Int64}, 'UTC') AND ts <= fromUnixTimestamp64Milli({end_ms:Int64}, 'UTC')
  AND (attributes['experiment'] = '' OR attributes['experiment'] = {name:String})
"""
# Per variant: units, outcomes, and the sum and sum of squares of the units' means of the metric's column.
UNIT_SUMS_SQL = f"""
SELECT variant_id, count() AS units, sum(outcomes) AS outcomes, sum(m) AS total, sum(m * m) AS total_sq FROM (
    SELECT variant_id, if(attributes['unit_id'] != '', attributes['unit_id'], event_id) AS unit, count() AS outcomes,
           avg(multiIf({{column:String}} = 'success', toFloat64(success), {{column:String}} = 'reward', reward,
                       {{column:String}} = 'cost_usd', cost_usd, latency_ms)) AS m
    {_OUTCOMES}
    GROUP BY variant_id, unit
) GROUP BY variant_id
"""
# The latency quantile and the two around it that bound its interval; the levels are numbers this module computes.
QUANTILES_SQL = "SELECT quantilesExact(LEVELS)(latency_ms) " + _OUTCOMES + " AND variant_id = {variant:String}"

Query = Callable[[str, dict[str, Any]], list[list[Any]]]


def parse_split(text: str | None) -> list[float] | None:
    """``--split`` as numbers (shares are normalised by the record, so 50,50 and 0.5,0.5 are the same)."""
    if text is None:
        return None
    try:
        return [float(part) for part in text.split(",")]
    except ValueError:
        raise UserError(f"--split must be numbers separated by commas (50,50), got {text!r}") from None


def _now_ms() -> int:
    return int(time.time() * 1000)


def _fmt_ms(ms: int | None) -> str:
    if ms is None:
        return ""
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")


# ---------------------------------------------------------------------------------------------- reading


def history_query(settings: Settings) -> Query:
    """Run read-only SQL on the history (through a running ``reverify up`` when there is one)."""
    from reverify.streams.cli.history import run_request

    def query(sql: str, params: dict[str, Any]) -> list[list[Any]]:
        return run_request(settings, {"sql": sql, "params": params})["rows"]

    return query


def _from_topic(settings: Settings) -> list[dict[str, Any]]:
    from reverify.streams.cli.control import read_topic
    from reverify.streams.embedded import port_is_open, split_bootstrap

    host, port = split_bootstrap(settings.kafka)
    if not port_is_open(host, port, timeout=2.0):
        return []
    try:
        return [r for _m, t, r in read_topic(settings, "crl.experiments") if t == "Experiment"]
    except UserError:  # the topic does not exist yet: no experiment was ever started on this broker
        return []


def _from_history(settings: Settings) -> list[dict[str, Any]]:
    from reverify.streams.cli.history import HistoryError, ask_history

    try:
        rows = ask_history(settings, {"sql": LATEST_EXPERIMENTS_SQL, "params": {}})["rows"]
    except HistoryError:
        return []
    return [dict(zip(EXPERIMENT_FIELDS, values, strict=True)) for (values,) in rows]


def load_experiments(settings: Settings) -> dict[str, dict[str, Any]]:
    """The latest record of every experiment, from ``crl.experiments`` and the history (the newer wins)."""
    latest: dict[str, dict[str, Any]] = {}
    for record in _from_history(settings) + _from_topic(settings):
        held = latest.get(record["name"])
        if held is None or int(record["ts"]) >= int(held["ts"]):
            latest[record["name"]] = record
    return latest


def find_experiment(settings: Settings, name: str) -> dict[str, Any]:
    found = load_experiments(settings).get(name)
    if found is None:
        raise UserError(f"no experiment named {name!r}; `reverify experiment list` shows them")
    return found


def arm_summaries(query: Query, record: dict[str, Any], now_ms: int) -> dict[str, ArmSummary]:
    """Each variant's estimate of the experiment's metric, from the history."""
    metric = record["metric"]
    params = {
        "agent": record["agent_name"],
        "task": record["task_type"],
        "variants": list(record["variants"]),
        "name": record["name"],
        "start_ms": int(record["started_at"]),
        "end_ms": int(record["stopped_at"] or now_ms),
        "column": COLUMNS[metric],
    }
    arms: dict[str, ArmSummary] = {}
    for variant, units, outcomes, total, total_sq in query(UNIT_SUMS_SQL, params):
        units, outcomes = int(units), int(outcomes)
        if metric != "latency_p95":
            # One outcome per unit: a success is a Bernoulli draw, whose variance is known from its rate.
            binary = metric == "success_rate" and outcomes == units
            arms[variant] = mean_summary(units, float(total), float(total_sq), binary=binary)
            continue
        lower, upper = quantile_levels(outcomes)
        levels = ", ".join(f"{q:.6f}" for q in (0.95, lower, upper))
        (values,) = query(QUANTILES_SQL.replace("LEVELS", levels), {**params, "variant": variant})[0]
        arms[variant] = quantile_summary(units, *(float(v) for v in values))
    return arms


def experiment_status(settings: Settings, record: dict[str, Any], query: Query | None = None) -> dict[str, Any]:
    """``status --json`` of ``record``: :func:`~reverify.processors.experiments.evaluate` on the history."""
    arms = arm_summaries(query or history_query(settings), record, _now_ms())
    return evaluate(record, arms)


# ---------------------------------------------------------------------------------------------- printing


def _pct(x: float | None) -> str:
    return "" if x is None else f"{x:+.2%}"


def print_status(status: dict[str, Any]) -> None:
    state = status["status"]
    since = f"since {_fmt_ms(status['started_at'])}"
    if state != RUNNING:
        since += f", stopped {_fmt_ms(status['stopped_at'])}: {status['stop_reason'] or 'by hand'}"
    console.print(
        f"[bold]{status['name']}[/] on {status['agent_name']}/{status['task_type']}, {status['metric']}, {state} {since}"
    )
    print_table(
        "variants",
        ["variant", "role", "share", "units", status["metric"], "± se", "lift", "95 % always-valid interval", "p"],
        [
            [
                v["variant_id"],
                v["role"],
                f"{v['share']:.0%}",
                v["n"],
                v["value"],
                v["se"],
                _pct(c["lift"]) if c else "",
                f"[{_pct(c['ci'][0])}, {_pct(c['ci'][1])}]" if c and c["ci"] else "",
                c["p_value"] if c else None,
            ]
            for v in status["variants"]
            for c in [next((c for c in status["comparisons"] if c["variant_id"] == v["variant_id"]), None)]
        ],
    )
    srm = status["srm"]
    mark = "[red]✗ sample ratio mismatch[/]" if srm["flagged"] else "[green]✓[/] sample ratio"
    console.print(
        f"{mark} (chi-square {srm['chi2']:.2f}, p = {srm['p_value']:.3g}, flagged below {srm['threshold']:g})"
    )
    plan = status["planned_units"]
    console.print(f"units {status['units']}" + (f" of {plan} planned" if plan else ""))
    colour = "green" if status["decision"].startswith("ship") else "yellow"
    console.print(f"decision: [bold {colour}]{status['decision']}[/] — {status['reason']}")


# ---------------------------------------------------------------------------------------------- commands


def _publish_both(settings: Settings, record: dict[str, Any], command: str) -> None:
    """The record on ``crl.experiments`` and a command carrying it on the agent's partition of ``control.commands``."""
    from reverify.streams.cli.control import command_record, publish

    publish(settings, "crl.experiments", [(record["name"], "Experiment", record)])
    args = {"experiment": json.dumps(record), "task_type": record["task_type"]}
    publish(
        settings, "control.commands", [(record["agent_name"], "Command", command_record(command, args, record["by"]))]
    )


def _short(record: dict[str, Any]) -> str:
    shares = ",".join(f"{s:.0%}" for s in record["split"])
    return f"{','.join(record['variants'])} ({shares})"


def register(group: click.Group) -> None:
    """Add ``experiment start | status | stop | list`` to the ``reverify`` group."""

    @group.group()
    def experiment() -> None:
        """A/B experiments: assign units by hash, always-valid lift intervals, a decision."""

    @experiment.command("start")
    @click.argument("name")
    @click.option("--agent", required=True, help="agent_name the experiment routes.")
    @click.option("--task", required=True, help="task_type the experiment routes.")
    @click.option("--variants", required=True, help="Control first, then treatments: c,t.")
    @click.option("--split", default=None, help="Shares per variant, e.g. 50,50 (default: even).")
    @click.option("--metric", type=click.Choice(METRICS), default="success_rate", show_default=True)
    @click.option("--min-effect", type=float, default=0.02, show_default=True, help="Smallest relative lift to detect.")
    @click.option("--units", type=int, default=None, help="Planned units (all variants); default: from --min-effect.")
    @click.option("--alpha", type=float, default=0.05, show_default=True, help="False-positive rate over all looks.")
    @click.option("--by", default=None, help="Who starts it (default: your login name).")
    @click.option("--json", "as_json", is_flag=True, help="Print the published record as JSON.")
    def start(
        name: str,
        agent: str,
        task: str,
        variants: str,
        split: str | None,
        metric: str,
        min_effect: float,
        units: int | None,
        alpha: float,
        by: str | None,
        as_json: bool,
    ) -> None:
        """Start experiment NAME: routers assign units of AGENT/TASK to the variants by hash."""
        from reverify.streams.cli.common import settings_or_fail
        from reverify.streams.cli.control import default_operator
        from reverify.streams.topics import ensure_topics

        try:
            record = experiment_record(
                name,
                agent,
                task,
                variants.split(","),
                parse_split(split),
                metric,
                min_effect,
                ts=_now_ms(),
                alpha=alpha,
                planned_units=units,
                by=by or default_operator(),
            )
        except ExperimentError as exc:
            raise UserError(str(exc)) from None
        settings = settings_or_fail()
        for other in load_experiments(settings).values():
            if other["status"] != RUNNING:
                continue
            if other["name"] == name:
                raise UserError(f"experiment {name} is running; stop it first (`reverify experiment stop {name}`)")
            if (other["agent_name"], other["task_type"]) == (agent, task):
                raise UserError(f"experiment {other['name']} already runs on {agent}/{task}; stop it first")
        ensure_topics(admin(settings), settings.topic_prefix, settings.partitions)
        _publish_both(settings, record, "experiment_start")
        if as_json:
            print_json(record)
            return
        console.print(f"[green]✓[/] started {name} on {agent}/{task}: {_short(record)}, {metric}")
        console.print(
            "  routers assign units with choose(agent, task, unit_id=...); follow it with `experiment status`"
        )

    @experiment.command("stop")
    @click.argument("name")
    @click.option("--reason", default="stopped by hand", show_default=True, help="Why, for the record.")
    @click.option("--by", default=None, help="Who stops it (default: your login name).")
    @click.option("--json", "as_json", is_flag=True, help="Print the published record as JSON.")
    def stop(name: str, reason: str, by: str | None, as_json: bool) -> None:
        """Stop experiment NAME: routers go back to the active variant."""
        from reverify.streams.cli.common import settings_or_fail
        from reverify.streams.cli.control import default_operator

        settings = settings_or_fail()
        record = find_experiment(settings, name)
        if record["status"] != RUNNING:
            raise UserError(f"experiment {name} is already stopped ({record['reason'] or 'by hand'})")
        done = stopped(record, ts=_now_ms(), reason=reason, by=by or default_operator())
        _publish_both(settings, done, "experiment_stop")
        if as_json:
            print_json(done)
            return
        console.print(f"[green]✓[/] stopped {name}: {reason}")

    @experiment.command("status")
    @click.argument("name")
    @click.option("--json", "as_json", is_flag=True, help="Print JSON for programs.")
    def status(name: str, as_json: bool) -> None:
        """Per variant units and metric, the lift with its always-valid interval, SRM and the decision."""
        settings = load_settings()
        result = experiment_status(settings, find_experiment(settings, name))
        if as_json:
            print_json(result)
        else:
            print_status(result)

    @experiment.command("list")
    @click.option("--json", "as_json", is_flag=True, help="Print JSON for programs.")
    def list_cmd(as_json: bool) -> None:
        """Every experiment, running first."""
        records = sorted(
            load_experiments(load_settings()).values(), key=lambda r: (r["status"] != RUNNING, -int(r["started_at"]))
        )
        if as_json:
            print_json(records)
            return
        print_table(
            "experiments",
            ["name", "agent/task", "variants (split)", "metric", "status", "started", "stopped", "reason"],
            [
                [
                    r["name"],
                    f"{r['agent_name']}/{r['task_type']}",
                    _short(r),
                    r["metric"],
                    r["status"],
                    _fmt_ms(r["started_at"]),
                    _fmt_ms(r["stopped_at"]),
                    r["reason"],
                ]
                for r in records
            ],
            empty="none yet; start one with `reverify experiment start`",
        )
