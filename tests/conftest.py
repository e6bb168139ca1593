"""Shared fixtures: a real embedded broker on a free port, killed by PID at the end."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from confluent_kafka.admin import AdminClient

from streams.embedded import EmbeddedBroker, free_port
from streams.settings import Settings
from streams.topics import ensure_topics


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Bootstrap address of a broker: ``REVERIFY_TEST_KAFKA`` if set, else a fresh embedded Tansu."""
    external = os.environ.get("REVERIFY_TEST_KAFKA")
    if external:
        yield external
        return
    log = tmp_path_factory.mktemp("broker") / "tansu.log"
    embedded = EmbeddedBroker(port=free_port(), log_path=log)
    embedded.start()
    try:
        yield embedded.bootstrap
    finally:
        embedded.stop()


@pytest.fixture
def settings(broker: str, tmp_path) -> Settings:
    """Settings for one test: its own topic prefix on the shared broker, its own ClickHouse directory."""
    prefix = f"t{uuid.uuid4().hex[:8]}."
    env = {
        "REVERIFY_KAFKA": broker,
        "REVERIFY_TOPIC_PREFIX": prefix,
        "REVERIFY_CLICKHOUSE": f"chdb://{tmp_path / 'clickhouse'}",
        "REVERIFY_DATA_DIR": str(tmp_path),
        "REVERIFY_METRICS_PORT": "0",
        "REVERIFY_WEB_PORT": str(free_port()),
    }
    s = Settings.load(env=env, path=None)
    ensure_topics(AdminClient(s.kafka_config()), prefix=s.topic_prefix, partitions=s.partitions)
    return s
