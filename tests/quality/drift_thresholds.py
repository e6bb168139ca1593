"""Regenerate the table of :mod:`reverify.processors.drift.presimulated`: the default drift settings' thresholds.

Run ``python -m tests.quality.drift_thresholds`` (about 7 s) and replace the generated literals of
``processors/drift/presimulated.py`` with what it prints; ``--check`` instead compares the module's table with a
fresh simulation and exits 1 on any difference. Needed after changing a default of ``DriftSettings`` (those the
fingerprint names, or the dependence grid) or the simulation itself (``processors/drift/calibration.py``).
"""

from __future__ import annotations

import argparse
import sys
import time

from reverify.processors.drift import presimulated
from reverify.processors.drift.calibration import _simulated_threshold
from reverify.processors.drift.settings import DriftSettings


def fingerprint(settings: DriftSettings) -> dict[str, object]:
    """The arguments of the simulation that ``settings`` fix, in the order :func:`presimulated.lookup` takes."""
    s = settings
    return {
        "n_baseline": s.baseline_size,
        "windows": s.windows,
        "every": s.look_every,
        "rate": s.rate_per_value,
        "quiet_looks": s.window // s.look_every,
        "replicates": s.calibration_replicates,
        "length": s.calibration_length,
        "seed": s.calibration_seed,
        "spread_weight": s.spread_weight,
    }


def points(settings: DriftSettings) -> list[tuple[tuple[int, ...] | None, float]]:
    """``(ties, phi)`` of every threshold a default worker can need at the default baseline size: each point of
    the dependence grid for a tie-free baseline, and a constant baseline (its dependence estimate is 0)."""
    return [(None, phi) for phi in settings.dependence_grid()] + [((settings.baseline_size,), 0.0)]


def simulate(settings: DriftSettings, ties: tuple[int, ...] | None, phi: float) -> float:
    """The threshold of one point, simulated now (never from the table)."""
    f = fingerprint(settings)
    rest = (f["windows"], f["every"], f["rate"], f["quiet_looks"], f["replicates"], f["length"], f["seed"])
    return _simulated_threshold(f["n_baseline"], ties, *rest, f["spread_weight"], phi)


def table(settings: DriftSettings) -> dict[tuple[tuple[int, ...] | None, float], float]:
    return {(ties, phi): simulate(settings, ties, phi) for ties, phi in points(settings)}


def literal(settings: DriftSettings, thresholds: dict[tuple[tuple[int, ...] | None, float], float]) -> str:
    """The module's two generated assignments, formatted as ruff formats them."""
    lines = ["FINGERPRINT: dict[str, object] = {"]
    lines += [f"    {name!r}: {value!r}," for name, value in fingerprint(settings).items()]
    lines += ["}", "THRESHOLDS: dict[tuple[tuple[int, ...] | None, float], float] = {"]
    lines += [f"    ({ties!r}, {phi!r}): {h!r}," for (ties, phi), h in thresholds.items()]
    lines += ["}"]
    return "\n".join(lines).replace("'", '"')


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="compare the module's table with a fresh simulation")
    args = ap.parse_args()
    settings = DriftSettings()
    t = time.perf_counter()
    fresh = table(settings)
    print(f"# {len(fresh)} thresholds simulated in {time.perf_counter() - t:.1f} s", file=sys.stderr)
    if args.check:
        same = fingerprint(settings) == presimulated.FINGERPRINT and fresh == presimulated.THRESHOLDS
        print("presimulated table is up to date" if same else "presimulated table differs: regenerate it")
        return 0 if same else 1
    print(literal(settings, fresh))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
