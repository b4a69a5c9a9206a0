"""Where ``reproduce`` caches its work: ``<run root>/<model slug>/<label>-<config hash>/``.

Example:
    >>> slug("deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B")
    'DeepSeek-R1-Distill-Qwen-1.5B'
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from tl_thinktok.runs import RunDir, config_hash

__all__ = ["open_run", "slug"]


def slug(name: str) -> str:
    """File-system-safe short name of a model / dataset id."""
    s = re.sub(r"[^A-Za-z0-9._-]+", "_", str(name).rstrip("/").split("/")[-1])
    return s or "model"


def open_run(root: str | Path, model: str, label: str, config: dict[str, Any]) -> RunDir:
    """Open (or resume) the run directory of ``config`` for ``model`` under ``root``.

    The directory name carries a hash of ``config``, so a changed configuration never resumes an
    old run.
    """
    return RunDir.open(Path(root) / slug(model) / f"{label}-{config_hash(config)}", config)
