"""Window state of many series side by side: a bank of arrays per *shape*, a row per series.

A shape is what a look depends on besides a series' own state (settings,
baseline size, the baseline's ties). Every series of one shape keeps its
baseline, ring of cells, per-block sums and window sums in one row of the
shape's :class:`Bank`, so that a look of many of them (:mod:`.looks`) is a few
numpy calls on their rows rather than a few per series.

>>> from reverify.processors.drift.settings import DriftSettings
>>> sh = untied_shape(DriftSettings(), 1000)
>>> sh is untied_shape(DriftSettings(), 1000), sh.cap, sh.nblocks, sh.bank.ring.dtype
(True, 500, 20, dtype('int16'))
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import Any, NamedTuple

import numpy as np
from reverify.processors.drift.calibration import placement_moments, tie_ranks, window_scales
from reverify.processors.drift.settings import DriftSettings

__all__ = ["Bank", "Rows", "Shape", "columns_from", "tied_shape", "untied_shape"]

# a monitor as the engine sees it (numeric.py / monitor.py import this module, so not imported back)
DriftMonitor = Any


class Shape:
    """What a look depends on besides a series' own state: its settings, baseline size and placement moments.

    Read-only and shared: one copy per distinct shape (see :func:`untied_shape`), which keeps it in cache across
    the series and tells :func:`.looks.evaluate_looks` which series can be looked at together. It owns the bank that
    holds the window state of its series.
    """

    def __init__(
        self, s: DriftSettings, n: int, moments: tuple[float, float, float], counts: np.ndarray | None
    ) -> None:
        every = s.look_every
        self.n, self.every, self.window, self.bins = n, every, s.window, s.bins
        self.cap = max(s.window, *s.windows)
        self.nblocks = self.cap // every
        self.report_looks = s.evaluate_every // every
        wins = sorted(set(s.windows) | {s.window})
        self.wins, self.wins_list = np.array(wins), wins
        self.head = wins.index(s.window)
        self.alarm_wins = [(i, w) for i, w in enumerate(wins) if w in s.windows]
        self.leave = _leaving_blocks(self.nblocks, tuple(w // every for w in wins))
        s1, mu2w, s2 = window_scales(self.wins, n, moments, s.spread_weight)
        alarm = np.isin(self.wins, s.windows)
        # window sums of c - n are 2n * sum(p), of (c - n)^2 are 4n^2 * sum(p^2): fold the units into the scales
        self.z_scale = np.stack([s1 / (2 * n), s2 / (4.0 * n * n)], axis=1) * alarm[:, None]
        self.z_off = np.stack([np.zeros(len(wins)), mu2w * 4.0 * n * n], axis=1)
        # the configured window keeps its cell counts only when it is longer than every alarm window; otherwise its
        # KS comes with theirs from one sort of at most sum(windows) cells
        self.keep_cells = s.window > max(s.windows)
        self.mirror = max(s.windows)  # the longest window KS sorts (see sorted_ks_windows)
        self.psi_epsilon = s.psi_epsilon
        self.eps_by_max = 0.0 <= s.psi_epsilon <= 1.0 / self.cap
        # a tied baseline's (#{b < x}, #{b <= x}) per cell; without ties they are cell arithmetic
        self.lr = None if counts is None else _cell_placements(n, counts)
        self.ks_wins = self._ks_windows(self.cap)
        self.bank = Bank(self)

    def shown(self, filled: int) -> list[tuple[int, int]]:
        """``(row, window)`` of the alarm windows a report shows: those already full."""
        if filled >= self.cap:
            return self.alarm_wins
        return [(i, w) for i, w in self.alarm_wins if w <= filled]

    def sorted_ks_windows(self, filled: int) -> tuple[int, ...]:
        """Windows whose KS comes from sorting their cells: the shown alarm windows, the configured one unless it
        keeps cell counts (with what there is of it while it fills)."""
        return self.ks_wins if filled >= self.cap else self._ks_windows(filled)

    def _ks_windows(self, filled: int) -> tuple[int, ...]:
        wins = [w for _, w in self.shown(filled)]
        head = min(self.window, filled)
        if not self.keep_cells and head not in wins:
            wins.append(head)
        return tuple(wins)

    def placements(self, cells: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(#{b < x}, #{b <= x})`` of values known by their cells, in the cells' integer type."""
        if self.lr is None:
            below = cells >> 1  # cell 2i: between b_i and b_(i+1); 2i + 1: equal to b_i
            return below, cells - below
        below, upto = self.lr.take(cells, axis=1)
        return below.astype(cells.dtype, copy=False), upto.astype(cells.dtype, copy=False)


class Bank:
    """The state of every series of one shape, a row each: its baseline and PSI levels, then its window state.

    With the series' rows side by side a look of many of them is a few numpy calls on those rows, where per-series
    arrays would take a few calls per series. Rows are recycled: a series frees its row when it takes a new
    baseline or is collected; the arrays grow by doubling and never shrink. Like the monitors, not thread-safe:
    a worker drives its processors from one thread.
    """

    def __init__(self, sh: Shape) -> None:
        ring_type = np.int16 if 2 * sh.n < 2**15 else np.int32
        k = 4 + sh.bins
        # per row: shape of the row, dtype; a ring holds the cells of the last `cap` values, then a copy of the
        # first `mirror` of them, so that every window KS sorts is one contiguous slice; a block row holds
        # sum(c - n), sum((c - n)^2), sum(x - mean_b), sum((x - mean_b)^2), then the block's PSI bin counts (all
        # but the x sums integers, exact in float64); sums are the running sums of every window
        self._layout: dict[str, tuple[tuple[int, ...], Any]] = {
            "base": ((2 ** (sh.n + 1).bit_length() - 1,), np.float64),  # padded with inf: see _count_below
            "levels": ((sh.bins + 2,), np.float64),
            "props_eps": ((sh.bins,), np.float64),
            "ring": ((sh.cap + sh.mirror,), ring_type),
            "blocks": ((sh.nblocks, k), np.float64),
            "block_ts": ((sh.nblocks,), np.int64),
            "sums": ((len(sh.wins_list), k), np.float64),
        }
        if sh.keep_cells:  # cell counts of the configured window
            self._layout["cells"] = ((2 * sh.n + 1,), np.int32)
        self.cells: np.ndarray | None = None
        self.free: list[int] = []
        self.rows = 0
        self._grow(1)

    base: np.ndarray
    levels: np.ndarray
    props_eps: np.ndarray
    ring: np.ndarray
    blocks: np.ndarray
    block_ts: np.ndarray
    sums: np.ndarray

    def take(self) -> int:
        """A zeroed row."""
        if not self.free:
            self._grow(2 * self.rows)
        row = self.free.pop()
        for name in self._layout:
            getattr(self, name)[row] = 0
        return row

    def _grow(self, rows: int) -> None:
        for name, (shape, dtype) in self._layout.items():
            grown = np.zeros((rows, *shape), dtype=dtype)
            if self.rows:
                grown[: self.rows] = getattr(self, name)
            setattr(self, name, grown)
        self.free.extend(range(rows - 1, self.rows - 1, -1))  # lowest first: rows of series made together stay in order
        self.rows = rows

    def row_bytes(self, names: Iterable[str]) -> int:
        """Bytes of one row of the named arrays."""
        return sum(getattr(self, name)[0].nbytes for name in names if name in self._layout)


@lru_cache(maxsize=64)
def untied_shape(s: DriftSettings, n: int) -> Shape:
    """The shape of every tie-free baseline of ``n`` values (their placement moments are those of ``0 .. n-1``)."""
    return Shape(s, n, placement_moments(np.arange(float(n))), None)


@lru_cache(maxsize=256)
def tied_shape(s: DriftSettings, n: int, counts: tuple[int, ...]) -> Shape:
    """The shape of every baseline of ``n`` values whose sorted distinct values occur ``counts`` times (a constant
    cost of any value, rewards on the same few levels): placements depend on the ranks alone."""
    return Shape(s, n, placement_moments(tie_ranks(counts)), np.asarray(counts))


def _cell_placements(n: int, counts: np.ndarray) -> np.ndarray:
    """``(#{b < x}, #{b <= x})`` per cell (columns) of a baseline whose sorted distinct values occur ``counts`` times.

    >>> _cell_placements(3, np.array([2, 1])).tolist()  # baseline (a, a, b): cells 0 .. 6, odd 1 and 3 impossible
    [[0, 0, 0, 0, 2, 2, 3], [0, 3, 2, 3, 2, 3, 3]]
    """
    right_u = np.cumsum(counts)
    lr = np.empty((2, 2 * n + 1), dtype=np.int32)
    lr[0], lr[1] = 0, n  # cells no value can take: harmless (<= 0) in every KS maximum
    gaps = np.concatenate([[0], right_u])
    lr[:, 2 * gaps] = gaps  # strictly between distinct values: #< = #<=
    lr[0, right_u - counts + right_u] = right_u - counts
    lr[1, right_u - counts + right_u] = right_u
    lr.flags.writeable = False
    return lr


@lru_cache(maxsize=64)
def _leaving_blocks(nblocks: int, k: tuple[int, ...]) -> np.ndarray:
    """Per ring position, the block leaving each window (``k`` blocks long); shared by every series (read-only)."""
    leave = (np.arange(nblocks)[:, None] - np.array(k)[None, :]) % nblocks
    leave.flags.writeable = False
    return leave


class Rows(NamedTuple):
    """The bank rows of a batch of series, in batch order: a slice when they are consecutive (views, no copies)."""

    at: slice | np.ndarray
    ids: np.ndarray

    @classmethod
    def of(cls, ms: Sequence[DriftMonitor]) -> Rows:
        if len(ms) == 1:
            slot = ms[0].slot
            return cls(slice(slot, slot + 1), np.array([slot]))
        slots = [m.slot for m in ms]
        first = slots[0]
        ids = np.array(slots)
        if slots == list(range(first, first + len(slots))):
            return cls(slice(first, first + len(slots)), ids)
        return cls(ids, ids)

    def each(self, a: np.ndarray) -> Iterable[np.ndarray]:
        """The rows of ``a``, views."""
        return a[self.at] if isinstance(self.at, slice) else (a[i] for i in self.ids.tolist())

    def index(self, cols: slice | np.ndarray) -> tuple[Any, Any]:
        """The index of ``cols`` in each row: the same columns for every row (a slice, or 1-D), or a row of them
        per series (2-D, from :func:`columns_from`)."""
        if isinstance(cols, slice) or (cols.ndim == 1 and isinstance(self.at, slice)):
            return self.at, cols
        return self.ids[:, None], cols


def columns_from(start: int | np.ndarray, width: int) -> slice | np.ndarray:
    """``width`` columns from ``start``: a slice for a shared start, a row of columns per series for one each."""
    if isinstance(start, np.ndarray):
        return start[:, None] + np.arange(width)
    return slice(start, start + width)
