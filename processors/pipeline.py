"""Everything reverify decides about one agent, composed: the processors behind one key of the ``agents`` table.

>>> p = AgentPipeline("hunter", AgentPipeline.configure(None))
>>> p.on_event("AgentMetric", {"agent_name": "hunter", "name": "q", "value": 1.0, "ts": 0}, (0, 7))
[]
>>> p.on_event("AgentMetric", {"agent_name": "hunter", "name": "q", "value": 1.0, "ts": 0}, (0, 7))  # a replay
[]
>>> p.applied
{'0': 7}
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from processors.base import Emission


@dataclass(frozen=True)
class PipelineConfig:
    """The settings of every processor of the pipeline, read once per worker."""

    settings_version: str = ""


class AgentPipeline:
    """Routes one agent's decoded inputs to its processors; remembers the offsets it applied."""

    def __init__(self, agent_name: str, config: PipelineConfig) -> None:
        self.agent_name = agent_name
        self.config = config
        self.applied: dict[str, int] = {}

    @staticmethod
    def configure(settings: Any) -> PipelineConfig:
        return PipelineConfig()

    def _fresh(self, offset: tuple[int, int]) -> bool:
        partition, position = str(offset[0]), offset[1]
        if self.applied.get(partition, -1) >= position:
            return False
        self.applied[partition] = position
        return True

    def on_event(self, record_type: str, record: dict[str, Any], offset: tuple[int, int]) -> list[Emission]:
        if not self._fresh(offset):
            return []
        return []

    def tick(self, now_ms: int) -> list[Emission]:
        return []

    def to_dict(self) -> dict[str, Any]:
        return {"agent_name": self.agent_name, "applied": self.applied}

    @classmethod
    def from_dict(cls, data: dict[str, Any], config: PipelineConfig) -> AgentPipeline:
        pipeline = cls(data["agent_name"], config)
        pipeline.applied = dict(data["applied"])
        return pipeline
