"""Issue 15's grids through ``reverify replay FILE --json``: the worker's own code decides, from JSON lines.

Run ``python -m tests.quality.replay_grids [--runs 40] [--seeds 20] [--values 10000] [--fleet 1000]``
(about 6 minutes at these defaults on one core). Not collected by pytest; ``tests/unit/test_rollback_replay.py``
and ``tests/unit/test_drift_replay.py`` check on smaller grids that the replay decides exactly where the plain
detectors (:mod:`tests.quality.rollback_grid`, :mod:`tests.quality.drift_dependence`) do.

Each section writes its streams as the JSON lines a user would replay, pipes them into the ``reverify replay - --json``
command of this environment, reads what it prints, and counts:

* rollbacks: per (reward law, success rate p) cell, ``--runs`` stationary arms of 2,000 invocations (false
  rollbacks; target at most 1 %), and the median delay of the first Rollback after 0.95 -> 0.5 and 0.9 -> 0.7
  (after 1,000 healthy invocations) and 0.95 -> 0.5 (after 100), targets 15, 60 and 25;
* drift: metric series, AR(1) of lag-1 correlation 0 to 0.95, N(50, 10) or skewed, a 1,000-value baseline then
  ``--values`` stationary values (false alarms per 10,000 values per series; budget 0.1, within 2x at 0.8), and the
  median delay of the first alarm after a 0.5 or 1 sd shift of independent series (75 and 25 before issue 15);
* fleet: ``--fleet`` stationary arms (p = 0.9, binary rewards) and ``--fleet`` independent series of 2,000 values
  each: the whole fleet's false rollbacks and false drift alarms beside what the fleet budgets allow.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from tests.quality import rollback_grid as grid
from tests.quality.drift_dependence import ar1

T0 = 1_700_000_000_000
STEP_MS = 10  # event time between two inputs of one stream
BASELINE = 1_000  # values of a drift baseline (DriftSettings.baseline_size)
KEPT = (b'{"record_type":"Rollback"', b'{"record_type":"DriftReport"')


def arm_lines(agent: str, ok: np.ndarray, reward: np.ndarray, err: np.ndarray) -> list[str]:
    """One arm's invocations (v0, active: seen first) and errors, and a few outcomes of v1 so a rollback has a
    target; invocation ``t`` at ``T0 + 10 t``."""
    out: list[dict[str, Any]] = []
    for t, (success, r, e) in enumerate(zip(ok.tolist(), reward.tolist(), err.tolist(), strict=True)):
        base = {"agent_name": agent, "task_type": "t", "ts": T0 + STEP_MS * t}
        out.append({"kind": "outcome", **base, "event_id": f"{agent}-{t}", "variant_id": "v0", "success": success,
                    "reward": r})  # fmt: skip
        if e:
            out.append({"kind": "error", **base, "event_id": f"{agent}-e{t}", "variant_id": "v0",
                        "component": "tool", "error_type": "Timeout"})  # fmt: skip
        if 1 <= t <= 10:
            out.append({"kind": "outcome", **base, "event_id": f"{agent}-b{t}", "variant_id": "v1", "success": True,
                        "reward": 1.0})  # fmt: skip
    return [json.dumps(x) for x in out]


def metric_lines(agent: str, name: str, values: np.ndarray) -> list[str]:
    """A metric series as ``metric`` lines, value ``i`` at ``T0 + 10 i``."""
    line = {"kind": "metric", "agent_name": agent, "name": name}
    return [
        json.dumps({**line, "value": v, "ts": T0 + STEP_MS * i, "event_id": f"{agent}-{name}-{i}"})
        for i, v in enumerate(values.tolist())
    ]


def first_rollbacks(emitted: Iterable[tuple[str, dict[str, Any]]]) -> dict[str, int]:
    """Agent -> index of the invocation (``ts`` as :func:`arm_lines` writes it) whose outcome caused its first
    Rollback."""
    first: dict[str, int] = {}
    for record_type, record in emitted:
        if record_type == "Rollback" and record["agent_name"] not in first:
            first[record["agent_name"]] = (int(record["ts"]) - T0) // STEP_MS
    return first


def alarm_values(emitted: Iterable[tuple[str, dict[str, Any]]]) -> dict[tuple[str, str], list[int]]:
    """(agent, series) -> index of the value (from 0, the baseline's first) at which each drift alarm fired.

    A DriftReport is made at every transition, so an alarm fired where a report alarms and the series' previous
    one did not; ``values_seen`` counts the values up to the report's.
    """
    fired: dict[tuple[str, str], list[int]] = {}
    alarming: set[tuple[str, str]] = set()
    for record_type, record in emitted:
        if record_type != "DriftReport" or record.get("variant_id") is not None:
            continue
        key = (record["agent_name"], record["feature"])
        if record["alarm"] and key not in alarming:
            fired.setdefault(key, []).append(int(record["values_seen"]) - 1)
            alarming.add(key)
        elif not record["alarm"]:
            alarming.discard(key)
    return fired


def replay_command(lines: Iterable[str], *args: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Pipe ``lines`` into ``reverify replay - --json`` and yield its Rollbacks and DriftReports as it prints them."""
    exe = shutil.which("reverify", path=str(Path(sys.executable).parent)) or "reverify"
    proc = subprocess.Popen([exe, "replay", "-", "--json", *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert proc.stdin is not None and proc.stdout is not None

    def write() -> None:
        assert proc.stdin is not None
        with proc.stdin:
            for line in lines:
                proc.stdin.write(line.encode() + b"\n")

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    for out in proc.stdout:
        if out.startswith(KEPT):
            record = orjson.loads(out)
            yield record.pop("record_type"), record
    writer.join()
    if proc.wait() != 0:
        raise SystemExit(f"reverify replay exited with {proc.returncode}")


def by_time(streams: list[list[str]]) -> Iterator[str]:
    """The streams' lines interleaved by event time (each stream's own order kept), as a fleet sends them."""
    import heapq

    return heapq.merge(*streams, key=lambda line: json.loads(line)["ts"])


def replayed(streams: list[list[str]]) -> tuple[list[tuple[str, dict[str, Any]]], int, float]:
    """What :func:`replay_command` keeps of the streams interleaved by time; the lines replayed and the seconds."""
    started = time.perf_counter()
    emitted = list(replay_command(by_time(streams)))
    return emitted, sum(len(s) for s in streams), time.perf_counter() - started


def rollback_section(runs: int) -> None:
    streams: list[list[str]] = []
    cells: dict[str, tuple[str, float, float, int]] = {}
    for law in grid.LAWS:
        for p in grid.P_GRID:
            cells[f"s-{law}-{p}"] = (law, p, p, grid.HORIZON)
        for before, after, change in grid.CHANGES:
            cells[f"c-{law}-{before}-{after}-{change}"] = (law, before, after, change)
    for name, (law, before, after, change) in cells.items():
        length = grid.HORIZON if change == grid.HORIZON else change + 300
        ok, reward, err = grid.streams(law, before, after, change, length, runs, grid.cell_seed("replay", name))
        streams += [arm_lines(f"{name}/{run}", ok[run], reward[run], err[run]) for run in range(runs)]
    emitted, lines, took = replayed(streams)
    first = first_rollbacks(emitted)
    print(f"\nrollbacks: {runs} arms a cell, {lines:,} lines replayed in {took:.0f} s")
    print("false rollbacks per 2,000 stationary invocations (target <= 1 %)")
    print(f"{'law':<11}" + "".join(f"{p:>8}" for p in grid.P_GRID))
    for law in grid.LAWS:
        row = [sum(k.startswith(f"s-{law}-{p}/") for k in first) / runs for p in grid.P_GRID]
        print(f"{law:<11}" + "".join(f"{r:>8.1%}" for r in row))
    print("median delay to the first Rollback, invocations after the change (missed within 300; targets 15, 60, 25)")
    print(f"{'law':<11}" + "".join(f"{f'{b}->{a} @{c}':>18}" for b, a, c in grid.CHANGES))
    for law in grid.LAWS:
        row = []
        for before, after, change in grid.CHANGES:
            prefix = f"c-{law}-{before}-{after}-{change}/"
            hits = [first.get(f"{prefix}{run}") for run in range(runs)]
            late = [t - change + 1 for t in hits if t is not None and t >= change]
            missed = runs - len(late)
            row.append(f"{np.median(late) if late else float('nan'):>10.0f} ({missed} m)")
        print(f"{law:<11}" + "".join(f"{c:>18}" for c in row))


def drift_section(seeds: int, values: int) -> None:
    streams: list[list[str]] = []
    phis = (0.0, 0.2, 0.5, 0.8, 0.95)
    for skewed in (False, True):
        for phi in phis:
            name = f"ar{phi}{'s' if skewed else 'n'}"
            streams += [metric_lines(f"{name}-{seed}", "x", ar1(seed, phi, BASELINE + values, skewed))
                        for seed in range(seeds)]  # fmt: skip
    pre = 2_000
    for shift in (0.5, 1.0):
        for seed in range(seeds):
            rng = np.random.default_rng(10_000 + seed)
            x = np.concatenate([rng.normal(50, 10, pre), rng.normal(50 + 10 * shift, 10, 1_000)])
            streams.append(metric_lines(f"shift{shift}-{seed}", "x", x))
    emitted, lines, took = replayed(streams)
    fired = alarm_values(emitted)
    print(f"\ndrift: {seeds} series a cell, {lines:,} values replayed in {took:.0f} s")
    print("false alarms per 10,000 values per series (budget 0.1; within 2x at 0.8)")
    print(f"{'marginal':<9}" + "".join(f"{f'AR {phi}':>9}" for phi in phis))
    for skewed in (False, True):
        row = []
        for phi in phis:
            name = f"ar{phi}{'s' if skewed else 'n'}"
            count = sum(sum(i >= BASELINE for i in fired.get((f"{name}-{seed}", "x"), [])) for seed in range(seeds))
            row.append(count / (seeds * values) * 10_000)
        print(f"{'skewed' if skewed else 'normal':<9}" + "".join(f"{r:>9.2f}" for r in row))
    for shift in (0.5, 1.0):
        delays, early = [], 0
        for seed in range(seeds):
            after = [i - pre for i in fired.get((f"shift{shift}-{seed}", "x"), []) if i >= pre]
            early += any(i < pre for i in fired.get((f"shift{shift}-{seed}", "x"), []))
            if after:
                delays.append(after[0] + 1)
        print(f"median delay after a {shift} sd shift: {np.median(delays) if delays else float('nan'):.0f} values "
              f"({seeds - len(delays)} missed within 1,000, {early} alarmed before)")  # fmt: skip


def fleet_section(n: int) -> None:
    streams: list[list[str]] = []
    ok, reward, err = grid.streams("binary", 0.9, 0.9, grid.HORIZON, grid.HORIZON, n, grid.cell_seed("fleet", n))
    streams += [arm_lines(f"arm-{run}", ok[run], reward[run], err[run]) for run in range(n)]
    streams += [metric_lines(f"series-{seed}", "x", ar1(50_000 + seed, 0.0, BASELINE + grid.HORIZON))
                for seed in range(n)]  # fmt: skip
    emitted, _, took = replayed(streams)
    rollbacks = len(first_rollbacks(emitted))
    alarms = sum(sum(i >= BASELINE for i in f) for (agent, _), f in alarm_values(emitted).items()
                 if agent.startswith("series-"))  # fmt: skip
    invocations = n * grid.HORIZON
    print(f"\nfleet of {n:,} stationary arms and {n:,} series of {grid.HORIZON:,} values, replayed in {took:.0f} s")
    print(f"false rollbacks: {rollbacks} (the default fleet budget, 5 per million invocations, allows "
          f"{5 * invocations / 1e6:.0f})")  # fmt: skip
    print(f"false drift alarms: {alarms} (0.1 per 10,000 values of each series allows {0.1 * invocations / 1e4:.0f})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=40, help="arms per rollback cell")
    ap.add_argument("--seeds", type=int, default=20, help="series per drift cell")
    ap.add_argument("--values", type=int, default=10_000, help="stationary values of each drift series")
    ap.add_argument("--fleet", type=int, default=1_000, help="arms and series of the fleet section")
    ap.add_argument("--only", choices=("rollbacks", "drift", "fleet"), help="run one section")
    args = ap.parse_args()
    if args.only in (None, "rollbacks"):
        rollback_section(args.runs)
    if args.only in (None, "drift"):
        drift_section(args.seeds, args.values)
    if args.only in (None, "fleet"):
        fleet_section(args.fleet)


if __name__ == "__main__":
    main()
