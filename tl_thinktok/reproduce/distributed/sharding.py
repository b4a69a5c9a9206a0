"""Splitting work lists over workers or job-array shards, balanced by expected cost.

Items are sorted by expected cost (longest first) and dealt in snake order (0, 1, …, n-1,
n-1, …, 0, 0, 1, …), so every shard gets long and short items alike, never a contiguous block;
the totals of any two shards differ by at most the largest single cost.

Example:
    >>> parse_shard("1/4")
    (1, 4)
    >>> interleave([5, 1, 4, 2], 2)
    [0, 0, 1, 1]
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["ShardSpecError", "expected_cost", "interleave", "parse_shard"]


class ShardSpecError(ValueError):
    """A malformed ``--shard`` value."""


def parse_shard(spec: str) -> tuple[int, int]:
    """``"i/N"`` → ``(i, N)`` with ``0 <= i < N`` (``i`` as a 0-based job-array index).

    Raises:
        ShardSpecError: not ``i/N`` with integers ``N >= 1`` and ``0 <= i < N``.
    """
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(spec))
    if not m:
        raise ShardSpecError(f"--shard expects i/N (e.g. 0/4), got {spec!r}")
    i, n = int(m.group(1)), int(m.group(2))
    if n < 1 or i >= n:
        raise ShardSpecError(f"--shard {spec!r}: need N >= 1 and 0 <= i < N (i is 0-based)")
    return i, n


def expected_cost(item: Any) -> float:
    """A rough expected cost of a work item, for balancing when the caller gives none.

    A problem (anything with ``question`` / ``solution`` text) costs its characters; a tuple or
    list costs the sum of its parts (strings and nested lists left out), where an ``int`` counts as
    a token budget; anything else 1.

    Example:
        >>> expected_cost(("original", 512, "id-3"))
        512.0
    """
    if isinstance(item, bool):
        return 1.0
    if isinstance(item, int):
        return float(max(item, 0))
    if isinstance(item, (tuple, list)):
        parts = [x for x in item if not isinstance(x, (list, tuple, str))]
        return float(sum(expected_cost(x) for x in parts) or 1)
    text = getattr(item, "question", None)
    if isinstance(text, str):
        return float(len(text) + len(getattr(item, "solution", "") or ""))
    return 1.0


def interleave(costs: Sequence[float], n: int) -> list[int]:
    """Shard (``0..n-1``) of each item: longest first, dealt in snake order.

    Ties keep the input order, so the assignment depends only on the costs and ``n``.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    order = sorted(range(len(costs)), key=lambda i: (-float(costs[i]), i))
    out = [0] * len(costs)
    for pos, i in enumerate(order):
        rnd, r = divmod(pos, n)
        out[i] = r if rnd % 2 == 0 else n - 1 - r
    return out


def costs_of(items: Sequence[Any], cost: Callable[[Any], float] | None) -> list[float]:
    """Expected cost of each item (``cost`` or :func:`expected_cost`)."""
    f = cost or expected_cost
    return [float(f(it)) for it in items]
