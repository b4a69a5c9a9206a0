"""Locate MI peaks in a trajectory and summarise a trace (PAPER.md §2, Tables 1 and 2).

Two peak rules:

* ``method="iqr"`` (paper, Def. 2): ``O = {t : m_t > Q3 + τ·IQR(m)}``, ``τ = 1.5``, quartiles by
  linear interpolation (numpy's default ``np.percentile``). A constant trace has no peaks.
* ``method="topk"`` (reference notebook): the ``k`` largest positions (``k = 20``), returned sorted
  by position; ties are broken towards the earlier step; ``k >= len(trace)`` returns every step.

Example:
    >>> mi = [0.1, 0.2, 0.1, 3.0, 0.2, 0.1, 0.15, 2.5]
    >>> find_peaks(mi)
    [3, 7]
    >>> s = trace_stats(mi)
    >>> s.n_peaks, s.avg_interval
    (2, 4.0)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch

from tl_thinktok._io import JsonIO
from tl_thinktok._validate import as_f64_vector, check_float, check_int

__all__ = ["METHODS", "TraceStats", "aggregate", "find_peaks", "iqr_threshold", "trace_stats"]

METHODS = ("iqr", "topk")


def _as_trace(mi: object, name: str = "mi") -> np.ndarray:
    arr = as_f64_vector(name, mi)
    if arr.size == 0:
        raise ValueError(f"{name} is empty")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains non-finite values (NaN or inf)")
    return arr


def _check_method(method: str, tau: float, k: int) -> None:
    if method not in METHODS:
        raise ValueError(f"unknown peak method {method!r}; choose one of {METHODS}")
    if method == "iqr":
        check_float("tau", tau, low=0.0)
    if method == "topk":
        check_int("k", k, low=1)


def iqr_threshold(mi: Sequence[float] | np.ndarray | torch.Tensor, tau: float = 1.5) -> float:
    """``Q3 + τ·IQR`` of a trace (linear-interpolation quartiles).

    Example:
        >>> iqr_threshold([1.0, 2.0, 3.0, 4.0, 5.0], tau=1.0)
        6.0
    """
    arr = _as_trace(mi)
    q1, q3 = np.percentile(arr, [25.0, 75.0])
    return float(q3 + tau * (q3 - q1))


def find_peaks(
    mi: Sequence[float] | np.ndarray | torch.Tensor,
    method: Literal["iqr", "topk"] = "iqr",
    tau: float = 1.5,
    k: int = 20,
) -> list[int]:
    """Sorted step indices of the peaks of an MI trajectory.

    Args:
        mi: the trace, one value per step (1-D, finite, non-empty).
        method: ``"iqr"`` (strictly above ``Q3 + τ·IQR``) or ``"topk"`` (``k`` largest).
        tau: IQR multiplier (``"iqr"`` only), ``>= 0``.
        k: number of peaks (``"topk"`` only); ``k >= len(mi)`` returns every step.

    Returns:
        Ascending list of int step indices.

    Raises:
        ValueError: empty / non-1-D / non-finite trace, unknown method, bad ``tau`` or ``k``.

    Example:
        >>> find_peaks([0.0, 5.0, 1.0, 4.0], method="topk", k=2)
        [1, 3]
    """
    _check_method(method, tau, k)
    arr = _as_trace(mi)
    if method == "iqr":
        idx = np.flatnonzero(arr > iqr_threshold(arr, tau))
    else:
        order = np.argsort(-arr, kind="stable")[:k]
        idx = np.sort(order)
    return [int(i) for i in idx]


@dataclass
class TraceStats(JsonIO):
    """Per-trace summary (Table 1: peaks and intervals; Table 2: mean, std, AOM).

    Attributes:
        peaks: ascending peak step indices.
        n_peaks: ``len(peaks)``.
        n_steps: trace length.
        ratio: ``n_peaks / n_steps``.
        max_interval, min_interval, avg_interval: over consecutive peak gaps ``diff(peaks)``;
            NaN when fewer than 2 peaks (no gap exists).
        mean: mean of the trace.
        std: population standard deviation (``ddof=0``).
        aom: ``(1/|O|) Σ_{i∈O} |m_i − median(m)| / IQR(m)``; NaN when there are no peaks or
            ``IQR = 0``.
        method, tau, k: how the peaks were found (``method="given"`` for user-supplied peaks).
    """

    peaks: list[int]
    n_peaks: int
    n_steps: int
    ratio: float
    max_interval: float
    min_interval: float
    avg_interval: float
    mean: float
    std: float
    aom: float
    method: str = "iqr"
    tau: float = 1.5
    k: int = 20
    extra: dict[str, Any] = field(default_factory=dict)

    # JSON (JsonIO): save(path) -> Path / load(path); NaN is written as null and read back as NaN.
    _FLOAT_FIELDS = ("ratio", "max_interval", "min_interval", "avg_interval", "mean", "std", "aom")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TraceStats:
        """Inverse of :meth:`to_dict` (``None`` floats back to NaN)."""
        kwargs = dict(data)
        for key in cls._FLOAT_FIELDS:
            if key in kwargs and kwargs[key] is None:
                kwargs[key] = math.nan
        if "peaks" in kwargs:
            kwargs["peaks"] = [int(p) for p in kwargs["peaks"]]
        return super().from_dict(kwargs)


def trace_stats(
    mi: Sequence[float] | np.ndarray | torch.Tensor,
    peaks: Sequence[int] | None = None,
    method: Literal["iqr", "topk"] = "iqr",
    tau: float = 1.5,
    k: int = 20,
) -> TraceStats:
    """Summarise one MI trace: peaks, peak intervals, mean, population std and AOM.

    Args:
        mi: the trace (1-D, finite, non-empty).
        peaks: precomputed peak indices (validated: ints in range, no duplicates; sorted here);
            ``None`` finds them with ``method``/``tau``/``k``.
        method: peak rule when ``peaks`` is None.
        tau: IQR multiplier.
        k: top-k size.

    Returns:
        A :class:`TraceStats`.

    Example:
        >>> s = trace_stats([1.0, 1.0, 2.0, 2.0, 10.0])
        >>> s.peaks, s.aom  # |10 - 2| / IQR(=1)
        ([4], 8.0)
    """
    arr = _as_trace(mi)
    n = arr.size
    if peaks is None:
        pk = find_peaks(arr, method=method, tau=tau, k=k)
    else:
        try:
            pk = [check_int("peak index", p, low=0, high=n - 1) for p in peaks]
        except ValueError as exc:
            raise ValueError(f"{exc}: out of range for a trace of {n} steps") from None
        if len(set(pk)) != len(pk):
            raise ValueError("peak indices contain duplicates")
        pk.sort()
        method = "given"
    gaps = np.diff(np.asarray(pk, dtype=np.int64))
    if gaps.size:
        mx, mn, avg = float(gaps.max()), float(gaps.min()), float(gaps.mean())
    else:
        mx = mn = avg = math.nan
    q1, med, q3 = np.percentile(arr, [25.0, 50.0, 75.0])
    iqr = q3 - q1
    if pk and iqr > 0:
        aom = float(np.mean(np.abs(arr[pk] - med)) / iqr)
    else:
        aom = math.nan
    return TraceStats(
        peaks=pk,
        n_peaks=len(pk),
        n_steps=int(n),
        ratio=len(pk) / n,
        max_interval=mx,
        min_interval=mn,
        avg_interval=avg,
        mean=float(arr.mean()),
        std=float(arr.std()),
        aom=aom,
        method=method,
        tau=float(tau),
        k=int(k),
    )


#: The per-trace statistics of Tables 1 and 2 (what :func:`aggregate` averages).
STAT_FIELDS = (
    "n_peaks",
    "n_steps",
    "ratio",
    "max_interval",
    "min_interval",
    "avg_interval",
    "mean",
    "std",
    "aom",
)


def aggregate(stats_list: Sequence[TraceStats]) -> dict[str, float]:
    """Means over traces for Tables 1/2.

    Undefined per-trace values (NaN intervals with < 2 peaks, NaN AOM) are skipped (``nanmean``);
    ``"<field>_n"`` says how many traces contributed; a field with no defined value is NaN. Also
    returns ``"n_traces"`` and ``"ratio_of_means"`` (``mean n_peaks / mean n_steps``).

    Example:
        >>> a = aggregate([trace_stats([0, 0, 0, 9]), trace_stats([0, 0, 0, 0, 9, 9])])
        >>> a["n_peaks"], a["n_steps"], a["aom_n"]  # the second trace has no peak: AOM undefined
        (0.5, 5.0, 1.0)
    """
    if len(stats_list) == 0:
        raise ValueError("aggregate needs at least one TraceStats")
    for s in stats_list:
        if not isinstance(s, TraceStats):
            raise TypeError(f"aggregate expects TraceStats, got {type(s).__name__}")
    out: dict[str, float] = {"n_traces": float(len(stats_list))}
    for name in STAT_FIELDS:
        vals = np.array([float(getattr(s, name)) for s in stats_list], dtype=np.float64)
        ok = ~np.isnan(vals)
        out[name] = float(vals[ok].mean()) if ok.any() else math.nan
        out[f"{name}_n"] = float(ok.sum())
    out["ratio_of_means"] = out["n_peaks"] / out["n_steps"]
    return out
