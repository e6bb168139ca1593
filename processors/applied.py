"""The replay guard: which input offsets a processor has applied, so that a replay after a crash applies none twice.

The worker resumes from the committed offsets, which may lie behind what a restored state already holds (the
state is checkpointed, the offsets are committed after it). Inputs of one partition arrive in offset order, so a
processor keeps the last offset it applied per partition, and an input at or below it is a replay, skipped.
Every processor that keeps state keeps one :class:`AppliedOffsets` per input stream it reads.

A *position* is ``(partition, offset)``, as the worker gives it, or any longer tuple whose last item is the offset
and whose other items say where it comes from (``(topic, partition, offset)``); ``None`` is an input from no
log (a test, a replay file), never skipped.

>>> applied = AppliedOffsets()
>>> applied.replayed((0, 5)), applied.replayed((0, 5)), applied.replayed((0, 4)), applied.replayed((1, 0))
(False, True, True, False)
>>> applied.to_dict()
{'0': 5, '1': 0}
>>> AppliedOffsets.from_dict({"0": 5, "agent.outcomes:2": 9}).replayed(("agent.outcomes", 2, 9))
True
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

Position = tuple[Any, ...]


class AppliedOffsets:
    """The last offset applied per partition (``last``: partition, or the tuple before the offset -> offset)."""

    __slots__ = ("last",)

    def __init__(self) -> None:
        self.last: dict[Any, int] = {}

    def replayed(self, position: Position | None) -> bool:
        """True when ``position`` was applied already; otherwise it is recorded as applied now."""
        if position is None:
            return False
        if len(position) == 2:
            head, offset = position
        else:
            head, offset = position[:-1], position[-1]
        last = self.last.get(head)
        if last is not None and offset <= last:
            return True
        self.last[head] = offset
        return False

    def applied(self, position: Position) -> bool:
        """True when ``position`` was applied already (nothing is recorded)."""
        head = position[0] if len(position) == 2 else position[:-1]
        last = self.last.get(head)
        return last is not None and position[-1] <= last

    def mark(self, position: Position) -> None:
        """Record ``position`` as applied, and with it every earlier offset of its partition."""
        self.last[position[0] if len(position) == 2 else position[:-1]] = position[-1]

    def to_dict(self) -> dict[str, int]:
        """JSON-compatible: ``{"0": 41}``, or ``{"agent.outcomes:0": 41}`` for longer positions."""
        return {_text(head): offset for head, offset in self.last.items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AppliedOffsets:
        applied = cls()
        applied.last = {_head(text): int(offset) for text, offset in data.items()}
        return applied


def _text(head: Any) -> str:
    return ":".join(str(part) for part in head) if isinstance(head, tuple) else str(head)


def _head(text: str) -> Any:
    """The key :func:`_text` wrote: a partition number, or a tuple (topic names hold no ``:``) ending with one."""
    *where, partition = text.split(":")
    return (*where, int(partition)) if where else int(partition)
