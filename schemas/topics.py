"""The topics of the contract (docs/design.md section 2): logical names, what each key is, which record each carries.

A physical topic name is the environment's prefix and the logical name. Creating
them on a broker is the shell's part (:func:`reverify.streams.topics.ensure_topics`).

>>> TOPICS["crl.active"].compacted, TOPICS["agent.outcomes"].value
(True, 'AgentOutcome')
>>> from reverify.schemas import SCHEMA_IDS
>>> all(topic.value in SCHEMA_IDS for topic in TOPICS.values())
True
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Topic:
    """One logical topic: its value record, what its key is, whether it is compacted, whether agents publish to it."""

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
        Topic("agent.feedback", "AgentFeedback", "agent_name", input=True),
        Topic("crl.qvalues", "QValue", "agent/task/variant", compacted=True),
        Topic("crl.decisions", "VariantDecision", "agent/task/variant"),
        Topic("crl.active", "ActiveVariant", "agent/task", compacted=True),
        Topic("crl.proposals", "Proposal", "agent/task"),
        Topic("control.approvals", "Approval", "agent_name"),
        Topic("control.rollbacks", "Rollback", "agent/task"),
        Topic("control.agents", "AgentControl", "agent_name", compacted=True),
        Topic("control.commands", "Command", "agent_name"),
        Topic("drift.reports", "DriftReport", "agent/feature"),
        Topic("model.reports", "ModelReport", "agent/model_version"),
        Topic("assurance.results", "AssuranceResult", "case"),
        Topic("alerts", "Alert", "fingerprint"),
        Topic("crl.incidents", "Incident", "incident_id"),
        Topic("slo.reports", "SloReport", "slo/agent[/task]"),
        Topic("crl.experiments", "Experiment", "name", compacted=True),
        Topic("reverify.deadletter", "DeadLetter", "original key"),
    )
}
