"""tl_thinktok.mi against the reference formula as written (numpy), a 40-digit Decimal evaluation,
and the laws the estimator obeys (symmetry, non-negativity, fast-mode error bound)."""

from __future__ import annotations

from decimal import Decimal, getcontext

import numpy as np
import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st

from tl_thinktok.mi import (
    HSIC,
    estimate,
    hsic_biased,
    hsic_nocco,
    hsic_nocco_standardized,
    median_bandwidth,
    residual_norm,
)
from tl_thinktok.testing.reference import reference_hsic_biased, reference_nocco


def residual_like(rng: np.random.Generator, n: int, d: int, n_big: int = 8) -> np.ndarray:
    """Most dims ~N(0, 1); ``n_big`` fixed dims 100-500x larger (massive activations)."""
    x = rng.normal(size=(n, d))
    idx = rng.choice(d, n_big, replace=False)
    x[:, idx] *= rng.uniform(100, 500, size=n_big) * rng.choice([-1.0, 1.0], size=n_big)
    return x


def data(kind: str, n: int, d: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    if kind == "gauss":  # spread comparable to sigma = 50: a well-conditioned value
        return rng.normal(size=(n, d)) * 50, rng.normal(size=d) * 50
    if kind == "gauss_unit":  # N(0, 1): kernel ~ all ones, tiny values
        return rng.normal(size=(n, d)), rng.normal(size=d)
    if kind == "dependent":
        y = rng.normal(size=d) * 50
        return y + rng.normal(size=(n, d)) * 20, y
    if kind == "residual":
        a = residual_like(rng, n + 1, d)
        return a[:n], a[n]
    raise AssertionError(kind)


def rel(a, b) -> np.ndarray:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return np.abs(a - b) / np.abs(b)


# --------------------------------------------------------------------------------------------
# exact mode vs the reference formula
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["gauss", "dependent", "residual"])
def test_exact_matches_reference_formula(kind):
    x, y = data(kind, 2, 160, seed=1)
    ref = np.array([reference_nocco(row, y) for row in x])
    got = hsic_nocco(torch.tensor(x), torch.tensor(y))
    assert got.dtype == torch.float64 and got.shape == (2,)
    assert rel(got.numpy(), ref).max() < 1e-9


def _decimal_nocco(x, y, sigma=50.0, eps=1e-5, digits=40) -> float:
    """The formula in 40-digit decimal arithmetic (Gauss-Jordan inverse), independent of numpy."""
    getcontext().prec = digits
    m = len(x)

    def r_matrix(v):
        v = [Decimal(float(t)) for t in v]
        two_s2 = 2 * Decimal(sigma) ** 2
        k = [[(-((a - b) ** 2) / two_s2).exp() for b in v] for a in v]
        row = [sum(k[i]) / m for i in range(m)]  # (K H)[i, j] = K[i, j] - (1/m) Σ_l K[i, l]
        kt = [[k[i][j] - row[i] for j in range(m)] for i in range(m)]
        lam = Decimal(eps) * m
        a = [[kt[i][j] + (lam if i == j else 0) for j in range(m)] for i in range(m)]
        inv = [[Decimal(int(i == j)) for j in range(m)] for i in range(m)]
        for c in range(m):  # Gauss-Jordan with partial pivoting
            p = max(range(c, m), key=lambda r: abs(a[r][c]))
            a[c], a[p], inv[c], inv[p] = a[p], a[c], inv[p], inv[c]
            piv = a[c][c]
            a[c] = [t / piv for t in a[c]]
            inv[c] = [t / piv for t in inv[c]]
            for r in range(m):
                if r != c and a[r][c] != 0:
                    f = a[r][c]
                    a[r] = [s - f * t for s, t in zip(a[r], a[c], strict=True)]
                    inv[r] = [s - f * t for s, t in zip(inv[r], inv[c], strict=True)]
        return [[sum(kt[i][q] * inv[q][j] for q in range(m)) for j in range(m)] for i in range(m)]

    rx, ry = r_matrix(x), r_matrix(y)
    return float(sum(rx[i][j] * ry[j][i] for i in range(m) for j in range(m)))


@pytest.mark.parametrize("kind", ["gauss_unit", "residual"])
def test_exact_matches_40_digit_evaluation(kind):
    x, y = data(kind, 1, 14, seed=3)
    truth = _decimal_nocco(x[0], y)
    got = float(hsic_nocco(torch.tensor(x[0]), torch.tensor(y)))
    # N(0, 1) data with sigma = 50 is ill-conditioned (K ~ all ones, centring cancels ~3 digits):
    # measured errors ~1e-10 here vs ~1e-9..1e-8 for the float64 reference formula as written
    assert rel(got, truth) < 2e-9
    assert rel(reference_nocco(x[0], y), truth) < 1e-7


@pytest.fixture(scope="module")
def big_case():
    """d = 1536: one Gaussian (scale 50) and one residual-like step + the reference formula;
    one N(0, 1) step with the exact mode as reference (validated against 40 digits above)."""
    out = {}
    for kind in ("gauss", "residual"):
        x, y = data(kind, 1, 1536, seed=7)
        out[kind] = (x, y, reference_nocco(x[0], y))
    x, y = data("gauss_unit", 1, 1536, seed=7)
    out["gauss_unit"] = (x, y, float(hsic_nocco(torch.tensor(x), torch.tensor(y))[0]))
    return out


def test_exact_matches_reference_at_d1536(big_case):
    for kind in ("gauss", "residual"):
        x, y, ref = big_case[kind]
        got = float(hsic_nocco(torch.tensor(x), torch.tensor(y))[0])
        assert rel(got, ref) < 1e-9, kind


@pytest.mark.parametrize("kind", ["gauss", "gauss_unit", "residual"])
def test_fast_mode_error_at_d1536(big_case, kind):
    x, y, ref = big_case[kind]
    got, info = hsic_nocco(torch.tensor(x), torch.tensor(y), tol=1e-10, return_info=True)
    assert info.mode == "lowrank"
    assert rel(float(got[0]), ref) < 1e-4
    assert int(info.rank_x[0]) < 200 and info.rank_y < 200  # genuinely low rank
    if kind == "residual":  # every isolated huge dimension needs (and gets) its own pivot
        assert int(info.rank_x[0]) >= 8


def test_fast_mode_fixed_rank_residual_decreases():
    x, y = data("gauss", 1, 300, seed=4)
    resid = [
        float(
            hsic_nocco(torch.tensor(x), torch.tensor(y), rank=r, return_info=True)[
                1
            ].residual_trace_x[0]
        )
        for r in (2, 5, 10, 20)
    ]
    assert all(a >= b for a, b in zip(resid, resid[1:], strict=False))
    _, info = hsic_nocco(torch.tensor(x), torch.tensor(y), rank=5, return_info=True)
    assert int(info.rank_x[0]) == 5


# --------------------------------------------------------------------------------------------
# dtype, batching, caching
# --------------------------------------------------------------------------------------------
def test_float32_inputs_are_upcast():
    x, y = data("residual", 2, 128, seed=5)
    x32, y32 = torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.float32)
    a = hsic_nocco(x32, y32)
    b = hsic_nocco(x32.double(), y32.double())
    assert a.dtype == torch.float64
    assert torch.equal(a, b)


def test_batching_equals_loop_and_chunking():
    x, y = data("dependent", 6, 64, seed=6)
    xt = torch.tensor(x).reshape(2, 3, 64)
    yt = torch.tensor(y)
    batched = hsic_nocco(xt, yt)
    assert batched.shape == (2, 3)
    loop = torch.stack([hsic_nocco(row, yt) for row in xt.reshape(6, 64)]).reshape(2, 3)
    torch.testing.assert_close(batched, loop, rtol=1e-12, atol=0)
    torch.testing.assert_close(hsic_nocco(xt, yt, chunk=1), batched, rtol=1e-12, atol=0)
    fast = hsic_nocco(xt, yt, tol=1e-10)
    fast_loop = torch.stack([hsic_nocco(r, yt, tol=1e-10) for r in xt.reshape(6, 64)])
    torch.testing.assert_close(fast, fast_loop.reshape(2, 3), rtol=1e-10, atol=0)


def test_hsic_object_reuses_answer_side():
    x, y = data("gauss", 4, 80, seed=8)
    xt, yt = torch.tensor(x), torch.tensor(y)
    est = HSIC(yt)
    torch.testing.assert_close(est(xt), hsic_nocco(xt, yt), rtol=0, atol=0)
    torch.testing.assert_close(est(xt[1]), hsic_nocco(xt, yt)[1], rtol=1e-12, atol=0)
    assert est.mode == "exact" and HSIC(yt, tol=1e-8).mode == "lowrank"


def test_empty_batch_and_info_in_exact_mode():
    x, y = data("gauss", 3, 40, seed=9)
    empty = hsic_nocco(torch.zeros(0, 40), torch.tensor(y))
    assert empty.shape == (0,)
    vals, info = hsic_nocco(torch.tensor(x), torch.tensor(y), return_info=True)
    assert info.mode == "exact" and info.rank_x.tolist() == [40, 40, 40]
    assert bool((info.error_bound < 1e-6).all())


# --------------------------------------------------------------------------------------------
# laws (hypothesis)
# --------------------------------------------------------------------------------------------
finite = st.floats(-400, 400, allow_nan=False, allow_infinity=False)

EPS_REG = 1e-5  # the estimator's default regulariser eps (ridge eps * m)
U64 = float(np.finfo(np.float64).eps)


def roundoff(m: int, eps: float = EPS_REG) -> float:
    """Absolute round-off bound of a float64 NOCCO value on m samples (derivation below).

    Both sides solve with A + lam I, A = H K H >= 0 (or K H, similar), lam = eps m. Kernel entries
    lie in (0, 1], so ||A||_2 <= m; float64 evaluation (kernel, centring, the LU solve with its
    backward error ~ c m u ||A||, u = 2.2e-16) perturbs A by ||dA||_2 <= c m^2 u, budget c = 8.
    P = A (A + lam I)^-1 = I - lam (A + lam I)^-1 moves by
    dP = lam (A + lam I)^-1 dA (A + lam I)^-1, so ||dP||_2 <= ||dA||_2 / lam <= c m u / eps, and
    tr(P_x P_y) by at most
    ||dP_x||_* ||P_y||_2 + ||P_x||_2 ||dP_y||_* <= 2 m ||dP||_2 (||P||_2 <= 1; nuclear <= m x
    spectral): 2 c m^2 u / eps. The bound is absolute, whatever the value's size: a vector whose
    spread is << sigma (y = [0, 0, 1e-6]: kernel entries 1 - 2e-16) has a centred kernel made of
    round-off, and its value (8.0e-12 to 40 digits) has no correct digit in float64 — the exact
    mode returns 1e-27, the reference formula 8.6e-12, both within the bound (m = 3: 1.1e-9).
    Measured worst case over 3,000 random pairs of mixed scales: 0.17 of the bound against the
    reference formula (its explicit inverse of the non-normal K H), 0.025 between x-y and y-x.
    """
    return 2 * 8 * m * m * U64 / eps


@st.composite
def vector_pair(draw, max_d=24):
    d = draw(st.integers(3, max_d))
    x = draw(st.lists(finite, min_size=d, max_size=d))
    y = draw(st.lists(finite, min_size=d, max_size=d))
    return np.array(x), np.array(y)


# the pair drawn in a fresh clone that an absolute 1e-12 tolerance failed on (9.8e-28 vs 8.9e-12)
ROUNDOFF_PAIR = (np.array([0.0, 0.0, 1.0]), np.array([0.0, 0.0, 1e-6]))


@settings(max_examples=25, deadline=None)
@given(vector_pair())
@example(ROUNDOFF_PAIR)
def test_symmetric_and_nonnegative(pair):
    x, y = pair
    tol = roundoff(x.shape[0])
    xy = float(hsic_nocco(torch.tensor(x), torch.tensor(y)))
    yx = float(hsic_nocco(torch.tensor(y), torch.tensor(x)))
    ref = reference_nocco(x, y)
    # tr(P_x P_y) is symmetric and P is PSD, so the value is >= 0 — each up to round-off
    assert abs(xy - yx) <= tol
    assert xy >= -tol
    assert abs(xy - ref) <= tol


@settings(max_examples=20, deadline=None)
@given(vector_pair())
@example(ROUNDOFF_PAIR)
def test_self_value_matches_formula(pair):
    x, _ = pair
    got = float(hsic_nocco(torch.tensor(x), torch.tensor(x)))
    assert abs(got - reference_nocco(x, x)) <= roundoff(x.shape[0])


@settings(max_examples=20, deadline=None)
@given(vector_pair(max_d=40), st.integers(1, 12))
def test_fast_mode_within_its_error_bound(pair, rank):
    x, y = pair
    tol = roundoff(x.shape[0])
    exact = float(hsic_nocco(torch.tensor(x), torch.tensor(y)))
    fast, info = hsic_nocco(torch.tensor(x), torch.tensor(y), rank=rank, return_info=True)
    # P̂ <= P in Loewner order on both sides, so the fast value is a lower bound, within the bound
    assert -tol <= exact - float(fast) <= float(info.error_bound) + tol
    assert int(info.rank_x) <= rank
    assert info.error_estimate.shape == () and float(info.error_estimate) >= 0


# --------------------------------------------------------------------------------------------
# scale-controlled alternatives, registry, baseline
# --------------------------------------------------------------------------------------------
def test_standardized_is_nocco_on_zscored_vectors_and_affine_invariant():
    x, y = data("residual", 2, 64, seed=10)

    def z(v):
        return (v - v.mean(-1, keepdims=True)) / v.std(-1, keepdims=True)

    got = hsic_nocco_standardized(torch.tensor(x), torch.tensor(y), sigma=0.7)
    ref = np.array([reference_nocco(z(row), z(y), sigma=0.7) for row in x])
    assert rel(got.numpy(), ref).max() < 1e-8
    moved = hsic_nocco_standardized(torch.tensor(-3.0 * x + 5.0), torch.tensor(y), sigma=0.7)
    torch.testing.assert_close(moved, got, rtol=1e-8, atol=1e-12)
    with pytest.raises(ValueError, match="constant"):
        hsic_nocco_standardized(torch.ones(64), torch.tensor(y))


def test_hsic_biased_matches_textbook_formula_with_median_bandwidth():
    x, y = data("gauss", 2, 50, seed=11)

    def med(v):
        i, j = np.triu_indices(len(v), k=1)
        return float(np.median(np.abs(v[i] - v[j])))

    got = hsic_biased(torch.tensor(x), torch.tensor(y))
    ref = np.array([reference_hsic_biased(row, y, med(row), med(y)) for row in x])
    assert rel(got.numpy(), ref).max() < 1e-10
    np.testing.assert_allclose(median_bandwidth(torch.tensor(x)).numpy(), [med(r) for r in x])
    fixed = hsic_biased(torch.tensor(x), torch.tensor(y), sigma=30.0)
    ref_fixed = [reference_hsic_biased(row, y, 30.0, 30.0) for row in x]
    assert rel(fixed.numpy(), ref_fixed).max() < 1e-10
    # median bandwidth makes it invariant to rescaling a step
    torch.testing.assert_close(hsic_biased(torch.tensor(7.0 * x), torch.tensor(y)), got)
    with pytest.raises(ValueError, match="median bandwidth"):
        hsic_biased(torch.tensor(x), torch.tensor(np.r_[np.zeros(49), 1.0]))


def test_estimate_registry_and_residual_norm():
    x, y = data("gauss", 2, 40, seed=12)
    xt, yt = torch.tensor(x), torch.tensor(y)
    torch.testing.assert_close(estimate(xt, yt), hsic_nocco(xt, yt), rtol=0, atol=0)
    torch.testing.assert_close(estimate(xt, yt, "nocco_std"), hsic_nocco_standardized(xt, yt))
    torch.testing.assert_close(estimate(xt, yt, "hsic", sigma=20.0), hsic_biased(xt, yt, 20.0))
    with pytest.raises(ValueError, match="unknown estimator"):
        estimate(xt, yt, "mine")
    norms = residual_norm(torch.tensor(x, dtype=torch.float32))
    assert norms.dtype == torch.float64
    np.testing.assert_allclose(
        norms.numpy(), np.sqrt((x.astype(np.float32) ** 2).sum(-1)), rtol=1e-6
    )


# --------------------------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("x", "y", "kwargs", "exc", "match"),
    [
        (torch.randn(3, 5), torch.randn(6), {}, ValueError, "d mismatch"),
        (torch.randn(1), torch.randn(1), {}, ValueError, "d >= 2"),
        (torch.randn(4), torch.randn(2, 4), {}, ValueError, "1-D"),
        (torch.tensor([1.0, float("nan")]), torch.randn(2), {}, ValueError, "non-finite"),
        (torch.randn(4), torch.tensor([1.0, 2.0, float("inf"), 0.0]), {}, ValueError, "non-finite"),
        (torch.randn(4), torch.randn(4), {"sigma": 0.0}, ValueError, "sigma"),
        (torch.randn(4), torch.randn(4), {"sigma": -1.0}, ValueError, "sigma"),
        (torch.randn(4), torch.randn(4), {"eps": 0.0}, ValueError, "eps"),
        (torch.randn(4), torch.randn(4), {"rank": 0}, ValueError, "rank"),
        (torch.randn(4), torch.randn(4), {"tol": -1.0}, ValueError, "tol"),
        ([1.0, 2.0], torch.randn(2), {}, TypeError, "torch.Tensor"),
        (torch.randn(4, dtype=torch.complex64), torch.randn(4), {}, TypeError, "real"),
    ],
)
def test_errors(x, y, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        hsic_nocco(x, y, **kwargs)
