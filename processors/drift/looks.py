"""Drift looks taken together: the one seam between the inputs of a fetch and the drift monitors' looks.

A look of one series is a few dozen numpy calls on a few dozen values, so their
fixed cost is most of it. The looks that fall due together -- the series of one
event, the series of every agent of a fetch -- are taken in one vectorised pass
per *shape* (:mod:`.bank`), wherever each series is in its ring, with the same
reports to the last bit as looks taken alone.

The seam, for a host that applies a fetch of many agents' inputs: each agent
is a :class:`LookFeed` that applies its inputs in order until one has drift
looks due and stops there; :func:`feed_fetch` takes every waiting agent's due
looks in one pass (:func:`evaluate_looks`), hands each agent its reports to
finish the stopped input, and lets the agents go on. The monitors themselves
offer ``push`` (a value in; whether a look is due) and ``look_batch``; the
numeric monitor gives the engine below its bank row, ring position and fill
(``shape``, ``slot``, ``block_pos``, ``filled``) and ``take_block`` /
``conclude_look`` / ``report`` / ``ks_result``, nothing private.

How a look is computed: every window's sums (placement sums and PSI bin counts,
integers kept exactly in float64) are running sums -- the new block in, the
leaving block out -- so nothing grows with the window length. KS D of all alarm
windows comes from one sort of their concatenated *cells* (a value's
``#{b < x} + #{b <= x}``), in integer units of ``1 / nw``; a configured window
longer than every alarm window keeps cell counts instead (one pass over
``2n + 1`` cells). KS p-values are scipy's own exact routine, memoised
process-wide on ``(n1, n2, h)``.

References
----------
Hodges, J. L. (1958). The significance probability of the Smirnov two-sample test. *Arkiv for Matematik* 3;
implemented as ``scipy.stats.ks_2samp``.

>>> from reverify.processors.drift.numeric import DriftMonitor
>>> from reverify.processors.drift.settings import DriftSettings
>>> rng = np.random.default_rng(1)
>>> ms = [DriftMonitor(DriftSettings(baseline_size=100, window=100, windows=(50, 100))) for _ in range(3)]
>>> for m in ms:
...     m.pin_baseline(rng.normal(0, 1, 100).tolist())
>>> class Values:  # a LookFeed: one value per series per step
...     def __init__(self, rows):
...         self.rows, self.at, self.reports = rows, 0, []
...     def feed(self):
...         while self.at < len(self.rows):
...             row, self.at = self.rows[self.at], self.at + 1
...             due = [m for m, v in zip(ms, row) if m.push(v, self.at)]
...             if due:
...                 return due
...         return []
...     def finish(self, reports):
...         self.reports += reports
>>> feed = Values(rng.normal(0, 1, (100, 3)).tolist())
>>> feed_fetch([feed])
>>> len(feed.reports), sum(r is not None for r in feed.reports)  # 4 looks of 3 series, 2 of them report looks
(12, 6)
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Sequence
from functools import lru_cache
from itertools import chain
from typing import Any, NamedTuple, Protocol

import numpy as np
from reverify.processors.drift.bank import Rows, Shape, columns_from
from reverify.processors.drift.calibration import KS_MEMO

__all__ = ["LookFeed", "evaluate_looks", "feed_fetch", "look", "update_many"]

# a monitor as the engine sees it (numeric.py / monitor.py import this module, so not imported back)
DriftMonitor = Any
BaseMonitor = Any

Report = dict[str, Any]


class LookFeed(Protocol):
    """A source of inputs in a fetch (one agent's, in order) that stops where drift looks fall due."""

    def feed(self) -> Sequence[BaseMonitor]:
        """Apply inputs until one has drift looks due: the monitors due (none: every input is applied)."""
        ...

    def finish(self, reports: Sequence[Report | None]) -> None:
        """Complete the input that stopped with its looks' reports (in the order :meth:`feed` gave the monitors)."""
        ...


def feed_fetch(feeds: Iterable[LookFeed]) -> None:
    """Feed a fetch, finish its looks: run every feed until it stops at looks or ends, take the looks of all the
    stopped ones in one :func:`evaluate_looks` pass, finish them, go on until every feed has ended.

    Each feed sees exactly what it would alone (its inputs in order, each look's report the same to the bit);
    only the moment its looks are computed, together with other feeds', differs.
    """
    running = list(feeds)
    while running:
        waiting = [(f, due) for f in running if (due := f.feed())]
        if not waiting:
            return
        reports = evaluate_looks([m for _, due in waiting for m in due])
        taken = 0
        for f, due in waiting:
            f.finish(reports[taken : taken + len(due)])
            taken += len(due)
        running = [f for f, _ in waiting]


def update_many(monitors: Sequence[BaseMonitor], values: Sequence[Any], ts: int) -> list[dict[str, Any] | None]:
    """``[m.update(v, ts) for m, v in zip(monitors, values)]`` with the looks that fall due taken together.

    The monitors must be distinct. Each report is the one ``update`` gives, to the last bit.

    >>> from reverify.processors.drift import DriftMonitor, DriftSettings
    >>> rng = np.random.default_rng(1)
    >>> ms = [DriftMonitor(DriftSettings(baseline_size=100, window=100, windows=(50, 100))) for _ in range(3)]
    >>> for m in ms:
    ...     m.pin_baseline(rng.normal(0, 1, 100).tolist())
    >>> out = [update_many(ms, rng.normal(0, 1, 3).tolist(), i) for i in range(100)]
    >>> [sum(r is not None for r in row) for row in out[48:51]], out[99][2]["window_size"]
    ([0, 3, 0], 100)
    """
    due = [i for i, (m, v) in enumerate(zip(monitors, values, strict=True)) if m.push(v, ts)]
    out: list[dict[str, Any] | None] = [None] * len(monitors)
    for i, report in zip(due, evaluate_looks([monitors[i] for i in due]), strict=True):
        out[i] = report
    return out


def evaluate_looks(monitors: Sequence[BaseMonitor]) -> list[dict[str, Any] | None]:
    """Take the due look of each monitor (see :meth:`.numeric.DriftMonitor.push`); its report or ``None``, in order.

    Numeric series of one shape (settings and baseline size, tie-free baselines) are looked at in one vectorised
    pass over their bank rows, wherever each is in its ring. A block is a few dozen values, so a look of one series
    is dominated by the fixed cost of its numpy calls; one pass shares that cost among the series. The monitors
    must be distinct.
    """
    groups: dict[Hashable, list[int]] = {}
    for i, m in enumerate(monitors):
        groups.setdefault(m.batch_key, []).append(i)
    if len(groups) == 1:
        return type(monitors[0]).look_batch(list(monitors))
    out: list[dict[str, Any] | None] = [None] * len(monitors)
    for idx in groups.values():
        batch = [monitors[i] for i in idx]
        for i, report in zip(idx, type(batch[0]).look_batch(batch), strict=True):
            out[i] = report
    return out


def _positions(ms: list[DriftMonitor]) -> int | np.ndarray:
    """The ring block each series is at: one number when they share it (a series alone, one agent's series), which
    keeps their reads and writes slices of the rows; else one per series."""
    bp = [m.block_pos for m in ms]
    return bp[0] if bp.count(bp[0]) == len(bp) else np.array(bp)


def look(ms: list[DriftMonitor]) -> list[dict[str, Any] | None]:
    """One alarm look of series of one shape, each at its own ring position; a report where it is a report look or
    the alarm fired or resolved."""
    sh = ms[0].shape
    rows = Rows.of(ms)
    blocks = [m.take_block() for m in ms]
    x = np.fromiter(chain.from_iterable(b for b, _ in blocks), float, len(ms) * sh.every).reshape(len(ms), -1)
    cells = _cells(sh, rows, x)
    sums = _advance(ms, sh, rows, _block_rows(sh, rows, x, cells), cells, [t for _, t in blocks])
    z = np.abs(sums[:, :, :2] - sh.z_off)
    z *= sh.z_scale
    z = z.max(axis=2)  # per window: the larger of the location and spread statistics
    filling = [i for i, m in enumerate(ms) if m.filled < sh.cap]
    if filling:  # a window not yet full is not looked at
        for i in filling:
            ms[i].filled += sh.every
        z[filling] *= sh.wins <= np.array([[ms[i].filled] for i in filling])
    due = [i for i, (m, stat) in enumerate(zip(ms, z.max(axis=1).tolist(), strict=True)) if m.conclude_look(stat)]
    out: list[dict[str, Any] | None] = [None] * len(ms)
    if due:
        batch = [ms[i] for i in due]
        reports = _reports(batch, sh, rows if len(due) == len(ms) else Rows.of(batch), sums[due], z[due])
        for i, report in zip(due, reports, strict=True):
            out[i] = report
    return out


def _cells(sh: Shape, rows: Rows, x: np.ndarray) -> np.ndarray:
    """Each value's cell ``#{b < x} + #{b <= x}`` among its series' baseline values, shape (series, every).

    A cell in ``[0, 2n]`` is a value's midrank among the baseline values, exact under ties; it is all the alarm
    and KS need of a value, so nothing is re-sorted against the baseline.
    """
    below = _count_below(sh, rows, x)
    if sh.lr is None and len(x) > _GATHER_FROM:
        # without ties #{b <= x} is #{b < x}, plus one where x is the next baseline value (inf past the last): one
        # gather for all the series instead of a second binary search per series
        at = sh.bank.base.reshape(-1).take(below + rows.ids[:, None] * sh.bank.base.shape[1])
        return 2 * below + (at == x)
    return below + np.array([b.searchsorted(row, "right") for b, row in zip(rows.each(sh.bank.base), x, strict=True)])


_GATHER_FROM = 4  # series: below, a second search per series costs fewer numpy calls than the gather


def _count_below(sh: Shape, rows: Rows, x: np.ndarray) -> np.ndarray:
    """``#{b < x}`` of each value among its series' baseline values, shape (series, every).

    For a few series, numpy's binary search per series. For many, one branch-free binary search over all their
    bank rows at once: numpy's search mispredicts about every other branch on random values, while the probes of
    all series together are a few gathers whose cache misses overlap. A row is padded with inf to ``2^k - 1``
    values, so halving steps from ``2^(k-1)`` keep every probe inside it.
    """
    base = sh.bank.base
    if len(x) < _SEARCH_TOGETHER_FROM:
        return np.array([b.searchsorted(row) for b, row in zip(rows.each(base), x, strict=True)])
    width = base.shape[1]
    flat = base.reshape(-1)
    before_row = rows.ids[:, None] * width - 1
    below = np.zeros(x.shape, dtype=np.intp)
    step = (width + 1) >> 1
    while step:
        below += step * (flat.take(below + (before_row + step)) < x)  # probe the step-th value past `below`
        step >>= 1
    return below


_SEARCH_TOGETHER_FROM = 128  # series: measured crossover of the two searches is about 100


def _block_rows(sh: Shape, rows: Rows, x: np.ndarray, cells: np.ndarray) -> np.ndarray:
    """Each series' block row of its new block (see :class:`_Bank`), shape (series, 4 + bins).

    One matrix product per series gives them all: the vectors ``c - n``, ``d = x - mean_b``, then ``x >= edge``
    for each PSI edge from ``-inf`` (all ones) to ``inf``, times the first three. The counts at or above
    successive edges differ by the bin counts. Every product of integers stays below 2^53: exact in float64.
    """
    series, every = x.shape
    levels = sh.bank.levels[rows.at]  # mean_b, then the edges
    v = np.empty((series, sh.bins + 3, every))
    np.subtract(cells, sh.n, out=v[:, 0])
    np.subtract(x, levels[:, :1], out=v[:, 1])
    np.greater_equal(x[:, None, :], levels[:, 1:, None], out=v[:, 2:], casting="unsafe")
    p = np.matmul(v, v[:, :3].transpose(0, 2, 1)).reshape(series, -1)  # column 3i + j: v_i . v_j
    at_or_above = p[:, 8::3]  # v_i . v_2 for i >= 2
    sums = p.take([2, 0, 5, 4], axis=1)  # sum(c - n), sum((c - n)^2), sum(d), sum(d^2)
    return np.concatenate([sums, at_or_above[:, :-1] - at_or_above[:, 1:]], axis=1)


def _advance(
    ms: list[DriftMonitor], sh: Shape, rows: Rows, new: np.ndarray, cells: np.ndarray, block_ts: list[int]
) -> np.ndarray:
    """Store the new blocks, each at its series' ring position; returns every window's sums (series, windows,
    4 + bins), the new block in, the leaving one out."""
    bank = sh.bank
    bp = _positions(ms)
    shared = not isinstance(bp, np.ndarray)
    sums = bank.sums[rows.at] + (new[:, None, :] - bank.blocks[rows.index(sh.leave[bp])])
    at = rows.at if shared else rows.ids
    bank.blocks[at, bp] = new
    bank.block_ts[at, bp] = block_ts
    start = bp * sh.every
    if bank.cells is not None:
        _move_cells(ms, sh, rows, start, cells)
    bank.ring[rows.index(columns_from(start, sh.every))] = cells  # cells < 2^15 (or 2^31) by the ring's type: exact
    bp = (bp + 1) % sh.nblocks
    if shared:
        if start < sh.mirror:
            bank.ring[rows.index(columns_from(start + sh.cap, sh.every))] = cells
        for m in ms:
            m.block_pos = bp
        turned = slice(None) if bp == 0 else None
    else:
        mirrored = np.flatnonzero(start < sh.mirror)
        if len(mirrored):
            bank.ring[rows.ids[mirrored, None], columns_from(start[mirrored] + sh.cap, sh.every)] = cells[mirrored]
        for m, pos in zip(ms, bp.tolist(), strict=True):
            m.block_pos = pos
        turned = np.flatnonzero(bp == 0) if (bp == 0).any() else None
    if turned is not None:
        # once per turn of a ring, its sums afresh from the blocks: the integer columns stay exact anyway, this
        # bounds the rounding drift of the x sums at O(1) per look
        order = (-1 - np.arange(sh.nblocks)) % sh.nblocks  # newest first
        sums[turned] = bank.blocks[rows.ids[turned, None], order].cumsum(axis=1)[:, sh.wins // sh.every - 1]
    bank.sums[rows.at] = sums
    return sums


def _move_cells(ms: list[DriftMonitor], sh: Shape, rows: Rows, start: int | np.ndarray, cells: np.ndarray) -> None:
    """Cell counts of the configured window: the new block in, the one leaving out.

    The leaving block is read before the ring's write: the configured window, longer than every alarm window,
    fills the ring, so it is the very block being overwritten.
    """
    span = 2 * sh.n + 1
    flat = sh.bank.cells.reshape(-1)  # flat indices and a value array keep ufunc.at on its fast path
    full = [m.filled >= sh.window for m in ms]
    if any(full):
        old = (start - sh.window) % sh.cap
        leaving = sh.bank.ring[rows.index(columns_from(old, sh.every))][full] + (rows.ids[full] * span)[:, None]
        np.add.at(flat, leaving.ravel(), _constant(leaving.size, -1))
    entering = (cells + rows.ids[:, None] * span).ravel()
    np.add.at(flat, entering, _constant(entering.size, 1))


@lru_cache(maxsize=32)
def _constant(size: int, value: int) -> np.ndarray:
    return np.full(size, value, dtype=np.int32)


def _reports(ms: list[DriftMonitor], sh: Shape, rows: Rows, sums: np.ndarray, z: np.ndarray) -> list[dict[str, Any]]:
    """Reports of series of one shape: PSI and KS of every window in a few passes over all of them, then the dicts."""
    psis = _psis(ms, sh, rows, sums).tolist()
    ks = _ks_of(ms, sh, rows)
    heads = sums[:, sh.head, 2:4].tolist()
    first = [(m.block_pos - min(sh.window, m.filled) // sh.every) % sh.nblocks for m in ms]  # head window's 1st block
    starts = sh.bank.block_ts[rows.ids, first].tolist()
    return [m.report(*row) for m, row in zip(ms, zip(psis, ks, z.tolist(), heads, starts, strict=True), strict=True)]


def _psis(ms: list[DriftMonitor], sh: Shape, rows: Rows, sums: np.ndarray) -> np.ndarray:
    """PSI of every window of every series (series, windows); empty proportions -> epsilon on both sides."""
    cur = sums[:, :, 4:] / sh.wins[:, None]
    for i, m in enumerate(ms):
        if m.filled < sh.window:  # the configured window still filling: its sums are those of what there is of it
            cur[i, sh.head] = sums[i, sh.head, 4:] / m.filled
    eps = sh.psi_epsilon
    # proportions are counts / w: when epsilon is below 1 / longest window, a max is the same as the where
    cur = np.maximum(cur, eps) if sh.eps_by_max else np.where(cur > 0, cur, eps)
    base = sh.bank.props_eps[rows.at][:, None, :]
    terms = (cur - base) * np.log(cur / base)
    return terms.sum(axis=2)  # along each row: the same bits whatever the batch


def _ks_of(ms: list[DriftMonitor], sh: Shape, rows: Rows) -> list[dict[int, tuple[float, float]]]:
    """Per series, KS ``(statistic, pvalue)`` of each window its report shows, as ``scipy.stats.ks_2samp`` gives.

    Series whose windows are all full share one pass, and so do series still filling (once per baseline) to the
    same point: their windows are the same. The p-value depends only on ``(n, w, D)`` with ``D = h / lcm(n, w)``:
    the process-wide memo answers by ``h``.
    """
    by_filled: dict[int, list[int]] = {}
    for i, m in enumerate(ms):
        by_filled.setdefault(min(m.filled, sh.cap), []).append(i)
    parts = list(by_filled.values())
    out: list[dict[int, tuple[float, float]]] = [{} for _ in ms]
    n = sh.n
    get = KS_MEMO.get
    for part in parts:
        batch = [ms[i] for i in part]
        at = rows if len(part) == len(ms) else Rows.of(batch)
        filled = batch[0].filled
        wins = list(sh.sorted_ks_windows(filled))
        nums = _sorted_ks(sh, at, _positions(batch), tuple(wins))
        if sh.keep_cells:
            wins.append(min(sh.window, filled))
            nums = np.column_stack([nums, _cells_ks(sh, at, wins[-1])])
        nums //= [math.gcd(n, w) for w in wins]  # n w D -> lcm(n, w) D
        for i, m, hs in zip(part, batch, nums.tolist(), strict=True):
            out[i] = {w: get((n, w, h)) or m.ks_result(w, h) for w, h in zip(wins, hs, strict=True)}
    return out


def _sorted_ks(sh: Shape, rows: Rows, block_pos: int | np.ndarray, wins: tuple[int, ...]) -> np.ndarray:
    """``n * w * D`` of the last ``w`` values of each series for each ``w`` in ``wins``, shape (series, windows).

    For a window sorted by value, ``F_w - F_b`` peaks just after a window value (``j/w - #{b <= x}/n``) and
    ``F_b - F_w`` just before one (``#{b < x}/n - (j-1)/w``): in units of ``1 / nw``, integers. All windows of all
    series are one sort of their concatenated cells (each window's kept apart by a key offset) and each window's
    maximum is one ``reduceat``.
    """
    seg = _segments(wins, sh.n)
    longest = max(wins)
    end = block_pos * sh.every
    end = end + sh.cap * (end < longest)  # the ring's mirrored head
    if isinstance(end, np.ndarray):
        window = sh.bank.ring[rows.ids[:, None], (end - longest)[:, None] + seg.cols]
    else:
        window = sh.bank.ring[rows.at, end - longest : end].take(seg.cols, axis=1)
    keys = np.add(window, seg.key_off, dtype=np.int32)
    keys.sort(axis=1)  # no stability needed: equal keys are equal cells; int32 sorts with SIMD
    keys -= seg.key_off
    below, upto = sh.placements(keys.astype(seg.dtype, copy=False))
    upto *= seg.minus_w
    upto += seg.jn  # j n - w #{b <= x}
    below *= seg.w
    below -= seg.j1n  # w #{b < x} - (j - 1) n
    np.maximum(upto, below, out=upto)
    return np.maximum.reduceat(upto, seg.starts, axis=1)


def _cells_ks(sh: Shape, rows: Rows, w: int) -> np.ndarray:
    """``n * w * D`` of the configured window from its cell counts: one pass over ``2n + 1`` cells, whatever ``w``.

    With ``K`` the window's values at or below a cell, the maxima over cells of ``K n - w #{b <= x}`` and of
    ``w #{b < x} - K' n``, ``K'`` those below the cell (``K`` of the cell before; 0 before cell 0, where the
    second term is 0).
    """
    n = sh.n
    dtype = np.int32 if w * (n + 1) < 2**31 else np.int64  # numerators are at most w n in size
    kn = np.cumsum(sh.bank.cells[rows.at], axis=1, dtype=dtype)
    kn *= n
    below, upto = sh.placements(np.arange(2 * n + 1, dtype=dtype))
    pos = (kn - w * upto).max(axis=1)
    neg = (w * below[1:] - kn[:, :-1]).max(axis=1)
    return np.maximum(np.maximum(pos, neg), 0)


class _Segments(NamedTuple):
    """Layout of the concatenated windows of :func:`_sorted_ks`, per sorted position (shared by every series)."""

    cols: np.ndarray  # position among the last max(wins) values: the last w of them, for each window
    key_off: np.ndarray  # the window's sort-key offset, a multiple of 2n + 1
    w: np.ndarray  # the window's length
    minus_w: np.ndarray
    jn: np.ndarray  # j n for the j-th smallest value of its window (1-based)
    j1n: np.ndarray  # (j - 1) n
    starts: np.ndarray  # each window's first position
    dtype: type  # of the numerators: int32 when they fit


@lru_cache(maxsize=256)
def _segments(wins: tuple[int, ...], n: int) -> _Segments:
    lens = np.array(wins)
    seg = np.repeat(np.arange(len(wins)), lens)
    starts = np.concatenate([[0], np.cumsum(lens)[:-1]])
    j = np.arange(len(seg)) - starts[seg] + 1
    w = lens[seg]
    dtype = np.int32 if max(wins) * (n + 1) < 2**31 else np.int64  # numerators are at most w n in size
    return _Segments(
        cols=j - 1 - w + max(wins),
        key_off=(seg * (2 * n + 1)).astype(np.int32),
        w=w.astype(dtype),
        minus_w=(-w).astype(dtype),
        jn=(j * n).astype(dtype),
        j1n=((j - 1) * n).astype(dtype),
        starts=starts,
        dtype=dtype,
    )
