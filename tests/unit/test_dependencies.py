"""The private parts of faust-streaming, aiokafka and clickhouse-connect the worker and the sink rely on.

``streams/faust_transport.py`` overrides and reads Faust's and aiokafka's internals (whole fetches, batch
acknowledgement, the fetch wait), ``streams/app.py`` a few more, and ``sinks/clickhouse.py`` opens chdb through
clickhouse-connect's private client module. pyproject.toml pins these packages to the minor versions tested;
this test is what to run after raising a pin: it names every attribute an upgrade removed or renamed, instead of
letting the worker fail at run time (or, for an override nobody calls any more, silently stop doing its job).
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

import faust
import pytest
from faust.transport import consumer as faust_consumer
from faust.transport.drivers import aiokafka as faust_aiokafka

# Instance attributes of Faust's consumer that faust_transport.Consumer reads or writes.
CONSUMER_ATTRIBUTES = (
    "callback",
    "_read_offset",
    "_stopped",
    "_to_message",
    "_add_gap",
    "_commit_every",
    "_n_acked",
    "commit",
    "_committed_offset",
    "_acked_index",
    "_acked",
    "_new_topicpartition",
    "_waiting_for_ack",
    "_wait_next_records",
    "should_stop",
    "flow_active",
    "perform_seek",
    "seek",
    "_gap",
    "_buffered_partitions",
)

# (module, attribute path): module-level names imported or reached through classes.
MODULE_ATTRIBUTES = (
    ("faust.types.tuples", "ack_lock"),
    ("faust.types.tuples", "Message.incref"),
    ("faust.utils.functional", "consecutive_numbers"),
    ("mode.utils.futures", "notify"),
    ("faust.transport.drivers.aiokafka", "AIOKafkaConsumerThread._create_worker_consumer"),
    ("faust.transport.drivers.aiokafka", "Consumer._new_consumer_thread"),
    ("faust.transport.drivers.aiokafka", "Consumer._drain_messages"),
    ("faust.transport.drivers.aiokafka", "Transport.Consumer"),
    ("faust.transport.consumer", "Fetcher"),
    ("aiokafka.partitioner", "murmur2"),
    ("clickhouse_connect.driver._chdbclient", "ChdbClient"),
)

# (function, name it must mention): an override only works while Faust or aiokafka still calls or reads it.
SOURCE_USES = (
    (faust_consumer.Fetcher, "_drain_messages"),  # the fetcher's loop calls our whole-fetch drain
    (faust_consumer.ThreadDelegateConsumer, "_new_consumer_thread"),
    (faust_aiokafka.AIOKafkaConsumerThread, "_create_worker_consumer"),
    (faust_consumer.Consumer._filter_committable_offsets, "_new_offset"),  # our _new_offset decides the commit
    ("aiokafka.consumer.consumer:AIOKafkaConsumer.__init__", "self._fetch_max_wait_ms"),
    ("aiokafka.consumer.consumer:AIOKafkaConsumer.start", "self._fetch_max_wait_ms"),  # handed to the Fetcher
)


def _resolve(module: str, path: str) -> Any:
    obj: Any = importlib.import_module(module)
    for part in path.split("."):
        if not hasattr(obj, part):
            raise AttributeError(f"{module}.{path}: {part!r} is gone (renamed or removed by an upgrade)")
        obj = getattr(obj, part)
    return obj


@pytest.fixture(scope="module")
def app() -> faust.App:
    # Nothing connects: the app and its consumer are only built.
    return faust.App(
        "reverify-dependency-check",
        broker="kafka://127.0.0.1:1",
        broker_consumer="reverify://127.0.0.1:1",
        store="memory://",
        web_enabled=False,
    )


@pytest.mark.parametrize("attribute", CONSUMER_ATTRIBUTES)
def test_faust_consumer_has(app: faust.App, attribute: str) -> None:
    consumer = app.consumer
    assert type(consumer).__module__ == "reverify.streams.faust_transport", "the reverify:// transport is not used"
    assert hasattr(consumer, attribute), f"faust Consumer.{attribute} is gone: streams/faust_transport.py uses it"


@pytest.mark.parametrize(("module", "path"), MODULE_ATTRIBUTES, ids=[f"{m}.{p}" for m, p in MODULE_ATTRIBUTES])
def test_module_has(module: str, path: str) -> None:
    _resolve(module, path)


@pytest.mark.parametrize(("where", "name"), SOURCE_USES, ids=[f"{w}-{n}" for w, n in SOURCE_USES])
def test_override_is_still_used(where: Any, name: str) -> None:
    if isinstance(where, str):
        module, _, path = where.partition(":")
        where = _resolve(module, path)
    assert name in inspect.getsource(where), f"{where.__qualname__} no longer uses {name}: our override is dead"


def test_app_attributes_the_worker_reads(app: faust.App) -> None:
    for owner, attribute in (
        (app, "assignor"),
        (app.assignor, "assigned_actives"),
        (app, "rebalancing"),
        (app.topics, "acks_enabled_for"),
        (app.producer, "buffer"),
        (app.producer.buffer, "size"),
        (app.producer, "flush"),
    ):
        assert hasattr(owner, attribute), f"{type(owner).__qualname__}.{attribute} is gone: streams/app.py uses it"
