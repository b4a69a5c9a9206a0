"""Outside reference for the MI estimator, written as the formula reads (numpy, float64).

This mirrors the estimator of the MI-Peaks reference code (Qian et al. 2025, repository
ChnQ/MI-Peaks, Apache-2.0) *as described* in the project's spec (PAPER.md §1): the ``d`` hidden
dimensions are the samples (``m = d`` scalar pairs), Gaussian kernel ``exp(-(a - b)^2 / (2 σ^2))``,
one-sided centring ``K̃ = K H`` with ``H = I - 11ᵀ/m``, ``R = K̃ (K̃ + ε m I)^{-1}`` and the value
``tr(R_x R_y) = Σ_ij R_x[i, j] R_y[j, i]``. It is written independently from that description, not
copied code, and deliberately keeps the naive cost profile (``R_y`` recomputed for every step, two
explicit ``m × m`` inversions per step) so tests and benchmarks can compare the optimised
``tl_thinktok.mi`` implementation against it.

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

__all__ = ["reference_nocco", "reference_nocco_trace", "reference_hsic_biased"]


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
