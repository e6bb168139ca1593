"""``reverify replay``: the worker's rules, offline, on a file of events or the stored history (:mod:`streams.replay`).

>>> s = Summary()
>>> s.add("Rollback", {"ts": 0, "agent_name": "a", "task_type": "t", "from_variant": "v0", "to_variant": "v1",
...                    "trigger": "success", "reason": "Success rate dropped"})
>>> s.counts
Counter({'Rollback': 1})
"""

from __future__ import annotations

import datetime as dt
import heapq
import os
import sys
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any

import click
from reverify.schemas.fields import join_number_or_class
from reverify.streams.cli.common import UserError, console, err
from reverify.streams.cli.common import print_table as _print_table
from reverify.streams.settings import Settings, SettingsError, override_env

# The stored inputs, as the SDK's keyword arguments (streams.restore reads the same tables to rebuild state).
_HISTORY = {
    "outcome": "SELECT event_id, toUnixTimestamp64Milli(ts) AS ts, agent_name, task_type, variant_id, success, reward, "
    "latency_ms, cost_usd, tokens_in, tokens_out, features, attributes, trace_id, next_state, awaiting_feedback, "
    "prediction, prediction_class, model_version FROM agent_outcomes FINAL",
    "feedback": "SELECT event_id, toUnixTimestamp64Milli(ts) AS ts, agent_name, outcome_id, success, reward, label, "
    "label_class, attributes FROM agent_feedback FINAL",
    "error": "SELECT event_id, toUnixTimestamp64Milli(ts) AS ts, agent_name, task_type, variant_id, component, "
    "error_type, message, retryable, severity, pipeline, attributes, trace_id FROM agent_errors FINAL",
    "metric": "SELECT event_id, toUnixTimestamp64Milli(ts) AS ts, agent_name, task_type, variant_id, name, value, "
    "attributes FROM agent_metrics FINAL",
}
_PROGRESS_EVERY = 2048  # lines between progress updates
_SLOW_PROGRESS_SECONDS = 10.0  # between progress lines when stderr is not a terminal


_SEVERITY_RANK = {"none": 0, "low": 1, "medium": 2, "high": 3}


def print_table(title: str, columns: list[str], rows: list[list[Any]]) -> None:
    """A table, or one line saying there was none."""
    if rows:
        _print_table(title, columns, rows)
    else:
        console.print(f"[bold]{title}[/]: none")


def _iso(ms: Any) -> str:
    if not isinstance(ms, int):
        return ""
    return dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


class Summary:
    """What a replay emitted, gathered for people: rollbacks, alerts, drift alarms per series, decisions."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.rollbacks: list[dict[str, Any]] = []
        self.alerts: dict[str, list[Any]] = {}  # fingerprint -> [source, severity, title, first ts, times fired]
        self.drift: dict[tuple[str, str, str], list[Any]] = {}  # series -> [alarms, first alarm ts, worst severity]
        self.decisions: dict[tuple[str, str, str], dict[str, Any]] = {}  # arm -> its last VariantDecision
        self.deadletters: Counter[str] = Counter()
        self.incidents: dict[str, dict[str, Any]] = {}  # incident id -> its latest record
        self.budgets: dict[tuple[str, str, str], dict[str, Any]] = {}  # SLO, agent, task -> its last SloReport

    def add(self, record_type: str, r: Mapping[str, Any]) -> None:
        self.counts[record_type] += 1
        if record_type == "Rollback":
            self.rollbacks.append(dict(r))
        elif record_type == "Alert" and r["status"] == "firing":
            seen = self.alerts.setdefault(r["fingerprint"], [r["source"], r["severity"], r["title"], r["ts"], 0])
            seen[4] += 1
        elif record_type == "DriftReport" and r["alarm"]:
            series = (r["agent_name"], r["feature"], r.get("variant_id") or "")
            seen = self.drift.setdefault(series, [0, r["ts"], r["severity"]])
            seen[0] += 1
            if _SEVERITY_RANK.get(r["severity"], 0) > _SEVERITY_RANK.get(seen[2], 0):
                seen[2] = r["severity"]
        elif record_type == "VariantDecision":
            self.decisions[(r["agent_name"], r["task_type"], r["variant_id"])] = dict(r)
        elif record_type == "DeadLetter":
            self.deadletters[r["reason"]] += 1
        elif record_type == "Incident":
            self.incidents[r["incident_id"]] = dict(r)
        elif record_type == "SloReport":
            self.budgets[(r["slo"], r["agent_name"], r.get("task_type") or "")] = dict(r)

    def show(self, title: str, inputs: Counter[str], bad: int, seconds: float) -> None:
        total = sum(inputs.values())
        rate = f"{total / seconds:,.0f}/s" if seconds > 0 else "-"
        console.print(
            f"[bold]{title}[/]: {total:,} inputs ({', '.join(f'{n:,} {k}s' for k, n in sorted(inputs.items()))}), "
            f"{bad:,} bad lines, {sum(self.counts.values()):,} records emitted in {seconds:.1f} s ({rate})"
        )
        print_table("Emitted", ["record type", "count"], [[k, f"{n:,}"] for k, n in sorted(self.counts.items())])
        print_table(
            "Rollbacks",
            ["time", "agent/task", "from -> to", "trigger", "reason"],
            [
                [
                    _iso(r["ts"]),
                    f"{r['agent_name']}/{r['task_type']}",
                    f"{r['from_variant']} -> {r['to_variant']}",
                    r["trigger"],
                    r["reason"],
                ]  # fmt: skip
                for r in self.rollbacks
            ],
        )
        print_table(
            "Alerts fired",
            ["first fired", "source", "severity", "title", "times sent firing"],
            [[_iso(ts), source, severity, title, n] for source, severity, title, ts, n in self.alerts.values()],
        )
        print_table(
            "Drift alarms per series",
            ["agent", "feature", "variant", "alarming looks", "first alarm", "worst severity"],
            [[*series, n, _iso(ts), severity] for series, (n, ts, severity) in sorted(self.drift.items())],
        )
        print_table(
            "Decisions (the last of each arm)",
            ["agent/task", "variant", "decision", "q", "n", "active"],
            [
                [f"{a}/{t}", v, d["decision"], f"{d['q']:.3f}", d["n"], d["active_variant"]]
                for (a, t, v), d in sorted(self.decisions.items())
            ],
        )
        print_table(
            "Incidents (MTTR from the first evidence to the verified recovery)",
            ["detected", "incident", "agent/task", "status", "mttr s", "detect s", "act s", "why"],
            [
                [
                    _iso(r["detected_at"]),
                    i,
                    f"{r['agent_name']}/{r['task_type'] or r['component']}",
                    r["status"],
                    _seconds(r["mttr_ms"]),
                    _seconds(r["time_to_detect_ms"]),
                    _seconds(r["time_to_act_ms"]),
                    r["why"],
                ]
                for i, r in self.incidents.items()
            ],  # fmt: skip
        )
        if self.budgets:
            print_table(
                "Error budgets (the last SloReport of each SLO and scope)",
                ["slo", "agent/task", "sli", "objective", "budget left", "burn rates", "alerting"],
                [
                    [
                        slo,
                        f"{a}/{t}" if t else a,
                        r["sli"],
                        f"{r['objective']:g}",
                        f"{r['error_budget_remaining']:.1%}",
                        " ".join(f"{w} {v:.2g}" for w, v in r["burn_rates"].items()),
                        r["alerting"],
                    ]
                    for (slo, a, t), r in sorted(self.budgets.items())
                ],  # fmt: skip
            )
        if self.deadletters:
            print_table("Dead letters by reason", ["reason", "count"], sorted(self.deadletters.items()))


def _seconds(ms: int | None) -> str:
    return "" if ms is None else f"{ms / 1000:.1f}"


def replay_settings(config: str | None, sets: tuple[str, ...]) -> Settings:
    """Settings as a worker here would read them (``config`` instead of reverify.toml), ``--set`` overriding them."""
    from reverify.processors.assurance import AssuranceConfigError
    from reverify.processors.pipeline import PipelineConfig
    from reverify.processors.slo import SloConfigError

    try:
        settings = Settings.load(env={**os.environ, **override_env(sets)}, path="" if config is None else config)
        PipelineConfig.from_settings(settings)  # every section checked before the first line
        return settings
    except (SettingsError, AssuranceConfigError, SloConfigError) as exc:
        raise UserError(str(exc)) from None


def history_lines(settings: Settings, since: str, agent: str) -> Iterator[dict[str, Any]]:
    """The stored inputs since ``since`` (of ``agent``, if given) in event-time order, as replay lines (read-only)."""
    from reverify.sinks.analytics import QueryError, parse_since
    from reverify.streams.cli.history import HistoryError, ask_history

    try:
        since_ms = int((time.time() - parse_since(since)) * 1000)
    except QueryError as exc:
        raise UserError(str(exc)) from None
    where = "WHERE ts >= {since_ms:Int64} AND ({agent:String} = '' OR agent_name = {agent:String})"
    tables = []
    for kind, sql in _HISTORY.items():
        request = {
            "sql": f"SELECT * FROM ({sql}) {where} ORDER BY ts, event_id",
            "params": {"since_ms": since_ms, "agent": agent},
        }
        try:
            answer = ask_history(settings, request)
        except HistoryError as exc:
            raise UserError(exc.message) from None
        columns = answer["columns"]
        tables.append([_sdk_line(kind, dict(zip(columns, row, strict=True))) for row in answer["rows"]])
    return heapq.merge(*tables, key=lambda line: (line["ts"], line["event_id"]))


def _sdk_line(kind: str, row: dict[str, Any]) -> dict[str, Any]:
    """A stored input as a replay line: the SDK's arguments (an outcome awaiting feedback has no result yet)."""
    join_number_or_class(row)
    if row.get("awaiting_feedback"):
        del row["success"], row["reward"]
    return {"kind": kind, **row}


def _file_lines(path: str) -> tuple[IO[bytes], int]:
    if path == "-":
        return sys.stdin.buffer, 0
    try:
        f = open(path, "rb")  # noqa: SIM115 - closed by the command
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror}") from None
    return f, os.fstat(f.fileno()).st_size


def _with_progress(lines: Iterable[Any], size: int, label: str) -> Iterator[Any]:
    """``lines`` unchanged; progress on stderr: a bar on a terminal (bytes of ``size``), else a line now and then."""
    if err.is_terminal:
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        columns = [TextColumn(label), BarColumn(), TextColumn("{task.completed:,.0f} lines"), TimeRemainingColumn()]
        with Progress(*columns, console=err, transient=True) as progress:
            task = progress.add_task(label, total=size or None)
            done = 0
            for n, line in enumerate(lines, 1):
                done += len(line) if isinstance(line, bytes) else 0
                if not n % _PROGRESS_EVERY:
                    progress.update(task, completed=done if size else n, description=f"{n:,}")
                yield line
        return
    started = last = time.monotonic()
    for n, line in enumerate(lines, 1):
        if not n % _PROGRESS_EVERY and time.monotonic() - last > _SLOW_PROGRESS_SECONDS:
            last = time.monotonic()
            err.print(f"{label}: {n:,} lines, {n / (last - started):,.0f}/s", highlight=False)
        yield line


def register(group: click.Group) -> None:
    """Add ``replay`` to the ``reverify`` command group."""

    @group.command("replay")
    @click.argument("file", required=False)
    @click.option(
        "--config", type=click.Path(dir_okay=False), help="A reverify.toml to use instead of ./reverify.toml."
    )
    @click.option(
        "--set", "sets", multiple=True, metavar="SECTION.FIELD=VALUE", help="Override a setting (repeatable)."
    )
    @click.option("--json", "as_json", is_flag=True, help="One JSON object per emitted record, for programs.")
    @click.option("--strict", is_flag=True, help="Stop at the first bad line (exit 2) instead of skipping it.")
    @click.option("--from-clickhouse", is_flag=True, help="Replay the stored history instead of FILE.")
    @click.option(
        "--since", default="7d", show_default=True, help="With --from-clickhouse: how far back (24h, 7d ...)."
    )
    @click.option("--agent", default="", help="With --from-clickhouse: only this agent.")
    def replay_cmd(
        file: str | None,
        config: str | None,
        sets: tuple[str, ...],
        as_json: bool,
        strict: bool,
        from_clickhouse: bool,
        since: str,
        agent: str,
    ) -> None:
        """Run the worker's rules on recorded events and show what they would have emitted.

        FILE has one JSON object a line: {"kind": "outcome" | "error" | "metric", ...the SDK call's keyword
        arguments..., "ts": epoch ms}; "-" reads stdin. Try settings before deploying them with --set.
        """
        from reverify.streams.collector import tune_collector
        from reverify.streams.replay import BadLine, BadLineError, Replay, json_line

        if bool(file) == from_clickhouse:
            raise UserError("give a FILE of JSON lines or --from-clickhouse, not both or neither")
        settings = replay_settings(config, sets)
        where = "row" if from_clickhouse else "line"

        def report(bad: BadLine) -> None:
            err.print(f"{where} {bad.line}: {bad.reason}", highlight=False, soft_wrap=True, markup=False)

        source = f"clickhouse:{agent}:{since}" if from_clickhouse else Path(file or "-").name
        run = Replay(settings, strict=strict, on_bad=report, source=source)
        tune_collector()  # as a worker does: the collector took ~15 % of a replay at Python's defaults
        handle: IO[bytes] | None = None
        if from_clickhouse:
            lines: Iterable[Any] = history_lines(settings, since, agent)
            size = 0
        else:
            handle, size = _file_lines(file or "-")
            lines = handle
        summary, started = Summary(), time.monotonic()
        out = click.get_text_stream("stdout")
        try:
            for record_type, record in run.run(_with_progress(lines, size, "replaying")):
                if as_json:
                    out.write(json_line(record_type, record) + "\n")
                else:
                    summary.add(record_type, record)
        except BadLineError as exc:
            raise UserError(f"{where} {exc.bad.line}: {exc.bad.reason} (--strict stops at a bad {where})") from None
        finally:
            if handle is not None and handle is not sys.stdin.buffer:
                handle.close()
        if not as_json:
            title = f"Replay of {'the history since ' + since if from_clickhouse else file}"
            summary.show(title, run.inputs, len(run.bad), time.monotonic() - started)
