"""The documentation holds together: relative links resolve, and the README's set-up commands are the ones CI runs.

A page moved or renamed under ``docs/`` would otherwise leave the README pointing nowhere, and a README
command edited by hand could drift from ``.ci/run``, which is what proves the command works on a fresh clone.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# [text](target) outside code spans; images too. Absolute URLs and pure anchors are not files.
_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
_FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
_CODE_SPAN = re.compile(r"`[^`\n]*`")


def relative_links(text: str) -> list[str]:
    """The relative link targets of markdown ``text`` (anchors stripped), code blocks and spans ignored.

    >>> relative_links("see [a](docs/a.md#x), [b](https://x.org) and `[c](no.md)`")
    ['docs/a.md']
    """
    prose = _CODE_SPAN.sub("", _FENCE.sub("", text))
    targets = []
    for target in _LINK.findall(prose):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue
        targets.append(target.split("#", 1)[0])
    return targets


def test_the_docs_pages_exist() -> None:
    names = {page.name for page in PAGES}
    expected = {"design.md", "decision-rules.md", "guarantees.md", "architecture.md", "benchmarks.md"}
    assert expected | {"configuration.md", "cli.md", "README.md"} <= names


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_points_to_a_file(page: Path) -> None:
    links = relative_links(page.read_text(encoding="utf-8"))
    missing = [target for target in links if not (page.parent / target).exists()]
    assert not missing, f"{page.relative_to(ROOT)} links to files that do not exist: {missing}"


def test_the_readme_links_every_docs_page() -> None:
    linked = {(ROOT / target).resolve() for target in relative_links((ROOT / "README.md").read_text(encoding="utf-8"))}
    unlinked = [page.name for page in PAGES[1:] if page.resolve() not in linked]
    assert not unlinked, f"README.md does not link {unlinked}"


def _bash_blocks(text: str) -> list[str]:
    return [block.strip() for block in re.findall(r"^```bash\n(.*?)^```", text, re.MULTILINE | re.DOTALL)]


def test_the_readme_test_command_is_the_one_ci_runs() -> None:
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    ci_commands = [line.strip() for line in ci.splitlines() if line.startswith("python3 -m venv")]
    readme = _bash_blocks((ROOT / "README.md").read_text(encoding="utf-8"))
    test_command = "python3 -m venv .venv && .venv/bin/pip install -q -e '.[test]' && .venv/bin/python -m pytest"
    readme_lines = {line.strip() for block in readme for line in block.splitlines()}
    assert ci_commands == [test_command]
    assert test_command in readme_lines
    ci_steps = [line.strip() for line in ci.splitlines() if line.strip() and not line.startswith(("#", "set ", "cd "))]
    unexplained = [step for step in ci_steps if step not in readme_lines]
    assert not unexplained, f".ci/run runs what the README does not tell a user to run: {unexplained}"


def test_the_readme_demo_command_installs_and_starts_the_demo() -> None:
    readme = _bash_blocks((ROOT / "README.md").read_text(encoding="utf-8"))
    assert "python3 -m venv .venv && .venv/bin/pip install -e . && .venv/bin/reverify up --demo" in readme
