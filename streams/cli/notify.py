"""``reverify notify``: deliver alerts to receivers; ``notify check`` the configuration; ``notify test`` a receiver.

The receivers and routes are ``[[receivers]]``, ``[[routes]]``, ``[smtp]`` and
``[notify]`` of reverify.toml (docs/notifications.md). A mistake there is one
line per mistake naming the receiver or route and the field, exit status 2.
"""

from __future__ import annotations

import signal
import threading
import time
from typing import Any

import click
from reverify.streams.cli.common import UserError, console, err, load_settings, print_json, print_table
from reverify.streams.settings import Settings


def notify_config(settings: Settings) -> Any:
    """The validated notification settings, or every mistake on stderr and exit 2."""
    from reverify.processors.notify import NotifyConfigError, parse_notify_config

    try:
        return parse_notify_config(settings.sections)
    except NotifyConfigError as exc:
        if len(exc.errors) == 1:
            raise UserError(exc.errors[0]) from None
        for line in exc.errors:
            err.print(f"[bold red]error:[/] {line}", highlight=False, soft_wrap=True)
        raise SystemExit(2) from None


def duration_text(ms: int) -> str:
    """Milliseconds as a person writes them in reverify.toml.

    >>> duration_text(30_000), duration_text(300_000), duration_text(14_400_000), duration_text(1_500)
    ('30s', '5m', '4h', '1500ms')
    """
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if ms and ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


def _route_rows(routes: Any, depth: int = 0) -> list[list[Any]]:
    rows = []
    for r in routes:
        match = [f"{k}={v}" for k, v in r.match.items()] + [f"{k}=~{v}" for k, v in r.match_re.items()]
        rows.append(
            [
                "  " * depth + r.path,
                ", ".join(match) or "everything",
                r.receiver,
                ", ".join(r.group_by),
                " / ".join(duration_text(ms) for ms in (r.group_wait_ms, r.group_interval_ms, r.repeat_interval_ms)),
                "yes" if r.continue_matching else "",
            ]
        )
        rows += _route_rows(r.routes, depth + 1)
    return rows


def register(group: click.Group) -> None:
    """Add the ``notify`` group (run, check, test) to the ``reverify`` group."""

    @group.group(invoke_without_command=True)
    @click.pass_context
    def notify(ctx: click.Context) -> None:
        """Deliver alerts to the receivers of reverify.toml (its own consumer group; Ctrl-C stops)."""
        if ctx.invoked_subcommand is not None:
            return
        from reverify.streams.cli.common import require_broker
        from reverify.streams.notify import NotifyService
        from reverify.streams.topics import ensure_topics

        settings = load_settings()
        config = notify_config(settings)
        if not config.enabled:
            raise UserError("no [[receivers]] in the configuration; declare one (docs/notifications.md)")
        require_broker(settings)
        from reverify.streams.cli.common import admin

        ensure_topics(admin(settings), settings.topic_prefix, settings.partitions)
        if settings.metrics_port:  # the notifications' counters on /metrics, as the sink serves its own
            from prometheus_client import start_http_server

            try:
                start_http_server(settings.metrics_port)
            except OSError as exc:
                raise UserError(
                    f"metrics_port = {settings.metrics_port} is taken ({exc}); set REVERIFY_METRICS_PORT"
                ) from None
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        names = ", ".join(config.receivers)
        console.print(f"[green]✓[/] delivering alerts to {names} ({len(config.routes)} routes). Ctrl-C stops.")
        try:
            NotifyService(settings, config, stop).run()
        except KeyboardInterrupt:
            stop.set()

    @notify.command("check")
    @click.option("--json", "as_json", is_flag=True, help="The receivers and routes as JSON.")
    def check(as_json: bool) -> None:
        """Validate [[receivers]], [[routes]], [smtp] and [notify] (REVERIFY_CONFIG, else ./reverify.toml)."""
        import dataclasses

        settings = load_settings()
        config = notify_config(settings)
        if as_json:
            print_json(
                {
                    "receivers": [
                        {**dataclasses.asdict(r), "channels": list(r.channels)} for r in config.receivers.values()
                    ],
                    "routes": [dataclasses.asdict(r) for r in config.routes],
                }
            )
            return
        if not config.enabled:
            console.print("[yellow]![/] no [[receivers]] declared: nothing will be notified")
            return
        print_table(
            f"{len(config.receivers)} receivers",
            ["receiver", "destinations", "signed", "resolves"],
            [
                [r.name, ", ".join(r.channels), "yes" if r.hmac_secret else "", "yes" if r.send_resolved else "no"]
                for r in config.receivers.values()
            ],
        )
        print_table(
            "routes (first match wins unless continue)",
            ["route", "match", "receiver", "group by", "wait / interval / repeat", "continue"],
            _route_rows(config.routes),
        )

    @notify.command("test")
    @click.argument("receiver")
    @click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
    def test(receiver: str, as_json: bool) -> None:
        """Send a test notification to RECEIVER and show what each of its destinations answered."""
        import dataclasses

        from reverify.processors.notify.payloads import sample_notification
        from reverify.streams.cli.common import CommandFailed
        from reverify.streams.delivery import Deliverer

        config = notify_config(load_settings())
        if receiver not in config.receivers:
            known = ", ".join(sorted(config.receivers)) or "none declared"
            raise UserError(f"no receiver named {receiver!r}; known: {known}")
        once = dataclasses.replace(config, settings=dataclasses.replace(config.settings, attempts=1))
        outcomes = Deliverer(once).deliver(sample_notification(receiver, int(time.time() * 1000)))
        rows = [
            {
                "receiver": o.receiver,
                "channel": o.channel,
                "ok": o.ok,
                "status": o.answer.status if o.answer else None,
                "answer": o.answer.body if o.answer else "",
                "error": o.reason,
                "seconds": round(o.seconds, 3),
            }
            for o in outcomes
        ]
        if as_json:
            print_json(rows)
        else:
            print_table(
                f"test notification to {receiver}",
                ["destination", "ok", "status", "answer", "error", "seconds"],
                [
                    [r["channel"], "✓" if r["ok"] else "✗", r["status"], r["answer"], r["error"], r["seconds"]]
                    for r in rows
                ],
            )
        if not all(o.ok for o in outcomes):
            failed = ", ".join(o.channel for o in outcomes if not o.ok)
            raise CommandFailed(f"{receiver}: {failed} did not accept the test notification")
