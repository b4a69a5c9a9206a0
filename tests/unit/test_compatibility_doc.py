"""docs/compatibility.md: every test it names exists (so each cell of the table is backed)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "compatibility.md"
# `file.py::test_x` names a file (default folder tests/integration/); `::test_y` continues it
REF = re.compile(r"`((?:tests/[\w/]+/)?\w+\.py)?::(test_\w+)`")


def _named_tests() -> list[tuple[Path, str]]:
    out, current = [], None
    for line in DOC.read_text(encoding="utf-8").splitlines():
        for file, name in REF.findall(line):
            if file:
                current = ROOT / file if "/" in file else ROOT / "tests" / "integration" / file
            assert current is not None, f"{name} names no file: {line}"
            out.append((current, name))
    return out


def _functions(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}


def test_every_named_test_exists():
    named = _named_tests()
    assert len(named) >= 30  # the table really names its tests
    missing = [f"{p.relative_to(ROOT)}::{n}" for p, n in named if n not in _functions(p)]
    assert not missing, "docs/compatibility.md names missing tests:\n" + "\n".join(missing)


def test_the_parser_sees_continuations():
    line = "`test_probe.py::test_a`, `::test_b`, `tests/unit/test_trace.py::test_c`"
    assert REF.findall(line) == [
        ("test_probe.py", "test_a"), ("", "test_b"), ("tests/unit/test_trace.py", "test_c"),
    ]  # fmt: skip
