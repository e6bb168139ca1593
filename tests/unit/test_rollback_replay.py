"""The rollback grid through ``reverify replay``'s engine: the worker's processors on JSON lines decide as the detector.

Stationary arms (binary rewards, the worst case) and collapses after 100 healthy invocations, written as the
JSON lines a user would replay; the first Rollback of every agent must come at the invocation where the plain
:class:`DegradationDetector` (``tests/quality/rollback_grid.py``) fires on the same stream, and never otherwise.
"""

from __future__ import annotations

from reverify.streams.replay import replay

from tests.quality import rollback_grid as grid
from tests.quality.replay_grids import arm_lines, first_rollbacks

T0 = 1_700_000_000_000
RUNS = 12  # agents per cell


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
            lines += arm_lines(agent, ok[run], reward[run], err[run])
            if alarms[run] is not None:
                expected[agent] = alarms[run]
    got = first_rollbacks(replay(lines))
    assert got == expected
    collapses = [t - 100 + 1 for agent, t in got.items() if agent.startswith("a0.95-0.5")]
    assert len(collapses) == RUNS and sorted(collapses)[RUNS // 2] <= 40  # every collapse caught, fast
    false = sum(1 for agent in got if not agent.startswith("a0.95-0.5"))
    assert false <= 1  # 36 stationary arms of 2,000 invocations
