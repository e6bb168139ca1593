"""Every module's docstring examples run as tests, imported by their installed names (``reverify.*``)."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import reverify

PACKAGES = ("reverify.schemas", "reverify.processors", "reverify.streams", "reverify.sinks")


def _modules() -> list[str]:
    names = ["reverify"]
    for package in PACKAGES:
        names.append(package)
        module = importlib.import_module(package)
        names += [
            info.name
            for info in pkgutil.walk_packages(module.__path__, package + ".")
            if info.name.split(".")[-1] != "__main__"
        ]
    return sorted(names)


def test_every_part_is_found() -> None:
    assert {"reverify.processors.learning", "reverify.streams.client", "reverify.sinks.writer"} <= set(_modules())
    assert reverify.__all__ == ["AgentEvents", "AlertSubscriber", "VariantRouter"]


@pytest.mark.parametrize("name", _modules())
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, report=True)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"
