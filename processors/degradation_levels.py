"""The seed's graceful-degradation levels 0-4, which component failure implies which level, and what each allows.

An agent runs at the highest level any of its failed components implies
(``max``, as the seed's ``GracefulDegradation.adjust_operation``); unlike the
seed, the level comes back down when the components recover, because the
error monitor recomputes it from the circuits that are still open.

References
----------
Seed ``fail-safes-rl-assurance-drift.md``, section "Graceful Degradation".

Examples
--------
>>> level_name(2)
'SCRAPING_ONLY'
>>> allowed_operations(1)
('scrape', 'segment_cached', 'campaign', 'send')
>>> is_allowed("send", 3)
False
>>> level_for_components(["clay_api", "ghl_api"])
3
>>> level_for_components(["some_unknown_tool"])
0
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

LEVELS: dict[int, str] = {
    0: "FULL_OPERATION",  # All systems operational
    1: "REDUCED_ENRICHMENT",  # Clay down, use cached data
    2: "SCRAPING_ONLY",  # Enrichment down, just scrape
    3: "READ_ONLY",  # APIs down, only serve cached
    4: "MAINTENANCE",  # Critical failure, queue only
}

OPERATIONS_BY_LEVEL: dict[int, tuple[str, ...]] = {
    0: ("scrape", "enrich", "segment", "campaign", "send"),
    1: ("scrape", "segment_cached", "campaign", "send"),
    2: ("scrape", "queue_for_later"),
    3: ("read_cached", "queue_for_later"),
    4: ("queue_only",),
}

#: The level a failed component implies (seed's ``degradation_map``); unknown components imply 0.
COMPONENT_LEVELS: dict[str, int] = {
    "clay_api": 1,
    "rb2b_api": 1,
    "linkedin_session": 2,
    "ghl_api": 3,
    "instantly_api": 3,
    "database": 4,
}

MIN_LEVEL = 0
MAX_LEVEL = 4


def level_name(level: int) -> str:
    """The seed's name of ``level`` (``FULL_OPERATION`` ... ``MAINTENANCE``)."""
    return LEVELS[_check(level)]


def allowed_operations(level: int) -> tuple[str, ...]:
    """Operations an agent may perform at ``level``."""
    return OPERATIONS_BY_LEVEL[_check(level)]


def is_allowed(operation: str, level: int) -> bool:
    """Whether ``operation`` is allowed at ``level``."""
    return operation in allowed_operations(level)


def level_for_components(failed: Iterable[str], component_levels: dict[str, int] | None = None) -> int:
    """The level implied by the failed components: the worst of them, 0 when none is known."""
    table = COMPONENT_LEVELS if component_levels is None else component_levels
    return max((table.get(c, 0) for c in failed), default=0)


def _check(level: int) -> int:
    if level not in LEVELS:
        raise ValueError(f"degradation level {level!r} is not one of {MIN_LEVEL}-{MAX_LEVEL}")
    return level


def control_source(record: Mapping[str, Any]) -> str:
    """Which processor wrote an AgentControl: its reason starts with ``errors:`` or ``assurance``."""
    reason = record.get("reason") or ""
    if reason.startswith("errors:"):
        return "errors"
    if reason.startswith("assurance"):  # "assurance:<case> ..." or "assurance case <case> ..."
        return "assurance"
    return reason.split(":", 1)[0].strip() or "unknown"


def effective_level(levels: dict[str, int], record: Mapping[str, Any]) -> int:
    """Fold one AgentControl into ``levels`` (source -> the level it asks); the level the agent must run at.

    Several processors publish control records for one agent, each carrying only its own view (a ``circuit``
    record the error monitor's level after the change, a ``degrade`` record a source's new level), so the agent
    runs at the highest level any source currently asks.

    >>> levels = {}
    >>> effective_level(levels, {"kind": "circuit", "degradation_level": 2, "reason": "errors: clay_api open"})
    2
    >>> effective_level(levels, {"kind": "degrade", "degradation_level": 1, "reason": "assurance:icp below 50%"})
    2
    >>> effective_level(levels, {"kind": "circuit", "degradation_level": 0, "reason": "errors: clay_api closed"})
    1
    """
    if record["kind"] in ("degrade", "circuit"):
        levels[control_source(record)] = int(record["degradation_level"])
    return max(levels.values(), default=MIN_LEVEL)
