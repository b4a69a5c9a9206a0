"""Uncertainty of the accuracy experiments: Wilson intervals and exact McNemar tests.

Every accuracy the reproduce experiments report comes with its n and a Wilson 95% interval; an
intervention evaluated on the same problems as the original is compared by McNemar's exact test
(two-sided binomial test on the discordant pairs), which uses the pairing that two separate
intervals ignore.

Example:
    >>> acc = accuracy_stats([True, False, True, True])
    >>> acc["n"], acc["acc"], round(acc["lo"], 3)
    (4, 0.75, 0.301)
    >>> mcnemar_exact([True] * 8, [False] * 1 + [True] * 7)["p"]
    1.0
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

__all__ = ["accuracy_stats", "mcnemar_exact", "paired_difference", "percentile_interval",
           "trace_bootstrap", "two_sample_bootstrap", "wilson"]  # fmt: skip


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion ``k / n`` (NaN for ``n = 0``).

    Example:
        >>> [round(v, 4) for v in wilson(1, 10)]
        [0.0179, 0.4042]
    """
    if n == 0:
        return float("nan"), float("nan")
    p = k / n
    den = 1 + z * z / n
    mid = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    lo = 0.0 if k == 0 else max(0.0, mid - half)  # exact ends (round-off gives 1 - 1e-16)
    hi = 1.0 if k == n else min(1.0, mid + half)
    return lo, hi


def accuracy_stats(correct: Sequence[bool]) -> dict[str, Any]:
    """``{"acc", "n", "lo", "hi"}``: the accuracy of graded answers with its Wilson 95% interval
    (``acc`` NaN when there are none)."""
    n = len(correct)
    k = sum(bool(c) for c in correct)
    lo, hi = wilson(k, n)
    return {"acc": k / n if n else float("nan"), "n": n, "lo": lo, "hi": hi}


def mcnemar_exact(original: Sequence[bool], other: Sequence[bool]) -> dict[str, Any]:
    """McNemar's exact test of two graded runs on the same problems (paired, in the same order).

    Returns ``{"n", "only_original", "only_other", "p"}``: the discordant counts and the two-sided
    p-value ``min(1, 2 P(X ≤ min(b, c)))`` with ``X ~ Binomial(b + c, 1/2)`` (1.0 without
    discordant pairs: no evidence of a difference).

    Raises:
        ValueError: runs of different lengths.

    Example:
        >>> mcnemar_exact([True] * 7 + [False], [False] * 7 + [True])["p"]  # b = 7, c = 1
        0.0703125
    """
    if len(original) != len(other):
        raise ValueError(f"paired runs differ in length: {len(original)} vs {len(other)}")
    b = sum(bool(x) and not bool(y) for x, y in zip(original, other, strict=True))
    c = sum(bool(y) and not bool(x) for x, y in zip(original, other, strict=True))
    m = b + c
    tail = sum(math.comb(m, i) for i in range(min(b, c) + 1)) / 2.0**m if m else 1.0
    return {"n": len(original), "only_original": b, "only_other": c, "p": min(1.0, 2.0 * tail)}


def percentile_interval(values: Sequence[float], min_n: int = 1) -> tuple[float, float]:
    """2.5th and 97.5th percentiles of the finite ``values``; NaNs with fewer than ``min_n``.

    Example:
        >>> percentile_interval(list(range(101)))
        (2.5, 97.5)
    """
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size < max(min_n, 1):
        return float("nan"), float("nan")
    lo, hi = np.percentile(v, [2.5, 97.5])
    return float(lo), float(hi)


def trace_bootstrap(
    statistic: Callable[[np.ndarray], float],
    n: int,
    rng: np.random.Generator,
    n_boot: int = 1000,
) -> tuple[float, float, float]:
    """``(statistic(all), lo, hi)``: a statistic of ``n`` traces (given their indices) and its
    percentile 95% interval over ``n_boot`` resamples of the traces with replacement (resamples
    where it is undefined, NaN, are dropped).

    Example:
        >>> d = np.array([1.0, 2.0, 3.0])
        >>> point, lo, hi = trace_bootstrap(lambda i: d[i].mean(), 3, np.random.default_rng(0))
        >>> point, lo <= point <= hi
        (2.0, True)
    """
    point = float(statistic(np.arange(n)))
    boots = [statistic(rng.integers(0, n, n)) for _ in range(n_boot)]
    lo, hi = percentile_interval(boots)
    return point, lo, hi


def two_sample_bootstrap(
    statistic_a: Callable[[np.ndarray], float],
    n_a: int,
    statistic_b: Callable[[np.ndarray], float],
    n_b: int,
    rng: np.random.Generator,
    n_boot: int = 1000,
) -> tuple[float, float, float]:
    """``(a − b, lo, hi)``: the difference of a statistic of two independent sets of traces
    (``n_a`` and ``n_b`` of them, given their indices) and its percentile 95% interval, each set
    resampled with replacement on its own (resamples where a side is undefined are dropped).

    Example:
        >>> a, b = np.array([3.0, 4.0, 5.0]), np.array([1.0, 2.0])
        >>> d, lo, hi = two_sample_bootstrap(lambda i: a[i].mean(), 3, lambda i: b[i].mean(), 2,
        ...                                  np.random.default_rng(0))
        >>> d, lo <= d <= hi
        (2.5, True)
    """
    if n_a < 1 or n_b < 1:
        raise ValueError(f"two_sample_bootstrap needs traces on both sides, got {n_a} and {n_b}")
    point = float(statistic_a(np.arange(n_a))) - float(statistic_b(np.arange(n_b)))
    boots = [
        float(statistic_a(rng.integers(0, n_a, n_a)))
        - float(statistic_b(rng.integers(0, n_b, n_b)))
        for _ in range(n_boot)
    ]
    lo, hi = percentile_interval(boots)
    return point, lo, hi


def paired_difference(
    a: Sequence[float], b: Sequence[float], seed: int = 0, n_boot: int = 1000
) -> dict[str, Any]:
    """Mean of ``a − b`` over the same items (problems or traces, in order) with its bootstrap
    95% CI over the items: ``{"diff", "lo", "hi", "n"}`` (null 0; NaN with n = 0 when empty).

    Example:
        >>> d = paired_difference([1.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 0.0])
        >>> d["diff"], d["n"], d["lo"] <= d["diff"] <= d["hi"]
        (0.5, 4, True)
    """
    if len(a) != len(b):
        raise ValueError(f"paired values differ in length: {len(a)} vs {len(b)}")
    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    if not d.size:
        return {"diff": float("nan"), "lo": float("nan"), "hi": float("nan"), "n": 0}
    rng = np.random.default_rng(seed)
    diff, lo, hi = trace_bootstrap(lambda i: float(d[i].mean()), d.size, rng, n_boot)
    return {"diff": diff, "lo": lo, "hi": hi, "n": int(d.size)}
