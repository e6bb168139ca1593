"""``reverify notify``: the ``alerts`` topic delivered to receivers, in its own consumer group and process.

The loop, on the wall clock:

1. consume ``alerts`` (manual commits) and offer each alert to
   :class:`~reverify.processors.notify.grouping.NotificationGroups` (routes, groups, acks, silences);
2. follow ``control.commands`` from its beginning for the silences ``reverify alerts silence`` publishes;
3. deliver the notifications that are due on a small thread pool, one group's notifications in order, each
   destination with its retries (:mod:`reverify.streams.delivery`);
4. commit, per partition, the offset below which every alert was delivered, or dead-lettered once its
   attempts were spent (:class:`OffsetTracker`); a notification that failed goes to ``reverify.deadletter``
   with the reason, and a ``notify`` alert goes to the other receivers (published on ``alerts`` like any other,
   resolved when the receiver accepts again).

A crash (``kill -9``) loses nothing: what was not committed is consumed again and
delivered again, with the same idempotency key when it groups the same alerts.
The worker never waits for any of this: it only publishes on ``alerts``.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from reverify.processors.alerting import Silence
from reverify.processors.base import derive_id
from reverify.processors.notify.config import NotifyConfig
from reverify.processors.notify.grouping import Notification, NotificationGroups
from reverify.processors.notify.payloads import delivery_failed_alert
from reverify.schemas import DecodeError, decode, encode
from reverify.streams import metrics
from reverify.streams.delivery import Deliverer, Outcome
from reverify.streams.settings import Settings

log = logging.getLogger("reverify.notify")
_LOOKBACK_MS = 3_600_000  # a new consumer group starts with the last hour of alerts, not the whole topic


class OffsetTracker:
    """Which offsets of each partition may be committed: below the lowest alert still awaiting delivery.

    >>> t = OffsetTracker()
    >>> t.consumed(0, 5, refs=1); t.consumed(0, 6, refs=0); t.consumed(0, 7, refs=2)
    >>> t.positions()
    {0: 5}
    >>> t.release((0, 5)); t.release((0, 7))
    >>> t.positions()
    {0: 7}
    >>> t.release((0, 7)); t.positions()
    {0: 8}
    """

    def __init__(self) -> None:
        self._next: dict[int, int] = {}
        self._refs: dict[tuple[int, int], int] = {}

    def consumed(self, partition: int, offset: int, refs: int) -> None:
        """Offset ``offset`` was read; ``refs`` notifications (or empty flushes) will answer for it."""
        self._next[partition] = max(self._next.get(partition, 0), offset + 1)
        if refs:
            self._refs[(partition, offset)] = self._refs.get((partition, offset), 0) + refs

    def release(self, token: Any) -> None:
        """One of the notifications answering for ``token`` (``(partition, offset)``) is done."""
        key = (int(token[0]), int(token[1]))
        left = self._refs.get(key, 0) - 1
        if left > 0:
            self._refs[key] = left
        else:
            self._refs.pop(key, None)

    def positions(self) -> dict[int, int]:
        """The offset to commit per partition (the next one to read after everything done)."""
        out = dict(self._next)
        for partition, offset in self._refs:
            if offset < out.get(partition, offset + 1):
                out[partition] = offset
        return out

    def forget(self, partitions: list[int]) -> None:
        """Partitions this process no longer owns (after a rebalance)."""
        for p in partitions:
            self._next.pop(p, None)
        self._refs = {k: v for k, v in self._refs.items() if k[0] not in partitions}


class NotifyService:
    """The consumer loop of ``reverify notify`` (``run`` until ``stop`` is set).

    Parameters
    ----------
    settings
        Broker, topic prefix.
    config
        Receivers, routes, SMTP and delivery settings.
    stop
        Set it to end the loop; deliveries in flight are not dead-lettered then, they are consumed again.
    clock_ms
        Wall clock in milliseconds (the groups' waits and intervals).
    """

    def __init__(
        self,
        settings: Settings,
        config: NotifyConfig,
        stop: threading.Event | None = None,
        clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        self.settings = settings
        self.config = config
        self.stop = stop or threading.Event()
        self.clock_ms = clock_ms
        self.groups = NotificationGroups(config.routes)
        self.tracker = OffsetTracker()
        self.deliverer = Deliverer(config, self.stop, on_retry=self._retried)
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="reverify-notify")
        self._queues: dict[str, deque[Notification]] = {}
        self._running: dict[str, Future[list[Outcome]]] = {}
        self._failing: set[tuple[str, str]] = set()
        self._committed: dict[int, int] = {}
        self._topic = settings.topic("alerts")
        self.delivered: list[tuple[Notification, list[Outcome]]] = []  # the last few, for `notify` status lines

    # ------------------------------------------------------------------ the loop

    def run(self) -> None:
        from confluent_kafka import Consumer, Producer

        group = f"{self.settings.topic_prefix}{self.config.settings.group}"
        self._consumer = Consumer(
            self.settings.kafka_config(
                **{
                    "group.id": group,
                    "enable.auto.commit": False,
                    "auto.offset.reset": "earliest",
                    "session.timeout.ms": 6000,
                    "logger": logging.getLogger("reverify.sdk.librdkafka"),
                }
            )
        )
        self._producer = Producer(
            self.settings.kafka_config(
                **{
                    "enable.idempotence": True,
                    "acks": "all",
                    "partitioner": "murmur2_random",
                    "logger": logging.getLogger("reverify.sdk.librdkafka"),
                }
            )
        )
        self._commands = self._follow_commands()
        try:
            self._read_commands(catch_up=True)
            self._consumer.subscribe([self._topic], on_assign=self._on_assign, on_revoke=self._on_revoke)
            while not self.stop.is_set():
                self.step()
        finally:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._reap()
            self._commit()
            self._consumer.close()
            self._commands.close()
            self._producer.flush(10)

    def step(self) -> None:
        """One turn: consume, follow silences, advance the groups, start due deliveries, reap, commit."""
        now = self.clock_ms()
        due = self.groups.next_due_ms()
        wait = 0.5 if due is None else min(0.5, max(0.0, (due - now) / 1000))
        for msg in self._consumer.consume(500, wait):
            self._on_message(msg)
        self._read_commands()
        now = self.clock_ms()
        for note in self.groups.advance(now):
            self._enqueue(note)
        for token in self.groups.released():
            self.tracker.release(token)
        self._reap()
        self._commit()

    def _on_message(self, msg: Any) -> None:
        if msg.error() is not None:
            log.warning("reverify notify: %s", msg.error())
            return
        refs = 0
        try:
            record_type, alert = decode(msg.value())
        except DecodeError as exc:
            log.warning(
                "reverify notify: skipping an undecodable alert at %s/%s: %s", msg.partition(), msg.offset(), exc
            )
        else:
            if record_type == "Alert":
                now = min(int(alert["ts"]), self.clock_ms())
                refs = self.groups.offer(alert, now, token=[msg.partition(), msg.offset()])
        self.tracker.consumed(msg.partition(), msg.offset(), refs)

    # ------------------------------------------------------------------ deliveries

    def _enqueue(self, note: Notification) -> None:
        chain = f"{note.receiver}\x1f{note.group_key}"
        self._queues.setdefault(chain, deque()).append(note)
        self._start(chain)

    def _start(self, chain: str) -> None:
        queue = self._queues.get(chain)
        if chain in self._running or not queue:
            return
        note = queue.popleft()
        if not queue:
            del self._queues[chain]
        future = self._pool.submit(self.deliverer.deliver, note)
        future.note = note  # type: ignore[attr-defined]
        self._running[chain] = future

    def _reap(self) -> None:
        """Handle finished deliveries: metrics, dead letters, the ``notify`` alert, offsets released."""
        for chain, future in list(self._running.items()):
            if not future.done():
                continue
            del self._running[chain]
            note: Notification = future.note  # type: ignore[attr-defined]
            if future.cancelled():
                continue  # stopping: consumed again after the restart
            try:
                outcomes = future.result()
            except Exception:  # a bug in a payload builder must not stop notifications: dead-letter it
                log.exception("reverify notify: delivering %s failed", note.key)
                outcomes = [Outcome(note.receiver, "all", False, 1, reason="internal error (see the notify log)")]
            failed = [o for o in outcomes if not o.ok]
            if failed and self.stop.is_set():
                continue  # interrupted, not spent: leave the offsets uncommitted
            for outcome in outcomes:
                self._account(note, outcome)
            if failed:
                self._producer.flush(10)
            for token in note.tokens:
                self.tracker.release(token)
            self.delivered = [*self.delivered[-19:], (note, outcomes)]
            self._start(chain)

    def _account(self, note: Notification, outcome: Outcome) -> None:
        labels = (outcome.receiver, outcome.channel)
        if outcome.skipped:
            return
        if outcome.ok:
            metrics.NOTIFICATIONS_SENT.labels(*labels).inc()
            metrics.NOTIFICATION_LATENCY.labels(*labels).observe(max(0.0, (outcome.done_ms - note.ts) / 1000))
            if labels in self._failing:
                self._failing.discard(labels)
                self._publish_alert(delivery_failed_alert(*labels, "", outcome.attempts, self.clock_ms(), "resolved"))
            return
        metrics.NOTIFICATIONS_FAILED.labels(*labels).inc()
        log.warning("reverify notify: %s/%s failed after %d attempts: %s", *labels, outcome.attempts, outcome.reason)
        self._dead_letter(note, outcome)
        if labels not in self._failing:
            self._failing.add(labels)
            alert = delivery_failed_alert(*labels, outcome.reason, outcome.attempts, self.clock_ms(), "firing")
            self._publish_alert(alert)

    def _retried(self, receiver: str, channel: str) -> None:
        metrics.NOTIFICATIONS_RETRIED.labels(receiver, channel).inc()

    def _dead_letter(self, note: Notification, outcome: Outcome) -> None:
        where = note.tokens[0] if note.tokens else [-1, -1]
        record = {
            "event_id": derive_id("notify-deadletter", note.key, outcome.channel),
            "ts": self.clock_ms(),
            "topic": self._topic,
            "partition": int(where[0]),
            "offset": int(where[1]),
            "key": note.key.encode(),
            "value": outcome.payload,
            "reason": f"notification to {outcome.receiver} ({outcome.channel}) failed after "
            f"{outcome.attempts} attempts: {outcome.reason}",
            "error_type": "notification_failed",
            "worker": "notify",
        }
        self._producer.produce(self.settings.topic("reverify.deadletter"), encode("DeadLetter", record), note.key)

    def _publish_alert(self, emission: Any) -> None:
        self._producer.produce(self._topic, encode("Alert", emission.value), emission.key.encode())

    # ------------------------------------------------------------------ offsets

    def _on_assign(self, consumer: Any, partitions: list[Any]) -> None:
        """A partition without a committed offset starts an hour back (not at the topic's whole history)."""
        from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, TopicPartition

        try:
            committed = consumer.committed(partitions, timeout=10)
        except Exception:  # noqa: BLE001 - the broker will say; start where the group would
            committed = partitions
        fresh = [tp.partition for tp in committed if tp.offset < 0]
        if fresh:
            since = self.clock_ms() - _LOOKBACK_MS
            try:
                found = consumer.offsets_for_times([TopicPartition(self._topic, p, since) for p in fresh], timeout=10)
                starts = {tp.partition: (tp.offset if tp.offset >= 0 else OFFSET_END) for tp in found}
            except Exception:  # noqa: BLE001 - a broker without time lookups: from the beginning
                starts = {p: OFFSET_BEGINNING for p in fresh}
            for tp in partitions:
                if tp.partition in starts:
                    tp.offset = starts[tp.partition]
        consumer.assign(partitions)

    def _on_revoke(self, consumer: Any, partitions: list[Any]) -> None:
        self._commit()
        self.tracker.forget([tp.partition for tp in partitions])
        for tp in partitions:
            self._committed.pop(tp.partition, None)

    def _commit(self) -> None:
        from confluent_kafka import KafkaException, TopicPartition

        changed = {p: o for p, o in self.tracker.positions().items() if self._committed.get(p) != o}
        if not changed:
            return
        try:
            self._consumer.commit(
                offsets=[TopicPartition(self._topic, p, o) for p, o in changed.items()], asynchronous=False
            )
        except KafkaException as exc:
            log.warning("reverify notify: commit failed (%s); it is retried", exc)
            return
        self._committed.update(changed)

    # ------------------------------------------------------------------ silences

    def _follow_commands(self) -> Any:
        from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

        topic = self.settings.topic("control.commands")
        consumer = Consumer(
            self.settings.kafka_config(
                **{
                    "group.id": f"reverify-notify-commands-{uuid.uuid4().hex[:12]}",
                    "enable.auto.commit": False,
                    "enable.partition.eof": True,
                    "logger": logging.getLogger("reverify.sdk.librdkafka"),
                }
            )
        )
        meta = consumer.list_topics(topic, timeout=10).topics.get(topic)
        parts = sorted(meta.partitions) if meta is not None and meta.error is None else []
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
        self._commands_pending = set(parts)
        return consumer

    def _read_commands(self, catch_up: bool = False) -> None:
        """Silences from ``control.commands``; with ``catch_up``, until every partition was read to its end."""
        from confluent_kafka import KafkaError

        deadline = time.monotonic() + (30.0 if catch_up else 0.0)
        while True:
            msgs = self._commands.consume(500, 0.2 if catch_up else 0.0)
            for msg in msgs:
                if msg.error() is not None:
                    if msg.error().code() == KafkaError._PARTITION_EOF:
                        self._commands_pending.discard(msg.partition())
                    continue
                self._on_command(msg.value())
            if not catch_up or not self._commands_pending or time.monotonic() > deadline:
                return

    def _on_command(self, value: bytes) -> None:
        try:
            record_type, record = decode(value)
        except DecodeError:
            return
        if record_type != "Command" or record["command"] != "silence":
            return
        args = record["args"]
        try:
            matchers = {str(k): str(v) for k, v in json.loads(args["matchers"]).items()}
            silence = Silence(
                args.get("silence_id") or derive_id("silence", record["event_id"]),
                matchers,
                int(args["until_ms"]),
                record.get("by", ""),
                args.get("comment", ""),
                int(record["ts"]),
            )
        except (KeyError, ValueError, AttributeError):
            log.warning("reverify notify: ignoring a malformed silence command %s", record.get("event_id"))
            return
        self.groups.add_silence(silence)


def start_notify(settings: Settings, config: NotifyConfig, stop: threading.Event) -> threading.Thread:
    """Run :class:`NotifyService` on a daemon thread until ``stop`` (``reverify up``); it restarts after an error."""

    def run() -> None:
        while not stop.is_set():
            try:
                NotifyService(settings, config, stop).run()
            except Exception:  # notifications must outlive a bad moment of the broker; they resume from Kafka
                log.exception("reverify notify stopped; restarting in 2 s")
                stop.wait(2.0)

    thread = threading.Thread(target=run, name="reverify-notify", daemon=True)
    thread.start()
    return thread
