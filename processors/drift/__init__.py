"""Drift of every monitored series against its baseline: PSI, KS, mean shift, variance ratio, and a calibrated alarm.

A series is ``(agent_name, feature[, variant_id])``. Its first ``baseline_size``
values (or values pinned by a person) are the baseline; after that, every
``evaluate_every`` values the monitor reports the seed's statistics on the last
``window`` values and decides its alarm. Pure: no clock (time is the events'
``ts``), no I/O.

The seed's grades (PSI < 0.1 none, < 0.2 low, < 0.25 medium, else high; mean
shift > 2 sd; sd ratio outside [0.5, 2]) are *reported*. They are not the
alarm: fixed thresholds re-tested on a sliding window alarm constantly on a
stationary stream. The alarm watches rank statistics (Mann-Whitney location
and a Mood-type spread statistic of the window's placements among the baseline
values) over windows 25/50/75/100/150/200/300/500 at once, looked at every
``look_every`` = 25 values, against one threshold simulated to the false-alarm
budget -- see :mod:`.calibration`. Reports still go out every
``evaluate_every`` = 50 values, plus one at the alarm look where the alarm fires
or resolves. Measured on the unit tests' seeded N(50, 10) streams (river ADWIN
on the same streams beside): 6 false alarms over 100 seeds x 5,000 values (budget
5 expected, test bound 10); ADWIN 0 over 20 seeds. 0.5 sd shift: median delay
75 (max 300, every seed caught) vs ADWIN 80; 1 sd: 25 vs 48; doubled sd: 25,
ADWIN misses half the seeds within 1,000 values.

Cost: ``update`` only appends; the work is done once per look (25 values),
and the looks that fall due together are taken in one vectorised pass.

Modules, one concept each: :mod:`.settings` (every number), :mod:`.calibration`
(the alarm threshold for a false-alarm budget, exact KS p-values),
:mod:`.monitor` (what every monitor shares; PSI), :mod:`.numeric` and
:mod:`.categorical` (the two monitors), :mod:`.bank` (window state of many
series side by side), :mod:`.looks` (looks taken together; the one seam a host
feeds a fetch through), :mod:`.processor` (series of a partition, events in,
reports and alerts out).

References
----------
Yurdakul, B. (2018). Statistical properties of population stability index. PhD thesis, Western Michigan University.
Kolmogorov-Smirnov two-sample test: Hodges, J. L. (1958). The significance probability of the Smirnov
two-sample test. *Arkiv for Matematik* 3; implemented as ``scipy.stats.ks_2samp``.
Bifet, A. and Gavalda, R. (2007). Learning from time-changing data with adaptive windowing (ADWIN). SDM.
Alibi Detect online detectors, calibrated to an expected run time: https://docs.seldon.io/projects/alibi-detect

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(7)
>>> m = DriftMonitor(DriftSettings(), agent_name="hunter", feature="reward")
>>> reports = [m.update(float(x), 1_700_000_000_000 + i) for i, x in enumerate(rng.normal(50, 10, 1500))]
>>> r = [x for x in reports if x][-1]
>>> r["baseline_size"], r["window_size"], r["severity"], r["alarm"]
(1000, 500, 'none', False)
>>> shifted = [m.update(float(x), 1_700_000_100_000 + i) for i, x in enumerate(rng.normal(65, 10, 100))]
>>> m.firing, m.fired_at - 1_700_000_100_000  # fired on the first alarm look after the shift
(True, 24)
"""

from __future__ import annotations

from reverify.processors.drift.calibration import alarm_threshold, warm_caches
from reverify.processors.drift.categorical import CategoricalDriftMonitor
from reverify.processors.drift.looks import LookFeed, evaluate_looks, feed_fetch, update_many
from reverify.processors.drift.monitor import psi, psi_grade
from reverify.processors.drift.numeric import DriftMonitor
from reverify.processors.drift.processor import OUTCOME_FIELDS, REPORT_TOPIC, DriftProcessor
from reverify.processors.drift.settings import DriftSettings

__all__ = [
    "OUTCOME_FIELDS",
    "REPORT_TOPIC",
    "CategoricalDriftMonitor",
    "DriftMonitor",
    "DriftProcessor",
    "DriftSettings",
    "LookFeed",
    "alarm_threshold",
    "evaluate_looks",
    "feed_fetch",
    "psi",
    "psi_grade",
    "update_many",
    "warm_caches",
]
