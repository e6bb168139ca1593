"""Operator commands that act on the stream: ``approve`` / ``reject``, ``baseline``, ``assurance check``, ``status``.

Every command that acts publishes one record (an ``Approval`` or a ``Command``)
keyed by ``agent_name`` to an input topic of the workers, so it reaches the
worker that owns that agent, in order with the agent's own events. Lookups
(which proposal, which values) read topics from the beginning with a plain
consumer on assigned partitions up to their high watermarks: no consumer group
joins, nothing is committed, and the command ends once it has read everything
that existed when it started. ``baseline pin`` asks the ClickHouse history first
(parameterised read-only SQL, through a running ``reverify up`` when there is one)
and reads the stream only when the history has no values of the series in the period.

>>> parse_time("2025-01-02T03:04:05Z", now_ms=0)
1735787045000
>>> parse_time("-2h", now_ms=10_000_000)
2800000
>>> parse_time("now", now_ms=42)
42
>>> parse_time("yesterday-ish", now_ms=0)
Traceback (most recent call last):
...
ValueError: 'yesterday-ish' is not a time; use ISO-8601 (2025-01-02T03:04:05Z), 'now' or a relative time like -2h, -30m
"""

from __future__ import annotations

import getpass
import json
import os
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import click
from reverify.schemas.fields import OUTCOME_NUMBERS, duration_ms
from reverify.streams.cli.common import (
    UserError,
    config_file,
    console,
    fmt_ms,
    load_settings,
    print_json,
    print_mistakes,
    print_table,
    settings_or_fail,
    toml_tables,
)
from reverify.streams.settings import Settings
from rich.markup import escape

MIN_BASELINE_VALUES = 100

# The values of a series in the history, by event time. Everything the user typed is a query parameter: the
# outcome column is chosen by multiIf on {feature}, never by formatting it into the text. FINAL collapses rows
# the sink stored twice, so each event counts once, as it does on the stream.
HISTORY_OUTCOME_SQL = """
SELECT multiIf({feature:String} = 'reward', reward, {feature:String} = 'latency_ms', latency_ms,
               {feature:String} = 'cost_usd', cost_usd, features[{feature:String}]) AS value
FROM agent_outcomes FINAL
WHERE agent_name = {agent:String}
  AND ts >= fromUnixTimestamp64Milli({start_ms:Int64}, 'UTC') AND ts <= fromUnixTimestamp64Milli({end_ms:Int64}, 'UTC')
  AND ({variant:String} = '' OR variant_id = {variant:String})
  AND ({feature:String} IN ('reward', 'latency_ms', 'cost_usd') OR mapContains(features, {feature:String}))
ORDER BY ts, event_id
"""
HISTORY_METRIC_SQL = """
SELECT value
FROM agent_metrics FINAL
WHERE agent_name = {agent:String} AND name = {feature:String}
  AND ts >= fromUnixTimestamp64Milli({start_ms:Int64}, 'UTC') AND ts <= fromUnixTimestamp64Milli({end_ms:Int64}, 'UTC')
  AND ({variant:String} = '' OR variant_id = {variant:String})
ORDER BY ts, event_id
"""
SOURCE_TEXT = {"clickhouse": "the ClickHouse history", "stream": "the live stream"}


# ---------------------------------------------------------------------------------------------- helpers


def now_ms() -> int:
    return int(time.time() * 1000)


def parse_time(text: str, now_ms: int | None = None) -> int:
    """Epoch milliseconds of an ISO-8601 time (naive = UTC), ``now``, or a relative time such as ``-2h``."""
    now = int(time.time() * 1000) if now_ms is None else now_ms
    value = text.strip()
    if value.lower() == "now":
        return now
    ago = duration_ms(value[1:]) if value.startswith("-") else None
    if ago is not None:
        return now - ago
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"{text!r} is not a time; use ISO-8601 (2025-01-02T03:04:05Z), 'now' or a relative time like -2h, -30m"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return int(parsed.timestamp() * 1000)


def default_operator() -> str:
    """Who is acting, when ``--by`` is not given: the login name."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return os.environ.get("USER", "operator")


def _consumer(settings: Settings) -> Any:
    from confluent_kafka import Consumer

    # librdkafka wants a group.id even for assign(); this one never joins (no subscribe) and never commits.
    return Consumer(
        settings.kafka_config(
            **{
                "group.id": f"reverify-cli-{uuid.uuid4().hex[:12]}",
                "enable.auto.commit": False,
                # EOF events say a partition is read to its end even when compaction removed its last offsets.
                "enable.partition.eof": True,
            }
        )
    )


def read_topic(
    settings: Settings,
    name: str,
    *,
    start_ms: int | None = None,
    end_ms: int | None = None,
    timeout: float = 30.0,
    quiet: float = 0.3,
) -> Iterator[tuple[Any, str, dict[str, Any]]]:
    """Yield ``(message, record_type, record)`` of logical topic ``name`` as it is now, in partition order.

    Every partition is read from its low watermark, or with ``start_ms`` from the offset ``offsets_for_times``
    gives. Only records whose log time lies within ``[start_ms, end_ms]`` are yielded. Reading ends once every
    partition has been read up to the high watermark taken at the start and then ``quiet`` seconds pass
    without a record: a broker may report a watermark that counts record batches rather than records (the
    embedded Tansu does), so the watermark alone cannot say where a partition ends. Undecodable values are
    skipped: they are the dead-letter topic's business, not an operator's.
    """
    from confluent_kafka import OFFSET_END, KafkaError, TopicPartition
    from reverify.schemas import DecodeError, decode

    topic = settings.topic(name)
    consumer = _consumer(settings)
    try:
        meta = consumer.list_topics(topic, timeout=10).topics.get(topic)
        if meta is None or meta.error is not None or not meta.partitions:
            raise UserError(f"topic {topic} does not exist; start a worker (`reverify worker`) to create the topics")
        partitions = sorted(meta.partitions)
        starts: dict[int, int] = {}
        ends: dict[int, int] = {}
        for p in partitions:
            starts[p], ends[p] = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
        if start_ms is not None:
            found = consumer.offsets_for_times([TopicPartition(topic, p, start_ms) for p in partitions], timeout=10)
            for tp in found:
                # -1 (OFFSET_END) means no message at or after the time: nothing to read there.
                starts[tp.partition] = ends[tp.partition] if tp.offset in (-1, OFFSET_END) else tp.offset
        todo = {p for p in partitions if starts[p] < ends[p]}
        if not todo:
            return
        consumer.assign([TopicPartition(topic, p, starts[p]) for p in sorted(todo)])
        deadline = time.monotonic() + timeout
        while True:
            if time.monotonic() > deadline:
                raise UserError(f"reading {topic} took longer than {timeout:.0f}s; is the broker overloaded?")
            batch = consumer.consume(1000, quiet if not todo else 0.5)
            if not batch and not todo:
                return
            for msg in batch:
                if msg.error() is not None:
                    if msg.error().code() == KafkaError._PARTITION_EOF:
                        todo.discard(msg.partition())
                    continue
                if msg.offset() >= ends[msg.partition()] - 1:
                    todo.discard(msg.partition())
                logged = msg.timestamp()[1]
                if (start_ms is not None and logged < start_ms) or (end_ms is not None and logged > end_ms):
                    continue
                try:
                    record_type, record = decode(msg.value())
                except DecodeError:
                    continue
                yield msg, record_type, record
    finally:
        consumer.close()


def publish(settings: Settings, name: str, records: list[tuple[str, str, dict[str, Any]]]) -> None:
    """Produce ``(key, record_type, record)`` to logical topic ``name`` and wait until the broker has them all.

    ``murmur2_random`` is the Java client's partitioner, which the workers (aiokafka) use too: a record keyed
    by ``agent_name`` lands on the partition of that agent's events.
    """
    from confluent_kafka import Producer
    from reverify.schemas import encode

    producer = Producer(
        settings.kafka_config(
            **{"enable.idempotence": True, "acks": "all", "partitioner": "murmur2_random", "message.timeout.ms": 20000}
        )
    )
    failures: list[str] = []

    def delivered(error: Any, _msg: Any) -> None:
        if error is not None:
            failures.append(str(error))

    for key, record_type, record in records:
        producer.produce(settings.topic(name), encode(record_type, record), key.encode(), on_delivery=delivered)
    left = producer.flush(30)
    if left or failures:
        raise UserError(f"could not publish to {settings.topic(name)}: {failures[0] if failures else 'timed out'}")


def command_record(command: str, args: dict[str, str], by: str) -> dict[str, Any]:
    """A ``Command`` record (``schemas/Command.avsc``): args are strings, JSON where they carry structure."""
    return {"event_id": str(uuid.uuid4()), "ts": now_ms(), "command": command, "args": args, "by": by}


def known_agents(settings: Settings) -> list[str]:
    """Agents the learning loop knows, from the compacted ``crl.active`` topic."""
    agents = {r["agent_name"] for _m, t, r in read_topic(settings, "crl.active") if t == "ActiveVariant"}
    return sorted(agents)


# ---------------------------------------------------------------------------------------------- approve / reject


def find_proposal(settings: Settings, proposal_id: str) -> dict[str, Any]:
    """The Proposal record with ``proposal_id`` on ``crl.proposals`` (the last one, if repeated)."""
    found = None
    for _msg, record_type, record in read_topic(settings, "crl.proposals"):
        if record_type == "Proposal" and record["proposal_id"] == proposal_id:
            found = record
    if found is None:
        raise UserError(f"no proposal {proposal_id}; `reverify query proposals` lists them (or read crl.proposals)")
    return found


def decide(settings: Settings, proposal_id: str, approved: bool, by: str, comment: str) -> tuple[dict, dict]:
    """Publish the ``Approval`` answering ``proposal_id`` (``reverify approve`` / ``reject`` and the console).

    Returns the proposal and the published record; :class:`UserError` when there is no such proposal.
    """
    proposal = find_proposal(settings, proposal_id)
    record = {
        "event_id": str(uuid.uuid4()),
        "ts": now_ms(),
        "proposal_id": proposal_id,
        "approved": approved,
        "by": by,
        "comment": comment,
        # The worker finds the learning loop by agent and task; the key puts it on that agent's partition.
        "agent_name": proposal["agent_name"],
        "task_type": proposal["task_type"],
        "variant_id": proposal["variant_id"],
    }
    publish(settings, "control.approvals", [(proposal["agent_name"], "Approval", record)])
    return proposal, record


def _decide(proposal_id: str, approved: bool, by: str | None, comment: str, as_json: bool) -> None:
    proposal, record = decide(settings_or_fail(), proposal_id, approved, by or default_operator(), comment)
    if as_json:
        print_json(record)
        return
    verb = "[green]approved[/]" if approved else "[yellow]rejected[/]"
    console.print(
        f"{verb} {proposal_id}: {proposal['variant_id']} for {proposal['agent_name']}/{proposal['task_type']} "
        f"(Q {proposal['confidence']:.3f}) by {record['by']}"
    )
    if approved:
        console.print("  the worker makes it the active variant; follow it on crl.active (VariantRouter)")


# ---------------------------------------------------------------------------------------------- baseline


def baseline_values(
    settings: Settings, agent: str, feature: str, start_ms: int, end_ms: int, variant: str | None
) -> list[float]:
    """Values of series (agent, feature[, variant]) logged between the two times, from the live stream.

    An outcome field (reward, latency_ms, cost_usd) or a key of ``features`` comes from ``agent.outcomes``;
    any other name is an ``agent.metrics`` name. The times are the log times of the records.
    """
    values: list[float] = []
    for _msg, record_type, r in read_topic(settings, "agent.outcomes", start_ms=start_ms, end_ms=end_ms):
        if record_type != "AgentOutcome" or r["agent_name"] != agent or (variant and r["variant_id"] != variant):
            continue
        if feature in OUTCOME_NUMBERS:
            values.append(float(r[feature]))
        elif feature in (r.get("features") or {}):
            values.append(float(r["features"][feature]))
    if values:
        return values
    for _msg, record_type, r in read_topic(settings, "agent.metrics", start_ms=start_ms, end_ms=end_ms):
        if record_type != "AgentMetric" or r["agent_name"] != agent or r["name"] != feature:
            continue
        if variant and r.get("variant_id") != variant:
            continue
        values.append(float(r["value"]))
    return values


def history_values(
    settings: Settings, agent: str, feature: str, start_ms: int, end_ms: int, variant: str | None
) -> list[float] | None:
    """Values of series (agent, feature[, variant]) with event times between the two, from the ClickHouse history.

    The same series as :func:`baseline_values`: an outcome field or ``features`` key, else a metric name. Asks a
    running ``reverify up`` when there is one, else opens the database. ``None`` when there is no history to
    ask: an embedded database that was never created (opening it would create an empty one in the user's
    data dir) or one that cannot answer -- a baseline can still come from the stream then.
    """
    from reverify.sinks.clickhouse import ClickHouseURLError, parse_url
    from reverify.streams.cli.history import HistoryError, ask_history, running_server

    try:
        target = parse_url(settings.clickhouse)
    except ClickHouseURLError:
        return None
    if target.embedded and not running_server(settings) and not Path(target.path).is_dir():
        return None
    params = {"agent": agent, "feature": feature, "variant": variant or "", "start_ms": start_ms, "end_ms": end_ms}
    values: list[float] = []
    try:
        for sql in (HISTORY_OUTCOME_SQL, HISTORY_METRIC_SQL):
            rows = ask_history(settings, {"sql": sql, "params": params})["rows"]
            # NaN comes back as null (JSON has no NaN); the stream's drift monitor skips non-finite values too.
            values = [float(row[0]) for row in rows if row[0] is not None]
            if values:
                break
    except HistoryError:
        return None
    return values


def pin_values(
    settings: Settings, agent: str, feature: str, start_ms: int, end_ms: int, variant: str | None
) -> tuple[list[float], str]:
    """``(values, source)``: from the history (``"clickhouse"``) when it holds the series in the period, else
    from the live stream (``"stream"``), whose retention may be shorter but which is all there is without it."""
    values = history_values(settings, agent, feature, start_ms, end_ms, variant)
    if values:
        return values, "clickhouse"
    return baseline_values(settings, agent, feature, start_ms, end_ms, variant), "stream"


# ---------------------------------------------------------------------------------------------- assurance check


def check_assurance_file(path: Path) -> tuple[list[Any], list[str]]:
    """``(cases, mistakes)`` of the ``[[assurance]]`` tables in ``path``; a file that cannot be read is a mistake."""
    from reverify.processors.assurance import AssuranceConfigError, parse_cases

    raw, mistakes = toml_tables(path, "assurance")
    if mistakes:
        return [], mistakes
    try:
        # Exactly what a worker does with the file (processors.pipeline.PipelineConfig.from_settings).
        return parse_cases(raw), []
    except AssuranceConfigError as exc:
        return [], list(exc.errors)


def _threshold_text(case: Any) -> str:
    parts = []
    if case.threshold_min is not None:
        parts.append(f">= {case.threshold_min:g}" + (f" (resolve >= {case.resolve_min:g})" if case.resolve_min else ""))
    if case.threshold_max is not None:
        parts.append(f"<= {case.threshold_max:g}" + (f" (resolve <= {case.resolve_max:g})" if case.resolve_max else ""))
    return ", ".join(parts)


# ---------------------------------------------------------------------------------------------- status


def worker_readiness(settings: Settings, timeout: float = 2.0) -> dict[str, Any]:
    """What the worker's ``/readyz`` on this machine says (``reachable`` False when nothing answers)."""
    if not settings.web_port:
        return {"reachable": False, "ready": False, "detail": "web_port = 0 (health endpoint off)"}
    url = f"http://127.0.0.1:{settings.web_port}/readyz"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            body = json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:  # 503 = alive but not ready; the body says why
        try:
            body = json.loads(exc.read() or b"{}")
        except ValueError:
            body = {}
        return {"reachable": True, "ready": False, "url": url, **body}
    except (OSError, ValueError) as exc:
        return {"reachable": False, "ready": False, "url": url, "detail": str(exc)}
    return {"reachable": True, "url": url, **body, "ready": bool(body.get("ready"))}


def collect_status(settings: Settings) -> dict[str, Any]:
    """Broker, topics with message counts, worker readiness, consumer lag of the worker group, data dir."""
    from confluent_kafka import Consumer, TopicPartition
    from confluent_kafka.admin import AdminClient
    from reverify.schemas.topics import TOPICS
    from reverify.streams.embedded import port_is_open, split_bootstrap
    from reverify.streams.inputs import INPUTS

    host, port = split_bootstrap(settings.kafka)
    data_dir = Path(settings.data_dir)
    status: dict[str, Any] = {
        "broker": {"bootstrap": settings.kafka, "reachable": port_is_open(host, port, timeout=2.0)},
        "topic_prefix": settings.topic_prefix,
        "topics": [],
        "worker": worker_readiness(settings),
        "worker_group": settings.topic_prefix + "reverify-worker",
        "lag": [],
        "data_dir": {"path": str(data_dir.resolve()), "exists": data_dir.is_dir()},
    }
    if not status["broker"]["reachable"]:
        return status
    md = AdminClient(settings.kafka_config()).list_topics(timeout=10)
    # The worker's group, only to read its committed offsets: never subscribed, so it never joins the group.
    group = Consumer(settings.kafka_config(**{"group.id": status["worker_group"], "enable.auto.commit": False}))
    try:
        for name, topic in TOPICS.items():
            physical = settings.topic(name)
            meta = md.topics.get(physical)
            if meta is None or meta.error is not None:
                status["topics"].append({"topic": physical, "present": False, "partitions": 0, "messages": None})
                continue
            tps = [TopicPartition(physical, p) for p in sorted(meta.partitions)]
            highs = {}
            count = 0
            for tp in tps:
                low, high = group.get_watermark_offsets(tp, timeout=5)
                highs[tp.partition] = high
                count += max(0, high - low)
            status["topics"].append(
                {"topic": physical, "present": True, "partitions": len(tps), "messages": count, "value": topic.value}
            )
            if name in INPUTS:
                committed = group.committed(tps, timeout=10)
                lag = 0
                known = False
                for tp in committed:
                    if tp.offset >= 0:
                        known = True
                        lag += max(0, highs[tp.partition] - tp.offset)
                    else:  # nothing committed yet: everything on the partition is still to be read
                        lag += highs[tp.partition]
                status["lag"].append({"topic": physical, "lag": lag, "committed": known})
    finally:
        group.close()
    return status


def _print_status(status: dict[str, Any]) -> None:

    broker = status["broker"]
    mark = "[green]✓[/]" if broker["reachable"] else "[red]✗[/]"
    console.print(f"{mark} broker {broker['bootstrap']} {'reachable' if broker['reachable'] else 'does not answer'}")
    worker = status["worker"]
    if worker.get("ready"):
        console.print(f"[green]✓[/] worker ready ({worker.get('assigned_partitions', '?')} partitions assigned)")
    elif worker.get("reachable"):
        console.print("[yellow]![/] worker answers but is not ready (rebalancing or no partitions assigned)")
    else:
        console.print(f"[red]✗[/] no worker answers at {worker.get('url', 'the health endpoint')}")
    dd = status["data_dir"]
    console.print(f"{'[green]✓[/]' if dd['exists'] else '[yellow]![/]'} data dir {dd['path']}")
    if status["topics"]:
        missing = [t["topic"] for t in status["topics"] if not t["present"]]
        print_table(
            "topics",
            ["topic", "partitions", "messages"],
            [[t["topic"], t["partitions"], "missing" if not t["present"] else t["messages"]] for t in status["topics"]],
        )
        if missing:
            console.print(f"[yellow]![/] {len(missing)} topics missing; `reverify worker` creates them")
    if status["lag"]:
        print_table(
            f"consumer lag of {status['worker_group']}",
            ["input topic", "lag", "committed"],
            [[r["topic"], r["lag"], "yes" if r["committed"] else "not yet"] for r in status["lag"]],
        )


# ---------------------------------------------------------------------------------------------- commands


def register(group: click.Group) -> None:
    """Add ``approve``, ``reject``, ``baseline``, ``assurance`` and ``status`` to the ``reverify`` group."""

    @group.command()
    @click.argument("proposal_id")
    @click.option("--by", default=None, help="Who approves (default: your login name).")
    @click.option("--comment", default="", help="Why, for the record.")
    @click.option("--json", "as_json", is_flag=True, help="Print the published Approval as JSON.")
    def approve(proposal_id: str, by: str | None, comment: str, as_json: bool) -> None:
        """Approve a variant proposal: its variant becomes the active one."""
        _decide(proposal_id, True, by, comment, as_json)

    @group.command()
    @click.argument("proposal_id")
    @click.option("--by", default=None, help="Who rejects (default: your login name).")
    @click.option("--comment", default="", help="Why, for the record.")
    @click.option("--json", "as_json", is_flag=True, help="Print the published Approval as JSON.")
    def reject(proposal_id: str, by: str | None, comment: str, as_json: bool) -> None:
        """Reject a variant proposal: the active variant stays."""
        _decide(proposal_id, False, by, comment, as_json)

    @group.group()
    def baseline() -> None:
        """Pin or reset the drift baseline of a series (agent, feature[, variant])."""

    @baseline.command("pin")
    @click.option("--agent", required=True, help="agent_name of the series.")
    @click.option("--feature", required=True, help="reward, latency_ms, cost_usd, a features key or a metric name.")
    @click.option("--from", "start", required=True, help="Start: ISO-8601 or relative (-2h).")
    @click.option("--to", "end", required=True, help="End: ISO-8601, relative (-1h) or now.")
    @click.option("--variant", default=None, help="Pin the per-variant series instead.")
    @click.option("--json", "as_json", is_flag=True, help="Print the published Command as JSON.")
    def baseline_pin(agent: str, feature: str, start: str, end: str, variant: str | None, as_json: bool) -> None:
        """Use the values between --from and --to as the baseline (at least 100 values).

        From the ClickHouse history (event times) when it holds the series in that period, else from the live
        stream (log times).
        """

        try:
            start_ms, end_ms = parse_time(start), parse_time(end)
        except ValueError as exc:
            raise UserError(str(exc)) from None
        if start_ms >= end_ms:
            raise UserError(f"--from {start} is not before --to {end}")
        settings = settings_or_fail()
        values, source = pin_values(settings, agent, feature, start_ms, end_ms, variant)
        if len(values) < MIN_BASELINE_VALUES:
            raise UserError(
                f"only {len(values)} values of {agent}/{feature} between {fmt_ms(start_ms)} and {fmt_ms(end_ms)} "
                f"in {SOURCE_TEXT[source]}; a baseline needs at least {MIN_BASELINE_VALUES}: widen --from/--to"
            )
        args = {"feature": feature, "values": json.dumps(values)}
        if variant:
            args["variant_id"] = variant
        record = command_record("baseline_pin", args, default_operator())
        publish(settings, "control.commands", [(agent, "Command", record)])
        if as_json:
            print_json({**record, "count": len(values), "source": source})
        else:
            console.print(
                f"[green]✓[/] pinned the baseline of {agent}/{feature}{'/' + variant if variant else ''} "
                f"to {len(values)} values ({fmt_ms(start_ms)} .. {fmt_ms(end_ms)}) from {SOURCE_TEXT[source]}"
            )

    @baseline.command("reset")
    @click.option("--agent", required=True, help="agent_name of the series.")
    @click.option("--feature", required=True, help="reward, latency_ms, cost_usd, a features key or a metric name.")
    @click.option("--variant", default=None, help="Reset the per-variant series instead.")
    @click.option("--json", "as_json", is_flag=True, help="Print the published Command as JSON.")
    def baseline_reset(agent: str, feature: str, variant: str | None, as_json: bool) -> None:
        """Forget the baseline: the series learns a new one from its next values."""

        settings = settings_or_fail()
        args = {"feature": feature}
        if variant:
            args["variant_id"] = variant
        record = command_record("baseline_reset", args, default_operator())
        publish(settings, "control.commands", [(agent, "Command", record)])
        if as_json:
            print_json(record)
        else:
            console.print(f"[green]✓[/] {agent}/{feature}{'/' + variant if variant else ''} learns a new baseline")

    @group.group()
    def assurance() -> None:
        """Assurance cases: check a file before a worker loads it."""

    @assurance.command("check")
    @click.argument("file", required=False, type=click.Path(dir_okay=False, path_type=Path))
    @click.option("--json", "as_json", is_flag=True, help="Valid cases as JSON.")
    def assurance_check(file: Path | None, as_json: bool) -> None:
        """Validate the [[assurance]] cases of FILE (default: REVERIFY_CONFIG, else ./reverify.toml)."""

        file = config_file(file)
        cases, mistakes = check_assurance_file(file)
        if mistakes:
            print_mistakes(mistakes)
        if as_json:
            print_json([c.to_dict() for c in cases])
            return
        if not cases:
            console.print(f"[yellow]![/] {escape(str(file))} declares no {escape('[[assurance]]')} cases")
            return
        print_table(
            f"{len(cases)} assurance cases in {file}",
            ["name", "evidence", "scope", "window", "threshold", "for", "severity", "action", "min evidence"],
            [
                [
                    c.name + (" (dry run)" if c.dry_run else ""),
                    c.evidence,
                    ", ".join(f"{k}={v}" for k, v in c.scope.items()) or "all",
                    c.window,
                    _threshold_text(c),
                    f"{c.for_ms / 1000:g}s",
                    c.severity,
                    c.action_label,
                    c.min_evidence,
                ]
                for c in cases
            ],
        )

    @group.command()
    @click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
    def status(as_json: bool) -> None:
        """Broker, topics, worker readiness, consumer lag and data dir, at a glance."""

        result = collect_status(load_settings())
        if as_json:
            print_json(result)
        else:
            _print_status(result)
