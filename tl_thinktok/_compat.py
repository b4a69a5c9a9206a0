"""Old module paths (before the role subpackages) keep importing, as thin proxies.

``import tl_thinktok.suppress`` gives a module whose attributes are those of
``tl_thinktok.interventions.suppress`` (the same objects), so code written against the flat layout
keeps working. New code should import from the new paths.

Example:
    >>> from tl_thinktok.suppress import SuppressTokens
    >>> from tl_thinktok.interventions import SuppressTokens as New
    >>> SuppressTokens is New
    True
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import types
from typing import Any

#: old module path → new module path
MOVED: dict[str, str] = {
    "tl_thinktok.suppress": "tl_thinktok.interventions.suppress",
    "tl_thinktok.recycle": "tl_thinktok.interventions.recycle",
    "tl_thinktok.ttts": "tl_thinktok.interventions.ttts",
    "tl_thinktok.organism_train": "tl_thinktok.organism.train",
    "tl_thinktok.llama2c": "tl_thinktok.loading.llama2c",
    "tl_thinktok.experiments_cli": "tl_thinktok.reproduce",
    "tl_thinktok.reproduce.core": "tl_thinktok.reproduce",
    "tl_thinktok._reference": "tl_thinktok.testing.reference",
}


class _Proxy(importlib.abc.Loader):
    def __init__(self, target: str) -> None:
        self.target = target

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        target = importlib.import_module(self.target)
        mod = types.ModuleType(spec.name, f"Moved to {self.target}.")

        def __getattr__(name: str) -> Any:
            return getattr(target, name)

        def __dir__() -> list[str]:
            return dir(target)

        mod.__getattr__ = __getattr__  # type: ignore[method-assign]
        mod.__dir__ = __dir__  # type: ignore[method-assign]
        mod.__all__ = list(getattr(target, "__all__", []))
        return mod

    def exec_module(self, module: types.ModuleType) -> None:
        return None


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: Any = None, target: Any = None):
        new = MOVED.get(fullname)
        if new is None:
            return None
        return importlib.machinery.ModuleSpec(fullname, _Proxy(new))


def install() -> None:
    """Register the finder once (called by ``tl_thinktok/__init__``)."""
    if not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.append(_Finder())
