"""Benchmark of the drift monitor: cost per value and per evaluation, memory per series, beside river's KSWIN.

Run ``python tests/bench/bench_drift.py [--series 1000] [--values 500]``. Not collected by pytest.

Prints, for 1,000 interleaved series at window 500, 1,000 and 5,000 (after a
warm-up of the window plus 2,000 values): microseconds per value for ``push``
(the update alone); microseconds per series per report period of 50 values (two
looks, one report) and per look, when the looks that fall due together are
taken in one batch (:func:`processors.drift.update_many`, as the processor does
with the series of one event) and when each series is looked at alone
(``DriftMonitor.update``); the amortised cost per value; KSWIN's microseconds per
value on the same kind of values in the same run and the ratio; memory per
series beyond the baseline.
Targets (issue 4): <= 2 us/value update, <= 100 us per evaluation (report period),
>= 5x cheaper than KSWIN, constant from window 500 to 5,000, <= 16 KB/series
beyond the baseline.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
import tracemalloc
from collections.abc import Callable

import numpy as np
from reverify.processors.drift import DriftMonitor, DriftSettings, evaluate_looks
from reverify.processors.drift.calibration import KS_MEMO

T0 = 1_700_000_000_000
WINDOW_STATE = ("ring", "blocks", "block_ts", "sums", "cells")  # the bank rows that grow with the window
BASELINE = ("base", "levels", "props_eps")


def make_monitors(settings: DriftSettings, n: int, rng: np.random.Generator) -> list[DriftMonitor]:
    monitors = []
    for i in range(n):
        m = DriftMonitor(settings, agent_name=f"agent{i % 50}", feature=f"f{i}")
        m.pin_baseline(rng.normal(50, 10, settings.baseline_size).tolist())
        monitors.append(m)
    return monitors


def look_batched(monitors: list[DriftMonitor], row: list[float], ts: int) -> tuple[float, int]:
    """One value per series, then every due look in one call (``update_many``); (seconds evaluating, looks)."""
    due = [m for m, x in zip(monitors, row, strict=True) if m.push(x, ts)]
    if not due:
        return 0.0, 0
    t = time.perf_counter()
    evaluate_looks(due)
    return time.perf_counter() - t, len(due)


def look_alone(monitors: list[DriftMonitor], row: list[float], ts: int) -> tuple[float, int]:
    """One value per series, each due look on its own (``update``); (seconds evaluating, looks)."""
    spent, looks = 0.0, 0
    for m, x in zip(monitors, row, strict=True):
        if m.push(x, ts):
            t = time.perf_counter()
            evaluate_looks([m])
            spent += time.perf_counter() - t
            looks += 1
    return spent, looks


Feed = Callable[[list[DriftMonitor], list[float], int], tuple[float, int]]


def drive(monitors: list[DriftMonitor], values: np.ndarray, feed: Feed = look_batched) -> tuple[float, float, int]:
    """Feed ``values[i, j]`` to series ``j`` round-robin; returns (total s, evaluation s, looks)."""
    spent, looks = 0.0, 0
    t = time.perf_counter()
    for i, row in enumerate(values.tolist()):
        s, k = feed(monitors, row, T0 + i)
        spent += s
        looks += k
    return time.perf_counter() - t, spent, looks


def window_state_bytes(m: DriftMonitor) -> int:
    """Bytes of the window state (ring, per-block sums, window sums, cell counts): what grows with use."""
    return m.shape.bank.row_bytes(WINDOW_STATE) + 8 * m.settings.look_every  # + the pending block (list of floats)


def baseline_bytes(m: DriftMonitor) -> int:
    own = m.shape.bank.row_bytes(BASELINE) + m._edges.nbytes + m._base_props.nbytes
    # a tied baseline's cell table is its own; without ties the shape is one read-only copy shared by every series
    return own + (m.shape.lr.nbytes if m.shape.lr is not None else 0)


def traced_bytes_per_series(settings: DriftSettings, rng: np.random.Generator, n: int = 64) -> float:
    """Python-traced memory of ``n`` filled series, everything included.

    Series of one shape share a bank that grows by doubling; equal settings but for an unused field give these
    their own bank, of exactly ``n`` rows, so the figure carries no other series' rows and no growth slack.
    """
    low, medium, high = settings.psi_grades
    own = dataclasses.replace(settings, psi_grades=(low, medium, high + 1e-9))
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    monitors = make_monitors(own, n, rng)
    drive(monitors, rng.normal(50, 10, (settings.window + 50, n)))
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    return sum(s.size_diff for s in after.compare_to(before, "filename")) / n


def measure(settings: DriftSettings, n_series: int, n_values: int, seed: int = 0) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    monitors = make_monitors(settings, n_series, rng)
    # warm-up: fills the windows and most of the process-wide memo of exact KS p-values, whose first computation
    # (up to milliseconds for a window of 5,000) is a one-off per process
    drive(monitors, rng.normal(50, 10, (settings.window + 2000, n_series)))
    memo = len(KS_MEMO)
    total, ev, looks = drive(monitors, rng.normal(50, 10, (n_values, n_series)))
    _, ev_alone, looks_alone = drive(monitors, rng.normal(50, 10, (n_values, n_series)), look_alone)
    n = n_values * n_series
    return {
        "new_p_values": len(KS_MEMO) - memo,
        "us_per_value_total": total / n * 1e6,
        "us_per_value_update": (total - ev) / n * 1e6,
        "us_per_look": ev / looks * 1e6,
        "us_per_look_alone": ev_alone / looks_alone * 1e6,
        "window_state_kb": window_state_bytes(monitors[0]) / 1024,
        "baseline_kb": baseline_bytes(monitors[0]) / 1024,
        "traced_kb_per_series": traced_bytes_per_series(settings, rng) / 1024,
    }


def kswin_us_per_value(n_series: int, n_values: int, seed: int = 0) -> float:
    from river.drift import KSWIN

    rng = np.random.default_rng(seed)
    values = rng.normal(50, 10, (n_values, n_series)).tolist()
    dets = [KSWIN(seed=0) for _ in range(n_series)]
    t = time.perf_counter()
    for row in values:
        for det, x in zip(dets, row, strict=True):
            det.update(x)
    return (time.perf_counter() - t) / (n_values * n_series) * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--series", type=int, default=1000, help="series per window length, fed together")
    ap.add_argument("--values", type=int, default=500, help="measured values per series (after warm-up)")
    ap.add_argument("--kswin-series", type=int, default=10)
    ap.add_argument("--kswin-values", type=int, default=300)
    args = ap.parse_args()

    t = time.perf_counter()
    DriftMonitor(DriftSettings()).pin_baseline(np.arange(1000.0).tolist())
    print(f"calibration (first baseline, cached afterwards): {time.perf_counter() - t:.2f} s")
    t = time.perf_counter()
    DriftMonitor(DriftSettings()).pin_baseline(np.arange(1000.0)[::-1].tolist())
    print(f"calibration of a further baseline: {(time.perf_counter() - t) * 1e3:.2f} ms")

    results = {}
    for window in (500, 1000, 5000):
        s = DriftSettings(window=window)
        per_report = s.evaluate_every / s.look_every  # looks per report period; every other one reports
        r = measure(s, args.series, args.values)
        results[window] = r
        print(
            f"window {window:>5}, {args.series} series x {args.values} values: "
            f"evaluation {r['us_per_look'] * per_report:.1f} us per series per report period of {s.evaluate_every} "
            f"values ({r['us_per_look']:.1f} us per look, every {s.look_every}; the due series looked at together), "
            f"{r['us_per_look_alone'] * per_report:.1f} us when each series is looked at alone; "
            f"update {r['us_per_value_update']:.2f} us/value, amortised {r['us_per_value_total']:.2f} us/value; "
            f"window state {r['window_state_kb']:.1f} KB, baseline {r['baseline_kb']:.1f} KB, "
            f"traced {r['traced_kb_per_series']:.1f} KB/series; {r['new_p_values']} KS p-values computed afresh"
        )
    k = kswin_us_per_value(args.kswin_series, args.kswin_values)
    ours = results[500]["us_per_value_total"]
    print(f"river KSWIN (defaults) on the same kind of values: {k:.1f} us/value")
    print(f"ratio KSWIN / ours (amortised, window 500): {k / ours:.0f}x")
    growth = results[5000]["us_per_look"] / results[500]["us_per_look"]
    print(
        "window 5000 / 500: update "
        f"{results[5000]['us_per_value_update'] / results[500]['us_per_value_update']:.2f}x, evaluation "
        f"{growth:.2f}x (alone {results[5000]['us_per_look_alone'] / results[500]['us_per_look_alone']:.2f}x); "
        f"5000 / 1000: evaluation {results[5000]['us_per_look'] / results[1000]['us_per_look']:.2f}x"
    )
    checks = {
        "update <= 2 us/value": results[500]["us_per_value_update"] <= 2.0,
        "evaluation <= 100 us per report period (50 values, two looks)": results[500]["us_per_look"] * 2 <= 100.0,
        ">= 5x cheaper than KSWIN": k / ours >= 5,
        "window state <= 16 KB (window 500)": results[500]["window_state_kb"] <= 16,
        "evaluation about constant from window 500 to 5,000 (<= 1.25x)": growth <= 1.25,
    }
    for name, ok in checks.items():
        print(f"  {'ok ' if ok else 'MISS'} {name}")


if __name__ == "__main__":
    main()
