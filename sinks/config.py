"""What the ClickHouse sink needs to know, as plain values: the shell builds it from its settings.

The sink reads no settings file and no environment itself; ``reverify sink`` and
``reverify up`` build a :class:`SinkConfig` (see ``reverify.streams.sink``).

>>> config = SinkConfig(kafka={"bootstrap.servers": "localhost:9092"}, clickhouse="chdb:///tmp/h", topic_prefix="dev.")
>>> config.topic("alerts"), config.group()
('dev.alerts', 'dev.reverify-clickhouse-sink')
>>> config.options.batch_size
10000
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class SinkOptions:
    """Section ``[sink]`` of ``reverify.toml`` (``REVERIFY_SINK__<FIELD>``).

    Parameters
    ----------
    batch_size : int
        Messages per insert batch.
    max_delay : float
        Seconds a message may wait for its batch to fill.
    ttl_days : int, optional
        Days of history each table keeps (0 or None: forever); ``reverify migrate`` applies the same.
    group_id : str
        Consumer group; empty: ``{topic_prefix}reverify-clickhouse-sink``.
    """

    batch_size: int = 10_000
    max_delay: float = 1.0
    ttl_days: int | None = None
    group_id: str = ""

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size = {self.batch_size} is not allowed; use a whole number >= 1")
        if self.max_delay < 0:
            raise ValueError(f"max_delay = {self.max_delay} is not allowed; use seconds >= 0")


@dataclass(frozen=True)
class SinkConfig:
    """Where the sink reads and writes.

    Parameters
    ----------
    kafka : mapping
        librdkafka settings of the broker connection (``bootstrap.servers``, security).
    clickhouse : str
        ``chdb://PATH`` or ``http[s]://user:pass@host:port/db``.
    topic_prefix : str
        The environment's prefix of every physical topic name.
    options : SinkOptions
        Batching, TTL and consumer group.
    """

    kafka: Mapping[str, Any]
    clickhouse: str
    topic_prefix: str = ""
    options: SinkOptions = field(default_factory=SinkOptions)

    def topic(self, name: str) -> str:
        """The physical name of logical topic ``name``."""
        return self.topic_prefix + name

    def group(self) -> str:
        """The sink's consumer group."""
        return self.options.group_id or f"{self.topic_prefix}reverify-clickhouse-sink"
