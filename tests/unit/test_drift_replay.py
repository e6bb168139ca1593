"""The drift grid through ``reverify replay``'s engine: metric series as JSON lines alarm where the monitor does.

AR(1) series (lag-1 correlation 0, 0.5, 0.8; a skewed one) that shift by 1 sd after 2,000 values, each written
as the metric lines a user would replay; every alarm the replay reports must come at the value where the plain
:class:`~reverify.processors.drift.DriftMonitor` (``tests/quality/drift_dependence.py``) fires on the same series,
at the default settings. ``tests/quality/replay_grids.py`` runs the full grids through ``reverify replay --json``.
"""

from __future__ import annotations

import json

from reverify.processors.drift import DriftSettings
from reverify.streams.replay import replay

from tests.quality.drift_dependence import ar1, ours
from tests.quality.replay_grids import alarm_values, metric_lines

SHIFT_AT, LENGTH = 3_000, 3_600  # the baseline (1,000 values), 2,000 stationary ones, then 1 sd up


def test_replayed_series_alarm_exactly_where_the_monitor_fires() -> None:
    lines: list[str] = []
    expected: dict[str, list[int]] = {}
    for seed, (phi, skewed) in enumerate([(0.0, False), (0.5, False), (0.8, False), (0.5, True)]):
        x = ar1(seed, phi, LENGTH, skewed)
        x[SHIFT_AT:] += x[:1000].std()
        series = f"s{phi}{'s' if skewed else ''}"
        lines += metric_lines("fleet", series, x)
        expected[series] = ours(x, DriftSettings())[0]
    lines.sort(key=lambda line: json.loads(line)["ts"])  # the series interleaved, as a fleet sends them
    got = alarm_values(replay(lines))
    assert {series: got.get(("fleet", series), []) for series in expected} == expected
    assert all(expected.values())  # every series alarmed (a shift, or before it a stretch of its wandering)
