"""The ClickHouse sink: every topic of :data:`reverify.schemas.topics.TOPICS` into its table, each event once.

How "each event once" is kept
-----------------------------
The sink consumes with its own consumer group and auto-commit off. A batch is
inserted table by table, and its offsets are committed only after ClickHouse
acknowledged every insert of the batch. Three mechanisms then make sure a row
is not stored twice, each covering what the previous one cannot:

1. **insert_deduplication_token** (fast path, same process). Each table's
   insert carries a token built from the topic, partition and offset range of
   its rows plus a digest of their event ids. A retry of the same batch (the
   network failed after ClickHouse wrote it, so we never saw the
   acknowledgement) is then dropped by ClickHouse itself, materialized views
   included (``non_replicated_deduplication_window`` on every table). The
   digest is part of the token because the embedded broker is memory-only:
   after it restarts, offsets begin at 0 again and a token of offsets alone
   would silently drop new events.
2. **Re-check after assignment** (kill -9 between insert and commit). After a
   restart the batch is re-read from the committed offset, but its boundaries
   may differ, so the token no longer matches. For the first
   ``2 x batch_size`` messages of every newly assigned partition the sink asks
   ClickHouse which of the batch's event ids it already holds and drops those
   rows. Since offsets are committed after every batch, everything inserted
   but not committed lies in that range. A probe (is anything stored at or
   past the offset we resumed from, on that partition?) skips the re-check
   when the answer is no, which is the normal case. This keeps the hourly
   rollups (which
   are fed by materialized views at insert time, and cannot be deduplicated
   afterwards) exact too.
3. **ReplacingMergeTree** on a sorting key that ends in ``event_id``
   (backstop). The same event id can also arrive at a *different* offset: a
   processor replaying an output gives it the same deterministic id. Merges
   collapse those rows; readers that need exact numbers use ``FINAL`` (the
   canned queries do). Duplicates of this kind are not re-checked at insert
   time because that would cost a lookup on every batch.

Inserting overlaps decoding: a full batch is handed to one background thread
that inserts it, while the loop consumes and decodes the next batch (fastavro
decoding is most of the sink's CPU time, and chdb releases the GIL for most of
an insert). The loop commits a batch's offsets when it collects the thread's
result, and submits the next batch only after that, so at most one batch is
in flight, offsets are committed in order and only after ClickHouse
acknowledged them, and whatever was inserted but not committed is still within
one batch of the committed offset (the re-check above relies on that).

Why not ReplacingMergeTree alone: until a merge runs, ``count()`` without
``FINAL`` and every materialized view would see the duplicate. Why not tokens
alone: a crash changes the batch boundaries, and tokens cannot match.

While ClickHouse is away, the failed batch stays in memory (nothing after it
is submitted until it is stored), the partitions are paused (so memory stays
bounded and the broker keeps the rest), and inserts
are retried with exponential backoff; nothing is committed, so nothing is
lost even if the process dies meanwhile. Undecodable values are skipped and
counted (the workers dead-letter them).

>>> digest(["a", "b"]) == digest(["a", "b"]) != digest(["b", "a"])
True
>>> offset_ranges({("t", 0): (5, 9), ("t", 1): (0, 0)})
't:0:5-9,t:1:0-0'
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import queue
import signal
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from clickhouse_connect.driver import options as _ch_options
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import DataError, ProgrammingError
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from reverify.schemas import DecodeError
from reverify.schemas.codec import decode_many
from reverify.schemas.topics import TOPICS
from reverify.sinks import clickhouse
from reverify.sinks.config import SinkConfig
from reverify.sinks.migrate import TABLES, MigrationError, migrate

log = logging.getLogger(__name__)

_KAFKA_COLUMNS = ("kafka_partition", "kafka_offset")


def digest(event_ids: Iterable[str]) -> str:
    """A short stable digest of an ordered list of event ids."""
    h = hashlib.blake2b(digest_size=8)
    for eid in event_ids:
        h.update(eid.encode())
        h.update(b"\0")
    return h.hexdigest()


def offset_ranges(ranges: Mapping[tuple[str, int], tuple[int, int]]) -> str:
    """``topic:partition:first-last`` for every partition of a batch, in a stable order."""
    return ",".join(f"{t}:{p}:{a}-{b}" for (t, p), (a, b) in sorted(ranges.items()))


class SinkMetrics:
    """The sink's Prometheus series; one set per registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.rows = Counter("reverify_sink_rows", "Rows inserted into ClickHouse", ["table"], registry=registry)
        self.skipped = Counter(
            "reverify_sink_skipped",
            "Messages not inserted (undecodable, wrong schema, rejected)",
            ["topic", "reason"],
            registry=registry,
        )
        self.duplicates = Counter(
            "reverify_sink_duplicates_dropped",
            "Rows already in ClickHouse, dropped on re-check",
            ["table"],
            registry=registry,
        )
        self.insert_errors = Counter(
            "reverify_sink_insert_errors", "Failed insert attempts (retried)", ["table"], registry=registry
        )
        self.lag = Gauge(
            "reverify_sink_lag", "Messages not yet in ClickHouse", ["topic", "partition"], registry=registry
        )
        self.up = Gauge("reverify_sink_clickhouse_up", "1 when the last ClickHouse call succeeded", registry=registry)
        self.flush_seconds = Histogram(
            "reverify_sink_flush_seconds", "Time to insert and commit one batch", registry=registry
        )


_default_metrics: SinkMetrics | None = None
_metrics_lock = threading.Lock()


def default_metrics() -> SinkMetrics:
    """The process-wide series in the default registry (created once)."""
    global _default_metrics
    with _metrics_lock:
        if _default_metrics is None:
            _default_metrics = SinkMetrics(REGISTRY)
        return _default_metrics


@dataclass
class _Table:
    name: str
    topic: str
    columns: list[str]
    converters: list[Callable[[Any], Any] | None]
    sources: list[str] = field(default_factory=list)  # the record field of each column (its name unless split)
    # the batch as decoded records plus where each came from; columns are built once, at insert time
    records: list[dict[str, Any]] = field(default_factory=list)
    partitions: list[int] = field(default_factory=list)
    offsets: list[int] = field(default_factory=list)
    ranges: dict[tuple[str, int], tuple[int, int]] = field(default_factory=dict)
    done: bool = False


@dataclass
class _Batch:
    """What one flush stores and commits: the tables' rows and the offsets of skipped messages."""

    tables: list[_Table]
    skipped_offsets: dict[tuple[str, int], int]
    commit: dict[tuple[str, int], int] = field(default_factory=dict)  # set once every table is stored


class _InsertThread:
    """One daemon thread that runs one job at a time, handed over through a queue of depth 1.

    A daemon thread rather than a ``ThreadPoolExecutor``: the sink itself runs on a daemon thread in the worker,
    and an insert stuck on an unresponsive server must not keep the process from exiting.
    """

    def __init__(self) -> None:
        self._jobs: queue.Queue[tuple[Callable[[], int], Future[int]] | None] = queue.Queue(maxsize=1)
        self._thread = threading.Thread(target=self._run, name="reverify-sink-insert", daemon=True)
        self._thread.start()

    def submit(self, job: Callable[[], int]) -> Future[int]:
        future: Future[int] = Future()
        self._jobs.put((job, future))
        return future

    def stop(self) -> None:
        self._jobs.put(None)

    def _run(self) -> None:
        while (item := self._jobs.get()) is not None:
            job, future = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(job())
            except BaseException as exc:  # handed to the loop, which decides (retry, or raise MigrationError)
                future.set_exception(exc)


def _tuples(value: Any) -> Any:
    # Array(Tuple(...)) columns take tuples; fastavro gives dicts in schema field order
    return [tuple(v.values()) if isinstance(v, dict) else v for v in value or []]


def _number(value: Any) -> float | None:
    return value if isinstance(value, float) else None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


# A field that is a number or a class (Avro ["null", "double", "string"]) is stored as two typed columns, so that
# SQL can average the numbers: column -> (record field, converter).
_SPLIT_COLUMNS: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "prediction": ("prediction", _number),
    "prediction_class": ("prediction", _text),
    "label": ("label", _number),
    "label_class": ("label", _text),
}


class ClickHouseSink:
    """Consume every reverify topic and insert the events into ClickHouse in batches.

    Parameters
    ----------
    config : SinkConfig
        Broker connection, topic prefix, ClickHouse URL and the ``[sink]`` options
        (``batch_size``, ``max_delay``, ``ttl_days``, ``group_id``), which the arguments below override.
    batch_size : int, optional
        Messages per insert batch (default ``config.options.batch_size``).
    max_delay : float, optional
        Seconds a message may wait for its batch to fill (default ``config.options.max_delay``).
    ttl_days : int or mapping, optional
        History to keep per table (see :func:`sinks.migrate.migrate`); default ``config.options.ttl_days``.
    group_id : str, optional
        Consumer group (default :meth:`SinkConfig.group`).
    url : str, optional
        ClickHouse URL (default ``config.clickhouse``); read again at every
        reconnect, so it can be changed while the sink runs.
    connect : callable, optional
        ``connect(url) -> Client``; default :func:`sinks.clickhouse.connect`.
    topics : iterable of str, optional
        Logical topics to sink (default: all of :data:`TOPICS`).
    registry : CollectorRegistry, optional
        Where the Prometheus series go (default: the process registry).
    consumer_config : mapping, optional
        Extra librdkafka settings.
    """

    def __init__(
        self,
        config: SinkConfig,
        *,
        batch_size: int | None = None,
        max_delay: float | None = None,
        ttl_days: int | Mapping[str, int | None] | None = None,
        group_id: str | None = None,
        url: str | None = None,
        connect: Callable[[str], Client] | None = None,
        topics: Iterable[str] | None = None,
        registry: CollectorRegistry | None = None,
        consumer_config: Mapping[str, Any] | None = None,
        backoff_max: float = 5.0,
    ) -> None:
        options = config.options
        self.config = config
        self.batch_size = int(batch_size or options.batch_size)
        self.max_delay = float(max_delay if max_delay is not None else options.max_delay)
        self.ttl_days = ttl_days if ttl_days is not None else (options.ttl_days or None)
        self.url = url or config.clickhouse
        self._connect = connect or clickhouse.connect
        self.backoff_max = backoff_max
        self.metrics = SinkMetrics(registry) if registry is not None else default_metrics()
        self.topics = list(topics or TOPICS)
        self._by_physical = {config.topic(t): t for t in self.topics}
        conf = {
            **config.kafka,
            **{
                "group.id": group_id or config.group(),
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "statistics.interval.ms": 5000,
                "stats_cb": self._on_stats,
                # ClickHouse may be away for long: the sink keeps polling paused partitions, but be generous
                "max.poll.interval.ms": 600_000,
                # a killed sink's partitions move to a live one within seconds (and brokers that wait out the
                # session timeout before the first assignment, like the embedded one, assign quickly)
                "session.timeout.ms": 10_000,
                "heartbeat.interval.ms": 1_000,
            },
            **(consumer_config or {}),
        }
        self._consumer = Consumer(conf)
        self._consumer.subscribe(list(self._by_physical), on_assign=self._on_assign, on_revoke=self._on_revoke)
        self._client: Client | None = None
        self._tables: dict[str, _Table] = {}
        # the batch being inserted on the insert thread, and one whose insert failed (retried before anything else)
        self._inflight: tuple[_Batch, Future[int]] | None = None
        self._failed: _Batch | None = None
        self._inserter: _InsertThread | None = None
        self._counts_lock = threading.Lock()  # ``skipped`` is counted by both threads
        self._pending = 0
        self._oldest: float | None = None
        self._skipped_offsets: dict[tuple[str, int], int] = {}
        self._recheck: dict[tuple[str, int], int] = {}
        self._probed: set[tuple[str, int]] = set()
        self._retry_at = 0.0
        self._backoff = 0.1
        self._paused = False
        self.rows_written: dict[str, int] = {}
        self.skipped = 0
        self.duplicates_dropped = 0
        self.lag: dict[tuple[str, int], int] = {}
        self._inserts = 0
        self._crash_after = int(os.environ.get("REVERIFY_SINK_CRASH_AFTER_INSERTS", "0") or 0)

    # -- ClickHouse --------------------------------------------------------------------------------------------

    def _ensure_client(self) -> Client:
        if self._client is None:
            client = self._connect(self.url)
            try:
                migrate(client, self.ttl_days)
                self._load_columns(client)
                # clickhouse-connect imports pandas lazily on the first insert (to test for DataFrames): pay that
                # half second here, at startup, rather than in the first batch's latency
                _ = _ch_options.pd
            except Exception:
                client.close()
                raise
            self._client = client
        return self._client

    def _drop_client(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):  # a broken connection may fail to close; it is discarded anyway
                client.close()

    def _load_columns(self, client: Client) -> None:
        if self._tables:
            return
        wanted = {TABLES[t]: t for t in self.topics}
        result = client.query(
            "SELECT table, name, type FROM system.columns WHERE database = currentDatabase() "
            "AND table IN {tables:Array(String)} ORDER BY table, position",
            parameters={"tables": list(wanted)},
        )
        columns: dict[str, list[tuple[str, str]]] = {}
        for table, name, ctype in result.result_rows:
            columns.setdefault(table, []).append((name, ctype))
        for table, topic in wanted.items():
            cols = [c for c in columns.get(table, []) if c[0] not in _KAFKA_COLUMNS]
            if not cols:
                raise RuntimeError(f"table {table} is missing after migration")
            converters = [
                _SPLIT_COLUMNS[name][1] if name in _SPLIT_COLUMNS else _tuples if "Array(Tuple(" in ctype else None
                for name, ctype in cols
            ]
            sources = [_SPLIT_COLUMNS[name][0] if name in _SPLIT_COLUMNS else name for name, _ in cols]
            self._tables[table] = _Table(table, topic, [c for c, _ in cols], converters, sources)

    # -- Kafka callbacks -----------------------------------------------------------------------------------------

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # the insert thread reads the re-check state: let it finish before that changes (normally it is idle here,
        # since a revocation, which waits too, comes first)
        self._reap(wait=True)
        # whatever a previous owner inserted but did not commit lies in the next batch of each partition
        for tp in partitions:
            self._recheck[(tp.topic, tp.partition)] = 2 * self.batch_size
            self._probed.discard((tp.topic, tp.partition))
        self._paused = False

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # the in-flight batch holds offsets of these partitions: store and commit it (or fail) before they go
        self._reap(wait=True)
        if self._failed is not None or self._pending or self._skipped_offsets:
            try:
                if self._failed is not None:
                    self._flush_batch(self._failed)
                    self._failed = None
                self._flush_batch(self._detach())
            except MigrationError:
                raise
            except Exception as exc:  # the next owner re-reads these from the committed offset
                log.warning("sink: dropping an unflushed batch on revoke (%s); the next owner re-reads it", exc)
                self._failed = None
                self._reset_batch()
        for tp in partitions:
            self._recheck.pop((tp.topic, tp.partition), None)

    def _on_stats(self, raw: str) -> None:
        stats = json.loads(raw)
        for topic, tstats in stats.get("topics", {}).items():
            for pid, pstats in tstats.get("partitions", {}).items():
                lag = pstats.get("consumer_lag_stored", pstats.get("consumer_lag", -1))
                if int(pid) >= 0 and lag is not None and lag >= 0:
                    self.lag[(topic, int(pid))] = lag
                    self.metrics.lag.labels(topic, pid).set(lag)

    # -- the loop ------------------------------------------------------------------------------------------------

    def poll_once(self, timeout: float = 0.5) -> int:
        """Take what arrived within ``timeout`` and flush when the batch is full or old; returns rows inserted.

        Never blocks for longer than ``timeout`` (plus one insert): while
        ClickHouse is away it returns 0 and tries again on a later call.
        """
        if not self._tables:
            # the columns come from ClickHouse: take nothing before it answered once
            if time.monotonic() < self._retry_at:
                time.sleep(min(timeout, self._retry_at - time.monotonic()))
                return 0
            try:
                self._ensure_client()
            except MigrationError:
                raise
            except Exception as exc:
                self._note_failure(exc, "*")
                self._schedule_retry()
                return 0
        written = self._reap(wait=False)
        if self._failed is not None:
            if self._paused:
                # keeps the group membership alive; paused partitions deliver nothing, newly assigned ones may
                self._add(self._consumer.consume(num_messages=self.batch_size, timeout=0))
            if time.monotonic() < self._retry_at:
                time.sleep(min(timeout, max(0.0, self._retry_at - time.monotonic())))
                return written
            return written + self._retry_failed()
        if self._pending >= self.batch_size:
            # full while the previous batch was still in flight (or just stored after a failure): hand it over now
            return written + self._submit()
        wait = timeout
        if self._oldest is not None:
            wait = max(0.0, min(timeout, self._oldest + self.max_delay - time.monotonic()))
        messages = self._consumer.consume(num_messages=self.batch_size - self._pending, timeout=wait)
        self._add(messages)
        due = self._pending >= self.batch_size or (
            self._oldest is not None and time.monotonic() - self._oldest >= self.max_delay
        )
        if due or (self._pending == 0 and self._skipped_offsets):
            written += self._submit()
        return written

    def run(self, stop: threading.Event) -> None:
        """Poll and flush until ``stop`` is set, then flush what is left (best effort) and close."""
        try:
            while not stop.is_set():
                self.poll_once(0.2)
            self._reap(wait=True)
            if self._failed is None and (self._pending or self._skipped_offsets):
                self._submit()
                self._reap(wait=True)
        finally:
            self.close()

    def flush(self, timeout: float = 30.0) -> int:
        """Insert and commit everything taken so far, retrying up to ``timeout`` seconds; returns rows inserted."""
        deadline = time.monotonic() + timeout
        written = self._reap(wait=True)
        while self._failed is not None or self._pending or self._skipped_offsets:
            if self._failed is not None:
                written += self._retry_failed()
            else:
                written += self._submit()
                written += self._reap(wait=True)
            if self._failed is None and not self._pending and not self._skipped_offsets:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"ClickHouse did not take the batch within {timeout:.0f}s")
            time.sleep(min(self._backoff, 0.5))
        return written

    def close(self) -> None:
        """Leave the consumer group and close the ClickHouse client (pending rows are not committed)."""
        # the in-flight batch commits through the consumer: let it finish first (a failure is re-read later)
        with contextlib.suppress(Exception):
            self._reap(wait=True)
        with contextlib.suppress(RuntimeError):  # already closed
            self._consumer.close()
        if self._inserter is not None:
            self._inserter.stop()
            self._inserter = None
        self._drop_client()

    # -- batching ------------------------------------------------------------------------------------------------

    def _add(self, messages: list[Message]) -> None:
        """Decode what one consume call returned, topic by topic, into the batch; skip (and count) what is bad."""
        by_topic: dict[str, list[Message]] = {}
        for msg in messages:
            err = msg.error()
            if err is not None:
                if err.code() != KafkaError._PARTITION_EOF:
                    log.warning("sink: consumer error %s", err)
                continue
            topic = msg.topic()
            group = by_topic.get(topic)
            if group is None:
                group = by_topic[topic] = []
            group.append(msg)
        for topic, msgs in by_topic.items():
            logical = self._by_physical.get(topic)
            table = self._tables.get(TABLES[logical]) if logical else None
            if table is None or logical is None:
                error = DecodeError(f"no table for topic {topic}")
                for msg in msgs:
                    self._skip(logical or topic, msg, error)
                continue
            # one decode call per topic and consume call: the per-record cost is fastavro's alone
            decoded = decode_many(TOPICS[logical].value, [msg.value() for msg in msgs])
            records, partitions, offsets = table.records, table.partitions, table.offsets
            first: dict[int, int] = {}
            last: dict[int, int] = {}
            for msg, record in zip(msgs, decoded, strict=True):
                if isinstance(record, DecodeError):
                    self._skip(logical, msg, record)
                    continue
                partition, offset = msg.partition(), msg.offset()
                records.append(record)
                partitions.append(partition)
                offsets.append(offset)
                if partition not in first:
                    first[partition] = offset
                last[partition] = offset
            for partition, offset in last.items():
                key = (topic, partition)
                table.ranges[key] = (table.ranges.get(key, (first[partition], 0))[0], offset)
        self._pending = sum(len(t.records) for t in self._tables.values())
        if self._pending and self._oldest is None:
            self._oldest = time.monotonic()

    def _skip(self, topic: str, msg: Message, exc: DecodeError) -> None:
        with self._counts_lock:
            self.skipped += 1
        self.metrics.skipped.labels(topic, "undecodable").inc()
        log.debug("sink: skipping %s[%d]@%d: %s", msg.topic(), msg.partition(), msg.offset(), exc.reason)
        self._skipped_offsets[(msg.topic(), msg.partition())] = msg.offset()

    def _reset_batch(self) -> None:
        for table in self._tables.values():
            table.records, table.partitions, table.offsets, table.ranges, table.done = [], [], [], {}, False
        self._pending = 0
        self._oldest = None
        self._skipped_offsets = {}

    def _pause(self) -> None:
        assignment = self._consumer.assignment()
        if assignment and not self._paused:
            self._consumer.pause(assignment)
        self._paused = True
        self._schedule_retry()

    def _schedule_retry(self) -> None:
        self._retry_at = time.monotonic() + self._backoff
        self._backoff = min(self._backoff * 2, self.backoff_max)

    def _resume(self) -> None:
        if self._paused:
            assignment = self._consumer.assignment()
            if assignment:
                self._consumer.resume(assignment)
        self._paused = False
        self._backoff = 0.1

    def _note_failure(self, exc: Exception, table: str) -> None:
        self.metrics.up.set(0)
        self.metrics.insert_errors.labels(table).inc()
        log.warning("sink: batch not stored (%s: %s); retrying in %.1fs", type(exc).__name__, exc, self._backoff)
        self._drop_client()

    def _detach(self) -> _Batch:
        """Hand the batch taken so far over (to be stored) and start an empty one."""
        batch = _Batch([t for t in self._tables.values() if t.records], self._skipped_offsets)
        self._tables = {
            name: _Table(t.name, t.topic, t.columns, t.converters, t.sources) for name, t in self._tables.items()
        }
        self._pending = 0
        self._oldest = None
        self._skipped_offsets = {}
        return batch

    def _submit(self) -> int:
        """Hand the batch to the insert thread once the previous one is stored; returns rows that one inserted.

        Waiting here keeps one batch in flight at most: offsets are committed in order, and a failed batch is
        retried before anything after it is inserted.
        """
        written = self._reap(wait=True)
        if self._failed is not None or not (self._pending or self._skipped_offsets):
            return written
        if self._inserter is None:
            self._inserter = _InsertThread()
        batch = self._detach()
        self._inflight = (batch, self._inserter.submit(lambda: self._flush_batch(batch, commit=False)))
        return written

    def _reap(self, *, wait: bool) -> int:
        """Collect the in-flight batch's outcome when it is done (or wait for it); returns rows inserted."""
        if self._inflight is None:
            return 0
        batch, future = self._inflight
        if not wait and not future.done():
            return 0
        self._inflight = None
        try:
            written = future.result()
            self._commit(batch.commit)
        except MigrationError:
            raise
        except Exception as exc:
            # keep the batch: the tables it stored already are marked done, the rest is retried after a backoff
            self._failed = batch
            self._note_failure(exc, "*")
            self._pause()
            return 0
        self._resume()
        return written

    def _retry_failed(self) -> int:
        """Store the batch whose insert failed, here on the loop's thread; pause longer when it fails again."""
        assert self._failed is not None
        try:
            written = self._flush_batch(self._failed)
        except MigrationError:
            raise
        except Exception as exc:
            self._note_failure(exc, "*")
            self._pause()
            return 0
        self._failed = None
        self._resume()
        return written

    def _flush_batch(self, batch: _Batch, *, commit: bool = True) -> int:
        """Insert every table of ``batch`` (tables already inserted are not repeated), then commit its offsets.

        Runs on the insert thread (or, for a retry or a revocation, on the loop's while the insert thread is
        idle), so it touches no state of the batch being taken meanwhile. On the insert thread ``commit`` is
        False and the loop commits ``batch.commit`` when it collects the result: a synchronous commit from a
        second thread stalled behind the loop's ``consume`` (seen in the kill -9 test's restart).
        """
        if not batch.tables and not batch.skipped_offsets:
            return 0
        started = time.perf_counter()
        client = self._ensure_client()
        written = 0
        commit_now, commit = commit, dict(batch.skipped_offsets)
        for table in batch.tables:
            for key, (_, last) in table.ranges.items():
                commit[key] = max(commit.get(key, -1), last)
            if table.done or not table.records:
                continue
            columns = self._columns(table, self._drop_already_stored(client, table))
            rows = len(columns[0])
            if rows:
                token = f"{offset_ranges(table.ranges)}:{digest(columns[0])}"
                self._insert(client, table, columns, token)
            table.done = True
            self._inserts += 1
            if self._inserts == self._crash_after:
                # fault injection for the tests: die like kill -9 right between an insert and its commit
                os.kill(os.getpid(), signal.SIGKILL)
            written += rows
            self.rows_written[table.name] = self.rows_written.get(table.name, 0) + rows
            self.metrics.rows.labels(table.name).inc(rows)
        self.metrics.up.set(1)
        batch.commit = commit
        if commit_now:
            self._commit(commit)
        self.metrics.flush_seconds.observe(time.perf_counter() - started)
        return written

    @staticmethod
    def _columns(table: _Table, keep: list[int] | None) -> list[list[Any]]:
        """The batch's values column by column (``keep``: the row indexes to insert, None for all).

        Column-oriented data goes to ClickHouse's Native format without the
        client transposing rows first, and a column is one comprehension here
        instead of a list per row.
        """
        if keep is None:
            records, partitions, offsets = table.records, table.partitions, table.offsets
        else:
            records = [table.records[i] for i in keep]
            partitions = [table.partitions[i] for i in keep]
            offsets = [table.offsets[i] for i in keep]
        columns: list[list[Any]] = []
        for col, conv in zip(table.sources, table.converters, strict=True):
            values = [r.get(col) for r in records]
            columns.append([conv(v) for v in values] if conv else values)
        columns.append(partitions)
        columns.append(offsets)
        return columns

    def _insert(self, client: Client, table: _Table, columns: list[list[Any]], token: str) -> None:
        settings = {"insert_deduplication_token": token, "deduplicate_blocks_in_dependent_materialized_views": 1}
        names = [*table.columns, *_KAFKA_COLUMNS]
        try:
            client.insert(table.name, columns, column_names=names, column_oriented=True, settings=settings)
        except (DataError, ProgrammingError, TypeError, ValueError, OverflowError) as exc:
            # a value the client cannot serialise: find the bad rows, store the rest
            rows = len(columns[0])
            if rows == 1:
                with self._counts_lock:
                    self.skipped += 1
                self.metrics.skipped.labels(table.topic, "rejected").inc()
                log.warning("sink: %s rejected a row (%s): %r", table.name, exc, [c[0] for c in columns[:3]])
                return
            half = rows // 2
            self._insert(client, table, [c[:half] for c in columns], f"{token}/a")
            self._insert(client, table, [c[half:] for c in columns], f"{token}/b")

    def _drop_already_stored(self, client: Client, table: _Table) -> list[int] | None:
        """The indexes of the batch's rows that ClickHouse does not hold yet; None when that is all of them."""
        physical = self.config.topic(table.topic)
        rechecking = {p for (t, p), left in self._recheck.items() if left > 0 and (t, p) in table.ranges}
        for p in list(rechecking):
            if (physical, p) in self._probed:
                continue
            # cheap probe first: if nothing at or past the offset we resumed from is stored, nothing can be doubled
            # (a false "yes", e.g. rows of an older incarnation of the topic, only costs the re-check)
            self._probed.add((physical, p))
            first = table.ranges[(physical, p)][0]
            stored = client.query(
                f"SELECT count() FROM {table.name} WHERE kafka_partition = {{p:Int32}} AND kafka_offset >= {{o:Int64}}",
                parameters={"p": p, "o": first},
            ).result_rows[0][0]
            if not stored:
                self._recheck[(physical, p)] = 0
                rechecking.discard(p)
        if not rechecking:
            return None
        id_col = table.columns[0]  # event_id: every table's first column
        suspects = [r for r, p in zip(table.records, table.partitions, strict=True) if p in rechecking]
        stamps = [r.get("ts") for r in suspects]
        present = set()
        for start in range(0, len(suspects), 5000):
            chunk = suspects[start : start + 5000]
            present.update(
                row[0]
                for row in client.query(
                    f"SELECT event_id FROM {table.name} WHERE ts >= fromUnixTimestamp64Milli({{lo:Int64}}) "
                    "AND ts <= fromUnixTimestamp64Milli({hi:Int64}) AND event_id IN {ids:Array(String)}",
                    parameters={"lo": min(stamps), "hi": max(stamps), "ids": [r.get(id_col) for r in chunk]},
                ).result_rows
            )
        for p in rechecking:
            key = (physical, p)
            self._recheck[key] -= table.partitions.count(p)
        if not present:
            return None
        self.duplicates_dropped += len(present)
        self.metrics.duplicates.labels(table.name).inc(len(present))
        return [
            i
            for i, (r, p) in enumerate(zip(table.records, table.partitions, strict=True))
            if not (p in rechecking and r.get(id_col) in present)
        ]

    def _commit(self, commit: dict[tuple[str, int], int]) -> None:
        if not commit:
            return
        offsets = [TopicPartition(t, p, last + 1) for (t, p), last in commit.items()]
        for attempt in range(5):
            try:
                self._consumer.commit(offsets=offsets, asynchronous=False)
                return
            except KafkaException as exc:
                code = exc.args[0].code() if exc.args else None
                if code in (
                    KafkaError.ILLEGAL_GENERATION,
                    KafkaError.UNKNOWN_MEMBER_ID,
                    KafkaError.REBALANCE_IN_PROGRESS,
                ):
                    # the partitions moved: their next owner re-reads from the committed offset and re-checks
                    log.info("sink: commit lost to a rebalance (%s)", exc)
                    return
                log.warning("sink: commit failed (%s), attempt %d", exc, attempt + 1)
                time.sleep(0.2 * (attempt + 1))
        raise KafkaException(KafkaError(KafkaError._FAIL, "offset commit kept failing"))
