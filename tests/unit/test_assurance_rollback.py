"""An assurance case's rollback is carried out once, where the case decided it, not again when its Command comes back.

The evaluator publishes the ``Command`` on ``control.commands`` (the record of the action) and the pipeline that
decided it rolls back at once; the worker then consumes that Command like any other. Read back, it must not roll the
restored variant back too.
"""

from __future__ import annotations

from typing import Any

from reverify.processors.assurance import parse_cases
from reverify.processors.base import Emission
from reverify.processors.pipeline import AgentPipeline, PipelineConfig

T0 = 1_700_000_000_000


def outcome(i: int, variant: str, success: bool) -> dict[str, Any]:
    return {"event_id": f"o{i}", "ts": T0 + i * 100, "agent_name": "ann", "task_type": "t", "variant_id": variant,
            "success": success, "reward": float(success), "latency_ms": 10.0, "cost_usd": None, "features": {},
            "attributes": {}}  # fmt: skip


def test_the_command_read_back_does_not_roll_back_again() -> None:
    case = {"name": "ok", "evidence": "success_rate", "window": "20 events", "threshold_min": 0.8, "min_evidence": 10,
            "scope": {"agent_name": "ann", "task_type": "t"}, "action": "rollback"}  # fmt: skip
    pipeline = AgentPipeline("ann", PipelineConfig(cases=tuple(parse_cases([case]))))
    out: list[Emission] = []
    for i in range(200):  # v1 active and healthy, v2 explored: a target to roll back to
        out += pipeline.on_event("AgentOutcome", outcome(i, "v2" if i % 5 == 4 else "v1", True), (0, i))
    assert pipeline.loops["t"].active == "v1"
    for i in range(200, 240):
        out += pipeline.on_event("AgentOutcome", outcome(i, "v1", False), (0, i))
    (command,) = [e.value for e in out if e.record_type == "Command"]
    rollbacks = [e.value for e in out if e.record_type == "Rollback"]
    assert [(r["from_variant"], r["to_variant"]) for r in rollbacks] == [("v1", "v2")]
    assert pipeline.loops["t"].active == "v2"

    again = pipeline.on_event("Command", command, (1, 0))
    assert again == []  # no second rollback, nor an alert that the restored variant "degraded, no rollback"
    assert pipeline.loops["t"].active == "v2"


def test_a_persons_rollback_command_is_carried_out() -> None:
    pipeline = AgentPipeline("ann", PipelineConfig())
    for i in range(200):
        pipeline.on_event("AgentOutcome", outcome(i, "v2" if i % 5 == 4 else "v1", True), (0, i))
    command = {"event_id": "c1", "ts": T0 + 200 * 100, "command": "rollback", "by": "ana",
               "args": {"agent_name": "ann", "task_type": "t", "reason": "by hand"}}  # fmt: skip
    out = pipeline.on_event("Command", command, (1, 0))
    assert [(e.value["from_variant"], e.value["to_variant"]) for e in out if e.record_type == "Rollback"] == [
        ("v1", "v2")
    ]
