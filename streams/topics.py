"""The topics of DESIGN section 2: names, keys, value schemas, partitions and retention policy.

>>> TOPICS["crl.active"].compacted, TOPICS["agent.outcomes"].value
(True, 'AgentOutcome')
>>> outcome_key({"agent_name": "hunter", "task_type": "scrape"})
'hunter'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from confluent_kafka.admin import AdminClient, NewTopic


@dataclass(frozen=True)
class Topic:
    """One logical topic: its value record, what its key is, and whether it is compacted."""

    name: str
    value: str
    key: str
    compacted: bool = False
    input: bool = False


TOPICS: dict[str, Topic] = {
    t.name: t
    for t in (
        Topic("agent.outcomes", "AgentOutcome", "agent_name", input=True),
        Topic("agent.errors", "AgentError", "agent_name", input=True),
        Topic("agent.metrics", "AgentMetric", "agent_name", input=True),
        Topic("crl.qvalues", "QValue", "agent/task/variant", compacted=True),
        Topic("crl.decisions", "VariantDecision", "agent/task/variant"),
        Topic("crl.active", "ActiveVariant", "agent/task", compacted=True),
        Topic("crl.proposals", "Proposal", "agent/task"),
        Topic("control.approvals", "Approval", "agent_name"),
        Topic("control.rollbacks", "Rollback", "agent/task"),
        Topic("control.agents", "AgentControl", "agent_name", compacted=True),
        Topic("control.commands", "Command", "agent_name"),
        Topic("drift.reports", "DriftReport", "agent/feature"),
        Topic("assurance.results", "AssuranceResult", "case"),
        Topic("alerts", "Alert", "fingerprint"),
        Topic("reverify.deadletter", "DeadLetter", "original key"),
    )
}


def outcome_key(record: dict[str, Any]) -> str:
    """Inputs are keyed by agent so one agent's learning loops, drift series and errors share a partition."""
    return record["agent_name"]


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
