"""Information-theoretic bounds on the error of a reasoning process (paper §7), in bits.

The paper (Qian et al. 2025, "Thinking tokens are information peaks") states two theorems about
the probability of error ``p_e`` of predicting the answer ``y`` from the reasoning trace
``h_1..h_T``:

* **Theorem 1 (Fano + data processing + chain rule)**::

      p_e >= [ H(y) - sum_j I(y; h_j | h_<j) - H_b(p_e) ] / log2(|Y| - 1)

  This is Fano's inequality ``H(y | h) <= H_b(p_e) + p_e log2(|Y| - 1)`` rearranged, using the
  chain rule ``sum_j I(y; h_j | h_<j) = I(y; h_1:T)`` and ``H(y | h) = H(y) - I(y; h)``. As written
  it is *implicit* (``p_e`` appears on both sides) and undefined for ``|Y| = 2``
  (``log2(1) = 0``). :func:`fano_bound_paper` evaluates that literal right-hand side;
  :func:`fano_lower_bound` gives the explicit, always-defined equivalent: the smallest
  ``p`` in ``[0, 1 - 1/|Y|]`` with ``H_b(p) + p log2(|Y| - 1) >= H(y | h)``. Fano's bound holds for
  *every* predictor of ``y`` from ``h``, hence for the Bayes (MAP) predictor.

* **Theorem 2 (Hellman–Raviv 1970)**: ``p_e <= 1/2 H(y | h_1:T)`` for the Bayes (MAP) error, with
  ``H`` **in bits**; it holds for every distribution and every ``|Y|`` (per conditioning value
  ``1 - max_y p(y|h) <= 1/2 H(y | h = h)``, then average). It is *not* valid with ``H`` in nats
  (binary uniform: ``p_e = 1/2`` but ``1/2 ln 2 = 0.347``), and it bounds the MAP error only,
  not the error of an arbitrary predictor. :func:`hellman_raviv_upper_bound` reports the raw
  ``1/2 H``, which can exceed the trivial bound ``1 - 1/|Y|`` (see :func:`max_error`).

Everything here is exact for discrete distributions given as probability tables (numpy float64):
a ``joint`` table has axis 0 = ``y`` and axes 1..T = ``h_1..h_T``. The paper never checks
either theorem numerically; :class:`ReasoningProcess` builds small exact "reasoning processes"
(each step a noisy observation of ``y``, with a few informative "peak" steps) and
:class:`BoundsCurve` tabulates, per ``T``, the cumulative MI, the chain-rule terms, the Bayes
error and both bounds.

Example:
    >>> import numpy as np
    >>> from tl_thinktok.bounds import (bayes_error, conditional_entropy, fano_lower_bound,
    ...     hellman_raviv_upper_bound)
    >>> eps = 0.1  # binary symmetric channel, uniform prior
    >>> joint = np.array([[0.5 * (1 - eps), 0.5 * eps], [0.5 * eps, 0.5 * (1 - eps)]])
    >>> h = conditional_entropy(joint)
    >>> round(float(h), 4), round(float(bayes_error(joint)), 4)
    (0.469, 0.1)
    >>> round(float(fano_lower_bound(h, 2)), 6), round(float(hellman_raviv_upper_bound(h)), 4)
    (0.1, 0.2345)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from jaxtyping import Float
from numpy.typing import ArrayLike

from tl_thinktok._io import JsonIO
from tl_thinktok._validate import check_int, check_prob

__all__ = [
    "BoundsCurve",
    "ReasoningProcess",
    "bayes_error",
    "binary_entropy",
    "chain_rule_terms",
    "conditional_entropy",
    "entropy",
    "fano_bound_paper",
    "fano_lower_bound",
    "fano_weak_lower_bound",
    "hellman_raviv_upper_bound",
    "max_error",
    "mutual_information",
    "symmetric_channel",
    "validate_joint",
]

SUM_TOL = 1e-9
"""Tolerance on ``|sum(p) - 1|`` for a table to count as a distribution."""

ENTROPY_TOL = 1e-9
"""How far outside ``[0, log2 |Y|]`` a conditional entropy may be before it is an error."""


# --------------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------------


def _as_distribution(p: ArrayLike, *, name: str, min_ndim: int = 1) -> np.ndarray:
    """Return ``p`` as a float64 array normalised to sum 1, after checking it is a distribution."""
    try:
        arr = np.asarray(p, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be a numeric array, got {type(p).__name__}") from exc
    if arr.ndim < min_ndim:
        raise ValueError(
            f"{name} must have at least {min_ndim} axes (axis 0 = y, then h_1..h_T), "
            f"got shape {arr.shape}"
        )
    if arr.size == 0:
        raise ValueError(f"{name} is empty (shape {arr.shape})")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite entries")
    if np.any(arr < 0):
        raise ValueError(f"{name} has negative entries (min {arr.min():.3g})")
    total = float(arr.sum())
    if abs(total - 1.0) > SUM_TOL:
        raise ValueError(f"{name} does not sum to 1 within {SUM_TOL:g} (sum = {total!r})")
    return arr / total


def validate_joint(joint: ArrayLike) -> Float[np.ndarray, "n_classes ..."]:
    """Check that ``joint`` is a joint distribution table over ``(y, h_1, ..., h_T)``.

    Args:
        joint: Array with axis 0 = ``y`` and axes 1..T = ``h_1..h_T`` (at least 2 axes),
            non-negative, finite, summing to 1 within ``1e-9``.

    Returns:
        The table as float64, renormalised to sum exactly (up to rounding) to 1.

    Raises:
        ValueError: fewer than 2 axes, empty, NaN/inf, negative entries, or a sum off 1.
        TypeError: not numeric.

    Example:
        >>> validate_joint([[0.25, 0.25], [0.25, 0.25]]).shape
        (2, 2)
    """
    return _as_distribution(joint, name="joint", min_ndim=2)


# --------------------------------------------------------------------------------------------
# entropies and information
# --------------------------------------------------------------------------------------------


def _plogp_sum(p: np.ndarray) -> float:
    """``-sum p log2 p`` over the positive entries (0 log 0 = 0)."""
    pos = p[p > 0]
    return float(-(pos * np.log2(pos)).sum())


def entropy(p: ArrayLike) -> float:
    """Shannon entropy ``H(p) = -sum p log2 p`` in bits of a distribution of any shape.

    Args:
        p: Probability table (all entries jointly form one distribution).

    Returns:
        ``H(p)`` in bits, in ``[0, log2 p.size]``.

    Example:
        >>> entropy([0.5, 0.25, 0.25])
        1.5
    """
    arr = _as_distribution(p, name="p")
    return max(_plogp_sum(arr), 0.0)


def binary_entropy(p: ArrayLike) -> float | np.ndarray:
    """Binary entropy ``H_b(p) = -p log2 p - (1-p) log2 (1-p)`` in bits, elementwise.

    Args:
        p: Scalar or array of probabilities in ``[0, 1]`` (``H_b(0) = H_b(1) = 0``).

    Returns:
        A float for scalar input, else a float64 array of the same shape.

    Raises:
        ValueError: NaN or values outside ``[0, 1]``.

    Example:
        >>> binary_entropy(0.5)
        1.0
    """
    arr = np.asarray(p, dtype=np.float64)
    if np.any(np.isnan(arr)) or np.any(arr < 0) or np.any(arr > 1):
        raise ValueError(f"binary_entropy needs probabilities in [0, 1], got {p!r}")
    with np.errstate(divide="ignore", invalid="ignore"):
        a = np.where(arr > 0, -arr * np.log2(np.where(arr > 0, arr, 1.0)), 0.0)
        q = 1.0 - arr
        b = np.where(q > 0, -q * np.log2(np.where(q > 0, q, 1.0)), 0.0)
    out = a + b
    return float(out) if out.ndim == 0 else out


def _cond_entropy_2d(table: np.ndarray) -> float:
    """``H(y | s)`` for a table of shape (n_classes, n_states) of joint masses (no validation)."""
    ps = table.sum(axis=0)
    mask = table > 0
    ratio = np.where(mask, np.broadcast_to(ps, table.shape) / np.where(mask, table, 1.0), 1.0)
    return float((table * np.log2(ratio)).sum())


def conditional_entropy(joint: ArrayLike) -> float:
    """``H(y | h_1..h_T)`` in bits for a joint table (axis 0 = ``y``).

    Computed directly as ``sum p(y, h) log2(p(h) / p(y, h))`` (non-negative term by term).

    Args:
        joint: Joint distribution over ``(y, h_1, ..., h_T)``; see :func:`validate_joint`.

    Returns:
        ``H(y | h)`` in bits, in ``[0, log2 |Y|]``.

    Example:
        >>> conditional_entropy([[0.25, 0.25], [0.25, 0.25]])
        1.0
    """
    j = validate_joint(joint)
    return _cond_entropy_2d(j.reshape(j.shape[0], -1))


def mutual_information(joint: ArrayLike) -> float:
    """``I(y; h_1..h_T)`` in bits for a joint table (axis 0 = ``y``).

    Computed as ``sum p(y, h) log2(p(y, h) / (p(y) p(h)))``; may be a rounding error (~1e-16)
    below 0 for independent variables.

    Args:
        joint: Joint distribution over ``(y, h_1, ..., h_T)``.

    Returns:
        The mutual information in bits.

    Example:
        >>> mutual_information([[0.5, 0.0], [0.0, 0.5]])
        1.0
    """
    j = validate_joint(joint)
    t = j.reshape(j.shape[0], -1)
    py = t.sum(axis=1, keepdims=True)
    ph = t.sum(axis=0, keepdims=True)
    mask = t > 0
    denom = np.where(mask, py * ph, 1.0)
    return float((t * np.log2(np.where(mask, t, 1.0) / denom)).sum())


def chain_rule_terms(joint: ArrayLike) -> Float[np.ndarray, " n_steps"]:
    """Per-step conditional MI ``I(y; h_j | h_<j)`` for ``j = 1..T``, in bits.

    Each term is computed directly as
    ``sum p(y, h_<=j) log2[ p(y, h_<=j) p(h_<j) / (p(y, h_<j) p(h_<=j)) ]``; by the chain rule they
    sum to ``I(y; h_1:T)`` (:func:`mutual_information`).

    Args:
        joint: Joint distribution over ``(y, h_1, ..., h_T)``.

    Returns:
        float64 array of length ``T``.

    Example:
        >>> j = np.zeros((2, 2, 2)); j[0, 0, 0] = j[1, 1, 1] = 0.5  # h_2 repeats h_1
        >>> chain_rule_terms(j).tolist()
        [1.0, 0.0]
    """
    j = validate_joint(joint)
    n_steps = j.ndim - 1
    out = np.empty(n_steps, dtype=np.float64)
    for step in range(1, n_steps + 1):
        # p(y, h_<=step), summing out later observations
        cur = j.sum(axis=tuple(range(step + 1, j.ndim))) if step < n_steps else j
        prev = cur.sum(axis=-1, keepdims=True)  # p(y, h_<step)
        h_cur = cur.sum(axis=0, keepdims=True)  # p(h_<=step)
        h_prev = prev.sum(axis=0, keepdims=True)  # p(h_<step)
        mask = cur > 0  # then p(h_<j), p(y, h_<j), p(h_<=j) are all > 0 too
        num = np.where(mask, cur * h_prev, 1.0)
        den = np.where(mask, prev * h_cur, 1.0)
        out[step - 1] = float((cur * np.log2(num / den)).sum())
    return out


def bayes_error(joint: ArrayLike) -> float:
    """Error probability of the MAP (Bayes-optimal) predictor of ``y`` from ``(h_1..h_T)``.

    ``p_e = 1 - sum_h max_y p(y, h)``: the smallest error any predictor can achieve.

    Args:
        joint: Joint distribution over ``(y, h_1, ..., h_T)``.

    Returns:
        ``p_e`` in ``[0, 1 - 1/|Y|]``.

    Example:
        >>> round(bayes_error([[0.4, 0.1], [0.1, 0.4]]), 12)
        0.2
    """
    j = validate_joint(joint)
    t = j.reshape(j.shape[0], -1)
    return float(max(1.0 - t.max(axis=0).sum(), 0.0))


def max_error(n_classes: int) -> float:
    """Trivial upper bound ``1 - 1/|Y|`` on the Bayes error (guess the most likely class).

    Example:
        >>> max_error(4)
        0.75
    """
    _check_n_classes(n_classes)
    return 1.0 - 1.0 / n_classes


# --------------------------------------------------------------------------------------------
# Fano and Hellman-Raviv
# --------------------------------------------------------------------------------------------


def _check_n_classes(n_classes: int) -> None:
    check_int("n_classes", n_classes, low=2)  # the size of the answer space


def _check_cond_entropy(h: np.ndarray, n_classes: int) -> np.ndarray:
    if np.any(np.isnan(h)):
        raise ValueError("cond_entropy is NaN")
    hmax = math.log2(n_classes)
    if np.any(h < -ENTROPY_TOL) or np.any(h > hmax + ENTROPY_TOL):
        raise ValueError(
            f"cond_entropy must lie in [0, log2(n_classes)] = [0, {hmax:.6g}] bits "
            f"(tolerance {ENTROPY_TOL:g}), got {h.tolist()!r}"
        )
    return np.clip(h, 0.0, hmax)


def _fano_lhs(p: np.ndarray, n_classes: int) -> np.ndarray:
    """``H_b(p) + p log2(|Y| - 1)`` for ``0 < p < 1`` (no checks; bisection inner loop).

    Increasing on ``[0, 1 - 1/|Y|]`` from 0 to ``log2 |Y|``.
    """
    q = 1.0 - p
    return -p * np.log2(p) - q * np.log2(q) + p * math.log2(n_classes - 1)


def fano_lower_bound(
    cond_entropy: float | ArrayLike, n_classes: int, *, n_iter: int = 200
) -> float | np.ndarray:
    """Fano lower bound on the error of any predictor of ``y`` (explicit form of Theorem 1).

    Returns the smallest ``p`` in ``[0, 1 - 1/|Y|]`` with
    ``H_b(p) + p log2(|Y| - 1) >= H(y | h)``, found by bisection on the left side, which is
    continuous and increasing on that interval (from 0 at ``p = 0`` to ``log2 |Y|`` at
    ``p = 1 - 1/|Y|``). Works for ``|Y| = 2`` (then it inverts ``H_b`` on ``[0, 1/2]``), gives 0 at
    ``H = 0`` and ``1 - 1/|Y|`` at ``H = log2 |Y|``. Equivalent to the paper's implicit form
    (:func:`fano_bound_paper`): ``p >= fano_bound_paper(H, |Y|, p)`` iff ``p >= fano_lower_bound``
    (for ``p <= 1 - 1/|Y|``, ``|Y| > 2``).

    Note: ``H_b`` is flat near ``p = 1/2``, so near ``H = log2 |Y|`` a rounding error ``d`` in ``H``
    moves the result by about ``sqrt(d)``.

    Args:
        cond_entropy: ``H(y | h)`` in bits, scalar or array; values within ``1e-9`` outside
            ``[0, log2 |Y|]`` are clipped, values further out raise.
        n_classes: ``|Y| >= 2``.
        n_iter: Bisection steps (200 reaches float64 resolution).

    Returns:
        The bound (float for scalar input, else array of the input's shape).

    Raises:
        ValueError: ``n_classes < 2`` or entropy out of range / NaN.

    Example:
        >>> round(float(fano_lower_bound(binary_entropy(0.1), 2)), 9)
        0.1
    """
    _check_n_classes(n_classes)
    h = _check_cond_entropy(np.asarray(cond_entropy, dtype=np.float64), n_classes)
    lo = np.zeros_like(h)
    hi = np.full_like(h, 1.0 - 1.0 / n_classes)
    for _ in range(n_iter):
        mid = 0.5 * (lo + hi)
        if np.all((mid == lo) | (mid == hi)):  # adjacent floats: converged
            break
        ok = _fano_lhs(mid, n_classes) >= h
        hi = np.where(ok, mid, hi)
        lo = np.where(ok, lo, mid)
    # exact endpoints (the left side is flat at the top, where bisection is only ~1e-8 accurate)
    out = np.where(h <= 0, 0.0, np.where(h >= math.log2(n_classes), 1.0 - 1.0 / n_classes, hi))
    return float(out) if out.ndim == 0 else out


def fano_bound_paper(
    cond_entropy: float | ArrayLike, n_classes: int, p_e: float | ArrayLike
) -> float | np.ndarray:
    """The paper's literal Theorem 1 right-hand side, ``(H(y|h) - H_b(p_e)) / log2(|Y| - 1)``.

    The paper writes ``p_e >= [H(y) - sum_j I(y; h_j | h_<j) - H_b(p_e)] / log2(|Y| - 1)``; with the
    chain rule the numerator is ``H(y | h_1:T) - H_b(p_e)``. This is **implicit**: ``p_e`` is on
    both sides, so it is only a check (``p_e >= rhs``) once ``p_e`` is known, not a bound one can
    evaluate from information quantities alone — use :func:`fano_lower_bound` for that. It is
    undefined for ``|Y| = 2`` (division by ``log2 1 = 0``).

    Args:
        cond_entropy: ``H(y | h)`` in bits.
        n_classes: ``|Y| >= 3``.
        p_e: The error probability to plug in on the right (e.g. the Bayes error).

    Returns:
        The right-hand side (may be negative, i.e. vacuous).

    Raises:
        ValueError: ``n_classes < 3`` (the form divides by ``log2(|Y| - 1)``), entropy or ``p_e``
            out of range.

    Example:
        >>> round(float(fano_bound_paper(1.5, 4, 0.3)), 4)
        0.3904
    """
    _check_n_classes(n_classes)
    if n_classes < 3:
        raise ValueError(
            "fano_bound_paper divides by log2(n_classes - 1), which is 0 for n_classes = 2; "
            "use fano_lower_bound (valid for every n_classes >= 2)"
        )
    h = _check_cond_entropy(np.asarray(cond_entropy, dtype=np.float64), n_classes)
    pe = np.asarray(p_e, dtype=np.float64)
    out = (h - np.asarray(binary_entropy(pe))) / math.log2(n_classes - 1)
    return float(out) if out.ndim == 0 else out


def fano_weak_lower_bound(cond_entropy: float | ArrayLike, n_classes: int) -> float | np.ndarray:
    """Textbook explicit weakening of Fano: ``p_e >= max(0, (H(y|h) - 1) / log2 |Y|)``.

    Always below :func:`fano_lower_bound`; vacuous (0) whenever ``H(y | h) <= 1`` bit, in
    particular always for ``|Y| = 2``.

    Example:
        >>> fano_weak_lower_bound(2.0, 8)
        0.3333333333333333
    """
    _check_n_classes(n_classes)
    h = _check_cond_entropy(np.asarray(cond_entropy, dtype=np.float64), n_classes)
    out = np.maximum(0.0, (h - 1.0) / math.log2(n_classes))
    return float(out) if out.ndim == 0 else out


def hellman_raviv_upper_bound(cond_entropy: float | ArrayLike) -> float | np.ndarray:
    """Hellman–Raviv upper bound on the Bayes (MAP) error: ``p_e <= 1/2 H(y | h)``, H in bits.

    Returns the raw ``1/2 H`` (Theorem 2 of the paper); it is not capped, so it can exceed the
    trivial bound ``1 - 1/|Y|`` (:func:`max_error`) — take the minimum yourself if you want
    the tighter of the two. Valid for every ``|Y|`` and every distribution, for the MAP error
    only, and only with ``H`` in bits.

    Args:
        cond_entropy: ``H(y | h)`` in bits (scalar or array, must be >= -1e-9 and not NaN).

    Returns:
        ``H / 2`` (float for scalar input).

    Example:
        >>> hellman_raviv_upper_bound(1.0)
        0.5
    """
    h = np.asarray(cond_entropy, dtype=np.float64)
    if np.any(np.isnan(h)) or np.any(h < -ENTROPY_TOL):
        raise ValueError(f"cond_entropy must be a non-negative number of bits, got {h.tolist()!r}")
    out = 0.5 * np.maximum(h, 0.0)
    return float(out) if out.ndim == 0 else out


# --------------------------------------------------------------------------------------------
# exact discrete reasoning processes
# --------------------------------------------------------------------------------------------


def symmetric_channel(n_classes: int, q: float) -> Float[np.ndarray, "n_classes n_classes"]:
    """M-ary symmetric channel: ``h = y`` with probability ``q``, else uniform over the others.

    Args:
        n_classes: ``|Y| >= 2``.
        q: Probability of observing the true class, in ``[0, 1]``. ``q = 1/|Y|`` is
            uninformative; larger ``q`` is more informative.

    Returns:
        Row-stochastic matrix ``C[y, h] = p(h | y)``.

    Example:
        >>> symmetric_channel(3, 0.5).tolist()
        [[0.5, 0.25, 0.25], [0.25, 0.5, 0.25], [0.25, 0.25, 0.5]]
    """
    _check_n_classes(n_classes)
    q = check_prob("q", q)
    off = (1.0 - q) / (n_classes - 1)
    c = np.full((n_classes, n_classes), off, dtype=np.float64)
    np.fill_diagonal(c, q)
    return c


def _is_label_symmetric(c: np.ndarray) -> bool:
    """True if ``C`` is square with constant diagonal and constant off-diagonal entries."""
    if c.shape[0] != c.shape[1]:
        return False
    diag = np.diag(c)
    off = c[~np.eye(c.shape[0], dtype=bool)]
    return bool(np.all(diag == diag[0]) and (off.size == 0 or np.all(off == off[0])))


@dataclass
class ReasoningProcess:
    """An exact discrete "reasoning process": answer ``y`` and noisy per-step observations.

    ``y ~ prior`` over ``|Y|`` classes; the steps ``h_1..h_T`` are conditionally independent given
    ``y``, step ``j`` drawn from the row-stochastic channel ``channels[j][y, :]``. Informative
    ("peak") steps carry a lot of information about ``y``, ordinary steps little — the
    information-peak picture of the paper, in a setting where every quantity is exact.

    Attributes:
        prior: ``p(y)``, shape ``(n_classes,)``.
        channels: One ``(n_classes, n_obs_j)`` matrix ``p(h_j | y)`` per step.
        peak_steps: 1-based indices of the steps designated as peaks (for plots only).

    Example:
        >>> proc = ReasoningProcess.symmetric(n_classes=3, n_steps=4, peak_steps=(2,),
        ...                                   q_ordinary=0.4, q_peak=0.9)
        >>> curve = proc.bounds_curve()
        >>> bool(np.all(curve.fano <= curve.bayes_error + 1e-9))
        True
    """

    prior: np.ndarray
    channels: list[np.ndarray]
    peak_steps: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        self.prior = _as_distribution(self.prior, name="prior")
        if self.prior.ndim != 1:
            raise ValueError(f"prior must be 1-D, got shape {self.prior.shape}")
        _check_n_classes(self.prior.size)
        if len(self.channels) == 0:
            raise ValueError("channels must contain at least one step")
        chans = []
        for j, c in enumerate(self.channels, start=1):
            arr = np.asarray(c, dtype=np.float64)
            if arr.ndim != 2 or arr.shape[0] != self.prior.size:
                raise ValueError(
                    f"channel {j} must have shape (n_classes={self.prior.size}, n_obs), "
                    f"got {arr.shape}"
                )
            if not np.all(np.isfinite(arr)) or np.any(arr < 0):
                raise ValueError(f"channel {j} has negative or non-finite entries")
            rows = arr.sum(axis=1)
            if np.any(np.abs(rows - 1.0) > SUM_TOL):
                raise ValueError(
                    f"channel {j} rows must sum to 1 within {SUM_TOL:g} (got {rows.tolist()})"
                )
            chans.append(arr / rows[:, None])
        self.channels = chans
        peaks = tuple(int(s) for s in self.peak_steps)
        bad = [s for s in peaks if not 1 <= s <= len(chans)]
        if bad:
            raise ValueError(f"peak_steps must be 1-based step indices in 1..{len(chans)}: {bad}")
        self.peak_steps = peaks

    @classmethod
    def symmetric(
        cls,
        n_classes: int = 4,
        n_steps: int = 12,
        peak_steps: Sequence[int] = (3, 7, 10),
        q_ordinary: float = 0.3,
        q_peak: float = 0.75,
        prior: ArrayLike | None = None,
    ) -> ReasoningProcess:
        """Build a process whose steps are M-ary symmetric channels (:func:`symmetric_channel`).

        Args:
            n_classes: ``|Y|``.
            n_steps: ``T``.
            peak_steps: 1-based indices of the informative steps (``q = q_peak``).
            q_ordinary: ``p(h_j = y)`` at ordinary steps (``1/|Y|`` = no information).
            q_peak: ``p(h_j = y)`` at peak steps.
            prior: ``p(y)``; uniform if None.

        Returns:
            The process.
        """
        _check_n_classes(n_classes)
        n_steps = check_int("n_steps", n_steps, low=1)
        peaks = set(int(s) for s in peak_steps)
        chans = [
            symmetric_channel(n_classes, q_peak if j in peaks else q_ordinary)
            for j in range(1, n_steps + 1)
        ]
        pr = np.full(n_classes, 1.0 / n_classes) if prior is None else prior
        return cls(prior=np.asarray(pr, dtype=np.float64), channels=chans, peak_steps=peak_steps)

    @property
    def n_classes(self) -> int:
        """``|Y|``."""
        return int(self.prior.size)

    @property
    def n_steps(self) -> int:
        """``T``."""
        return len(self.channels)

    def joint(
        self, n_steps: int | None = None, *, max_table_size: int = 2**22
    ) -> Float[np.ndarray, "n_classes ..."]:
        """Materialise the exact joint table ``p(y, h_1, ..., h_T)`` (axis 0 = ``y``).

        Args:
            n_steps: Use only the first ``n_steps`` steps (default: all).
            max_table_size: Refuse tables with more entries than this.

        Returns:
            float64 array of shape ``(n_classes, n_obs_1, ..., n_obs_T)``.

        Raises:
            ValueError: if the table would exceed ``max_table_size`` entries.
        """
        t = self.n_steps if n_steps is None else check_int("n_steps", n_steps, low=1)
        if t > self.n_steps:
            raise ValueError(f"n_steps must be in 1..{self.n_steps}, got {n_steps}")
        max_table_size = check_int("max_table_size", max_table_size, low=1)
        size = self.n_classes * math.prod(c.shape[1] for c in self.channels[:t])
        if size > max_table_size:
            raise ValueError(
                f"joint table for T={t} would have {size} entries > max_table_size="
                f"{max_table_size}; use bounds_curve(method='recursive')"
            )
        table = self.prior.copy()
        for c in self.channels[:t]:
            table = table[..., None] * c.reshape(
                (self.n_classes,) + (1,) * (table.ndim - 1) + (-1,)
            )
        return table

    def _recursive(self, max_states: int, decimals: int) -> tuple[np.ndarray, np.ndarray]:
        """Per-step ``H(y | h_<=j)`` and Bayes error by propagating merged posterior states."""
        symmetric = all(_is_label_symmetric(c) for c in self.channels)
        states = self.prior[None, :].copy()  # (S, n_classes) joint masses p(y, state)
        h_out = np.empty(self.n_steps)
        e_out = np.empty(self.n_steps)
        for j, c in enumerate(self.channels):
            new = (states[:, None, :] * c.T[None, :, :]).reshape(-1, self.n_classes)
            new = new[new.sum(axis=1) > 0]
            if symmetric:
                # relabelling classes commutes with label-symmetric channels and H/argmax are
                # permutation invariant, so the multiset of sorted posteriors is sufficient.
                new = np.sort(new, axis=1)
            post = new / new.sum(axis=1, keepdims=True)
            _, inv = np.unique(np.round(post, decimals), axis=0, return_inverse=True)
            inv = inv.reshape(-1)
            merged = np.zeros((int(inv.max()) + 1, self.n_classes))
            np.add.at(merged, inv, new)
            if merged.shape[0] > max_states:
                raise ValueError(
                    f"recursive computation needs {merged.shape[0]} posterior states at step "
                    f"{j + 1} > max_states={max_states}"
                )
            states = merged
            h_out[j] = _cond_entropy_2d(states.T)
            e_out[j] = max(1.0 - states.max(axis=1).sum(), 0.0)
        return h_out, e_out

    def bounds_curve(
        self,
        method: Literal["recursive", "full"] = "recursive",
        *,
        max_states: int = 2**20,
        max_table_size: int = 2**22,
        decimals: int = 12,
    ) -> BoundsCurve:
        """Exact per-``T`` information, Bayes error and both bounds, ``T = 1..n_steps``.

        Args:
            method: ``"recursive"`` propagates the distribution of posteriors step by step
                (merging sequences with equal posteriors, and, when every channel is
                label-symmetric, posteriors equal up to relabelling) — exact up to the
                ``decimals`` rounding used to merge; ``"full"`` materialises the joint table
                (exact, small cases only).
            max_states: Recursive path: refuse more distinct posterior states than this.
            max_table_size: Full path: refuse larger tables than this.
            decimals: Recursive path: posteriors equal to this many decimals are merged.

        Returns:
            A :class:`BoundsCurve`.
        """
        h_y = entropy(self.prior)
        if method == "recursive":
            max_states = check_int("max_states", max_states, low=1)
            decimals = check_int("decimals", decimals, low=0)
            cond_h, pe = self._recursive(max_states, decimals)
        elif method == "full":
            full = self.joint(max_table_size=max_table_size)
            cond_h = np.empty(self.n_steps)
            pe = np.empty(self.n_steps)
            for t in range(1, self.n_steps + 1):
                jt = full.sum(axis=tuple(range(t + 1, full.ndim))) if t < self.n_steps else full
                cond_h[t - 1] = conditional_entropy(jt)
                pe[t - 1] = bayes_error(jt)
        else:
            raise ValueError(f"method must be 'recursive' or 'full', got {method!r}")
        prev = np.concatenate([[h_y], cond_h[:-1]])
        chain = prev - cond_h  # I(y; h_T | h_<T) = H(y | h_<T) - H(y | h_<=T)
        return BoundsCurve(
            n_classes=self.n_classes,
            t=np.arange(1, self.n_steps + 1),
            prior_entropy=h_y,
            prior_error=float(1.0 - self.prior.max()),
            cond_entropy=cond_h,
            cumulative_mi=h_y - cond_h,
            chain_terms=chain,
            bayes_error=pe,
            fano=np.asarray(fano_lower_bound(cond_h, self.n_classes)),
            hellman_raviv=np.asarray(hellman_raviv_upper_bound(cond_h)),
            peak_steps=list(self.peak_steps),
            method=method,
        )


_ARRAY_FIELDS = (
    "t",
    "cond_entropy",
    "cumulative_mi",
    "chain_terms",
    "bayes_error",
    "fano",
    "hellman_raviv",
)


@dataclass
class BoundsCurve(JsonIO):
    """Exact information and error quantities of a :class:`ReasoningProcess`, per ``T``.

    All arrays have one entry per ``T = 1..n_steps`` (``t``); quantities in bits.

    Attributes:
        n_classes: ``|Y|``.
        t: ``1..T``.
        prior_entropy: ``H(y)``.
        prior_error: ``1 - max_y p(y)`` (Bayes error with no observation).
        cond_entropy: ``H(y | h_1:T)``.
        cumulative_mi: ``I(y; h_1:T) = H(y) - H(y | h_1:T)``.
        chain_terms: ``I(y; h_T | h_<T)``; ``cumsum(chain_terms) == cumulative_mi``.
        bayes_error: MAP error ``p_e(T)``.
        fano: :func:`fano_lower_bound` of ``cond_entropy`` (Theorem 1, explicit form).
        hellman_raviv: ``cond_entropy / 2`` (Theorem 2, uncapped).
        peak_steps: 1-based peak steps of the process.
        method: ``"recursive"`` or ``"full"``.
        meta: Free-form JSON-serialisable notes.

    Example:
        >>> proc = ReasoningProcess.symmetric(n_classes=2, n_steps=3, peak_steps=(2,))
        >>> curve = proc.bounds_curve()
        >>> curve.t.tolist()
        [1, 2, 3]
    """

    n_classes: int
    t: np.ndarray
    prior_entropy: float
    prior_error: float
    cond_entropy: np.ndarray
    cumulative_mi: np.ndarray
    chain_terms: np.ndarray
    bayes_error: np.ndarray
    fano: np.ndarray
    hellman_raviv: np.ndarray
    peak_steps: list[int] = field(default_factory=list)
    method: str = "recursive"
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def max_error(self) -> float:
        """Trivial cap ``1 - 1/|Y|`` on the Bayes error."""
        return max_error(self.n_classes)

    def violations(self) -> dict[str, float]:
        """Largest violations of the theorems and of the chain rule (all should be <= ~1e-9).

        Returns:
            ``{"fano": max(fano - p_e), "hellman_raviv": max(p_e - HR),
            "chain_rule": max |cumsum(chain) - cumulative_mi|}`` (negative = satisfied with room).
        """
        return {
            "fano": float(np.max(self.fano - self.bayes_error)),
            "hellman_raviv": float(np.max(self.bayes_error - self.hellman_raviv)),
            "chain_rule": float(np.max(np.abs(np.cumsum(self.chain_terms) - self.cumulative_mi))),
        }

    # JSON (JsonIO): save(path) -> Path / load(path); arrays as lists, NaN as null.

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BoundsCurve:
        """Inverse of :meth:`to_dict`: lists back to int64 (``t``) / float64 arrays."""
        d = dict(data)
        for k in _ARRAY_FIELDS:
            if k in d:
                d[k] = np.asarray(d[k], dtype=np.int64 if k == "t" else np.float64)
        for k in ("prior_entropy", "prior_error"):
            if k in d:
                d[k] = math.nan if d[k] is None else float(d[k])
        if "peak_steps" in d:
            d["peak_steps"] = [int(s) for s in d["peak_steps"]]
        return super().from_dict(d)

    def plot(self, ax: Any = None) -> Any:
        """Plot the Bayes error between the two bounds, and cumulative MI with peaks marked.

        Args:
            ax: None (new figure with two panels), one matplotlib Axes (error on it, MI on a
                twin y-axis), or a pair of Axes ``(error_ax, mi_ax)``.

        Returns:
            The ``(error_ax, mi_ax)`` pair.
        """
        import matplotlib.pyplot as plt

        if ax is None:
            _, (ax_e, ax_i) = plt.subplots(1, 2, figsize=(10, 3.6))
        elif isinstance(ax, (list, tuple, np.ndarray)):
            ax_e, ax_i = ax[0], ax[1]
        else:
            ax_e, ax_i = ax, ax.twinx()
        t = np.concatenate([[0], self.t])
        pe = np.concatenate([[self.prior_error], self.bayes_error])
        fano = np.concatenate([[fano_lower_bound(self.prior_entropy, self.n_classes)], self.fano])
        hr = np.concatenate([[0.5 * self.prior_entropy], self.hellman_raviv])
        ax_e.fill_between(t, fano, hr, color="tab:blue", alpha=0.15, label="Fano … Hellman–Raviv")
        ax_e.plot(t, hr, "--", color="tab:blue", label="Hellman–Raviv ½H(y|h) (Thm 2)")
        ax_e.plot(t, fano, ":", color="tab:blue", label="Fano lower bound (Thm 1)")
        ax_e.plot(t, pe, "o-", color="k", ms=3, label="Bayes error $p_e$")
        ax_e.axhline(self.max_error, color="gray", lw=0.8, label="trivial cap 1−1/|Y|")
        ax_e.set_xlabel("reasoning steps T")
        ax_e.set_ylabel("error probability")
        ax_e.legend(fontsize=7)
        mi = np.concatenate([[0.0], self.cumulative_mi])
        ax_i.plot(t, mi, "s-", color="tab:red", ms=3, label="I(y; h_1:T) [bits]")
        for s in self.peak_steps:
            ax_i.axvline(s, color="tab:red", alpha=0.25, lw=3)
        if self.peak_steps:
            ax_i.plot(
                self.peak_steps,
                [mi[s] for s in self.peak_steps],
                "*",
                color="tab:red",
                ms=10,
                label="peak steps",
            )
        ax_i.axhline(self.prior_entropy, color="tab:red", lw=0.8, ls=":", label="H(y)")
        ax_i.set_xlabel("reasoning steps T")
        ax_i.set_ylabel("bits")
        ax_i.legend(fontsize=7, loc="lower right")
        return ax_e, ax_i
