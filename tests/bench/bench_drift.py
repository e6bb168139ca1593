"""Benchmark of the drift monitor: cost per value and per evaluation, memory per series, beside river's KSWIN.

Run ``python tests/bench/bench_drift.py [--series 1000] [--values 2000]``. Not collected by pytest.

Prints, for 1,000 interleaved series (window 500, then window 5,000):
amortised microseconds per value (``update`` alone and with evaluations),
microseconds per evaluation, KSWIN's microseconds per value on the same
values in the same run, the ratio, and memory per series beyond the baseline.
Targets (issue 4): <= 2 us/value update, <= 100 us/evaluation, >= 5x cheaper
than KSWIN, constant from window 500 to 5,000, <= 16 KB/series beyond the baseline.
"""

from __future__ import annotations

import argparse
import time
import tracemalloc

import numpy as np

from processors.drift import DriftMonitor, DriftSettings

T0 = 1_700_000_000_000


def make_monitors(settings: DriftSettings, n: int, rng: np.random.Generator) -> list[DriftMonitor]:
    monitors = []
    for i in range(n):
        m = DriftMonitor(settings, agent_name=f"agent{i % 50}", feature=f"f{i}")
        m.pin_baseline(rng.normal(50, 10, settings.baseline_size).tolist())
        monitors.append(m)
    return monitors


def drive(monitors: list[DriftMonitor], values: np.ndarray) -> tuple[float, float, int]:
    """Feed ``values[i, j]`` to series ``j`` round-robin; returns (total s, evaluation s, evaluations)."""
    eval_time = [0.0]
    evals = [0]
    for m in monitors:  # time the batched evaluations separately
        inner = m._evaluate

        def timed(inner=inner):
            t = time.perf_counter()
            r = inner()
            eval_time[0] += time.perf_counter() - t
            evals[0] += 1
            return r

        m._evaluate = timed
    rows = values.tolist()
    updates = [m.update for m in monitors]
    t = time.perf_counter()
    for i, row in enumerate(rows):
        ts = T0 + i
        for update, x in zip(updates, row, strict=True):
            update(x, ts)
    total = time.perf_counter() - t
    for m in monitors:
        del m._evaluate
    return total, eval_time[0], evals[0]


def window_state_bytes(m: DriftMonitor) -> int:
    """Bytes of the window state (ring, per-block sums, incremental position counts): what grows with use."""
    arrays = [m._ring, m._blocks, m._sums, m._block_ts, m._row, m._v]
    if m._cells is not None:  # cell counts, kept only for a configured window longer than every alarm window
        arrays.append(m._cells)
    return sum(a.nbytes for a in arrays) + 8 * m.settings.look_every  # + the pending block (list of floats)


def baseline_bytes(m: DriftMonitor) -> int:
    arrays = (m._base, m._cell_table, m._cell_lr, m._edges, m._base_props, m._base_props_eps)
    # the cell tables of a tie-free baseline depend on its size alone and are one read-only copy shared by every
    # such series: not part of a series' own memory
    return sum(a.nbytes for a in arrays if a.flags.writeable)


def measure(settings: DriftSettings, n_series: int, n_values: int, seed: int = 0) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    monitors = make_monitors(settings, n_series, rng)
    # warm-up: fills the windows and the process-wide KS p-value memo
    warm = settings.window + 500
    drive(monitors, rng.normal(50, 10, (warm, n_series)))
    values = rng.normal(50, 10, (n_values, n_series))
    total, ev, evals = drive(monitors, values)
    n = n_values * n_series
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    extra = make_monitors(settings, 50, rng)
    drive(extra, rng.normal(50, 10, (settings.window + 50, 50)))
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    traced = sum(s.size_diff for s in after.compare_to(before, "filename")) / 50
    return {
        "us_per_value_total": total / n * 1e6,
        "us_per_value_update": (total - ev) / n * 1e6,
        "us_per_evaluation": ev / max(evals, 1) * 1e6,
        "window_state_kb": window_state_bytes(monitors[0]) / 1024,
        "baseline_kb": baseline_bytes(monitors[0]) / 1024,
        "traced_kb_per_series": traced / 1024,
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
    ap.add_argument("--series", type=int, default=1000)
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
        series = args.series if window == 500 else max(args.series // 5, 1)  # filling long windows is slow
        r = measure(s, series, args.values)
        results[window] = r
        print(
            f"window {window:>5}, {series} series x {args.values} values: "
            f"update {r['us_per_value_update']:.2f} us/value, "
            f"evaluation {r['us_per_evaluation']:.1f} us per look (every {s.look_every}; "
            f"{r['us_per_evaluation'] * s.evaluate_every / s.look_every:.1f} us per report period of "
            f"{s.evaluate_every}), "
            f"amortised {r['us_per_value_total']:.2f} us/value; "
            f"window state {r['window_state_kb']:.1f} KB, baseline {r['baseline_kb']:.1f} KB, "
            f"traced {r['traced_kb_per_series']:.1f} KB/series"
        )
    k = kswin_us_per_value(args.kswin_series, args.kswin_values)
    ours = results[500]["us_per_value_total"]
    print(f"river KSWIN (defaults) on the same kind of values: {k:.1f} us/value")
    print(f"ratio KSWIN / ours (amortised, window 500): {k / ours:.0f}x")
    print(
        "window 5000 / 500: update "
        f"{results[5000]['us_per_value_update'] / results[500]['us_per_value_update']:.2f}x, evaluation "
        f"{results[5000]['us_per_evaluation'] / results[500]['us_per_evaluation']:.2f}x; "
        f"5000 / 1000: evaluation {results[5000]['us_per_evaluation'] / results[1000]['us_per_evaluation']:.2f}x"
    )
    checks = {
        "update <= 2 us/value": results[500]["us_per_value_update"] <= 2.0,
        "evaluation <= 100 us per report period (50 values, two looks)": results[500]["us_per_evaluation"] * 2 <= 100.0,
        ">= 5x cheaper than KSWIN": k / ours >= 5,
        "window state <= 16 KB (window 500)": results[500]["window_state_kb"] <= 16,
    }
    for name, ok in checks.items():
        print(f"  {'ok ' if ok else 'MISS'} {name}")


if __name__ == "__main__":
    main()
