"""README's quick start runs as written (on the bundled organism), block after block.

Blocks that need hub access or a user's own checkout (lines naming ``path/to/`` or a hub id) are
the only lines left out; everything else executes in one namespace, in README order.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"
_OFFLINE_ONLY = re.compile(r"path/to/|deepseek-ai/")


def _blocks() -> list[str]:
    text = README.read_text(encoding="utf-8")
    quick = text[text.index("## Quick start") :]
    return re.findall(r"```python\n(.*?)```", quick, re.S)


def test_readme_has_quick_start_blocks():
    assert len(_blocks()) >= 5


@pytest.mark.slow
def test_readme_quick_start_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # files the examples save land in a temp dir
    import matplotlib

    matplotlib.use("Agg")
    ns: dict = {}
    for i, block in enumerate(_blocks()):
        code = "\n".join(line for line in block.splitlines() if not _OFFLINE_ONLY.search(line))
        exec(compile(code, f"README block {i}", "exec"), ns)  # noqa: S102
    assert ns["rr"].fired > 0  # the composition example really recycles
    assert not set(ns["banned"][0].tolist()) & set(ns["ban"].token_ids)
