"""Good and valid event counts in time buckets, two resolutions, so a 30-day window holds a bounded state.

Burn rates need the error ratio over windows from five minutes to three days
and the budget over the whole SLO window (often 30 days). Keeping events would
grow without bound; keeping one counter per minute for 30 days is 43,200
counters per SLO and scope. So counts go into two sets of buckets, as a
Prometheus recording rule would keep them:

* *fine* buckets (a minute by default) for the last ``fine_horizon`` (6 hours),
  which serve the short and middle windows (5 min ... 6 h) to the minute;
* *coarse* buckets (an hour) for the whole SLO window, which serve the long
  windows (1 d, 3 d) and the budget, their edges exact to the hour.

A window ``(now - W, now]`` sums the buckets from the one holding ``now - W``
to the one holding ``now``: it covers at least ``W`` and at most one bucket
more. At most ``fine_horizon / fine_bucket + 1`` and ``horizon / coarse_bucket
+ 1`` buckets are kept (361 and 721 for the defaults), whatever the traffic.

References
----------
Google SRE workbook, "Alerting on SLOs" (windows and their resolution): https://sre.google/workbook/alerting-on-slos/

Examples
--------
>>> c = BucketedCounts(fine_ms=60_000, fine_horizon_ms=3_600_000, coarse_ms=3_600_000, horizon_ms=86_400_000)
>>> for second in range(0, 7_200, 10):           # two hours, an event every 10 s, every 4th bad
...     c.add(second * 1000, good=second % 40 != 0)
>>> c.window(7_199_000, 300_000)                  # (good, total) over the last 5 minutes (+ the bucket of now - 5m)
(27, 36)
>>> c.window(7_199_000, 86_400_000)               # the whole day, from the coarse buckets
(540, 720)
>>> BucketedCounts.from_dict(c.to_dict()).to_dict() == c.to_dict()
True
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


class BucketedCounts:
    """``(good, total)`` per fine and per coarse bucket; :meth:`window` sums a window, :meth:`prune` bounds them.

    Parameters
    ----------
    fine_ms, fine_horizon_ms
        Width of the fine buckets, and the longest window they serve (and keep).
    coarse_ms, horizon_ms
        Width of the coarse buckets, and the longest window kept at all (the SLO window).
    """

    __slots__ = ("coarse", "coarse_ms", "fine", "fine_horizon_ms", "fine_ms", "horizon_ms")

    def __init__(self, fine_ms: int, fine_horizon_ms: int, coarse_ms: int, horizon_ms: int) -> None:
        self.fine_ms, self.fine_horizon_ms = fine_ms, fine_horizon_ms
        self.coarse_ms, self.horizon_ms = coarse_ms, horizon_ms
        self.fine: dict[int, list[int]] = {}  # bucket index -> [good, total]
        self.coarse: dict[int, list[int]] = {}

    def add(self, ts: int, good: bool, n: int = 1) -> None:
        """Count ``n`` valid events at ``ts``, good or bad."""
        g = n if good else 0
        for buckets, width in ((self.fine, self.fine_ms), (self.coarse, self.coarse_ms)):
            cell = buckets.get(ts // width)
            if cell is None:
                buckets[ts // width] = [g, n]
            else:
                cell[0] += g
                cell[1] += n

    def window(self, now_ms: int, window_ms: int) -> tuple[int, int]:
        """``(good, total)`` of the events in the window of ``window_ms`` ending at ``now_ms``."""
        if window_ms <= self.fine_horizon_ms:
            buckets, width = self.fine, self.fine_ms
        else:
            buckets, width = self.coarse, self.coarse_ms
        lo, hi = (now_ms - window_ms) // width, now_ms // width
        good = total = 0
        for index, (g, t) in buckets.items():
            if lo <= index <= hi:
                good += g
                total += t
        return good, total

    def windows(self, now_ms: int, windows_ms: Iterable[int]) -> dict[int, tuple[int, int]]:
        """:meth:`window` of each of ``windows_ms``, in one walk back from ``now_ms`` per resolution.

        >>> c = BucketedCounts(60_000, 3_600_000, 3_600_000, 86_400_000)
        >>> for minute in range(120):
        ...     c.add(minute * 60_000, good=minute < 100)
        >>> c.windows(7_199_999, [300_000, 3_600_000, 86_400_000]) == {w: c.window(7_199_999, w) for w in
        ...     [300_000, 3_600_000, 86_400_000]}
        True
        """
        out: dict[int, tuple[int, int]] = {}
        wanted = sorted(set(windows_ms))
        for buckets, width, spans in (
            (self.fine, self.fine_ms, [w for w in wanted if w <= self.fine_horizon_ms]),
            (self.coarse, self.coarse_ms, [w for w in wanted if w > self.fine_horizon_ms]),
        ):
            good = total = 0
            index = now_ms // width
            for span in spans:
                lo = (now_ms - span) // width
                while index >= lo:
                    cell = buckets.get(index)
                    if cell is not None:
                        good += cell[0]
                        total += cell[1]
                    index -= 1
                out[span] = (good, total)
        return out

    def prune(self, now_ms: int) -> None:
        """Forget buckets no window ending at ``now_ms`` or later can reach."""
        for buckets, width, keep in (
            (self.fine, self.fine_ms, self.fine_horizon_ms),
            (self.coarse, self.coarse_ms, self.horizon_ms),
        ):
            lo = (now_ms - keep) // width
            for index in [i for i in buckets if i < lo]:
                del buckets[index]

    def empty(self) -> bool:
        return not self.coarse

    def __len__(self) -> int:
        """Buckets held, fine and coarse."""
        return len(self.fine) + len(self.coarse)

    def to_dict(self) -> dict[str, Any]:
        """Dense lists from the first bucket held: small integers, compact in JSON even at full traffic."""
        return {
            "widths": [self.fine_ms, self.fine_horizon_ms, self.coarse_ms, self.horizon_ms],
            "fine": _dense(self.fine),
            "coarse": _dense(self.coarse),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BucketedCounts:
        counts = cls(*data["widths"])
        counts.fine, counts.coarse = _sparse(data["fine"]), _sparse(data["coarse"])
        return counts


def _dense(buckets: dict[int, list[int]]) -> list[Any]:
    """``[first index, [good ...], [total ...]]`` with zeros for the buckets between."""
    if not buckets:
        return []
    first, last = min(buckets), max(buckets)
    good, total = [0] * (last - first + 1), [0] * (last - first + 1)
    for index, (g, t) in buckets.items():
        good[index - first], total[index - first] = g, t
    return [first, good, total]


def _sparse(dense: list[Any]) -> dict[int, list[int]]:
    if not dense:
        return {}
    first, good, total = dense
    return {first + i: [g, t] for i, (g, t) in enumerate(zip(good, total, strict=True)) if t}
