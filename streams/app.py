"""The Faust application: decode inputs, route them to the per-agent pipeline, keep its state, produce its emissions.

Every input topic is keyed by ``agent_name`` and all have the same partition
count, so one agent's outcomes, errors, metrics, approvals and commands arrive
on one partition, in order, at one worker. The pipeline state of each agent is
one value of the ``agents`` table (changelog-backed, ``use_partitioner`` so the
changelog partition is the key's partition, which is also its input
partition). It records the input offsets it applied, so a replay after a
crash applies nothing twice.

Inputs arrive as whole fetches (:func:`streams.faust_transport.deliver_fetches`:
Faust's per-message stream path costs more than the rules) and are applied to
live pipelines held in memory. A changed agent's state is written to the table at most every
``[worker] state_interval`` seconds (a *checkpoint*), not after every batch:
serialising a pipeline costs about as much as applying a few dozen events.

Offsets. Faust commits the offsets of acknowledged messages only, so the
worker acknowledges an input only once its effect is durable:

1. a checkpoint snapshots the encoded states of the changed agents together
   with the inputs applied since the last checkpoint (nothing runs in between:
   both are taken in one synchronous step of the event loop);
2. it flushes the emission producer, so every output of those inputs is
   delivered before a state that says "applied" can exist (a replay skips
   applied inputs, so their outputs must not be lost);
3. it writes the snapshot to the table and flushes Faust's producer, so the
   changelog holds it;
4. only then it acknowledges those inputs, and Faust may commit them (Faust
   also flushes its producer before every commit).

A crash between checkpoints loses only unacknowledged work: the restarted
worker reads the last checkpointed states from the changelog, resumes from the
committed offsets (never beyond them), skips what the states already applied
and redoes the rest with the same deterministic output ids. A rebalance
checkpoints every changed agent before the partitions go (so the next owner
replays little) and drops the pending acknowledgements: those partitions'
offsets are the next owner's to commit.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import ssl
import time
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import faust
from confluent_kafka import Producer
from reverify.processors.base import Emission
from reverify.processors.deadletters import DeadLetterMonitor, DeadLetterSettings
from reverify.processors.drift import feed_fetch, warm_caches
from reverify.processors.pipeline import AgentPipeline
from reverify.schemas import encode
from reverify.schemas.topics import TOPICS
from reverify.streams import faust_transport, metrics
from reverify.streams.cli.control import default_operator
from reverify.streams.collector import tune_collector
from reverify.streams.console.auth import access_middleware
from reverify.streams.console.server import Console, add_routes, answer_query
from reverify.streams.inputs import EXPECTED, INPUTS, dead_letter_record, key_text, sort_inputs
from reverify.streams.restore import CHANGELOG_CONFIG, STATE_MAX_BYTES
from reverify.streams.settings import Settings, WorkerSettings

log = logging.getLogger("reverify.worker")

# The longest the checkpoint encodes states without letting the event loop run (inputs, heartbeats).
_SLICE_SECONDS = 0.005


_RECORD_OVERHEAD = 4096  # the record batch around a state: key, headers, batch header (aiokafka counts them)


class PipelineShell:
    """Moves bytes between Kafka and :class:`processors.pipeline.AgentPipeline`; decides nothing."""

    def __init__(self, settings: Settings, table: Any) -> None:
        self.settings = settings
        self.worker_settings = settings.section("worker", WorkerSettings)
        self.table = table
        self.worker_name = f"{socket.gethostname()}:{os.getpid()}"
        self.producer = Producer(
            settings.kafka_config(
                **{
                    "enable.idempotence": True,
                    "acks": "all",
                    "linger.ms": 5,
                    "partitioner": "murmur2_random",
                    "logger": logging.getLogger("reverify.worker.librdkafka"),
                }
            )
        )
        self.pipeline_config = AgentPipeline.configure(settings)
        self.deadletters = DeadLetterMonitor(settings.section("deadletters", DeadLetterSettings))
        self._logical = {settings.topic(name): name for name in TOPICS}
        self._physical = {name: settings.topic(name) for name in TOPICS}
        self._expected = {settings.topic(name): record_type for name, record_type in EXPECTED.items()}
        self._produced: dict[tuple[str, ...], Any] = {}  # EVENTS_PRODUCED children (metrics.child)
        self.gauges = metrics.SeedGauges()
        # Live pipelines of the agents this worker owns; the table is the durable copy, read only after a
        # (re)assignment, because rebuilding a pipeline (drift calibration) costs far more than applying a batch.
        self.cache: dict[str, AgentPipeline] = {}
        # Agents changed since their state was last written, and the offsets of the inputs applied since the last
        # checkpoint (acknowledged only once their effect is in the changelog; see the module docstring).
        self.dirty: set[str] = set()
        self.unacked: list[faust_transport.OffsetRun] = []
        self._checkpoint_lock = asyncio.Lock()
        # What drift monitoring caches per process (~2 s: the alarm's calibration, exact KS p-values) is computed
        # while the worker joins its group; the first fetch waits for it rather than share the GIL with it.
        preparer = ThreadPoolExecutor(1, "reverify-prepare")
        self._prepared: Future[int] | None = preparer.submit(warm_caches, self.pipeline_config.drift)
        preparer.shutdown(wait=False)  # its thread ends with the task

    def load(self, agent: str) -> AgentPipeline:
        pipeline = self.cache.get(agent)
        if pipeline is None:
            raw = self.table.get(agent.encode())
            if raw is None:
                pipeline = AgentPipeline(agent, self.pipeline_config)
            else:
                pipeline = AgentPipeline.from_dict(json.loads(raw), self.pipeline_config)
            self.cache[agent] = pipeline
        return pipeline

    @staticmethod
    def encode_state(pipeline: AgentPipeline, limit: int = STATE_MAX_BYTES) -> bytes:
        """The changelog value of ``pipeline``; a state past ``limit`` stops the worker naming what to lower
        (else Kafka's producer refuses it with a message about its own settings)."""
        raw = json.dumps(pipeline.to_dict(), separators=(",", ":")).encode()
        if len(raw) > limit - _RECORD_OVERHEAD:
            raise RuntimeError(
                f"agent {pipeline.agent_name!r}: its state is {len(raw):,} bytes, more than the {limit:,} bytes "
                f"one changelog message holds; it waits for {pipeline.join.pending_count:,} outcomes' feedback: lower "
                "feedback.max_pending (or max_early), or shorten feedback.timeout (docs/delayed-outcomes.md)"
            )
        return raw

    async def checkpoint(self, app: faust.App, *, ack: bool = True) -> None:
        """Write changed states to the changelog, then acknowledge the inputs they cover (module docstring)."""
        async with self._checkpoint_lock:
            # The inputs to acknowledge and the agents to write are taken together. A state encoded later
            # holds at least the effect of every one of these inputs (states only move forward), so the
            # encoding may yield to the event loop between agents and not hold up a rollback for the whole
            # snapshot; agents changed meanwhile are dirty again and written at the next checkpoint too.
            runs, self.unacked = self.unacked, []
            agents, self.dirty = self.dirty, set()
            if not agents and not runs:
                return
            states: dict[str, bytes] = {}
            slice_end = time.monotonic() + _SLICE_SECONDS
            for agent in agents:
                pipeline = self.cache.get(agent)
                if pipeline is not None:
                    states[agent] = self.encode_state(pipeline)
                if time.monotonic() > slice_end:
                    await asyncio.sleep(0)
                    slice_end = time.monotonic() + _SLICE_SECONDS
            # Every output of what those states applied was produced before this point: deliver it first, or a
            # replay would skip inputs whose outputs were lost.
            left = await asyncio.get_running_loop().run_in_executor(None, self.flush)
            if left:
                raise RuntimeError(f"{left} emissions could not be delivered; stopping before acking their inputs")
            for agent, raw in states.items():
                self.table[agent.encode()] = raw
            await flush_faust_producer(app)
            if ack:
                app.consumer.acknowledge(runs)

    def process(self, messages: list[Any]) -> None:
        """Apply one fetch: group by agent, apply each agent's inputs in offset order, the drift looks of all taken
        together (:func:`processors.drift.feed_fetch`); the states are written by :meth:`checkpoint`."""
        if self._prepared is not None:
            prepared, self._prepared = self._prepared, None
            try:
                prepared.result()
            except Exception:  # an optimisation only: the caches then fill on first use
                log.exception("preparing the drift caches failed")
            tune_collector()
        started = time.monotonic()
        now_ms = int(time.time() * 1000)
        self.unacked += faust_transport.offset_runs(messages)  # acked by the checkpoint that makes them durable
        by_agent, oldest_ts = sort_inputs(messages, self._expected, self._logical, now_ms, self.dead_letter)
        feed_fetch([self.load(agent).feed(items, self.emit) for agent, items in by_agent.items()])
        self.dirty.update(by_agent)
        self.producer.poll(0)
        # counted per batch: a label lookup per event cost ~6 % of the worker
        for topic, n in Counter(message.topic for message in messages).items():
            metrics.EVENTS_CONSUMED.labels(self._logical.get(topic, topic)).inc(n)
        metrics.BATCH_SIZE.observe(len(messages))
        metrics.BATCH_SECONDS.observe(time.monotonic() - started)
        metrics.PROCESSING_DELAY.observe(max(0.0, time.time() - oldest_ts / 1000))

    def publish_held(self) -> None:
        """Publish the Q-values the pipelines hold; their states changed, so the next checkpoint writes them."""
        # Every live pipeline: one that holds nothing flushes in a few dict lookups, and a restored one may hold
        # what a checkpoint caught.
        for agent, pipeline in self.cache.items():
            emissions = pipeline.flush()
            if emissions:
                self.emit(emissions)
                self.dirty.add(agent)
        self.producer.poll(0)

    def tick(self, now_ms: int, agents: list[str]) -> None:
        """Time-driven work (pending alerts, stale evidence) for the agents this worker owns."""
        self.emit(self.deadletters.tick(now_ms))
        for agent in agents:
            pipeline = self.load(agent)
            emissions = pipeline.tick(now_ms)
            if emissions:
                self.emit(emissions)
                self.dirty.add(agent)

    def dead_letter(self, message: Any, reason: str, error_type: str) -> None:
        topic = self._logical.get(message.topic, message.topic)
        metrics.DECODE_FAILURES.labels(topic, error_type).inc()
        record = dead_letter_record(message, reason, error_type, int(time.time() * 1000), self.worker_name)
        key = key_text(message.key)
        self.emit([Emission("reverify.deadletter", key, "DeadLetter", record)])
        self.emit(self.deadletters.on_dead_letter(topic, error_type, record["ts"]))

    def emit(self, emissions: list[Emission]) -> None:
        for emission in emissions:
            topic = self._physical.get(emission.topic) or self.settings.topic(emission.topic)
            value = encode(emission.record_type, emission.value)
            while True:
                try:
                    self.producer.produce(topic, value, emission.key.encode())
                    break
                except BufferError:
                    self.producer.poll(0.05)
            self.gauges.observe(emission.record_type, emission.value)
            metrics.child(self._produced, metrics.EVENTS_PRODUCED, emission.topic).inc()

    def flush(self) -> int:
        return self.producer.flush(30)


async def flush_faust_producer(app: faust.App) -> None:
    """Wait until Faust's producer (the table changelog) has delivered everything it was given.

    ``Producer.flush`` drains its send buffer only while messages keep leaving within 0.1 s, so it is
    repeated until the buffer is empty; the final call then flushes the Kafka client itself.
    """
    producer = app.producer
    await producer.flush()
    while producer.buffer.size:
        await producer.flush()


def faust_credentials(settings: Settings) -> Any:
    """The Kafka security settings as Faust credentials (the confluent-kafka clients get them as config)."""
    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return None
    context = None
    if protocol in ("SSL", "SASL_SSL"):
        context = ssl.create_default_context(cafile=settings.kafka_ssl_ca_location or None)
    if protocol == "SSL":
        return faust.SSLCredentials(context)
    return faust.SASLCredentials(
        username=settings.kafka_sasl_username,
        password=settings.kafka_sasl_password,
        mechanism=settings.kafka_sasl_mechanism or "PLAIN",
        ssl_context=context,
    )


def create_app(settings: Settings, *, app_id: str = "reverify-worker", serve_queries: bool = False) -> faust.App:
    """The Faust app of one worker process; ``reverify worker`` and ``reverify up`` run it."""
    worker_settings = settings.section("worker", WorkerSettings)
    faust_transport.FETCH_MAX_WAIT_MS = worker_settings.fetch_max_wait_ms
    app = faust.App(
        settings.topic_prefix + app_id,
        broker=f"kafka://{settings.kafka}",
        broker_consumer=f"reverify://{settings.kafka}",
        broker_credentials=faust_credentials(settings),
        store="memory://",
        topic_partitions=settings.partitions,
        topic_allow_declare=True,
        web_enabled=bool(settings.web_port),
        web_port=settings.web_port or 6066,
        web_bind=settings.web_bind,  # loopback by default, else a token guards all but the health endpoints
        web_application_options={"middlewares": [access_middleware(settings.web_token)]},
        producer_acks=-1,
        producer_partitioner=None,
        producer_max_request_size=STATE_MAX_BYTES,
        table_standby_replicas=0,
        datadir=str(settings.data_path("faust")),  # Faust makes only the last folder
        consumer_auto_offset_reset="earliest",
        stream_wait_empty=False,
        # Offsets are committed for acknowledged messages only, and the worker acknowledges a message only when
        # the checkpoint holding its effect is in the changelog (PipelineShell.checkpoint), so Faust's own commit
        # cadence is safe; it is kept near the checkpoint interval so that a restart replays little.
        broker_commit_every=1000,
        broker_commit_interval=1.0,
        # A short session makes a group (re)join quick: the embedded broker, like Kafka's initial rebalance
        # delay, waits about half the session timeout before it completes a join.
        broker_session_timeout=6.0,
        broker_heartbeat_interval=1.5,
        broker_max_poll_records=worker_settings.batch_size,
    )
    inputs = app.topic(*[settings.topic(t) for t in INPUTS], key_serializer="raw", value_serializer="raw")
    table = app.Table(
        "agents",
        default=None,
        key_type=bytes,
        value_type=bytes,
        use_partitioner=True,
        partitions=settings.partitions,
        extra_topic_configs={"max.message.bytes": CHANGELOG_CONFIG["max.message.bytes"]},
    )
    shell = PipelineShell(settings, table)
    app.reverify_shell = shell  # type: ignore[attr-defined]

    # The agent subscribes the worker to the inputs (assignment and rebalances stay Faust's); the transport gives
    # it no messages but hands whole fetches of them to the shell.
    faust_transport.deliver_fetches(app, [settings.topic(t) for t in INPUTS], shell.process)

    @app.agent(inputs, name="pipeline")
    async def pipeline(stream: faust.StreamT) -> None:
        async for event in stream.events():
            # One more reference, so that the stream's own ack does not acknowledge the message: the checkpoint
            # that makes its effect durable does (module docstring).
            event.message.incref()
            shell.process([event.message])

    @app.timer(interval=worker_settings.state_interval)
    async def checkpoint() -> None:
        await shell.checkpoint(app)

    publish_interval = shell.pipeline_config.learning.publish_interval_ms / 1000
    if publish_interval > 0:

        @app.timer(interval=publish_interval)
        async def publish_qvalues() -> None:
            shell.publish_held()

    @app.on_partitions_revoked.connect
    async def forget(_app: Any, revoked: Any, **kwargs: Any) -> None:
        # Changed states go to the changelog before the partitions do, so the next owner (maybe this worker)
        # finds them and replays little. The pending acks are dropped: Faust has already forgotten the revoked
        # partitions' acks, and their offsets are the next owner's to commit (after its own checkpoints).
        shell.publish_held()
        await shell.checkpoint(app, ack=False)
        shell.cache.clear()  # another worker may own these agents now; the table is the truth

    @app.on_partitions_assigned.connect
    async def reload(_app: Any, assigned: Any, **kwargs: Any) -> None:
        shell.cache.clear()
        shell.dirty.clear()
        shell.unacked.clear()

    @app.timer(interval=1.0)
    async def tick() -> None:
        if app.rebalancing:
            # Until Faust has recovered the table from the changelog, a state read from it may be an older one;
            # cached, the inputs since the committed offset would be applied to it and those before lost.
            return
        owned = {tp.partition for tp in app.assignor.assigned_actives() if tp.topic == settings.topic(INPUTS[0])}
        agents = [key_text(k) for k in list(table.keys()) if _partition_of(table, k) in owned]
        # Delivered in the background; the next checkpoint flushes them before writing the states they changed.
        shell.tick(int(time.time() * 1000), agents)
        shell.producer.poll(0)

    if serve_queries:
        _add_query_page(app, settings)
        # The console's "/" is registered before Faust's own index (added when the server starts), so it wins.
        add_routes(app.web.web_app.router, Console(settings, settings.web_by or default_operator()))

    @app.page("/healthz")
    async def healthz(_self: Any, request: Any) -> Any:
        return _self.json({"status": "live"})

    @app.page("/readyz")
    async def readyz(_self: Any, request: Any) -> Any:
        assigned = len(app.assignor.assigned_actives())
        ready = app.rebalancing is False and assigned > 0
        return _self.json({"ready": ready, "assigned_partitions": assigned}, status=200 if ready else 503)

    return app


def _add_query_page(app: faust.App, settings: Settings) -> None:
    """``POST /api/query``: ``reverify query`` and ``dashboard`` ask the process that owns the embedded ClickHouse."""

    class QueryView(faust.web.View):
        async def post(self, request: Any) -> Any:
            try:
                body = await request.json()
            except ValueError:
                return self.json({"error": "the request body must be a JSON object"}, status=400)
            result, status = await asyncio.get_running_loop().run_in_executor(None, answer_query, settings, body)
            return self.json(result, status=status)

    app.page("/api/query")(QueryView)


def _partition_of(table: Any, key: Any) -> int:
    from aiokafka.partitioner import murmur2

    raw = key if isinstance(key, bytes) else str(key).encode()
    return (murmur2(raw) & 0x7FFFFFFF) % table.partitions
