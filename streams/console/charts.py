"""Line charts drawn on the server as SVG: no JavaScript, no library, nothing fetched (the console works offline).

A chart is a few time series sharing one time axis, with vertical *markers* at the moments that explain them
(a rollback, a promotion, a drift alarm). Every text that comes from data (series names, marker labels) is
escaped; markers carry their kind as a CSS class and their id as ``data-id``, so a page (and a test) can find
them. The layout follows the usual small-multiples advice (Tufte, *The Visual Display of Quantitative
Information*, ch. 4): thin lines, few ticks, the legend in the title row.

>>> svg = line_chart("success", [Series("v0", [(0, 0.9), (60_000, 0.5)])], [Marker(30_000, "rollback", "rb-1")])
>>> svg.startswith("<svg") and 'class="marker rollback"' in svg and 'data-id="rb-1"' in svg
True
>>> "<script>" in line_chart("x", [Series("<script>", [(0, 1.0)])])
False
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from html import escape

WIDTH, HEIGHT = 560, 190
_LEFT, _RIGHT, _TOP, _BOTTOM = 44, 12, 26, 22
# Okabe & Ito's palette, distinguishable with the common colour-vision deficiencies.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")
MARKER_COLOURS = {"rollback": "#D55E00", "promotion": "#009E73", "alarm": "#CC79A7"}


@dataclass(frozen=True)
class Series:
    """One line: ``points`` are ``(time in ms, value)``; None values leave a gap."""

    name: str
    points: Sequence[tuple[int, float | None]]


@dataclass(frozen=True)
class Marker:
    """A moment to mark: ``kind`` (rollback, promotion, alarm) is its CSS class, ``ident`` its id."""

    ts: int
    kind: str
    ident: str
    label: str = ""
    extra: dict[str, str] = field(default_factory=dict)


def nice_ticks(low: float, high: float, count: int = 4) -> list[float]:
    """About ``count`` round tick values covering ``[low, high]`` (1, 2 or 5 times a power of ten apart).

    >>> nice_ticks(0, 1)
    [0.0, 0.5, 1.0]
    >>> nice_ticks(0, 8000)
    [0, 2000, 4000, 6000, 8000]
    >>> nice_ticks(3, 3)
    [3.0]
    """
    if high <= low:
        return [float(low)]
    raw = (high - low) / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.ceil(low / step - 1e-9)
    return [round(i * step, 10) for i in range(first, int(math.floor(high / step + 1e-9)) + 1)]


def _clock(ms: float, span_ms: float) -> str:
    fmt = "%H:%M:%S" if span_ms < 600_000 else ("%H:%M" if span_ms < 2 * 86_400_000 else "%m-%d")
    return time.strftime(fmt, time.gmtime(ms / 1000))


def _number(value: float) -> str:
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"


def line_chart(
    title: str,
    series: Sequence[Series],
    markers: Sequence[Marker] = (),
    *,
    y_range: tuple[float, float] | None = None,
    x_range: tuple[int, int] | None = None,
    width: int = WIDTH,
    height: int = HEIGHT,
) -> str:
    """An SVG line chart of ``series`` on one time axis (``x_range`` to share one across charts), with ``markers``
    as labelled vertical lines."""
    times = [t for s in series for t, v in s.points if v is not None] + [m.ts for m in markers]
    values = [v for s in series for _t, v in s.points if v is not None]
    head = (
        f'<svg class="chart" role="img" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>'
        f'<text class="chart-title" x="{_LEFT}" y="14">{escape(title)}</text>'
    )
    if not values:
        return (
            head + f'<text class="empty" x="{width / 2}" y="{height / 2}" text-anchor="middle">no data yet</text></svg>'
        )
    t0, t1 = x_range if x_range else (min(times), max(times))
    if t1 == t0:
        t0, t1 = t0 - 30_000, t1 + 30_000
    lo, hi = y_range if y_range else (min(values), max(values))
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    plot_w, plot_h = width - _LEFT - _RIGHT, height - _TOP - _BOTTOM

    def x(t: float) -> float:
        return _LEFT + (t - t0) / (t1 - t0) * plot_w

    def y(v: float) -> float:
        return _TOP + (1 - (min(max(v, lo), hi) - lo) / (hi - lo)) * plot_h

    parts = [head, _legend(series, width)]
    for tick in nice_ticks(lo, hi):
        parts.append(
            f'<line class="grid" x1="{_LEFT}" x2="{width - _RIGHT}" y1="{y(tick):.1f}" y2="{y(tick):.1f}"/>'
            f'<text class="tick" x="{_LEFT - 4}" y="{y(tick) + 3:.1f}" text-anchor="end">{_number(tick)}</text>'
        )
    for i in range(5):
        t = t0 + (t1 - t0) * i / 4
        anchor = "start" if i == 0 else ("end" if i == 4 else "middle")
        parts.append(
            f'<text class="tick" x="{x(t):.1f}" y="{height - 6}" text-anchor="{anchor}">{_clock(t, t1 - t0)}</text>'
        )
    for i, s in enumerate(series):
        parts.append(_path(s, PALETTE[i % len(PALETTE)], x, y))
    for m in markers:
        parts.append(_marker(m, x(m.ts), height))
    return "".join(parts) + "</svg>"


def _legend(series: Sequence[Series], width: int) -> str:
    items, right = [], width - _RIGHT
    for i, s in reversed(list(enumerate(series))):
        label = escape(s.name[:24])
        right -= 14 + 7 * len(s.name[:24])
        items.append(
            f'<rect x="{right}" y="6" width="10" height="3" fill="{PALETTE[i % len(PALETTE)]}"/>'
            f'<text class="legend" x="{right + 13}" y="11">{label}</text>'
        )
    return "".join(items)


def _path(s: Series, colour: str, x: object, y: object) -> str:
    commands, pen_down = [], False
    for t, v in sorted(s.points, key=lambda p: p[0]):
        if v is None or (isinstance(v, float) and math.isnan(v)):
            pen_down = False
            continue
        commands.append(f"{'L' if pen_down else 'M'}{x(t):.1f},{y(v):.1f}")  # type: ignore[operator]
        pen_down = True
    dots = ""
    if len(commands) == 1:  # one point draws no line: show it as a dot
        cx, cy = commands[0][1:].split(",")
        dots = f'<circle cx="{cx}" cy="{cy}" r="2.5" fill="{colour}"/>'
    return (
        f'<path class="series" data-series="{escape(s.name)}" d="{" ".join(commands)}" fill="none" '
        f'stroke="{colour}" stroke-width="1.6"><title>{escape(s.name)}</title></path>{dots}'
    )


def _marker(m: Marker, at: float, height: int) -> str:
    colour = MARKER_COLOURS.get(m.kind, "#555555")
    text = escape(f"{m.kind} {m.ident}" + (f": {m.label}" if m.label else ""))
    extra = "".join(f' data-{escape(k)}="{escape(v)}"' for k, v in m.extra.items())
    return (
        f'<g class="marker {escape(m.kind)}" data-id="{escape(m.ident)}"{extra}>'
        f'<line x1="{at:.1f}" x2="{at:.1f}" y1="{_TOP - 4}" y2="{height - _BOTTOM}" stroke="{colour}" '
        f'stroke-width="1.5" stroke-dasharray="4 3"/>'
        f'<path d="M{at - 4:.1f},{_TOP - 8} L{at + 4:.1f},{_TOP - 8} L{at:.1f},{_TOP - 2} Z" fill="{colour}"/>'
        f"<title>{text}</title></g>"
    )


def bar_pair(title: str, edges: Sequence[float], baseline: Sequence[float], current: Sequence[float]) -> str:
    """Two histograms on the same bins (shares, not counts): the baseline hollow, the current window filled.

    >>> bar_pair("h", [0, 1, 2], [0.5, 0.5], [0.2, 0.8]).count('class="bar current"')
    2
    """
    width, height = WIDTH, HEIGHT
    head = (
        f'<svg class="chart histogram" role="img" viewBox="0 0 {width} {height}" width="{width}" '
        f'height="{height}" xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>'
        f'<text class="chart-title" x="{_LEFT}" y="14">{escape(title)}</text>'
    )
    bins = min(len(baseline), len(current))
    if not bins:
        return (
            head + f'<text class="empty" x="{width / 2}" y="{height / 2}" text-anchor="middle">no data yet</text></svg>'
        )
    top = max([*baseline[:bins], *current[:bins], 1e-9])
    plot_w, plot_h = width - _LEFT - _RIGHT, height - _TOP - _BOTTOM
    slot = plot_w / bins
    parts = [
        head,
        _legend([Series("baseline", []), Series("current window", [])], width),
    ]
    for tick in nice_ticks(0, top, 3):
        ty = _TOP + (1 - tick / top) * plot_h
        parts.append(
            f'<line class="grid" x1="{_LEFT}" x2="{width - _RIGHT}" y1="{ty:.1f}" y2="{ty:.1f}"/>'
            f'<text class="tick" x="{_LEFT - 4}" y="{ty + 3:.1f}" text-anchor="end">{_number(tick)}</text>'
        )
    for i in range(bins):
        left = _LEFT + i * slot
        for kind, share, offset, style in (
            ("baseline", baseline[i], 0.1, f'fill="none" stroke="{PALETTE[0]}"'),
            ("current", current[i], 0.5, f'fill="{PALETTE[1]}" fill-opacity="0.8"'),
        ):
            h = share / top * plot_h
            parts.append(
                f'<rect class="bar {kind}" x="{left + offset * slot:.1f}" y="{_TOP + plot_h - h:.1f}" '
                f'width="{slot * 0.4:.1f}" height="{h:.1f}" {style}/>'
            )
    for i in (0, bins // 2, bins) if len(edges) > bins else ():
        parts.append(
            f'<text class="tick" x="{_LEFT + i * slot:.1f}" y="{height - 6}" text-anchor="middle">'
            f"{_number(edges[i])}</text>"
        )
    return "".join(parts) + "</svg>"
