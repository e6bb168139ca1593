"""Shared fixtures: a real embedded broker on a free port, killed by PID at the end."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from reverify.streams.embedded import EmbeddedBroker, free_port
from reverify.streams.settings import Settings

from tests.support import make_settings


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
def settings(broker: str, tmp_path: Path) -> Settings:
    """Settings for one test: its own topic prefix on the shared broker, its own ClickHouse directory."""
    return make_settings(broker, tmp_path, "t")
