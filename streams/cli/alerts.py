"""``reverify alerts``: follow, list, acknowledge and silence alerts.

``tail`` follows the ``alerts`` topic with :class:`streams.client.AlertSubscriber`
(its own consumer group). ``list`` folds the whole topic by fingerprint (the
last status wins, as in Alertmanager) and shows what is firing now. ``ack`` and
``silence`` publish a ``Command`` keyed by ``agent_name`` to ``control.commands``:
the alert manager lives in the pipeline of each agent, so the command must reach
the worker that owns that agent.

>>> parse_matchers(("agent_name=enricher", "severity=warn*"))
{'agent_name': 'enricher', 'severity': 'warn*'}
>>> parse_matchers(("agent_name",))
Traceback (most recent call last):
...
ValueError: --match 'agent_name' is not LABEL=VALUE (e.g. --match agent_name=enricher)
>>> fold_alerts([{"fingerprint": "a", "status": "firing"}, {"fingerprint": "a", "status": "resolved"},
...              {"fingerprint": "b", "status": "firing"}])
[{'fingerprint': 'b', 'status': 'firing'}]
"""

from __future__ import annotations

import json
import signal
import sys
import uuid
from collections.abc import Iterable
from typing import Any

import click
from reverify.streams.cli.common import UserError, console, fmt_ms, print_json, print_table, settings_or_fail
from reverify.streams.cli.control import command_record, known_agents, now_ms, publish, read_topic

_SEVERITY_STYLE = {"info": "cyan", "warning": "yellow", "critical": "bold red"}
_GLOB = set("*?[")


def parse_matchers(items: Iterable[str]) -> dict[str, str]:
    """``--match label=glob`` options as a dict; a label given twice keeps the last value."""
    matchers: dict[str, str] = {}
    for item in items:
        label, sep, value = item.partition("=")
        if not sep or not label.strip() or not value:
            raise ValueError(f"--match {item!r} is not LABEL=VALUE (e.g. --match agent_name=enricher)")
        matchers[label.strip()] = value
    return matchers


def fold_alerts(alerts: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The alerts whose latest record says ``firing``, in the order they were first seen."""
    latest: dict[str, dict[str, Any]] = {}
    for alert in alerts:
        latest[alert["fingerprint"]] = alert
    return [a for a in latest.values() if a["status"] == "firing"]


def _alerts(settings: Any) -> list[dict[str, Any]]:

    return [r for _m, t, r in read_topic(settings, "alerts") if t == "Alert"]


def _line(alert: dict[str, Any]) -> str:
    """One alert as a rich markup line for people."""
    from rich.markup import escape

    style = _SEVERITY_STYLE.get(alert["severity"], "white")
    status = "[red]FIRING[/]" if alert["status"] == "firing" else "[green]RESOLVED[/]"
    extra = []
    if alert.get("acknowledged_by"):
        extra.append(f"acked by {escape(alert['acknowledged_by'])}")
    if alert.get("flapping"):
        extra.append("flapping")
    ev = alert.get("evidence") or {}
    if "value" in ev and "threshold" in ev:
        extra.append(f"value {ev['value']:.4g} vs {ev['threshold']:.4g} (n={ev.get('sample_size', 0):.0f})")
    tail = f" [dim]({'; '.join(extra)})[/]" if extra else ""
    return (
        f"{fmt_ms(alert['ts'])} {status} [{style}]{alert['severity']}[/] {escape(alert['title'])}{tail} "
        f"[dim]{alert['fingerprint']}[/]"
    )


def _lookup(settings: Any, fingerprint: str) -> dict[str, Any]:
    """The latest alert record whose fingerprint is ``fingerprint`` (or starts with it, when unambiguous)."""
    exact: dict[str, Any] | None = None
    prefixed: dict[str, dict[str, Any]] = {}
    for alert in _alerts(settings):
        if alert["fingerprint"] == fingerprint:
            exact = alert
        elif alert["fingerprint"].startswith(fingerprint):
            prefixed[alert["fingerprint"]] = alert
    if exact is not None:
        return exact
    if len(prefixed) == 1:
        return next(iter(prefixed.values()))
    if prefixed:
        raise UserError(f"fingerprint {fingerprint} is ambiguous: {', '.join(sorted(prefixed))}")
    raise UserError(f"no alert with fingerprint {fingerprint}; `reverify alerts list` shows the firing ones")


def _agents_for(settings: Any, matchers: dict[str, str]) -> list[str]:
    """The agents whose pipelines must hear a silence: the agent_name matcher's, else every known agent."""
    import fnmatch

    wanted = matchers.get("agent_name")
    if wanted is not None and not (_GLOB & set(wanted)):
        return [wanted]
    agents = known_agents(settings)
    if wanted is not None:
        agents = [a for a in agents if fnmatch.fnmatchcase(a, wanted)]
    if not agents:
        raise UserError(
            "no agent known on crl.active matches; name one with --match agent_name=NAME"
            if wanted is None
            else f"no agent known on crl.active matches agent_name={wanted}"
        )
    return agents


def acknowledge(settings: Any, fingerprint: str, by: str) -> tuple[dict[str, Any], list[tuple[str, str, dict]]]:
    """Publish the ``ack`` Commands for the alert ``fingerprint`` names (``reverify alerts ack`` and the console).

    Returns the alert and the published ``(key, type, record)`` triples; :class:`UserError` for no such alert.
    """
    alert = _lookup(settings, fingerprint)
    agent = (alert.get("labels") or {}).get("agent_name")
    # An alert without an agent label (a case pooled over agents) lives in whichever pipelines raised it;
    # the others ignore an ack for a fingerprint they do not hold.
    agents = [agent] if agent else known_agents(settings)
    args = {"fingerprint": alert["fingerprint"]}
    records = [(a, "Command", command_record("ack", args, by)) for a in agents]
    publish(settings, "control.commands", records)
    return alert, records


def silence_alerts(
    settings: Any, matchers: dict[str, str], for_ms: int, by: str, comment: str
) -> tuple[dict[str, str], list[str], list[tuple[str, str, dict]]]:
    """Publish the ``silence`` Commands muting alerts whose labels match ``matchers`` for ``for_ms``.

    Returns the command's args, the agents told and the published triples (``reverify alerts silence`` and the
    console).
    """
    agents = _agents_for(settings, matchers)
    # One id for the silence in every pipeline that hears it, so it can be told apart and expired as one.
    args = {
        "matchers": json.dumps(matchers, sort_keys=True),
        "until_ms": str(now_ms() + for_ms),
        "comment": comment,
        "silence_id": f"sil-{uuid.uuid4().hex[:12]}",
    }
    records = [(a, "Command", command_record("silence", args, by)) for a in agents]
    publish(settings, "control.commands", records)
    return args, agents, records


def register(group: click.Group) -> None:
    """Add the ``alerts`` group (tail, list, ack, silence) to the ``reverify`` group."""

    @group.group()
    def alerts() -> None:
        """Follow, list, acknowledge and silence alerts."""

    @alerts.command()
    @click.option("--severity", type=click.Choice(["info", "warning", "critical"]), default="info", show_default=True)
    @click.option("--agent", default=None, help="Only alerts whose agent_name label is this.")
    @click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
    @click.option("--from-beginning", is_flag=True, help="Replay the alerts kept on the topic first.")
    def tail(severity: str, agent: str | None, as_json: bool, from_beginning: bool) -> None:
        """Follow alerts as they are published (Ctrl-C stops)."""
        from reverify.streams.client import AlertSubscriber

        settings = settings_or_fail()
        # A process started in the background by a script inherits SIGINT ignored, and Python then leaves it so:
        # Ctrl-C and kill -INT must still stop a tail (a test run started that way killed it after 10 s).
        signal.signal(signal.SIGINT, signal.default_int_handler)
        subscriber = AlertSubscriber(
            settings=settings, min_severity=severity, agent_name=agent, from_beginning=from_beginning
        )
        try:
            while True:
                alert = subscriber.poll(1.0)
                if alert is None:
                    continue
                if as_json:
                    sys.stdout.write(json.dumps(alert, default=str) + "\n")
                    sys.stdout.flush()  # a program reading the pipe sees each alert at once
                else:
                    console.print(_line(alert), highlight=False)
        except KeyboardInterrupt:
            pass  # Ctrl-C is how one stops following: no traceback, exit 0
        except BrokenPipeError:
            pass  # the reader (head, a closed pipe) went away
        finally:
            subscriber.close()

    @alerts.command("list")
    @click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
    def list_cmd(as_json: bool) -> None:
        """What is firing now (the latest state of every fingerprint on the alerts topic)."""

        firing = fold_alerts(_alerts(settings_or_fail()))
        if as_json:
            print_json(firing)
            return
        if not firing:
            console.print("[green]✓[/] nothing is firing")
            return
        print_table(
            f"{len(firing)} alerts firing",
            ["severity", "source", "title", "agent", "since", "acked by", "fingerprint"],
            [
                [
                    a["severity"] + (" (flapping)" if a.get("flapping") else ""),
                    a["source"],
                    a["title"],
                    (a.get("labels") or {}).get("agent_name", ""),
                    fmt_ms(a["starts_at"]),
                    a.get("acknowledged_by") or "",
                    a["fingerprint"],
                ]
                for a in firing
            ],
        )

    @alerts.command()
    @click.argument("fingerprint")
    @click.option("--by", required=True, help="Who takes it (shown as acknowledged_by).")
    @click.option("--json", "as_json", is_flag=True, help="Print the published Commands as JSON.")
    def ack(fingerprint: str, by: str, as_json: bool) -> None:
        """Acknowledge a firing alert: its repeats stop until it resolves."""

        alert, records = acknowledge(settings_or_fail(), fingerprint, by)
        if alert["status"] != "firing":
            console.print(f"[yellow]![/] {alert['fingerprint']} is {alert['status']}; acknowledging anyway")
        if as_json:
            print_json([r for _k, _t, r in records])
        else:
            console.print(f"[green]✓[/] acknowledged {alert['fingerprint']} ({alert['title']}) as {by}")

    @alerts.command()
    @click.option("--match", "matches", multiple=True, required=True, help="LABEL=GLOB; repeat to narrow.")
    @click.option("--for", "duration", required=True, help="How long: 30m, 2h, 1d.")
    @click.option("--by", required=True, help="Who silences.")
    @click.option("--comment", required=True, help="Why.")
    @click.option("--json", "as_json", is_flag=True, help="Print the published Commands as JSON.")
    def silence(matches: tuple[str, ...], duration: str, by: str, comment: str, as_json: bool) -> None:
        """Mute alerts whose labels match every --match, for a while."""
        from reverify.processors.assurance import parse_duration

        try:
            matchers = parse_matchers(matches)
        except ValueError as exc:
            raise UserError(str(exc)) from None
        try:
            for_ms = parse_duration(duration)
        except ValueError as exc:
            raise UserError(f"--for {duration!r} is not allowed; use {exc}") from None
        if for_ms <= 0:
            raise UserError(f"--for {duration!r} is not allowed; use a duration > 0 such as 30m, 2h")
        args, agents, records = silence_alerts(settings_or_fail(), matchers, for_ms, by, comment)
        until = int(args["until_ms"])
        if as_json:
            print_json([r for _k, _t, r in records])
        else:
            what = " ".join(f"{k}={v}" for k, v in matchers.items())
            console.print(
                f"[green]✓[/] silenced {what} until {fmt_ms(until)} ({args['silence_id']}, "
                f"{len(agents)} agent{'s' if len(agents) != 1 else ''})"
            )
