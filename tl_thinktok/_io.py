"""One JSON save/load behaviour for every result object, and atomic file writes.

Every result dataclass mixes in :class:`JsonIO` and gets ``save(path) -> Path`` (creates the
folder, writes atomically, NaN written as ``null``) and ``load(path)``; classes with tensors or
arrays override ``to_dict`` / ``from_dict`` only.

Example:
    >>> from dataclasses import dataclass
    >>> @dataclass
    ... class R(JsonIO):
    ...     x: float
    >>> import tempfile, pathlib
    >>> p = R(float("nan")).save(pathlib.Path(tempfile.mkdtemp()) / "sub" / "r.json")
    >>> R.load(p).x != R.load(p).x   # NaN survives the round trip
    True
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

__all__ = ["JsonIO", "atomic_write_text", "to_jsonable", "nan_to_none"]

T = TypeVar("T", bound="JsonIO")


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` via a temp file + rename (never a half-written file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path


def nan_to_none(obj: Any) -> Any:
    """Recursively replace NaN floats by ``None`` (JSON has no NaN)."""
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, dict):
        return {k: nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [nan_to_none(v) for v in obj]
    return obj


def to_jsonable(obj: Any) -> Any:
    """Tensors, arrays, numpy scalars and paths to plain JSON types (NaN → ``None``)."""
    import torch

    if isinstance(obj, torch.Tensor):
        obj = obj.detach().cpu().tolist()
    elif isinstance(obj, np.ndarray):
        obj = obj.tolist()
    elif isinstance(obj, (np.floating, np.integer, np.bool_)):
        obj = obj.item()
    elif isinstance(obj, Path):
        obj = str(obj)
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    return nan_to_none(obj)


class JsonIO:
    """Mixin for dataclasses: ``to_dict`` / ``from_dict`` / ``save`` / ``load`` as JSON."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of the dataclass fields (NaN → ``None``)."""
        return to_jsonable({f.name: getattr(self, f.name) for f in dataclasses.fields(self)})

    @classmethod
    def from_dict(cls: type[T], data: dict[str, Any]) -> T:
        """Inverse of :meth:`to_dict`; unknown keys are an error naming them."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"unknown {cls.__name__} fields: {sorted(unknown)}")
        return cls(**data)

    def save(self, path: str | Path) -> Path:
        """Write JSON to ``path`` (folders created, atomic); returns the path."""
        text = json.dumps(self.to_dict(), indent=1, ensure_ascii=False, allow_nan=False)
        return atomic_write_text(path, text)

    @classmethod
    def load(cls: type[T], path: str | Path) -> T:
        """Read a file written by :meth:`save`."""
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
