"""Faust's aiokafka transport with a configurable fetch wait, registered as the ``reverify://`` broker scheme.

faust-streaming creates its consumer with ``fetch_max_wait_ms=1500`` hard-coded. A Kafka broker answers a
fetch as soon as data arrives, so that wait only matters on an idle topic; the embedded Tansu broker holds
every fetch for the whole wait, which would add up to 1.5 s to every decision (measured: a plain consumer
sees p50 539 ms at 1,500 ms, 9 ms at 100 ms). The worker consumes through ``reverify://`` so the wait is
ours to set (``[worker] fetch_max_wait_ms``); producing stays on Faust's own ``kafka://`` transport.

Whole fetches. Faust hands a stream one message at a time: per message a flow-control wait, a channel
decode, a queue hand-off, a task race (``wait_first``) and the stream's bookkeeping -- about 100 us, more
than the worker's own rules cost. Topics registered with :func:`deliver_fetches` skip that path: the
consumer's drain loop gives each fetch of them, as a list of aiokafka records in offset order per partition,
to one synchronous handler. Everything else stays Faust's: the subscription (an agent still reads the topics,
so assignment, rebalances and the table's co-partitioning are unchanged), offsets (a message is committed
only once acknowledged, and the handler's owner acknowledges it), sensors and crash handling.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection
from itertools import groupby
from operator import attrgetter
from typing import Any

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP
from faust.types.tuples import ack_lock
from faust.utils.functional import consecutive_numbers
from mode.utils.futures import notify

#: Set by :func:`streams.app.create_app` from the worker settings before the consumer starts.
FETCH_MAX_WAIT_MS = 100


class QuickFetchConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    """The consumer thread, its aiokafka consumer created with our fetch wait."""

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        # aiokafka reads this when start() builds its Fetcher; Faust offers no setting for it.
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS
        return consumer


FetchHandler = Callable[[list[Any]], None]

OffsetRun = tuple[str, int, list[int]]
"""``(topic, partition, offsets)`` of handled inputs, what :meth:`Consumer.acknowledge` takes."""


def offset_runs(records: list[Any]) -> list[OffsetRun]:
    """The offsets of ``records`` (or Faust messages), one run per stretch of one topic partition.

    A handler keeps these, not the records, until it acknowledges them: behind a backlog that is several seconds
    of input, and ~10^5 records kept that long outlive the garbage collector's young generations, so its middle
    and full collections walk them all (a list of offsets is one object).

    >>> from types import SimpleNamespace as R
    >>> offset_runs([R(topic="a", partition=0, offset=5), R(topic="a", partition=0, offset=6), R(topic="b",
    ...     partition=0, offset=1)])
    [('a', 0, [5, 6]), ('b', 0, [1])]
    """
    return [(*key, [r.offset for r in run]) for key, run in groupby(records, attrgetter("topic", "partition"))]


def deliver_fetches(app: faust.App, topics: Collection[str], handler: FetchHandler) -> None:
    """Give whole fetches of ``topics`` to ``handler`` (see the module docstring); the app must use ``reverify://``.

    The handler gets aiokafka's records (``topic``, ``partition``, ``offset``, ``key``, ``value``) and owns their
    acknowledgement: ``app.consumer.acknowledge(offset_runs(records))`` once their effect is durable.
    """
    app.reverify_fetches = (frozenset(topics), handler)  # type: ignore[attr-defined]


class Consumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> QuickFetchConsumerThread:
        return QuickFetchConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def _drain_messages(self, fetcher: Any) -> None:  # pragma: no cover - runs in the worker process
        try:
            await self._drain(fetcher)
        except asyncio.CancelledError:
            # Faust's Fetcher.run answers a cancellation that comes while the app is rebalancing by waking its
            # supervisor, which a fetcher never has: a stop (Ctrl-C) landing in a rebalance ended in
            # "'NoneType' object has no attribute 'wakeup'" and a traceback. A fetcher without a supervisor is
            # being stopped, not restarted: end quietly.
            if getattr(fetcher, "supervisor", None) is None:
                return
            raise

    async def _drain(self, fetcher: Any) -> None:  # pragma: no cover - runs in the worker process
        fetches = getattr(self.app, "reverify_fetches", None)
        if fetches is None:
            return await super()._drain_messages(fetcher)
        topics, handler = fetches
        callback = self.callback
        read_offset = self._read_offset
        should_stop = self._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set
        while not (should_stop() or fetcher_should_stop()):
            batch: list[Any] = []
            # Faust's own loop sleeps here too: getmany may return at once, and the loop must get a turn.
            await asyncio.sleep(0)
            for tp, records in await self._fetch(timeout=1.0):
                if not await self._resumes_where_sought(tp, records[0].offset):
                    continue
                last = read_offset[tp]
                if last is not None and records[0].offset < last:
                    # already read (a seek back during a rebalance): Faust drops these as well
                    records = [record for record in records if record.offset >= last]
                    if not records:
                        continue
                read_offset[tp] = records[-1].offset
                if tp.topic not in topics:
                    for record in records:
                        await callback(self._to_message(tp, record))
                    continue
                first = records[0].offset
                if records[-1].offset - first != len(records) - 1 or (last and first - last > 1):
                    # offsets with no message (compaction, transaction markers) count as acknowledged, or the
                    # committed offset could never pass them
                    for record in records:
                        if last and record.offset - last > 1:
                            await self._add_gap(tp, last + 1, record.offset - 1)  # inclusive; the record is not one
                        last = record.offset
                # The records themselves, not Faust messages (~2.5 us each to build), and not in Faust's pending-ack
                # set (a WeakSet, ~3 % of the worker): only wait_empty reads it, and the app runs with
                # stream_wait_empty=False; its checkpoints make the effects durable (acknowledge). A partition's
                # records are taken as a whole: a check per record cost ~2 us each.
                batch += records
            if batch:
                handler(batch)
            if self._commit_every is not None and self._n_acked >= self._commit_every:
                self._n_acked = 0
                await self.commit()

    async def perform_seek(self) -> None:
        """Faust's seek to the committed offsets, remembering them: each partition's next fetch must start there."""
        await super().perform_seek()
        self._sought: dict[TP, int] = {tp: o for tp, o in self._read_offset.items() if o is not None}
        self._jumped: dict[TP, int] = {}

    async def _resumes_where_sought(self, tp: TP, first: int) -> bool:
        """False, after seeking ``tp`` back, when its first fetch since a seek starts past the sought offset.

        After a rebalance the consumer can resume from a later offset than the committed one Faust read and sought
        to (seen on the embedded broker when the previous owner's last commit raced its death). Handled, that fetch
        would let the pipelines' replay guard (the highest offset applied) skip the records below it when they come
        after all: inputs lost. So the partition is sought again, once; one offset past the sought one is normal
        (a commit marker), and a fetch that starts at the same later offset twice shows offsets that do not exist.
        """
        sought = getattr(self, "_sought", {}).pop(tp, None)
        if sought is None or first <= sought + 1 or self._jumped.get(tp) == first:
            return True
        self._jumped[tp] = first
        self.log.warning("%s resumed at offset %s, not at the committed %s: seeking back", tp, first, sought)
        await self.seek(tp, sought)
        self._sought[tp] = sought
        return False

    def acknowledge(self, runs: list[OffsetRun]) -> None:
        """Acknowledge handled inputs, given as :func:`offset_runs`: what :meth:`Consumer.ack` does for each message.

        The checkpoint acknowledges a second's worth of inputs at once; one by one, ``Message.ack`` (three lock
        acquisitions and four calls a message) was 8 % of the worker. A handled record is never referenced by a
        stream, so its ack is final, as it would be there.
        """
        with ack_lock:
            acks_enabled_for = self.app.topics.acks_enabled_for
            committed, index, acked = self._committed_offset, self._acked_index, self._acked
            tps: dict[tuple[str, int], Any] = {}  # (topic, partition) -> its TP, or None where acks are off
            n = 0
            for topic, partition, offsets in runs:
                tp = tps.get((topic, partition), False)
                if tp is False:
                    tp = tps[topic, partition] = (
                        self._new_topicpartition(topic, partition) if acks_enabled_for(topic) else None
                    )
                if tp is None:
                    continue
                low, seen, acked_tp = committed[tp], index[tp], acked[tp]
                for offset in offsets:
                    if (low is None or offset >= low) and offset not in seen:
                        seen.add(offset)
                        acked_tp.append(offset)
                        n += 1
            self._n_acked += n
            notify(self._waiting_for_ack)

    def _new_offset(self, tp: TP) -> int | None:
        """The offset to commit for ``tp``: Faust's, except that a gap never repeats an acknowledged offset.

        Faust adds the registered gaps below the highest acknowledged offset to the acknowledged ones and commits up
        to the first hole; it does not look whether an offset of a gap was acknowledged too. One can be: after a
        rebalance, the new owner's consumer may resume from a later committed offset than the one Faust read for its
        seek (the previous owner's last commit raced its death), so the first fetch jumps past records that a later
        fetch delivers after all. A repeated offset ends every run of consecutive offsets, so each commit then
        advanced by one offset a second and the committed offset trailed the input for hours (CI, test_worker_gaps:
        6,000 offsets behind after a full recovery). The offsets in such a gap were committed by a worker, so they
        were durably applied; what matters is that each counts once. Gap offsets added here join the index, so a
        record arriving later at one is not added again (:meth:`acknowledge`).
        """
        acked = self._acked[tp]
        if not acked:
            return None
        index = self._acked_index[tp]
        gap = self._gap[tp]
        if gap:
            highest = max(acked)
            spans = sorted(gap.overlap(0, highest))
            if spans:
                missing = [offset for span in spans for offset in range(span.begin, span.end) if offset not in index]
                acked.extend(missing)
                index.update(missing)
                gap.chop(0, max(spans[-1].end, highest + 1))
        acked.sort()
        committed = self._committed_offset[tp]
        if committed and acked[0] - committed > 1:
            return None  # the first offsets after the committed one are neither acknowledged nor known gaps yet
        run = next(consecutive_numbers(acked))
        del acked[: len(run)]
        index.difference_update(run)
        return run[-1] + 1

    async def _fetch(self, timeout: float) -> list[tuple[Any, list[Any]]]:  # pragma: no cover - runs in the worker
        """One fetch as ``(tp, aiokafka records)`` pairs, the records of a partition in offset order.

        Faust's ``getmany`` without what it does per record that a whole-fetch handler does not need: the
        high-watermark lookup and monitor call, and the round-robin across partitions.
        """
        records, active = await self._wait_next_records(timeout)
        if records is None or self.should_stop:
            return []
        if not self.flow_active:
            await self.perform_seek()  # what getmany does when a rebalance paused the flow
            return []
        buffered = self._buffered_partitions
        return [
            (tp, batch) for tp, batch in records.items() if batch and (active is None or tp in active or tp in buffered)
        ]


class Transport(faust_aiokafka.Transport):
    """``reverify://host:port``: Kafka through aiokafka, with the fetch wait above."""

    Consumer = Consumer
