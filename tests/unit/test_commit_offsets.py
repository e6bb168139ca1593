"""The offset the worker's consumer commits passes gaps and acknowledged inputs once each (streams/faust_transport.py).

The situation of CI's stalled commits (test_worker_gaps): after a rebalance the new owner seeks to the committed
offset 2429 that Faust read, its consumer resumes at 6732 (the previous owner's last commit, which raced its
death), so 2430-6731 is registered as a gap; then the records from 2429 are delivered after all. Faust counted
the offsets in both the gap and the acknowledgements twice, and each commit advanced by one offset.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from reverify.streams.app import create_app
from reverify.streams.faust_transport import Consumer
from reverify.streams.settings import Settings

SETTINGS = Settings.load(env={"REVERIFY_KAFKA": "127.0.0.1:1"}, path=None)
TOPIC = SETTINGS.topic("agent.outcomes")  # an input topic of the app: acknowledgements count for it


@pytest.fixture
def consumer() -> Consumer:
    app = create_app(SETTINGS)
    app.topics._acking_topics.add(TOPIC)  # what the conductor does once the worker's agent subscribes
    consumer = app.consumer
    assert isinstance(consumer, Consumer)
    return consumer


def _add_gap(consumer: Consumer, tp: Any, first: int, last: int) -> None:
    """Faust's ``_add_gap`` (a coroutine), run on a thread of its own: an earlier test may leave this thread's
    event loop running (Playwright's sync API does)."""
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, consumer._add_gap(tp, first, last)).result()


def _commits(consumer: Consumer, tp: object, limit: int = 50) -> list[int]:
    """The offsets successive commits of ``tp`` would write, as Faust's commit loop would (each one committed)."""
    offsets: list[int] = []
    while len(offsets) < limit and (offset := consumer._new_offset(tp)) is not None:  # type: ignore[arg-type]
        if consumer._should_commit(tp, offset):  # type: ignore[arg-type]
            consumer._committed_offset[tp] = offset  # type: ignore[index]
            offsets.append(offset)
    return offsets


def test_a_gap_over_records_delivered_later_is_committed_in_one_step(consumer: Consumer) -> None:
    tp = consumer._new_topicpartition(TOPIC, 1)
    consumer._committed_offset[tp] = 2429  # where Faust's seek put the partition
    _add_gap(consumer, tp, 2430, 6731)  # the first fetch started at 6732
    consumer.acknowledge([(TOPIC, 1, list(range(6732, 8878)))])
    consumer.acknowledge([(TOPIC, 1, list(range(2429, 4581)))])  # then the records from 2429 came after all
    assert _commits(consumer, tp) == [8878]
    consumer.acknowledge([(TOPIC, 1, list(range(4581, 6732)))])  # the rest of them, below the committed offset
    assert _commits(consumer, tp) == []
    assert not consumer._acked[tp]


def test_an_offset_of_a_merged_gap_acknowledged_later_counts_once(consumer: Consumer) -> None:
    tp = consumer._new_topicpartition(TOPIC, 0)
    consumer._committed_offset[tp] = 10
    consumer.acknowledge([(TOPIC, 0, [*range(10, 21), *range(31, 41)])])  # 21 and 22 are not acknowledged yet
    _add_gap(consumer, tp, 23, 30)
    assert _commits(consumer, tp) == [21]  # up to the hole; 23-30 now wait among the acknowledged offsets
    consumer.acknowledge([(TOPIC, 0, [21, 22, 25])])  # 25: a record inside what was registered as a gap
    assert _commits(consumer, tp) == [41]
    assert not consumer._acked[tp]


def test_a_hole_after_the_committed_offset_holds_the_commit(consumer: Consumer) -> None:
    tp = consumer._new_topicpartition(TOPIC, 2)
    consumer._committed_offset[tp] = 100
    consumer.acknowledge([(TOPIC, 2, list(range(103, 110)))])  # 100-102 neither acknowledged nor known gaps
    assert _commits(consumer, tp) == []
    _add_gap(consumer, tp, 101, 102)  # 100 is a commit marker: one offset is let through
    assert _commits(consumer, tp) == [110]
