"""Imports flow one way (docs/design.md section 1): the shell ``streams`` -> ``processors``, ``sinks``, ``schemas``;
``sinks`` -> ``schemas``; ``processors`` -> ``schemas`` only; and no module imports itself back through others.

Every import counts, also those inside functions: a late import still ties the layers together.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ALLOWED = {
    "reverify": {"streams"},  # the package root re-exports the SDK
    "streams": {"streams", "processors", "sinks", "schemas"},
    "sinks": {"sinks", "schemas"},
    "processors": {"processors", "schemas"},
    "schemas": {"schemas"},
}


def _modules() -> dict[str, Path]:
    found = {"reverify": ROOT / "reverify" / "__init__.py"}
    for layer in ("streams", "sinks", "processors", "schemas"):
        for path in (ROOT / layer).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found[".".join(("reverify", *parts[: -1 if parts[-1] == "__init__" else None]))] = path
    return found


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """The reverify modules ``path`` imports (``from package import module`` names the module)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names |= {
                f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module for a in node.names
            }
    return {name for name in names if name == "reverify" or name.startswith("reverify.")}


def _layer(module: str) -> str:
    return module.split(".")[1] if "." in module else "reverify"


def test_imports_follow_the_layers() -> None:
    modules = _modules()
    against = [
        f"{name} -> {target}"
        for name, path in sorted(modules.items())
        for target in sorted(_imports(path, modules))
        if _layer(target) not in ALLOWED[_layer(name)]
    ]
    assert not against, "imports against the layers: " + "; ".join(against)


def test_no_import_circles() -> None:
    modules = _modules()
    graph = {name: _imports(path, modules) & set(modules) for name, path in modules.items()}
    circles: list[str] = []

    def visit(name: str, trail: list[str]) -> None:
        for target in sorted(graph[name]):
            if target in trail:
                circles.append(" -> ".join([*trail[trail.index(target) :], target]))
            elif target not in done:
                visit(target, [*trail, target])
        done.add(name)

    done: set[str] = set()
    for name in sorted(graph):
        if name not in done:
            visit(name, [name])
    assert not circles, "import circles: " + "; ".join(sorted(set(circles)))


def test_installed_namespace_is_reverify_only(tmp_path: Path) -> None:
    """From another directory, the install exposes ``reverify`` and its SDK names, never the four folders as
    top-level packages (an agent's own ``schemas`` package must not be shadowed)."""
    probe = (
        "import importlib.util as u, json\n"
        "from reverify import AgentEvents, AlertSubscriber, VariantRouter\n"
        "print(json.dumps([u.find_spec(n) is None for n in ('schemas', 'streams', 'processors', 'sinks')]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [True, True, True, True]
