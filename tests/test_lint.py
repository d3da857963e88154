"""The code base stays ruff-clean (lint and format), as CI checks."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO


@pytest.mark.parametrize("command", [["check", "."], ["format", "--check", "."]])
def test_ruff(command):
    # ruff from the interpreter running the tests: works in a venv that is not activated
    result = subprocess.run(
        [sys.executable, "-m", "ruff", *command], cwd=REPO, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def cited_tests(text: str) -> list[tuple[str, str | None]]:
    """``(file, test or None)`` for each test a document cites: ``test_x.py::name``, a bare
    ``test_x.py``, and ``::name`` (same file as the citation before it)."""
    import re

    found, current = [], None
    for match in re.finditer(r"`(test_\w+\.py)?(?:::(\w+))?[^`]*`", text):
        file, name = match.groups()
        if file is None and name is None:
            continue
        current = file or current
        found.append((current, name))
    return found


def test_every_test_that_reliability_md_cites_exists():
    """A row of docs/reliability.md names the test that holds it: a renamed or deleted
    test must not leave the row pointing at nothing."""
    import ast

    cited = cited_tests((REPO / "docs" / "reliability.md").read_text())
    assert len(cited) > 100
    missing = []
    for file, name in cited:
        path = REPO / "tests" / file
        if not path.is_file():
            missing.append(file)
            continue
        names = {n.name for n in ast.walk(ast.parse(path.read_text())) if hasattr(n, "name")}
        if name is not None and name not in names:
            missing.append(f"{file}::{name}")
    assert missing == []
