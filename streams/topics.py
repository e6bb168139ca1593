"""Reverify's topics on a broker: created when missing, with the partitions and cleanup policy of the contract.

The names, keys and record types are the contract's: :mod:`reverify.schemas.topics`.
"""

from __future__ import annotations

from confluent_kafka.admin import AdminClient, NewTopic
from reverify.schemas.topics import TOPICS

__all__ = ["TOPICS", "ensure_topics"]


def ensure_topics(admin: AdminClient, prefix: str = "", partitions: int = 3, timeout: float = 15.0) -> list[str]:
    """Create the topics that do not exist yet; returns the names it created."""
    existing = set(admin.list_topics(timeout=timeout).topics)
    wanted = []
    for topic in TOPICS.values():
        name = prefix + topic.name
        if name in existing:
            continue
        config = {"cleanup.policy": "compact"} if topic.compacted else {}
        wanted.append(NewTopic(name, num_partitions=partitions, replication_factor=-1, config=config))
    created = []
    for name, future in admin.create_topics(wanted, request_timeout=timeout).items() if wanted else []:
        try:
            future.result()
            created.append(name)
        except Exception as exc:  # a topic created concurrently by another worker is fine
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise
    return created
