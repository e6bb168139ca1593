"""The console's pages as HTML, from the answers of the history queries: pure functions of their data.

Each ``*_page`` takes what :mod:`streams.console.server` read (dicts and lists as the queries return them) and
returns a whole page; nothing here reads a database or a clock, so a page can be rendered in a test from a dict.
Every value from data is escaped (:mod:`streams.console.html`).

>>> "&lt;script&gt;" in agents_page([{"agent": "<script>x</script>", "tasks": ["t"], "outcomes": 1, "last_seen": ""}])
True
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from typing import Any

from reverify.streams.console.charts import Marker, Series, bar_pair, line_chart
from reverify.streams.console.html import Markup, form, join, link, page, table, tag


def _ms(value: Any) -> int:
    """An ISO time (as the queries return it) or milliseconds, as milliseconds."""
    if isinstance(value, (int, float)):
        return int(value)
    return int(dt.datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp() * 1000)


def when(value: Any) -> str:
    """A time from the history as ``YYYY-MM-DD HH:MM:SS`` (UTC); empty for none."""
    if value in (None, ""):
        return ""
    return dt.datetime.fromtimestamp(_ms(value) / 1000, tz=dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def _agent_link(name: Any, task: Any = None) -> Markup:
    return link("/agent", name, name=name, task=task)


def _labels(text: Any) -> dict[str, str]:
    """A ``toString(Map)`` answer (``{'k':'v'}``) as a dict; {} when it cannot be read."""
    if isinstance(text, dict):
        return {str(k): str(v) for k, v in text.items()}
    try:
        value = json.loads(str(text or "{}").replace("'", '"'))
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}


def _severity(value: Any) -> Markup:
    return tag("span", value, class_=f"sev-{value}")


def _rollback_markers(moments: Sequence[dict[str, Any]], kinds: tuple[str, ...] = ("rollback", "promotion")) -> list:
    return [
        Marker(int(m["t"]), m["kind"], str(m["id"]), str(m["detail"]), {"task": str(m.get("task") or "")})
        for m in moments
        if m["kind"] in kinds
    ]


def _by_variant(rows: Sequence[dict[str, Any]], column: str) -> list[Series]:
    lines: dict[str, list[tuple[int, float | None]]] = {}
    for row in rows:
        lines.setdefault(str(row["variant"]), []).append((int(row["t"]), row[column]))
    return [Series(name, points) for name, points in sorted(lines.items())]


def answer_table(answer: dict[str, Any], empty: str = "(none)", limit: int = 50) -> Markup:
    """A canned query's answer (``columns``, ``rows``) as a table, times shown for reading."""
    columns = answer.get("columns") or []
    timed = {i for i, c in enumerate(columns) if c in ("ts", "since", "last_change", "starts_at", "ends_at")}
    rows = [[when(v) if i in timed else v for i, v in enumerate(row)] for row in (answer.get("rows") or [])[:limit]]
    return table(columns, rows, empty=empty)


def records_table(records: Sequence[dict[str, Any]], empty: str = "(none)") -> Markup:
    """Records (dicts, as the dashboard returns them) as a table; nested values (evidence maps) left to --json.

    >>> "<td>1.5</td>" in records_table([{"mttr_s": 1.5, "bundle": {"x": 1}}])
    True
    """
    if not records:
        return table([], [], empty=empty)
    columns = [c for c, v in records[0].items() if not isinstance(v, (dict, list))]
    timed = {"ts", "since", "opened_at", "resolved_at", "started_at", "last_change"}
    return table(columns, [[when(r.get(c)) if c in timed else r.get(c) for c in columns] for r in records], empty=empty)


# ------------------------------------------------------------------------------------------------------- fleet


def fleet_page(board: dict[str, Any], fleet: dict[str, Any], live: Sequence[dict[str, Any]] = ()) -> Markup:
    """System health (the dashboard's overview), the alerts published just now (``live``, from the topic:
    :mod:`~reverify.streams.console.live`), fleet charts with the rollbacks marked, firing alerts, recent rollbacks
    with their ids, pending proposals, incidents, error budgets and the running experiments with their status
    (``running_experiments``, as ``reverify experiment status`` gives it)."""
    overview = board.get("overview") or {}
    status = str(board.get("status") or "")
    tiles = join(
        tag("div", join([tag("b", value), tag("span", key.replace("_", " "))]), class_="tile")
        for key, value in overview.items()
    )
    points = fleet.get("points") or []
    markers = _rollback_markers(fleet.get("moments") or [], ("rollback",))
    charts = join(
        [
            tag(
                "div",
                Markup(
                    line_chart(
                        "Fleet success rate and mean reward",
                        [
                            Series("success rate", [(int(p["t"]), p["success_rate"]) for p in points]),
                            Series("reward", [(int(p["t"]), p["reward"]) for p in points]),
                        ],
                        markers,
                        y_range=(0.0, 1.0),
                    )
                ),
                class_="card",
            ),
            tag(
                "div",
                Markup(
                    line_chart(
                        "Outcomes per interval",
                        [Series("outcomes", [(int(p["t"]), p["outcomes"]) for p in points])],
                        markers,
                    )
                ),
                class_="card",
            ),
        ]
    )
    firing = board.get("degradation_alerts") or []
    alerts = table(
        ["severity", "title", "agent", "since", "fingerprint"],
        [
            [
                _severity(a["severity"]),
                a["title"],
                _agent_link(_labels(a.get("labels")).get("agent_name", "")),
                when(a["starts_at"]),
                a["fingerprint"],
            ]
            for a in firing
        ],
        empty="nothing is firing",
    )
    rollbacks = table(
        ["time", "rollback id", "agent", "task", "change", "trigger", "reason"],
        [
            [
                when(r["ts"]),
                tag("code", r["rollback_id"], class_="rollback-id"),
                _agent_link(r["agent_name"], r["task_type"]),
                r["task_type"],
                f"{r['from_variant']} -> {r['to_variant']}",
                r["trigger"],
                r["reason"],
            ]
            for r in board.get("recent_rollbacks") or []
        ],
        empty="no rollbacks",
    )
    proposals = _proposal_rows(board.get("pending_proposals") or [], actions=False)
    sections = [
        tag("p", join(["System status: ", tag("span", status, class_=f"status {status}")])),
        tag("div", tiles, class_="tiles"),
        tag("h2", "Fleet over the last hour"),
        tag("div", charts, class_="grid2"),
        tag("h2", "Live: the latest alerts on the topic"),
        _live_table(live),
        tag("h2", join(["Firing alerts ", link("/alerts", "(all alerts)")])),
        alerts,
        tag("h2", "Recent rollbacks"),
        rollbacks,
        tag("h2", join(["Pending proposals ", link("/proposals", "(answer)")])),
        proposals,
    ]
    for key, title in (("recent_incidents", "Recent incidents (MTTR)"), ("error_budgets", "Error budgets (SLOs)")):
        if key in board:  # sections the dashboard offers as other parts of reverify add them
            sections += [tag("h2", title), records_table(board[key])]
    sections += [tag("h2", "Running experiments"), _experiments_table(board.get("running_experiments") or [])]
    return page("Fleet", "fleet", join(sections))


def _live_table(alerts: Sequence[dict[str, Any]]) -> Markup:
    """The alerts the console read from the topic, newest first (what the history may not hold yet).

    >>> a = {"ts": 0, "status": "firing", "severity": "critical", "title": "<b>", "labels": {"agent_name": "x"}}
    >>> "<td>&lt;b&gt;</td>" in _live_table([a])
    True
    """
    rows = [
        [
            when(a["ts"]),
            a["status"],
            _severity(a["severity"]),
            a["title"],
            _agent_link(a["labels"].get("agent_name", "")),
        ]
        for a in alerts
    ]
    return table(
        ["time", "status", "severity", "title", "agent"],
        rows,
        empty="no alerts on the topic",
        class_="live",
    )


def _percent(x: float | None) -> str:
    return "" if x is None else f"{x:+.2%}"


def _experiments_table(statuses: Sequence[dict[str, Any]]) -> Markup:
    """One row per running experiment: its variants' units, the first treatment's lift and always-valid interval,
    the decision and why (``reverify experiment status NAME`` has the rest).

    >>> s = {"name": "e1", "agent_name": "a", "task_type": "t", "metric": "success_rate", "units": 40,
    ...      "variants": [{"variant_id": "c", "n": 20}, {"variant_id": "t", "n": 20}], "lift": 0.05,
    ...      "ci": [-0.1, 0.2], "decision": "continue", "reason": "more units needed"}
    >>> "<td>[-10.00%, +20.00%]</td>" in _experiments_table([s])
    True
    """
    rows = [
        [
            tag("code", s["name"], class_="experiment"),
            _agent_link(s["agent_name"], s["task_type"]),
            s["metric"],
            ", ".join(f"{v['variant_id']} {v['n']}" for v in s["variants"]),
            _percent(s.get("lift")),
            "" if not s.get("ci") else f"[{_percent(s['ci'][0])}, {_percent(s['ci'][1])}]",
            tag("b", s["decision"]),
            s.get("reason") or "",
        ]
        for s in statuses
    ]
    columns = ["experiment", "agent/task", "metric", "units", "lift", "95 % always-valid interval", "decision", "why"]
    return table(columns, rows, empty="no running experiments")


# ------------------------------------------------------------------------------------------------------- agents


def agents_page(agents: Sequence[dict[str, Any]]) -> Markup:
    """Every agent with outcomes in the last day, each a link to its page."""
    rows = [
        [
            _agent_link(a["agent"]),
            join(join([_agent_link(a["agent"], t), " "]) for t in a["tasks"]),
            a["outcomes"],
            when(a["last_seen"]),
        ]
        for a in agents
    ]
    return page(
        "Agents", "agents", table(["agent", "tasks", "outcomes (24h)", "last outcome"], rows, empty="no outcomes yet")
    )


def agent_page(
    name: str, task: str, data: dict[str, Any], leaderboard: dict[str, Any], timeline: dict[str, Any]
) -> Markup:
    """One agent: its active variants, and per task the Q, success rate and reward of each variant over time with
    the rollbacks and promotions marked, the latest decision per variant with its reasoning, the timeline."""
    active = table(
        ["task", "active variant", "reason", "since"],
        [
            [
                link("/agent", r["task"], name=name, task=r["task"]),
                tag("b", r["variant"], class_="active-variant"),
                r["reason"],
                when(r["since"]),
            ]
            for r in data["active"]
        ],
        empty="no active variant yet",
    )
    sections: list[Any] = [tag("h2", "Active variants"), active]
    for task_name, series in data["tasks"].items():
        if task and task_name != task:
            continue
        markers = _rollback_markers(series["moments"])
        outcomes, qvalues = series["outcomes"], series["qvalues"]
        times = [int(r["t"]) for r in (*outcomes, *qvalues)] + [m.ts for m in markers]
        span = (min(times), max(times)) if times else None  # one time axis for the task's charts
        charts = join(
            tag("div", Markup(chart), class_="card")
            for chart in (
                line_chart(
                    f"Q per variant · {task_name}", _by_variant(qvalues, "q"), markers, y_range=(0.0, 1.0), x_range=span
                ),
                line_chart(
                    f"Success rate per variant · {task_name}",
                    _by_variant(outcomes, "success_rate"),
                    markers,
                    y_range=(0.0, 1.0),
                    x_range=span,
                ),
                line_chart(
                    f"Mean reward per variant · {task_name}",
                    _by_variant(outcomes, "reward"),
                    markers,
                    y_range=(0.0, 1.0),
                    x_range=span,
                ),
            )
        )
        decisions = table(
            ["variant", "decision", "Q", "n", "P(beats active)", "reasoning", "since"],
            [
                [
                    d["variant"],
                    tag("b", d["decision"]),
                    d["q"],
                    d["n"],
                    d["p_beats_active"],
                    d["reasoning"],
                    when(d["since"]),
                ]
                for d in data["decisions"]
                if d["task"] == task_name
            ],
            empty="no decisions yet",
        )
        sections += [
            tag("h2", f"Task {task_name}"),
            tag("div", charts, class_="grid2 agent-charts"),
            tag("h3", "Decisions and their reasoning"),
            decisions,
        ]
    sections += [
        tag("h2", "Arms (last 24 h)"),
        answer_table(leaderboard),
        tag("h2", "Timeline (last 24 h)"),
        answer_table(timeline, limit=100),
    ]
    return page(f"Agent {name}" + (f" · {task}" if task else ""), "agents", join(sections))


# ------------------------------------------------------------------------------------------------------- drift


def _drift_link(row: dict[str, Any], text: Any) -> Markup:
    return link("/drift/series", text, agent=row["agent"], feature=row["feature"], variant=row["variant"] or None)


def drift_page(drift: dict[str, Any], charts: Sequence[tuple[dict[str, Any], dict[str, Any]]]) -> Markup:
    """Every drift series with its latest PSI and KS (alarms first), and the charts of the first few."""
    columns = drift.get("columns") or []
    rows = [dict(zip(columns, r, strict=True)) for r in drift.get("rows") or []]
    listing = table(
        ["agent", "series", "variant", "PSI", "KS", "KS p", "severity", "alarm", "last report"],
        [
            [
                _agent_link(r["agent"]),
                _drift_link(r, r["feature"]),
                r["variant"],
                r["psi"],
                r["ks"],
                r["ks_pvalue"],
                r["severity"],
                tag("b", "ALARM", class_="sev-critical") if r["alarm"] else "",
                when(r["last_report"]),
            ]
            for r in rows
        ],
        empty="no drift reports yet (each series reports once its baseline is learned)",
    )
    cards = join(tag("div", Markup(_psi_ks_chart(row, series)), class_="card") for row, series in charts)
    body = [tag("h2", "Series"), listing]
    if charts:
        body += [tag("h2", "PSI and KS over the last hour (alarms first)"), tag("div", cards, class_="grid2")]
    return page("Drift", "drift", join(body))


def _psi_ks_chart(row: dict[str, Any], series: dict[str, Any]) -> str:
    points = series.get("points") or []
    alarms = [Marker(int(a["t"]), "alarm", str(a["id"]), f"PSI {a['psi']:.3g}") for a in series.get("alarms") or []]
    title = f"{row['agent']} · {row['feature']}" + (f" · {row['variant']}" if row.get("variant") else "")
    return line_chart(
        title,
        [
            Series("PSI", [(int(p["t"]), p["psi"]) for p in points]),
            Series("KS", [(int(p["t"]), p["ks"]) for p in points]),
        ],
        alarms,
    )


def drift_series_page(row: dict[str, Any], series: dict[str, Any], histograms: dict[str, Any] | None) -> Markup:
    """One drift series: PSI and KS over time with the alarm moments, the baseline and current histograms."""
    body: list[Any] = [tag("div", Markup(_psi_ks_chart(row, series)), class_="card")]
    if histograms:
        body += [
            tag("h2", "Baseline and current window"),
            tag(
                "div",
                Markup(
                    bar_pair(
                        "Shares of the report's bins",
                        histograms["edges"],
                        histograms["baseline"],
                        histograms["current"],
                    )
                ),
                class_="card",
            ),
            tag(
                "p",
                "Baseline: the series' first values (the learned baseline, unless it was pinned or reset).",
                class_="empty",
            ),
        ]
    alarms = table(
        ["alarm from", "PSI"], [[when(a["t"]), a["psi"]] for a in series.get("alarms") or []], empty="no alarms"
    )
    body += [tag("h2", "Alarm moments"), alarms]
    title = f"Drift · {row['agent']} · {row['feature']}" + (f" · {row['variant']}" if row.get("variant") else "")
    return page(title, "drift", join(body))


# ------------------------------------------------------------------------------------------------------- alerts


def alerts_page(alerts: dict[str, Any], notice: str = "") -> Markup:
    """Firing and recent alerts with their evidence, flapping and who acknowledged them; ack and silence."""
    columns = alerts.get("columns") or []
    rows = [dict(zip(columns, r, strict=True)) for r in alerts.get("rows") or []]
    body_rows = []
    for a in rows:
        labels = _labels(a.get("labels"))
        agent = labels.get("agent_name") or labels.get("agent") or ""
        evidence = ", ".join(f"{k} {float(v):.4g}" for k, v in _labels(a.get("evidence")).items())
        firing = a["status"] == "firing"
        actions = []
        # A rollback's alert reports an event, held by no alert lifecycle: nothing to acknowledge.
        if firing and not a.get("acked_by") and a.get("source") != "rollback":
            actions.append(form("/actions/ack", {"fingerprint": a["fingerprint"]}, "ack", css="ack"))
        if firing and agent:
            actions.append(
                form(
                    "/actions/silence",
                    {
                        "match": f"agent_name={agent}",
                        "for": "2h",
                        "comment": f"silenced from the console: {a['title']}",
                    },
                    "silence 2h",
                )
            )
        body_rows.append(
            [
                _severity(a["severity"]),
                tag("span", a["status"], class_=a["status"]),
                a["title"],
                _agent_link(agent) if agent else "",
                when(a["starts_at"]),
                "flapping" if a.get("flapping") else "",
                tag("span", f"acked by {a['acked_by']}", class_="acked") if a.get("acked_by") else "",
                evidence,
                tag("code", a["fingerprint"]),
                join(actions),
            ]
        )
    listing = table(
        ["severity", "status", "title", "agent", "since", "flapping", "acknowledged", "evidence", "fingerprint", ""],
        body_rows,
        empty="no alerts in the last 24 h",
        class_="alerts",
    )
    silence = tag(
        "form",
        join(
            [
                tag(
                    "label",
                    join(
                        [
                            "match (LABEL=GLOB, comma-separated)",
                            tag(
                                "input",
                                "",
                                type="text",
                                name="match",
                                placeholder="agent_name=agent-2",
                                required="required",
                            ),
                        ]
                    ),
                ),
                tag(
                    "label",
                    join(["for", tag("input", "", type="text", name="for", value="2h", size="5", required="required")]),
                ),
                tag(
                    "label",
                    join(["comment", tag("input", "", type="text", name="comment", size="30", required="required")]),
                ),
                tag("button", "silence", type="submit"),
            ]
        ),
        method="post",
        action="/actions/silence",
        class_="silence",
    )
    return page("Alerts", "alerts", join([listing, tag("h2", "Silence"), silence]), notice=notice)


# ------------------------------------------------------------------------------------------------------- proposals


def _proposal_rows(proposals: Sequence[dict[str, Any]], actions: bool = True) -> Markup:
    rows = []
    for p in proposals:
        row = [
            tag("code", p["proposal_id"]),
            _agent_link(p["agent_name"], p["task_type"]),
            p["task_type"],
            p["variant_id"],
            p["proposal_type"],
            p["confidence"],
            p["reasoning"],
        ]
        if actions:
            pid = {"proposal_id": p["proposal_id"]}
            row.append(
                join(
                    [
                        form(
                            "/actions/approve",
                            pid,
                            "approve",
                            css="primary approve",
                            confirm=f"Approve {p['variant_id']} for {p['agent_name']}?",
                        ),
                        " ",
                        form("/actions/reject", pid, "reject", css="danger reject"),
                    ]
                )
            )
        rows.append(row)
    columns = ["proposal", "agent", "task", "variant", "type", "confidence", "reasoning"] + (
        ["answer"] if actions else []
    )
    return table(columns, rows, empty="nothing waits for approval", class_="proposals")


def proposals_page(pending: Sequence[dict[str, Any]], answered: Sequence[dict[str, Any]], notice: str = "") -> Markup:
    """Proposals waiting for a person (approve / reject publish the Approval ``reverify approve`` does), and the
    latest answers."""
    answers = table(
        ["time", "proposal", "answer", "by", "comment"],
        [
            [
                when(a["ts"]),
                tag("code", a["proposal_id"]),
                "approved" if a["approved"] else "rejected",
                a["by"],
                a["comment"],
            ]
            for a in answered
        ],
        empty="no answers yet",
    )
    body = [tag("h2", "Waiting for approval"), _proposal_rows(pending), tag("h2", "Latest answers"), answers]
    return page("Proposals", "proposals", join(body), notice=notice)


def error_page(title: str, message: str) -> Markup:
    """A page saying what went wrong (the history could not answer, an unknown series)."""
    return page(title, "", tag("p", message, class_="notice error"), refresh=0)
