"""Run the ClickHouse sink beside the workers of ``reverify up`` (chdb admits one owning process)."""

from __future__ import annotations

import logging
import threading

from reverify.sinks import clickhouse
from reverify.sinks.config import SinkConfig
from reverify.sinks.migrate import migrate
from reverify.sinks.writer import ClickHouseSink

log = logging.getLogger("reverify.sink")


def prepare_history(config: SinkConfig) -> None:
    """Create or upgrade the history tables (idempotent)."""
    client = clickhouse.connect(config.clickhouse)
    try:
        migrate(client)
    finally:
        client.close()


def start_sink(config: SinkConfig, stop: threading.Event) -> threading.Thread:
    """Consume every topic into the (migrated) history on a daemon thread until ``stop``."""

    def run() -> None:
        while not stop.is_set():
            try:
                ClickHouseSink(config).run(stop)
            except Exception:  # the sink must outlive a bad moment of ClickHouse or the broker; it resumes from Kafka
                log.exception("ClickHouse sink stopped; restarting in 2 s")
                stop.wait(2.0)

    thread = threading.Thread(target=run, name="reverify-clickhouse-sink", daemon=True)
    thread.start()
    return thread
