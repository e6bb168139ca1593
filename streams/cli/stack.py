"""``reverify up``, ``worker``, ``sink``, ``topics`` and ``simulate``: run the stack, or one part of it, and feed it."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import threading
import time
from collections.abc import Callable

import click
from reverify.streams.cli.common import (
    UserError,
    admin,
    console,
    load_settings,
    print_json,
    print_table,
    require_broker,
    settings_or_fail,
    sink_config,
)
from reverify.streams.settings import Settings


@click.command()
@click.option("--demo", is_flag=True, help="Also run a simulated fleet whose variants degrade and inputs drift.")
@click.option("--demo-rate", default=200.0, show_default=True, help="Demo outcomes per second.")
@click.option("--by", default=None, help="The name console actions are recorded under (default: web_by, else login).")
def up(demo: bool, demo_rate: float, by: str | None) -> None:
    """Start the embedded stack: broker (if none listens), topics, workers, ClickHouse history, web console."""
    from reverify.streams.cli.notify import notify_config
    from reverify.streams.cli.webconsole import check_web_access, console_url

    settings = check_web_access(load_settings(check_processors=True), by)
    notifications = notify_config(settings)
    if demo and not settings.sections.get("assurance"):
        # the demo fleet's own claims, so the assurance cases are seen at work too (a reverify.toml replaces them)
        settings = dataclasses.replace(settings, sections={**settings.sections, "assurance": DEMO_CASES})
    from reverify.streams.embedded import EmbeddedBroker, split_bootstrap
    from reverify.streams.topics import ensure_topics

    host, port = split_bootstrap(settings.kafka)
    broker = EmbeddedBroker(host=host, port=port, log_path=settings.data_path("broker.log"))
    stop = threading.Event()
    threads: list[threading.Thread] = []
    up_file = settings.data_path("up.json")
    try:
        with console.status("starting the broker ..."):
            started = broker.start()
        where = f"embedded Tansu broker (pid {broker.process.pid})" if started and broker.process else "existing broker"
        console.print(f"[green]✓[/] Kafka at {broker.bootstrap}: {where}")
        created = ensure_topics(admin(settings), settings.topic_prefix, settings.partitions)
        console.print(f"[green]✓[/] topics ready ({len(created)} created, {settings.partitions} partitions each)")
        threads += _start_history(settings, stop, fresh_broker=started)
        history = bool(threads)
        if notifications.enabled:
            from reverify.streams.notify import start_notify

            threads.append(start_notify(settings, notifications, stop))
            console.print(
                f"[green]✓[/] notifying {', '.join(notifications.receivers)} (reverify notify check shows the routes)"
            )
        if demo:
            threads.append(_start_demo(settings, stop, demo_rate))
            console.print(f"[green]✓[/] demo fleet publishing ~{demo_rate:.0f} outcomes/s (degrades and drifts soon)")
        up_file.write_text(json.dumps({"pid": os.getpid(), "web_port": settings.web_port}))
        console.print(
            f"[green]✓[/] worker starting; metrics on :{settings.metrics_port}/metrics, health on "
            f":{settings.web_port}/healthz. Ctrl-C stops everything reverify started."
        )
        console.print(
            "  watch it: [bold]reverify alerts tail[/], [bold]reverify query leaderboard[/], "
            "[bold]reverify dashboard[/]"
        )
        if history and settings.web_port:
            console.print(f"  console: [bold]{console_url(settings)}[/]")
        _run_worker(settings, serve_queries=history)
    except RuntimeError as exc:
        raise UserError(str(exc)) from None
    finally:
        stop.set()
        for thread in threads:
            thread.join(10)
        up_file.unlink(missing_ok=True)
        broker.stop()
        console.print("stopped.")


def _port_taken(settings: Settings, exc: OSError) -> UserError:
    return UserError(f"metrics_port = {settings.metrics_port} is taken ({exc}); set REVERIFY_METRICS_PORT")


def _start_history(settings: Settings, stop: threading.Event, fresh_broker: bool) -> list[threading.Thread]:
    """The ClickHouse sink in this process (chdb allows one owner of its data directory).

    A broker we just started is empty (it keeps nothing on disk): the workers' state is rebuilt
    from the history first, so Q-values, baselines and active variants survive a restart.
    """
    from reverify.sinks.runner import prepare_history, start_sink
    from reverify.streams.restore import history_exists, restore

    config = sink_config(settings)
    prepare_history(config)
    if fresh_broker and history_exists(settings):
        with console.status("restoring state from the ClickHouse history ...") as status:
            agents, records = restore(settings, progress=lambda n: status.update(f"restoring: {n:,} events replayed"))
        console.print(f"[green]✓[/] state restored from history: {agents} agents, {records} control records")
    thread = start_sink(config, stop)
    console.print(f"[green]✓[/] ClickHouse history at {settings.clickhouse}")
    return [thread]


DEMO_CASES = [
    {
        "name": "demo_success_rate",
        "claim": "Every demo agent succeeds at least 85% of the time",
        "evidence": "success_rate",
        "scope": {"agent_name": "*", "task_type": "*"},
        "window": "100 events",
        "threshold_min": 0.85,
        "resolve_min": 0.88,
        "for": "5s",
        "severity": "warning",
        "min_evidence": 30,
    },
    {
        "name": "demo_intent_drift",
        "claim": "The intent score keeps its distribution (PSI <= 0.2)",
        "evidence": "psi:intent_score",
        "scope": {"agent_name": "*"},
        "window": "5m",
        "threshold_max": 0.2,
        "severity": "warning",
        "min_evidence": 1,
    },
]


def _start_demo(settings: Settings, stop: threading.Event, rate: float) -> threading.Thread:
    from reverify.streams.client import AgentEvents, VariantRouter
    from reverify.streams.simulate import Fleet, FleetSpec, run

    def demo() -> None:
        # At 200 outcomes/s: v0 degrades after ~6 s, intent_score drifts after ~28 s (once baselines are learned)
        # Variants 3 points apart: a rollback lands on one within the self-healing seed's tolerance (10 %) of the
        # degraded variant's baseline, so the demo's incidents end on a verified recovery with their MTTR.
        spec = FleetSpec(agents=4, tasks=2, variants=3, seed=7, degrade_after=150, drift_after=700, variant_gap=0.03)
        fleet = Fleet(spec)
        with AgentEvents(settings=settings) as events, VariantRouter(settings=settings) as router:
            run(events, fleet, router.variant_for, steps=None, rate=rate, stop=stop)

    thread = threading.Thread(target=demo, name="reverify-demo", daemon=True)
    thread.start()
    return thread


def _run_worker(settings: Settings, serve_queries: bool = False) -> None:
    import faust
    from reverify.streams import metrics
    from reverify.streams.app import create_app

    try:
        metrics.serve(settings.metrics_port)
    except OSError as exc:
        raise _port_taken(settings, exc) from None
    app = create_app(settings, serve_queries=serve_queries)
    worker = faust.Worker(app, loglevel="WARNING", quiet=True, redirect_stdouts=False, override_logging=False)
    with contextlib.suppress(SystemExit):  # Faust exits the process after a clean stop; we still clean up
        worker.execute_from_commandline()
    reason = app.crash_reason or worker.crash_reason
    if reason is not None:  # a supervisor (systemd, Docker, Kubernetes) restarts only a process that failed
        raise click.ClickException(f"the worker stopped on an error: {type(reason).__name__}: {reason}")


@click.command()
def worker() -> None:
    """Run one stream worker against REVERIFY_KAFKA (run as many as there are partitions to share)."""
    settings = load_settings(check_processors=True)
    require_broker(settings)
    from reverify.streams.topics import ensure_topics

    ensure_topics(admin(settings), settings.topic_prefix, settings.partitions)
    _run_worker(settings)


@click.command()
@click.option("--batch-size", type=click.IntRange(1), default=None, help="Messages per insert (default: [sink]).")
@click.option("--max-delay", type=click.FloatRange(0), default=None, help="Seconds a message waits for its batch.")
def sink(batch_size: int | None, max_delay: float | None) -> None:
    """Run the ClickHouse sink: every topic into the history, each event once (until SIGTERM / Ctrl-C)."""
    from prometheus_client import start_http_server
    from reverify.streams.sink import run_sink

    settings = load_settings()
    config = sink_config(settings)
    if settings.metrics_port:  # the sink's lag and rows on /metrics, like a worker's (not the worker's series)
        try:
            start_http_server(settings.metrics_port)
        except OSError as exc:
            raise _port_taken(settings, exc) from None
    run_sink(config, batch_size=batch_size, max_delay=max_delay)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def topics(as_json: bool) -> None:
    """List reverify's topics with partitions and message counts."""
    settings = settings_or_fail()
    from confluent_kafka import Consumer, TopicPartition
    from reverify.schemas.topics import TOPICS

    md = admin(settings).list_topics(timeout=10)
    consumer = Consumer(settings.kafka_config(**{"group.id": "reverify-topics", "enable.auto.commit": False}))
    rows = []
    try:
        for name, topic in TOPICS.items():
            physical = settings.topic(name)
            meta = md.topics.get(physical)
            if meta is None or meta.error is not None:
                rows.append({"topic": physical, "partitions": 0, "messages": None, "value": topic.value})
                continue
            count = 0
            for p in meta.partitions:
                low, high = consumer.get_watermark_offsets(TopicPartition(physical, p), timeout=5)
                count += max(0, high - low)
            rows.append(
                {
                    "topic": physical,
                    "partitions": len(meta.partitions),
                    "messages": count,
                    "value": topic.value,
                    "compacted": topic.compacted,
                }
            )
    finally:
        consumer.close()
    if as_json:
        print_json(rows)
    else:
        print_table(
            "reverify topics",
            ["topic", "partitions", "messages", "value schema"],
            [
                [r["topic"], r["partitions"], "missing" if r["messages"] is None else r["messages"], r["value"]]
                for r in rows
            ],
        )


@click.command()
@click.option("--agents", default=5, show_default=True, type=click.IntRange(1))
@click.option("--tasks", default=2, show_default=True, type=click.IntRange(1))
@click.option("--variants", default=3, show_default=True, type=click.IntRange(1))
@click.option("--steps", default=200, show_default=True, type=click.IntRange(1), help="Outcomes per agent/task.")
@click.option("--rate", default=0.0, show_default=True, help="Outcomes per second (0 = as fast as possible).")
@click.option("--seed", default=0, show_default=True)
@click.option("--degrade-after", type=int, default=None, help="Step at which v0 falls to --degrade-to.")
@click.option("--degrade-to", default=0.5, show_default=True, type=click.FloatRange(0, 1))
@click.option("--drift-after", type=int, default=None, help="Step at which features.intent_score shifts.")
@click.option("--follow/--no-follow", default=True, show_default=True, help="Use the active variant from crl.active.")
@click.option("--json", "as_json", is_flag=True)
def simulate(
    agents: int,
    tasks: int,
    variants: int,
    steps: int,
    rate: float,
    seed: int,
    degrade_after: int | None,
    degrade_to: float,
    drift_after: int | None,
    follow: bool,
    as_json: bool,
) -> None:
    """Publish a synthetic fleet's outcomes and errors through the SDK."""
    settings = settings_or_fail()
    from reverify.streams.client import AgentEvents, VariantRouter
    from reverify.streams.simulate import Fleet, FleetSpec, run
    from rich.progress import Progress

    spec = FleetSpec(
        agents=agents,
        tasks=tasks,
        variants=variants,
        seed=seed,
        degrade_after=degrade_after,
        degrade_to=degrade_to,
        drift_after=drift_after,
    )
    fleet = Fleet(spec)
    router = VariantRouter(settings=settings) if follow else None
    active: Callable[[str, str], str] = router.variant_for if router else (lambda a, t: "v0")
    started = time.monotonic()
    with AgentEvents(settings=settings) as events:
        if as_json:
            sent = run(events, fleet, active, steps=steps, rate=rate)
        else:
            with Progress(console=console, transient=True) as progress:
                bar = progress.add_task("publishing", total=steps)
                sent = run(
                    events,
                    fleet,
                    active,
                    steps=steps,
                    rate=rate,
                    progress=lambda step, _n: progress.update(bar, completed=step),
                )
        left = events.flush(30)
        dropped = events.dropped
    if router:
        router.close()
    summary = {
        "outcomes": sent,
        "undelivered": left,
        "dropped": dropped,
        "seconds": round(time.monotonic() - started, 2),
    }
    if as_json:
        print_json(summary)
    else:
        console.print(
            f"[green]✓[/] published {sent} outcomes in {summary['seconds']}s ({left} undelivered, {dropped} dropped)"
        )


def register(group: click.Group) -> None:
    """Add ``up``, ``worker``, ``sink``, ``topics`` and ``simulate`` to the ``reverify`` command group."""
    for command in (up, worker, sink, topics, simulate):
        group.add_command(command)
