"""Which variant a unit gets in an experiment: a hash of ``(experiment, unit_id)`` placed into the split.

A unit (a user, a session, a document: whatever the agent names with ``unit_id``)
is mapped to a point in [0, 1) by a keyed hash of the experiment's name and the
unit id, and the point falls into one variant's share of the split. The hash is
BLAKE2b, not Python's ``hash`` (salted per process), so the same unit gets the
same variant in every process, on every machine, after every restart; two
experiments hash the same unit independently. A call without a unit id draws
its point from the random generator it is given, per call. Either way the
probability the unit had of getting its variant, the propensity logged with
its outcome, is that variant's share of the split.

>>> a = assign("checkout-copy", ("c", "t"), (0.5, 0.5), unit_id="user-42")
>>> a == assign("checkout-copy", ("c", "t"), (0.5, 0.5), unit_id="user-42")
True
>>> a.propensity
0.5
>>> counts = {"c": 0, "t": 0}
>>> for i in range(10_000):
...     counts[assign("checkout-copy", ("c", "t"), (0.5, 0.5), unit_id=f"user-{i}").variant_id] += 1
>>> 4800 < counts["c"] < 5200
True
>>> import random
>>> assign("e", ("c", "t"), (0.9, 0.1), rng=random.Random(1)).variant_id
'c'

References
----------
Kohavi, R., Tang, D. and Xu, Y. (2020). *Trustworthy Online Controlled Experiments*, chapter 14
(randomization units and consistent hashing). Cambridge University Press.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from dataclasses import dataclass

_SCALE = float(1 << 64)


@dataclass(frozen=True)
class Assignment:
    """The variant a unit gets and the probability it had of getting it (its share of the split)."""

    variant_id: str
    propensity: float


def unit_point(experiment: str, unit_id: str) -> float:
    """A point in [0, 1), uniform over units, the same in every process.

    >>> unit_point("exp", "u1") == unit_point("exp", "u1") != unit_point("exp2", "u1")
    True
    """
    # The name's length first: ("ab", "c") and ("a", "bc") must not hash alike.
    digest = hashlib.blake2b(f"{len(experiment)}:{experiment}{unit_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / _SCALE


def place(point: float, variants: Sequence[str], split: Sequence[float]) -> Assignment:
    """The variant whose share of [0, 1) holds ``point`` (shares in ``split``, summing to 1).

    >>> place(0.75, ("c", "t"), (0.5, 0.5))
    Assignment(variant_id='t', propensity=0.5)
    """
    edge = 0.0
    for variant, share in zip(variants, split, strict=True):
        edge += share
        if point < edge:
            return Assignment(variant, share)
    return Assignment(variants[-1], split[-1])  # a point past a sum rounded below 1


def assign(
    experiment: str,
    variants: Sequence[str],
    split: Sequence[float],
    unit_id: str | None = None,
    rng: random.Random | None = None,
) -> Assignment:
    """The variant of ``unit_id`` in ``experiment``; without a unit id, a fresh draw from ``rng`` per call."""
    point = unit_point(experiment, unit_id) if unit_id is not None else (rng or random).random()
    return place(point, variants, split)
