"""Progress bars: console ``tqdm`` (never ``tqdm.auto``), and no "IProgress not found" warning in
Jupyter kernels without ipywidgets.

Example:
    >>> bar = progress_bar(total=3, disable=True)
    >>> bar.update(3); bar.close()
"""

from __future__ import annotations

import importlib
import sys
import warnings
from typing import Any

__all__ = ["progress_bar", "quiet_tqdm_auto"]


def progress_bar(**kwargs: Any) -> Any:
    """A console ``tqdm.tqdm`` bar (text on stderr, also in a notebook: no ipywidgets needed)."""
    from tqdm import tqdm

    return tqdm(**kwargs)


def quiet_tqdm_auto() -> None:
    """In a Jupyter kernel, import ``tqdm.auto`` once with its "IProgress not found" warning off.

    transformers imports ``tqdm.auto`` for its "Loading weights" bars; in a kernel without
    ipywidgets that import warns, then falls back to the console bar. Importing it here first (the
    module is then cached) gives the same fallback without the warning. Does nothing outside a
    kernel or once ``tqdm.auto`` is imported; called by ``import tl_thinktok``.
    """
    if "ipykernel" not in sys.modules or "tqdm.auto" in sys.modules:
        return
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="IProgress not found")
        importlib.import_module("tqdm.auto")
