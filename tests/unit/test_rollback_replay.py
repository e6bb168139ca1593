"""The rollback grid through ``reverify replay``'s engine: the worker's processors on JSON lines decide as the detector.

Stationary arms (binary rewards, the worst case) and collapses after 100 healthy invocations, written as the
JSON lines a user would replay; the first Rollback of every agent must come at the invocation where the plain
:class:`DegradationDetector` (``tests/quality/rollback_grid.py``) fires on the same stream, and never otherwise.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
from reverify.streams.replay import replay

from tests.quality import rollback_grid as grid

T0 = 1_700_000_000_000
RUNS = 12  # agents per cell


def _lines(agent: str, ok: np.ndarray, reward: np.ndarray, err: np.ndarray) -> list[str]:
    """The arm v0 (active: seen first) on the stream, and a few outcomes of v1 so a rollback has a target."""
    out: list[dict[str, Any]] = []
    for t, (success, r, e) in enumerate(zip(ok.tolist(), reward.tolist(), err.tolist(), strict=True)):
        base = {"agent_name": agent, "task_type": "t", "ts": T0 + 10 * t}
        out.append({"kind": "outcome", **base, "event_id": f"{agent}-{t}", "variant_id": "v0", "success": success,
                    "reward": r})  # fmt: skip
        if e:
            out.append({"kind": "error", **base, "event_id": f"{agent}-e{t}", "variant_id": "v0",
                        "component": "tool", "error_type": "Timeout"})  # fmt: skip
        if 1 <= t <= 10:
            out.append({"kind": "outcome", **base, "event_id": f"{agent}-b{t}", "variant_id": "v1", "success": True,
                        "reward": 1.0})  # fmt: skip
    return [json.dumps(x) for x in out]


def _first_rollbacks(lines: list[str]) -> dict[str, int]:
    """Agent -> index of the v0 invocation that caused its first Rollback."""
    first: dict[str, int] = {}
    for record_type, record in replay(lines):
        if record_type == "Rollback" and record["agent_name"] not in first:
            first[record["agent_name"]] = (int(record["ts"]) - T0) // 10
    return first


def test_replayed_streams_roll_back_exactly_where_the_detector_fires() -> None:
    cells = [(p, p, grid.HORIZON) for p in (0.9, 0.95, 0.99)] + [(0.95, 0.5, 100)]
    lines: list[str] = []
    expected: dict[str, int] = {}
    for before, after, change in cells:
        length = grid.HORIZON if change == grid.HORIZON else change + 300
        ok, reward, err = grid.streams("binary", before, after, change, length, RUNS, grid.cell_seed("replay", before))
        alarms = grid.first_alarms(ok, reward, err, grid.detector_factory())
        for run in range(RUNS):
            agent = f"a{before}-{after}-{run}"
            lines += _lines(agent, ok[run], reward[run], err[run])
            if alarms[run] is not None:
                expected[agent] = alarms[run]
    got = _first_rollbacks(lines)
    assert got == expected
    collapses = [t - 100 + 1 for agent, t in got.items() if agent.startswith("a0.95-0.5")]
    assert len(collapses) == RUNS and sorted(collapses)[RUNS // 2] <= 40  # every collapse caught, fast
    false = sum(1 for agent in got if not agent.startswith("a0.95-0.5"))
    assert false <= 1  # 36 stationary arms of 2,000 invocations
