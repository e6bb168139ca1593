"""The shell of the ClickHouse sink: its plain :class:`~reverify.sinks.config.SinkConfig` from the settings,
and ``reverify sink``, the sink alone in its process until SIGTERM or SIGINT.

>>> from reverify.streams.settings import Settings
>>> settings = Settings.load(env={"REVERIFY_TOPIC_PREFIX": "dev.", "REVERIFY_SINK__BATCH_SIZE": "500"}, path=None)
>>> config = sink_config(settings)
>>> config.topic("alerts"), config.options.batch_size, config.kafka["bootstrap.servers"]
('dev.alerts', 500, 'localhost:9092')
"""

from __future__ import annotations

import logging
import signal
import threading

from reverify.sinks.config import SinkConfig, SinkOptions
from reverify.sinks.writer import ClickHouseSink
from reverify.streams.settings import Settings


def sink_config(settings: Settings) -> SinkConfig:
    """The sink's connections and its ``[sink]`` section (a bad key or value raises ``SettingsError``)."""
    return SinkConfig(
        kafka=settings.kafka_config(),
        clickhouse=settings.clickhouse,
        topic_prefix=settings.topic_prefix,
        options=settings.section("sink", SinkOptions),
    )


def run_sink(config: SinkConfig, batch_size: int | None = None, max_delay: float | None = None) -> ClickHouseSink:
    """Consume every topic into ClickHouse until SIGTERM / SIGINT (the arguments override ``config.options``)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    sink = ClickHouseSink(config, batch_size=batch_size, max_delay=max_delay)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    print("sink: running", flush=True)
    sink.run(stop)
    print(
        f"sink: stopped rows={sum(sink.rows_written.values())} duplicates_dropped={sink.duplicates_dropped}", flush=True
    )
    return sink
