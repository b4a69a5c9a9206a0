"""Outside reference for the MI estimator, written as the formula reads (numpy, float64).

This mirrors the estimator of the MI-Peaks reference code (Qian et al. 2025, repository
ChnQ/MI-Peaks, Apache-2.0) *as described* in the project's spec (PAPER.md §1): the ``d`` hidden
dimensions are the samples (``m = d`` scalar pairs), Gaussian kernel ``exp(-(a - b)^2 / (2 σ^2))``,
one-sided centring ``K̃ = K H`` with ``H = I - 11ᵀ/m``, ``R = K̃ (K̃ + ε m I)^{-1}`` and the value
``tr(R_x R_y) = Σ_ij R_x[i, j] R_y[j, i]``. It is written independently from that description, not
copied code, and deliberately keeps the naive cost profile (``R_y`` recomputed for every step, two
explicit ``m × m`` inversions per step) so tests and benchmarks can compare the optimised
``tl_thinktok.mi`` implementation against it.

:func:`reference_nocco_float32` is the same formula in the arithmetic the reference scripts
actually run (torch, float32 on the CPU); it exists to time that code and to characterise its
round-off, not as a reference value (use :func:`reference_nocco` for that).

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> y = rng.normal(size=64)
    >>> v = reference_nocco(y, y)
    >>> bool(v > 0)
    True
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = [
    "reference_nocco",
    "reference_nocco_trace",
    "reference_nocco_float32",
    "reference_hsic_biased",
]


def _gaussian_kernel(v: np.ndarray, sigma: float) -> np.ndarray:
    diff = v[:, None] - v[None, :]
    return np.exp(-(diff**2) / (2.0 * sigma**2))


def reference_nocco(x: np.ndarray, y: np.ndarray, sigma: float = 50.0, eps: float = 1e-5) -> float:
    """NOCCO / normalised-HSIC value ``tr(R_x R_y)`` for one pair of ``d``-vectors, float64.

    Args:
        x: step representation, shape ``(d,)``.
        y: answer representation, shape ``(d,)``.
        sigma: Gaussian kernel bandwidth.
        eps: regulariser; the ridge is ``eps * m``.

    Returns:
        The scalar ``Σ_ij R_x[i, j] R_y[j, i]``.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    m = x.shape[0]
    eye = np.eye(m)
    h = eye - np.ones((m, m)) / m
    kx = _gaussian_kernel(x, sigma) @ h
    ky = _gaussian_kernel(y, sigma) @ h
    rx = kx @ np.linalg.inv(kx + eps * m * eye)
    ry = ky @ np.linalg.inv(ky + eps * m * eye)
    return float(np.sum(rx * ry.T))


def reference_nocco_trace(
    xs: np.ndarray, y: np.ndarray, sigma: float = 50.0, eps: float = 1e-5
) -> np.ndarray:
    """Apply :func:`reference_nocco` step by step (``R_y`` recomputed each step, as written).

    Args:
        xs: step representations, shape ``(steps, d)``.
        y: answer representation, shape ``(d,)``.
        sigma: Gaussian kernel bandwidth.
        eps: regulariser.

    Returns:
        float64 array of shape ``(steps,)``.
    """
    xs = np.asarray(xs, dtype=np.float64)
    return np.array([reference_nocco(row, y, sigma, eps) for row in xs], dtype=np.float64)


def _centred_kernel_torch(v: torch.Tensor, sigma: float) -> torch.Tensor:
    # as the reference scripts: the m scalars as an [m, 1] sample matrix, squared distances by
    # the expansion |a|^2 - 2 a.b + |b|^2 (absolute value), Gaussian kernel, then K @ H with an
    # explicit m x m centring matrix H = I - 11^T / m, all in v's dtype
    col = v.reshape(-1, 1)
    m = col.shape[0]
    sq = (col * col).sum(1, keepdim=True)
    dist = (sq - 2.0 * (col @ col.T) + sq.T).abs()
    kern = torch.exp(-dist / (2.0 * sigma * sigma * col.shape[1]))
    h = torch.eye(m, dtype=v.dtype) - torch.ones(m, m, dtype=v.dtype) / m
    return kern @ h


def reference_nocco_float32(
    x: np.ndarray | torch.Tensor,
    y: np.ndarray | torch.Tensor,
    sigma: float = 50.0,
    eps: float = 1e-5,
    *,
    dtype: torch.dtype = torch.float32,
) -> float:
    """The value of :func:`reference_nocco` computed as the reference scripts compute it.

    Torch on the CPU in ``dtype`` (float32 by default, the scripts' arithmetic): squared
    distances by expansion, the Gaussian kernel, one-sided centring ``K @ H`` with an explicit
    ``m x m`` matrix ``H``, two ``torch.inverse`` of ``K̃ + ε m I`` and ``Σ R_x ∘ R_yᵀ``. Written
    from the description of the MI-Peaks estimator, not copied. It exists to time the reference
    code's own arithmetic and to characterise its float32 round-off (which is not small at
    ``sigma = 50``: see tests/unit/test_reference_float32.py); the reference *value* is
    :func:`reference_nocco` (float64). ``dtype=torch.float64`` runs the same operations in
    float64, to test this transcription against :func:`reference_nocco`.

    Args:
        x: step representation, shape ``(d,)``.
        y: answer representation, shape ``(d,)``.
        sigma: Gaussian kernel bandwidth.
        eps: regulariser; the ridge is ``eps * m``.
        dtype: ``torch.float32`` (the scripts) or ``torch.float64``.

    Returns:
        The scalar ``Σ_ij R_x[i, j] R_y[j, i]`` (computed in ``dtype``, returned as a float).

    Raises:
        ValueError: ``dtype`` not float32/float64, or ``x`` and ``y`` of different sizes.

    Example:
        >>> import numpy as np
        >>> y = np.random.default_rng(0).normal(size=64)
        >>> v32 = reference_nocco_float32(y, y)
        >>> v64 = reference_nocco_float32(y, y, dtype=torch.float64)
        >>> bool(abs(v64 - reference_nocco(y, y)) < 1e-9)
        True
    """
    if dtype not in (torch.float32, torch.float64):
        raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
    tx = torch.as_tensor(x).detach().cpu().to(dtype).reshape(-1)
    ty = torch.as_tensor(y).detach().cpu().to(dtype).reshape(-1)
    if tx.shape != ty.shape:
        raise ValueError(f"x has {tx.numel()} entries and y {ty.numel()}; need the same d")
    m = tx.shape[0]
    ridge = eps * m * torch.eye(m, dtype=dtype)
    kx = _centred_kernel_torch(tx, sigma)
    ky = _centred_kernel_torch(ty, sigma)
    rx = kx @ torch.inverse(kx + ridge)
    ry = ky @ torch.inverse(ky + ridge)
    return float(torch.sum(rx * ry.T))


def reference_hsic_biased(x: np.ndarray, y: np.ndarray, sigma_x: float, sigma_y: float) -> float:
    """Textbook biased HSIC ``tr(K_x H K_y H) / (m - 1)^2`` (Gretton et al. 2005), float64.

    Args:
        x: shape ``(d,)``.
        y: shape ``(d,)``.
        sigma_x: bandwidth for ``x``'s Gaussian kernel.
        sigma_y: bandwidth for ``y``'s Gaussian kernel.

    Returns:
        The scalar biased HSIC estimate.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    m = x.shape[0]
    h = np.eye(m) - np.ones((m, m)) / m
    kx = _gaussian_kernel(x, sigma_x)
    ky = _gaussian_kernel(y, sigma_y)
    return float(np.trace(kx @ h @ ky @ h) / (m - 1) ** 2)
