"""One place for argument checks: clear ``TypeError`` / ``ValueError`` messages naming the argument.

Example:
    >>> check_int("k", 3, low=1)
    3
    >>> check_int("k", True)
    Traceback (most recent call last):
    TypeError: k must be an int, got bool: True
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = ["check_int", "check_float", "check_prob", "check_bool", "as_token_ids", "as_f64_vector"]


def check_int(name: str, value: Any, *, low: int | None = None, high: int | None = None) -> int:
    """``value`` as an int (any ``__index__`` type but bool) within ``[low, high]``.

    Raises:
        TypeError: not an integer (bools are refused).
        ValueError: outside the bounds.
    """
    if isinstance(value, bool) or not hasattr(value, "__index__"):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}: {value!r}")
    v = int(value.__index__())
    if low is not None and v < low:
        raise ValueError(f"{name} must be >= {low}, got {v}")
    if high is not None and v > high:
        raise ValueError(f"{name} must be <= {high}, got {v}")
    return v


def check_float(
    name: str, value: Any, *, low: float | None = None, high: float | None = None
) -> float:
    """``value`` as a finite float within ``[low, high]`` (ints accepted, bools refused)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}: {value!r}")
    v = float(value)
    if v != v or v in (float("inf"), float("-inf")):
        raise ValueError(f"{name} must be finite, got {v}")
    if low is not None and v < low:
        raise ValueError(f"{name} must be >= {low}, got {v}")
    if high is not None and v > high:
        raise ValueError(f"{name} must be <= {high}, got {v}")
    return v


def check_prob(name: str, value: Any) -> float:
    """A probability in ``[0, 1]``."""
    return check_float(name, value, low=0.0, high=1.0)


def check_bool(name: str, value: Any) -> bool:
    """A real bool (not a truthy int or string)."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__}: {value!r}")
    return value


def as_token_ids(
    ids: Any,
    *,
    name: str = "token ids",
    vocab: int | None = None,
    unique: bool = False,
    allow_empty: bool = True,
) -> list[int]:
    """Normalise token ids (an int, an iterable of ints, an integer tensor, or an object with a
    ``token_ids()`` method such as ``ThinkingTokens``) to a list of Python ints.

    Args:
        ids: the ids.
        name: what to call them in error messages.
        vocab: if given, every id must lie in ``[0, vocab)``; otherwise ids must be >= 0.
        unique: drop repeats (first occurrence kept, order kept).
        allow_empty: refuse an empty result when False.

    Raises:
        TypeError: a string, a float/bool tensor or a non-integer element.
        ValueError: an id out of range, or empty when not allowed.

    Example:
        >>> as_token_ids(torch.tensor([[3, 1], [3, 2]]), unique=True)
        [3, 1, 2]
    """
    if hasattr(ids, "token_ids") and callable(ids.token_ids):
        ids = ids.token_ids()
    if isinstance(ids, (str, bytes)):
        raise TypeError(f"{name} must be integers, not a string")
    if isinstance(ids, Tensor):
        if ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool:
            raise TypeError(f"{name} must be an integer tensor, got dtype {ids.dtype}")
        out = [int(i) for i in ids.flatten().tolist()]
    else:
        if isinstance(ids, bool) or not isinstance(ids, Iterable):
            ids = [ids]
        out = []
        for i in ids:
            if isinstance(i, bool) or not hasattr(i, "__index__"):
                raise TypeError(f"{name} must be ints, got {type(i).__name__}: {i!r}")
            out.append(int(i.__index__()))
    if unique:
        out = list(dict.fromkeys(out))
    lo_bad = [i for i in out if i < 0]
    if vocab is None and lo_bad:
        raise ValueError(f"{name} must be non-negative, got {lo_bad[:10]}")
    if vocab is not None:
        bad = [i for i in out if not 0 <= i < vocab]
        if bad:
            more = " …" if len(bad) > 10 else ""
            raise ValueError(f"{name} out of range [0, {vocab}): {bad[:10]}{more}")
    if not allow_empty and not out:
        raise ValueError(f"{name} is empty: give at least one id")
    return out


def as_f64_vector(name: str, values: Any) -> np.ndarray:
    """A new 1-D float64 numpy array of ``values`` (a tensor, array or sequence of numbers).

    Raises:
        TypeError: not numbers.
        ValueError: not 1-D (one value per step).

    Example:
        >>> as_f64_vector("mi", torch.tensor([1, 2])).dtype
        dtype('float64')
    """
    if isinstance(values, Tensor):
        values = values.detach().cpu().to(torch.float64).numpy()
    try:
        arr = np.array(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be a 1-D sequence of numbers: {exc}") from None
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one value per step), got shape {arr.shape}")
    return arr
