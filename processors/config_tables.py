"""Named tables of ``reverify.toml`` (``[[assurance]]``, ``[[slo]]``): every mistake of every table, said once.

People write these tables by hand and fix them in one pass, so a check never stops at the first mistake: each
table is parsed alone, its mistakes named by the table (its name, else its position) and the field, names must
be unique, and an unknown field suggests the one that was probably meant.

>>> def parse_one(raw, bad):
...     if not isinstance(raw.get("objective"), float):
...         bad("objective", f"{raw.get('objective')!r} is not a fraction")
...     return None if bad.count else raw["name"]
>>> items, errors = parse_named_tables(
...     [{"name": "a", "objective": 0.9}, {"name": "a", "objective": 0.99}, {"name": "b", "objectve": 1}, 7],
...     "slo", ("name", "objective"), parse_one)
>>> items
['a']
>>> print("\\n".join(errors))
slo a: field name: used by slo #1 too; names must be unique
slo b: field objectve: unknown field (did you mean objective?); allowed fields: name, objective
slo b: field objective: None is not a fraction
slo #4: must be a table of fields (name, objective), got int
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

__all__ = ["Complain", "TableMistakes", "did_you_mean", "parse_named_tables"]

#: ``bad(field, text)``: records one mistake of the table being parsed.
Complain = Callable[[str, str], None]
T = TypeVar("T")
_NAME = re.compile(r"[A-Za-z0-9_.:-]+")


class TableMistakes:
    """``bad(field, text)`` records a mistake of one table, named by its label; ``bad.count``: how many so far."""

    def __init__(self, label: str, errors: list[str]) -> None:
        self.label, self.errors, self.count = label, errors, 0

    def __call__(self, field: str, text: str) -> None:
        self.count += 1
        self.errors.append(f"{self.label}: field {field}: {text}")


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean X?)`` for the choice closest to ``word``, or nothing when none is close."""
    near = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {near[0]}?)" if near else ""


def parse_named_tables(
    raws: Iterable[Any],
    kind: str,
    fields: tuple[str, ...],
    parse_one: Callable[[Mapping[str, Any], TableMistakes], T | None],
) -> tuple[list[T], list[str]]:
    """Parse each table with ``parse_one(raw, bad)``; returns the tables without mistakes and every mistake.

    Before ``parse_one`` sees a table, its name (letters, digits, ``_ . : -``, unique) and its keys (among
    ``fields``) are checked; a table with any mistake is left out of the result, so ``parse_one`` may return
    None as soon as ``bad.count`` says it has one.
    """
    items: list[T] = []
    errors: list[str] = []
    seen: dict[str, int] = {}
    for i, raw in enumerate(raws):
        if not isinstance(raw, Mapping):
            errors.append(f"{kind} #{i + 1}: must be a table of fields ({', '.join(fields)}), got {type(raw).__name__}")
            continue
        name = raw.get("name")
        bad = TableMistakes(f"{kind} {name}" if isinstance(name, str) and name.strip() else f"{kind} #{i + 1}", errors)
        if isinstance(name, str) and name in seen:
            bad("name", f"used by {kind} #{seen[name] + 1} too; names must be unique")
        elif isinstance(name, str):
            seen[name] = i
        if not (isinstance(name, str) and _NAME.fullmatch(name)):
            bad("name", f"{name!r} is missing or not allowed; use letters, digits, _ . : -")
        for key in raw:
            if key not in fields:
                bad(str(key), f"unknown field{did_you_mean(str(key), fields)}; allowed fields: {', '.join(fields)}")
        item = parse_one(raw, bad)
        if item is not None and not bad.count:
            items.append(item)
    return items, errors
