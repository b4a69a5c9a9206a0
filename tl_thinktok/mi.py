"""Mutual-information proxies between step representations and the answer representation.

The estimator of the paper's reference code (PAPER.md §1, "normalised HSIC" / NOCCO form) treats
the ``d`` hidden dimensions as samples: ``m = d`` scalar pairs ``(x[k], y[k])``. With the Gaussian
kernel ``K[i, j] = exp(-(a_i - a_j)^2 / (2 σ^2))``, ``H = I - 11ᵀ/m``, ``K̃ = K H`` and
``λ = ε m`` it returns ``tr(R_x R_y)`` with ``R = K̃ (K̃ + λ I)^{-1}``.

How it is computed here (same value, less work). Push-through identities give
``tr(R_x R_y) = tr(P_x P_y)`` with the *symmetric* ``P = K_c (K_c + λ I)^{-1}`` and the
double-centred ``K_c = H K H`` (``R = K H (K H + λ)^{-1}``, ``H K (H K + λ)^{-1} = Q`` has its range
inside ``range(H)`` so ``tr(R_x R_y) = tr(Q_x Q_y) = tr(P_x P_y)``). Consequences, all used below:

* the value is symmetric in ``x`` and ``y`` and non-negative (``P`` is PSD up to round-off);
* the answer side is factorised once per call: a pivoted Cholesky ``K_y ≈ G Gᵀ`` run to float64
  round-off (every residual diagonal below ``64 eps``) and an SVD of ``F = H G`` give
  ``P_y = Σ_k p_k q_k q_kᵀ`` with ``p_k = s_k² / (s_k² + λ)`` (``r_y`` ≈ tens of directions);
* per step, **exact mode** needs one dense Cholesky factor ``L`` of ``K_c,x + λ I`` (``m³/3``
  flops, the reference does ``~12 m³``) and one triangular solve with ``r_y`` right-hand sides:
  ``tr(P_x P_y) = Σ p_k − λ Σ_k p_k ‖L^{-1} q_k‖²`` (``P_x = I − λ (K_c,x + λ I)^{-1}``). The step
  side is not approximated; the answer side's round-off-level residual is covered by the bound
  below (``error_bound``). Measured against a 40-digit evaluation of the formula: ~1e-13 relative
  on well-conditioned data (residual-like, Gaussian with spread ~σ), ~1e-10 on N(0, 1) data
  with σ = 50 (K ≈ all ones, centring cancels digits), where the float64 reference formula as
  written is off by ~1e-9..1e-8 — this implementation is the more accurate of the two.
* **fast mode** (``rank=`` or ``tol=``) replaces ``K`` by a pivoted-Cholesky factor ``K ≈ G Gᵀ``
  (greedy Nyström on pivots; residual ``E = K − G Gᵀ`` is PSD with known trace). With ``F = H G``,
  ``P̂ = F (FᵀF + λ I)^{-1} Fᵀ`` so ``tr(P̂_x P̂_y) = ‖L_M^{-1} Fᵀ_x U_y diag(p̂_y)^{1/2}‖_F²``,
  ``M = F_xᵀ F_x + λ I``: ``O(m r²)`` per step instead of ``O(m³)``. Error bound: ``f(μ) = μ/(μ+λ)``
  is operator monotone, so by Ando's inequality ``‖P − P̂‖_* ≤ tr f(H E H) ≤ tr(E)/λ`` and
  ``|tr(P_x P_y) − tr(P̂_x P̂_y)| ≤ (tr E_x + tr E_y) / λ`` (a rigorous, usually pessimistic bound,
  attached as ``EstimateInfo.error_bound``). Since ``F Fᵀ <= K_c`` the fast value never exceeds
  the exact one. ``EstimateInfo.error_estimate`` is a cheaper, tighter but non-guaranteed guide
  (it can underestimate when a fixed ``rank=`` stops before convergence; with ``tol`` it was
  within ~10x of the true error in our checks). Pivoted Cholesky picks isolated points (the few huge
  "massive activation" dimensions of a residual stream) first, because their residual diagonal is 1.

Performance note: fast mode runs many small batched ops; on an oversubscribed CPU torch's
intra-op threads make them up to ~40x slower (measured on a shared 2-core box), so prefer
``torch.set_num_threads(1)`` there. Measured (2-core CPU, load ~7.5, 1 thread each, 512 steps):
reference formula 12.7 s/step at d=1536 and 87 s/step at d=4096; exact 0.32 s and 3.7 s (39x,
24x); fast (``tol=1e-10``) 1.3-3.9 ms and 3.3-8.0 ms per step (>3000x), relative error <= 1.5e-6.

Scale-controlled alternatives: :func:`hsic_nocco_standardized` (the same estimator on z-scored
vectors, invariant to per-vector affine rescaling, so it cannot follow the residual norm) and
:func:`hsic_biased` (textbook biased HSIC with a median-heuristic bandwidth, the form the paper's
text describes). :func:`residual_norm` is the trivial baseline for "do peaks just track the norm?".

Example:
    >>> import torch
    >>> g = torch.Generator().manual_seed(0)
    >>> y = torch.randn(256, generator=g, dtype=torch.float64) * 40
    >>> xs = y + torch.randn(5, 256, generator=g, dtype=torch.float64) * 10
    >>> exact = hsic_nocco(xs, y)
    >>> fast, info = hsic_nocco(xs, y, tol=1e-12, return_info=True)
    >>> exact.shape, bool(torch.allclose(exact, fast, rtol=1e-6))
    (torch.Size([5]), True)
    >>> bool((info.error_bound < 1e-3).all())
    True
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from tl_thinktok._validate import check_float, check_int
from tl_thinktok.peaks import TraceStats, find_peaks, trace_stats  # re-exported (DESIGN.md)

__all__ = [
    "ESTIMATORS",
    "HSIC",
    "EstimateInfo",
    "TraceStats",
    "find_peaks",
    "trace_stats",
    "estimate",
    "hsic_biased",
    "hsic_nocco",
    "hsic_nocco_standardized",
    "median_bandwidth",
    "residual_norm",
]

_MEMORY_BUDGET_BYTES = 256 * 2**20  # per chunk of steps, for the m x m work arrays
_CACHE_BYTES = 8 * 2**20  # per chunk of steps, for the working set reread inside one call
_PIVOT_FLOOR = 64 * torch.finfo(torch.float64).eps  # stop pivoting below this residual diagonal
_F64 = torch.float64


# ----------------------------------------------------------------------------------------------
# validation
# ----------------------------------------------------------------------------------------------
def _to_f64(t: object, name: str, device: torch.device | None = None) -> Tensor:
    if isinstance(t, np.ndarray):
        t = torch.from_numpy(t)
    if not isinstance(t, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor or numpy array, got {type(t).__name__}")
    if t.is_complex():
        raise TypeError(f"{name} must be real, got dtype {t.dtype}")
    t = t.detach().to(device=t.device if device is None else device, dtype=_F64)
    if t.numel() and not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} contains non-finite values (NaN or inf)")
    return t


def _check_y(y: Tensor) -> None:
    if y.ndim != 1:
        raise ValueError(
            f"y (answer representation) must be 1-D of shape (d,), got {tuple(y.shape)}"
        )
    if y.shape[0] < 2:
        raise ValueError(f"need d >= 2 hidden dimensions (the samples), got d={y.shape[0]}")


def _check_x(x: Tensor, d: int) -> None:
    if x.ndim < 1:
        raise ValueError("x must have at least one dimension (..., d), got a scalar")
    if x.shape[-1] != d:
        raise ValueError(
            f"d mismatch: x has last dimension {x.shape[-1]} but y has d={d} ((..., d) vs (d,))"
        )


def _check_positive(value: object, name: str) -> float:
    v = check_float(name, value)
    if v <= 0:
        raise ValueError(f"{name} must be > 0, got {v}")
    return v


def _check_fast(rank: int | None, tol: float | None) -> None:
    if rank is not None:
        check_int("rank", rank, low=1)
    if tol is not None:
        _check_positive(tol, "tol")


# ----------------------------------------------------------------------------------------------
# kernels and factorisations
# ----------------------------------------------------------------------------------------------
def _kernel(v: Tensor, sigma: Tensor | float) -> Tensor:
    """Gaussian kernel matrices of a batch of scalar samples: ``(b, m) -> (b, m, m)``."""
    k = v.unsqueeze(-1) - v.unsqueeze(-2)
    k.square_()
    if isinstance(sigma, Tensor):
        k.mul_((-0.5 / sigma.square()).reshape(-1, 1, 1))
    else:
        k.mul_(-0.5 / sigma**2)
    return k.exp_()


def _double_centre_(k: Tensor) -> Tensor:
    """In place ``K <- H K H`` for symmetric ``K`` of shape ``(b, m, m)``.

    ``H K H = K − a 1ᵀ − 1 aᵀ`` with ``a = rowmean − grandmean/2``: one rank-2 update (one pass).
    """
    row = k.mean(-1)  # (b, m); K symmetric so column means are equal
    a = row - 0.5 * row.mean(-1, keepdim=True)
    ones = torch.ones_like(a)
    left = torch.stack([a, ones], dim=-1)  # (b, m, 2)
    right = torch.stack([ones, a], dim=-2)  # (b, 2, m)
    return k.baddbmm_(left, right, alpha=-1.0)


def _pivoted_cholesky(
    v: Tensor, sigma: float, max_rank: int, trace_tol: float
) -> tuple[Tensor, Tensor, Tensor]:
    """Batched greedy pivoted Cholesky of the Gaussian kernel of scalar samples ``v`` (b, m).

    Returns ``G`` (b, r, m) with ``K ≈ Gᵀ G`` (rows are the factor's columns), the per-item rank
    (b,) and the per-item residual trace ``tr(K - GᵀG)`` (b,). An item stops when its residual
    trace is ``<= trace_tol``, its largest residual diagonal is below round-off, or at
    ``max_rank``; later rows of a stopped item are zero.
    """
    b, m = v.shape
    max_rank = min(max_rank, m)
    cap = min(max_rank, 32)
    g = v.new_zeros(b, cap, m)
    diag = v.new_ones(b, m)
    rank = torch.zeros(b, dtype=torch.long, device=v.device)
    items = torch.arange(b, device=v.device)
    scale = -0.5 / sigma**2
    j = 0
    while j < max_rank:
        dmax, piv = diag.max(-1)
        active = (diag.sum(-1) > trace_tol) & (dmax > _PIVOT_FLOOR)
        if not bool(active.any()):
            break
        if j == cap:
            cap = min(max_rank, 2 * cap)
            g = torch.cat([g, g.new_zeros(b, cap - j, m)], dim=1)
        col = (v - v[items, piv].unsqueeze(-1)).square_().mul_(scale).exp_()
        if j:
            col -= torch.bmm(g[items, :j, piv].unsqueeze(1), g[:, :j]).squeeze(1)
        factor = torch.where(active, dmax.clamp_min(_PIVOT_FLOOR).rsqrt(), torch.zeros_like(dmax))
        col.mul_(factor.unsqueeze(-1))
        g[:, j] = col
        diag.sub_(col.square()).clamp_(min=0.0)
        diag[items[active], piv[active]] = 0.0
        rank += active
        j += 1
    return g[:, :j], rank, diag.sum(-1)


@dataclass(frozen=True)
class _AnswerSide:
    """``P_y ≈ Σ_k p_k q_k q_kᵀ`` (q: (m, r) orthonormal columns)."""

    q: Tensor
    p: Tensor
    p_sum: Tensor
    residual_trace: float  # tr(E_y) of the pivoted-Cholesky kernel factor

    def to(self, device: torch.device) -> _AnswerSide:
        return _AnswerSide(
            self.q.to(device),
            self.p.to(device),
            self.p_sum.to(device),
            self.residual_trace,
        )


def _lowrank_answer(
    y: Tensor, sigma: float, lam: float, max_rank: int, trace_tol: float
) -> _AnswerSide:
    g, _, resid = _pivoted_cholesky(y.unsqueeze(0), sigma, max_rank, trace_tol)
    f = g[0].T  # (m, r)
    f = f - f.mean(0, keepdim=True)
    u, s, _ = torch.linalg.svd(f, full_matrices=False)
    keep = s > 0
    u, s2 = u[:, keep], s[keep].square()
    p = s2 / (s2 + lam)
    return _AnswerSide(u.contiguous(), p, p.sum(), float(resid[0]))


# ----------------------------------------------------------------------------------------------
# public API
# ----------------------------------------------------------------------------------------------
@dataclass
class EstimateInfo:
    """Diagnostics of one :class:`HSIC` call.

    Attributes:
        mode: ``"exact"`` or ``"lowrank"``.
        rank_x: per-step rank of the step-side kernel factor (``m`` in exact mode), shape ``(...)``.
        rank_y: number of answer-side eigen-directions used.
        residual_trace_x: per-step ``tr(K_x − GGᵀ)`` of the pivoted Cholesky (0 in exact mode).
        residual_trace_y: ``tr(K_y − GGᵀ)`` of the answer side (0 in exact mode).
        error_bound: per-step rigorous bound on ``|returned − exact value|``: fast mode
            ``(tr E_x + tr E_y)/(ε m)`` (Ando's inequality, see module doc; usually very
            pessimistic), exact mode ``tr E_y/(ε m)`` of the round-off-level answer factor.
        error_estimate: per-step heuristic size of ``exact − fast`` (fast mode): the contribution
            of the last step-side pivot plus that of the weakest answer direction. Pivoted
            Cholesky converges super-exponentially on these kernels, so the next terms are
            smaller; a guide, not a guarantee (use ``error_bound`` for that). The fast value
            never exceeds the exact one (``0 <= exact − fast <= error_bound``, Loewner order).
    """

    mode: str
    rank_x: Tensor
    rank_y: int
    residual_trace_x: Tensor
    residual_trace_y: float
    error_bound: Tensor
    error_estimate: Tensor


class HSIC:
    """NOCCO / normalised-HSIC estimator with the answer side ``y`` prepared once.

    Use it when many traces share one answer (or to score a trace in several calls): the
    eigendecomposition (exact) or pivoted Cholesky + SVD (fast) of ``y``'s side is cached.

    Args:
        y: answer representation ``(d,)``; any real dtype, computed in float64.
        sigma: Gaussian kernel bandwidth (reference: 50).
        eps: regulariser, ridge ``eps * d`` (reference: 1e-5).
        rank: fast mode, maximum rank of the pivoted-Cholesky kernel factors.
        tol: fast mode, stop pivoting when the residual trace ``tr(K − GGᵀ) <= tol * d``
            (relative to ``tr K = d``). Measured at d=1536 on Gaussian and residual-like data:
            ``tol=1e-10`` → relative error ≤ 5e-7 (ranks ~12-25), ``1e-12`` → ≤ 1e-7. With only
            ``rank`` the rank is fixed (or smaller if the kernel is exhausted).
        standardize: z-score ``y`` and every step (population std over ``d``) before the
            estimator (see :func:`hsic_nocco_standardized`).
        chunk: steps per batched linear-algebra call (default: from a 256 MiB budget).

    Example:
        >>> import torch
        >>> y = torch.linspace(-100, 100, 128, dtype=torch.float64)
        >>> est = HSIC(y)
        >>> v = est(torch.stack([y, y.flip(0), torch.zeros_like(y) + 1.0]))
        >>> bool(v[0] > v[2]), bool(torch.isclose(v[0], v[1]))
        (True, True)
    """

    def __init__(
        self,
        y: Float[Tensor, " d"],
        sigma: float = 50.0,
        eps: float = 1e-5,
        *,
        rank: int | None = None,
        tol: float | None = None,
        standardize: bool = False,
        chunk: int | None = None,
    ) -> None:
        self.sigma = _check_positive(sigma, "sigma")
        self.eps = _check_positive(eps, "eps")
        _check_fast(rank, tol)
        if chunk is not None:
            chunk = check_int("chunk", chunk, low=1)
        yy = _to_f64(y, "y")
        _check_y(yy)
        self.standardize = bool(standardize)
        if self.standardize:
            yy = _zscore(yy.unsqueeze(0), "y")[0]
        self.y = yy
        self.d = yy.shape[0]
        self.lam = self.eps * self.d
        self.rank = rank
        self.tol = tol
        self.chunk = chunk
        self.mode: Literal["exact", "lowrank"] = (
            "exact" if rank is None and tol is None else "lowrank"
        )
        answer = _lowrank_answer(yy, self.sigma, self.lam, self._max_rank, self._trace_tol)
        self._answers = {yy.device: answer}

    @property
    def _max_rank(self) -> int:
        return self.d if self.rank is None else min(self.rank, self.d)

    # exact mode: the answer side is factorised to round-off (trace_tol 0, pivot floor 64 eps)

    @property
    def _trace_tol(self) -> float:
        return 0.0 if self.tol is None else self.tol * self.d

    def _answer(self, device: torch.device) -> _AnswerSide:
        if device not in self._answers:
            self._answers[device] = next(iter(self._answers.values())).to(device)
        return self._answers[device]

    def _chunk(self, per_step_bytes: int, cached_bytes: int, min_steps: int = 1) -> int:
        """Steps per batched call: ``chunk`` if given, else the memory budget's count capped so
        that ``cached_bytes`` per step stay cache-sized (>= ``min_steps``). Cache-sized chunks were
        1.3-1.6x faster at d 128-512 (docs/performance.md); values are unchanged."""
        if self.chunk is not None:
            return self.chunk
        budget = max(1, _MEMORY_BUDGET_BYTES // max(per_step_bytes, 1))
        return min(budget, max(min_steps, _CACHE_BYTES // max(cached_bytes, 1)))

    def __call__(
        self, x: Float[Tensor, "... d"], *, return_info: bool = False
    ) -> Float[Tensor, "..."] | tuple[Float[Tensor, "..."], EstimateInfo]:
        """Estimate for every step in ``x`` (shape ``(..., d)``) → float64 of shape ``(...)``.

        Args:
            x: step representations on any device; computed in float64 on that device.
            return_info: also return an :class:`EstimateInfo` (ranks, residuals, error bound).

        Returns:
            The values, or ``(values, info)`` when ``return_info``.
        """
        xx = _to_f64(x, "x")
        _check_x(xx, self.d)
        lead = xx.shape[:-1]
        flat = xx.reshape(-1, self.d)
        if self.standardize and flat.shape[0]:
            flat = _zscore(flat, "x")
        ans = self._answer(flat.device)
        n = flat.shape[0]
        values = torch.empty(n, dtype=_F64, device=flat.device)
        ranks = torch.full((n,), self.d, dtype=torch.long, device=flat.device)
        resid = torch.zeros(n, dtype=_F64, device=flat.device)
        tail = torch.zeros(n, dtype=_F64, device=flat.device)
        if self.mode == "exact":
            # two d x d float64 work arrays per step (one step per call from d ~ 700)
            step = self._chunk(2 * self.d * self.d * 8, 2 * self.d * self.d * 8)
            for s in range(0, n, step):
                values[s : s + step] = self._exact_steps(flat[s : s + step], ans)
            bound = torch.full((n,), ans.residual_trace / self.lam, dtype=_F64, device=flat.device)
        else:
            # the pivoted Cholesky rereads its factor (rank x d per step) at every pivot: sized
            # for rank 64, >= 16 steps per batched call
            step = self._chunk(self.d * 8 * min(self._max_rank, 256) * 2, self.d * 8 * 64, 16)
            for s in range(0, n, step):
                v, r, e, t = self._lowrank_steps(flat[s : s + step], ans)
                values[s : s + step], ranks[s : s + step], resid[s : s + step] = v, r, e
                tail[s : s + step] = t
            bound = (resid + ans.residual_trace) / self.lam
        values = values.reshape(lead)
        if not return_info:
            return values
        info = EstimateInfo(
            mode=self.mode,
            rank_x=ranks.reshape(lead),
            rank_y=int(ans.q.shape[1]),
            residual_trace_x=resid.reshape(lead),
            residual_trace_y=ans.residual_trace,
            error_bound=bound.reshape(lead),
            error_estimate=(tail if self.mode == "lowrank" else bound).reshape(lead),
        )
        return values, info

    def _exact_steps(self, xs: Tensor, ans: _AnswerSide) -> Tensor:
        b = _double_centre_(_kernel(xs, self.sigma))
        b.diagonal(dim1=-2, dim2=-1).add_(self.lam)
        chol, info = torch.linalg.cholesky_ex(b)
        del b
        if bool((info != 0).any()):
            raise ValueError(
                f"Cholesky of K_c + eps*m*I failed: eps={self.eps:g} is too small for float64"
            )
        sol = torch.linalg.solve_triangular(chol, ans.q.expand(xs.shape[0], -1, -1), upper=False)
        return ans.p_sum - self.lam * (sol.square().sum(-2) * ans.p).sum(-1)

    def _lowrank_steps(self, xs: Tensor, ans: _AnswerSide) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        g, rank, resid = _pivoted_cholesky(xs, self.sigma, self._max_rank, self._trace_tol)
        f = g - g.mean(-1, keepdim=True)  # (b, r, m): rows are centred factor columns (H G)ᵀ
        gram = f @ f.transpose(-1, -2)
        gram.diagonal(dim1=-2, dim2=-1).add_(self.lam)
        chol = torch.linalg.cholesky(gram)
        z = (f @ ans.q) * ans.p.sqrt()  # (b, r, r_y)
        w = torch.linalg.solve_triangular(chol, z, upper=False)
        w2 = w.square()
        # value with the first r' pivots only = sum of the first r' rows (forward substitution);
        # the last pivot's row and the weakest answer direction's column estimate the tail
        last_row = w2.sum(-1).gather(-1, (rank - 1).clamp_min(0).unsqueeze(-1)).squeeze(-1)
        last_col = w2[..., -1].sum(-1) if w2.shape[-1] else torch.zeros_like(last_row)
        return w2.sum((-2, -1)), rank, resid, last_row * (rank > 0) + last_col


def hsic_nocco(
    x: Float[Tensor, "... d"],
    y: Float[Tensor, " d"],
    sigma: float = 50.0,
    eps: float = 1e-5,
    *,
    rank: int | None = None,
    tol: float | None = None,
    return_info: bool = False,
    chunk: int | None = None,
) -> Float[Tensor, "..."] | tuple[Float[Tensor, "..."], EstimateInfo]:
    """MI proxy of the reference code: ``tr(R_x R_y)``, ``R = K̃(K̃ + ε m I)^{-1}``, ``K̃ = K H``.

    The ``d`` hidden dimensions are the samples. float64 on ``x``'s device whatever the input
    dtype; batched over leading dimensions of ``x``; the answer side is prepared once per call
    (use :class:`HSIC` to reuse it across calls). Exact by default; ``rank=``/``tol=`` select the
    low-rank fast mode (see :class:`HSIC` and the module docstring for the error bound).

    Args:
        x: step representations ``(..., d)``.
        y: answer representation ``(d,)``.
        sigma: Gaussian kernel bandwidth (reference: 50).
        eps: regulariser, ridge ``eps * d``.
        rank: fast mode, max rank of the kernel factors.
        tol: fast mode, relative residual-trace tolerance of the pivoted Cholesky.
        return_info: also return an :class:`EstimateInfo`.
        chunk: steps per batched linear-algebra call.

    Returns:
        float64 tensor of shape ``x.shape[:-1]`` (or ``(values, info)``).

    Raises:
        ValueError: d mismatch, d < 2, non-finite input, sigma/eps <= 0, bad rank/tol.

    Example:
        >>> import torch
        >>> y = torch.randn(300, dtype=torch.float64) * 60
        >>> float(hsic_nocco(y, y)) > float(hsic_nocco(torch.randn(300) * 60, y))
        True
    """
    if isinstance(x, Tensor) and isinstance(y, Tensor) and y.device != x.device:
        y = y.to(x.device)
    est = HSIC(y, sigma, eps, rank=rank, tol=tol, chunk=chunk)
    return est(x, return_info=return_info)


def _zscore(v: Tensor, name: str) -> Tensor:
    std = v.std(-1, correction=0, keepdim=True)
    if bool((std == 0).any()):
        raise ValueError(f"{name} has a constant vector (zero std over d); cannot standardise")
    return (v - v.mean(-1, keepdim=True)) / std


def hsic_nocco_standardized(
    x: Float[Tensor, "... d"],
    y: Float[Tensor, " d"],
    sigma: float = 1.0,
    eps: float = 1e-5,
    *,
    rank: int | None = None,
    tol: float | None = None,
    return_info: bool = False,
    chunk: int | None = None,
) -> Float[Tensor, "..."] | tuple[Float[Tensor, "..."], EstimateInfo]:
    """NOCCO on z-scored vectors: each step and ``y`` get mean 0 and population std 1 over ``d``.

    What it measures: the same kernel dependence as :func:`hsic_nocco`, but with the bandwidth in
    units of each vector's own spread (``sigma=1`` ≈ one standard deviation), so the value is
    invariant to ``x -> a x + b`` per step (``a != 0``) and cannot rise merely because the residual
    norm grows (PAPER.md §1 notes the raw estimator grows with activation scale).

    Args:
        x: step representations ``(..., d)``.
        y: answer representation ``(d,)``.
        sigma: bandwidth in standard-deviation units.
        eps: regulariser.
        rank: fast mode rank.
        tol: fast mode tolerance.
        return_info: also return :class:`EstimateInfo`.
        chunk: steps per batched call.

    Returns:
        float64 tensor of shape ``x.shape[:-1]``.

    Raises:
        ValueError: as :func:`hsic_nocco`, plus a constant (zero-std) vector.

    Example:
        >>> import torch
        >>> y = torch.randn(200, dtype=torch.float64)
        >>> a = hsic_nocco_standardized(y, y)
        >>> bool(torch.isclose(a, hsic_nocco_standardized(10 * y + 3, y)))
        True
    """
    if isinstance(x, Tensor) and isinstance(y, Tensor) and y.device != x.device:
        y = y.to(x.device)
    est = HSIC(y, sigma, eps, rank=rank, tol=tol, standardize=True, chunk=chunk)
    return est(x, return_info=return_info)


def median_bandwidth(v: Float[Tensor, "... d"]) -> Float[Tensor, "..."]:
    """Median heuristic: median of ``|v_i − v_j|`` over pairs ``i < j`` (numpy-style median).

    Args:
        v: vectors ``(..., d)``, ``d >= 2``.

    Returns:
        float64 tensor of shape ``(...)``.

    Example:
        >>> import torch
        >>> float(median_bandwidth(torch.tensor([0.0, 1.0, 3.0])))
        2.0
    """
    vv = _to_f64(v, "v")
    if vv.ndim < 1 or vv.shape[-1] < 2:
        raise ValueError(f"need vectors with d >= 2, got shape {tuple(vv.shape)}")
    lead, d = vv.shape[:-1], vv.shape[-1]
    flat = vv.reshape(-1, d)
    iu = torch.triu_indices(d, d, offset=1, device=flat.device)
    n_pairs = iu.shape[1]
    step = max(1, _MEMORY_BUDGET_BYTES // (3 * 8 * n_pairs))
    out = torch.empty(flat.shape[0], dtype=_F64, device=flat.device)
    lo, hi = (n_pairs - 1) // 2, n_pairs // 2
    for s in range(0, flat.shape[0], step):
        rows = flat[s : s + step]
        dist = (rows[:, iu[0]] - rows[:, iu[1]]).abs_()
        srt = dist.sort(-1).values
        out[s : s + step] = 0.5 * (srt[:, lo] + srt[:, hi])
    return out.reshape(lead)


def hsic_biased(
    x: Float[Tensor, "... d"],
    y: Float[Tensor, " d"],
    sigma: float | Literal["median"] = "median",
    *,
    chunk: int | None = None,
) -> Float[Tensor, "..."]:
    """Textbook biased HSIC ``tr(K_x H K_y H) / (m − 1)^2`` over the ``m = d`` dimension-samples.

    What it measures: the (unnormalised) Hilbert–Schmidt dependence of Gretton et al. (2005), the
    form the paper's text describes. With ``sigma="median"`` each vector gets its own bandwidth
    (:func:`median_bandwidth`, per step for ``x``, once for ``y``), which makes the value invariant
    to per-vector rescaling ``x -> a x`` — another scale control. A float uses that bandwidth for
    both sides.

    Args:
        x: step representations ``(..., d)``.
        y: answer representation ``(d,)``.
        sigma: ``"median"`` or a positive float.
        chunk: steps per batched call.

    Returns:
        float64 tensor of shape ``x.shape[:-1]``.

    Raises:
        ValueError: d mismatch, d < 2, non-finite input, bad sigma, zero median bandwidth.

    Example:
        >>> import torch
        >>> y = torch.randn(100, dtype=torch.float64)
        >>> bool(hsic_biased(y, y) > hsic_biased(torch.randn(100), y))
        True
    """
    yy = _to_f64(y, "y")
    xx = _to_f64(x, "x", device=None)
    yy = yy.to(xx.device)
    _check_y(yy)
    _check_x(xx, yy.shape[0])
    m = yy.shape[0]
    if isinstance(sigma, str):
        if sigma != "median":
            raise ValueError(f"sigma must be 'median' or a positive float, got {sigma!r}")
        sy = median_bandwidth(yy)
        if float(sy) == 0:
            raise ValueError("median bandwidth of y is 0 (over half the pairs tie); pass sigma")
    else:
        sy = torch.tensor(_check_positive(sigma, "sigma"), dtype=_F64, device=xx.device)
    kcy = _double_centre_(_kernel(yy.unsqueeze(0), sy))[0]
    lead = xx.shape[:-1]
    flat = xx.reshape(-1, m)
    n = flat.shape[0]
    out = torch.empty(n, dtype=_F64, device=flat.device)
    if chunk is not None:
        chunk = check_int("chunk", chunk, low=1)
    step = chunk or max(1, _MEMORY_BUDGET_BYTES // (2 * m * m * 8))
    for s in range(0, n, step):
        rows = flat[s : s + step]
        if isinstance(sigma, str):
            sx = median_bandwidth(rows)
            if bool((sx == 0).any()):
                raise ValueError("median bandwidth of a step in x is 0 (over half the pairs tie)")
        else:
            sx = sy.expand(rows.shape[0])
        out[s : s + step] = (_kernel(rows, sx) * kcy).sum((-2, -1)) / (m - 1) ** 2
    return out.reshape(lead)


def residual_norm(x: Float[Tensor, "... d"]) -> Float[Tensor, "..."]:
    """Euclidean norm over ``d`` in float64: the baseline "peaks just track the norm" predictor.

    Example:
        >>> import torch
        >>> residual_norm(torch.tensor([[3.0, 4.0]])).tolist()
        [5.0]
    """
    xx = _to_f64(x, "x")
    if xx.ndim < 1:
        raise ValueError("x must have at least one dimension (..., d)")
    return torch.linalg.vector_norm(xx, dim=-1)


ESTIMATORS: dict[str, Callable[..., Tensor]] = {
    "nocco": hsic_nocco,
    "nocco_std": hsic_nocco_standardized,
    "hsic": hsic_biased,
}


def estimate(
    x: Float[Tensor, "... d"],
    y: Float[Tensor, " d"],
    estimator: str = "nocco",
    **kwargs: object,
) -> Float[Tensor, "..."]:
    """Dispatch to a named estimator: ``"nocco"`` | ``"nocco_std"`` | ``"hsic"``.

    Args:
        x: step representations ``(..., d)``.
        y: answer representation ``(d,)``.
        estimator: key of :data:`ESTIMATORS`.
        **kwargs: forwarded to the estimator (e.g. ``sigma``, ``tol``).

    Returns:
        float64 tensor of shape ``x.shape[:-1]``.

    Example:
        >>> import torch
        >>> y = torch.randn(64, dtype=torch.float64)
        >>> estimate(y[None], y, "hsic").shape
        torch.Size([1])
    """
    if estimator not in ESTIMATORS:
        raise ValueError(f"unknown estimator {estimator!r}; choose one of {sorted(ESTIMATORS)}")
    return ESTIMATORS[estimator](x, y, **kwargs)
