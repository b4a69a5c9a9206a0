"""Tests for tl_thinktok.bounds: entropies, chain rule, Bayes error, Fano / Hellman–Raviv.

References used here are written independently in the test (plain-Python float64 loops with
``math.log2``, closed forms for symmetric channels and repeated binary observations), never the
helpers under test.
"""

from __future__ import annotations

import itertools
import json
import math

import matplotlib
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from tl_thinktok.bounds import (
    BoundsCurve,
    ReasoningProcess,
    bayes_error,
    binary_entropy,
    chain_rule_terms,
    conditional_entropy,
    entropy,
    fano_bound_paper,
    fano_lower_bound,
    fano_weak_lower_bound,
    hellman_raviv_upper_bound,
    mutual_information,
    symmetric_channel,
    validate_joint,
)

matplotlib.use("Agg")

# Fano's left side H_b(p) + p log2(M-1) is flat at p = 1 - 1/M, so a float rounding d in H moves
# the inverted bound by ~sqrt(d) ~ 1e-8 there; everywhere else agreement is ~1e-12.
FANO_TOL = 1e-7
TOL = 1e-10


# ------------------------------------------------------------------------------------------
# independent references (plain Python, no numpy reductions, no helpers under test)
# ------------------------------------------------------------------------------------------


def ref_hb(p: float) -> float:
    return sum(-x * math.log2(x) for x in (p, 1.0 - p) if x > 0)


def ref_quantities(joint: np.ndarray) -> dict[str, float]:
    """H(y), H(y|h), I(y;h), Bayes error from the definitions, by explicit loops."""
    n_y = joint.shape[0]
    obs = list(itertools.product(*[range(k) for k in joint.shape[1:]]))
    p_y = [sum(float(joint[(y, *h)]) for h in obs) for y in range(n_y)]
    h_y = sum(-p * math.log2(p) for p in p_y if p > 0)
    h_cond = 0.0
    err = 0.0
    mi = 0.0
    for h in obs:
        col = [float(joint[(y, *h)]) for y in range(n_y)]
        p_h = sum(col)
        if p_h == 0:
            continue
        post = [c / p_h for c in col]
        h_cond += p_h * sum(-q * math.log2(q) for q in post if q > 0)
        err += p_h * (1.0 - max(post))
        mi += sum(c * math.log2(c / (p_h * p_y[y])) for y, c in enumerate(col) if c > 0)
    return {"H_y": h_y, "H_y_given_h": h_cond, "I": mi, "bayes": err}


def ref_repeated_bsc(eps: float, n_steps: int) -> tuple[float, float]:
    """H(y | h_1:T) and Bayes error for y ~ Bernoulli(1/2) seen T times through BSC(eps).

    Closed form: only k = #ones among the h's matters; majority vote (ties: coin flip).
    """
    h_cond = 0.0
    err = 0.0
    for k in range(n_steps + 1):
        a = 0.5 * eps**k * (1 - eps) ** (n_steps - k)  # p(y=0, one sequence with k ones)
        b = 0.5 * (1 - eps) ** k * eps ** (n_steps - k)  # p(y=1, same sequence)
        mult = math.comb(n_steps, k)
        h_cond += mult * (a + b) * ref_hb(a / (a + b))
        err += mult * min(a, b)
    return h_cond, err


# ------------------------------------------------------------------------------------------
# strategies
# ------------------------------------------------------------------------------------------


@st.composite
def joints(draw, max_classes: int = 5, max_steps: int = 3, max_alphabet: int = 4) -> np.ndarray:
    n_y = draw(st.integers(2, max_classes))
    n_steps = draw(st.integers(1, max_steps))
    shape = (n_y,) + tuple(draw(st.integers(2, max_alphabet)) for _ in range(n_steps))
    raw = draw(
        arrays(
            np.float64,
            shape,
            elements=st.one_of(
                st.just(0.0), st.floats(1e-6, 1.0, allow_nan=False, allow_subnormal=False)
            ),
        )
    )
    if raw.sum() <= 0:
        raw.flat[0] = 1.0
    return raw / raw.sum()


PROPS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ------------------------------------------------------------------------------------------
# property tests
# ------------------------------------------------------------------------------------------


@PROPS
@given(joints())
def test_both_theorems_and_chain_rule_on_random_joints(joint):
    n_y = joint.shape[0]
    h = conditional_entropy(joint)
    pe = bayes_error(joint)
    mi = mutual_information(joint)
    chain = chain_rule_terms(joint)
    hy = entropy(joint.sum(axis=tuple(range(1, joint.ndim))))

    assert -1e-12 <= h <= math.log2(n_y) + 1e-12
    assert -1e-12 <= hy <= math.log2(n_y) + 1e-12
    assert 0.0 <= pe <= 1.0 - 1.0 / n_y + 1e-12
    # Theorem 1 (Fano, explicit) and Theorem 2 (Hellman–Raviv, bits)
    fano = fano_lower_bound(h, n_y)
    assert fano <= pe + FANO_TOL
    assert pe <= hellman_raviv_upper_bound(h) + 1e-12
    assert fano_weak_lower_bound(h, n_y) <= fano + 1e-12
    # the paper's implicit form, evaluated at the true Bayes error
    if n_y >= 3:
        assert pe >= fano_bound_paper(h, n_y, pe) - 1e-12
    # chain rule, non-negativity, H(y) = I + H(y|h)
    assert chain.shape == (joint.ndim - 1,)
    assert np.all(chain >= -1e-12)
    assert mi >= -1e-12
    assert chain.sum() == pytest.approx(mi, abs=TOL)
    assert hy == pytest.approx(mi + h, abs=TOL)


@PROPS
@given(joints(max_steps=2, max_alphabet=3))
def test_matches_independent_loop_formulas(joint):
    ref = ref_quantities(joint)
    assert conditional_entropy(joint) == pytest.approx(ref["H_y_given_h"], abs=1e-12)
    assert mutual_information(joint) == pytest.approx(ref["I"], abs=1e-12)
    assert bayes_error(joint) == pytest.approx(ref["bayes"], abs=1e-12)
    assert entropy(joint.sum(axis=tuple(range(1, joint.ndim)))) == pytest.approx(
        ref["H_y"], abs=1e-12
    )
    # each chain term I(y; h_j | h_<j) = H(y | h_<j) - H(y | h_<=j), references by loops
    prev = ref["H_y"]
    for j, term in enumerate(chain_rule_terms(joint), start=1):
        sub = joint.sum(axis=tuple(range(j + 1, joint.ndim))) if j < joint.ndim - 1 else joint
        cur = ref_quantities(sub)["H_y_given_h"]
        assert term == pytest.approx(prev - cur, abs=1e-12)
        prev = cur


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 9), st.floats(0.0, 1.0), st.floats(0.0, 1.0))
def test_fano_bound_is_monotone_and_solves_fano_equation(n_y, u, v):
    hmax = math.log2(n_y)
    h1, h2 = sorted((u * hmax, v * hmax))
    p1, p2 = fano_lower_bound(h1, n_y), fano_lower_bound(h2, n_y)
    assert 0.0 <= p1 <= p2 + 1e-15 <= 1.0 - 1.0 / n_y + 1e-12
    # p1 solves H_b(p) + p log2(M-1) = h1 (independent evaluation of the left side)
    assert ref_hb(p1) + p1 * math.log2(n_y - 1) == pytest.approx(h1, abs=1e-12)


@settings(max_examples=25, deadline=None)
@given(
    st.integers(2, 4),
    st.lists(st.integers(2, 3), min_size=1, max_size=4),
    st.integers(0, 2**32 - 1),
)
def test_recursive_and_full_table_agree_on_random_channels(n_y, alphabets, seed):
    rng = np.random.default_rng(seed)
    chans = [rng.dirichlet(np.full(k, 0.7), size=n_y) for k in alphabets]
    proc = ReasoningProcess(prior=rng.dirichlet(np.ones(n_y)), channels=chans)
    a = proc.bounds_curve("recursive")
    b = proc.bounds_curve("full")
    for name in ("cond_entropy", "cumulative_mi", "chain_terms", "bayes_error", "hellman_raviv"):
        np.testing.assert_allclose(getattr(a, name), getattr(b, name), atol=1e-10, err_msg=name)
    np.testing.assert_allclose(a.fano, b.fano, atol=FANO_TOL)
    # the curve's chain terms are the standalone chain_rule_terms of the full table
    np.testing.assert_allclose(a.chain_terms, chain_rule_terms(proc.joint()), atol=1e-10)


# ------------------------------------------------------------------------------------------
# hand-computed edge cases
# ------------------------------------------------------------------------------------------


def test_independent_y_and_h():
    prior = np.array([0.5, 0.3, 0.2])
    ph = np.array([0.1, 0.6, 0.3])
    joint = prior[:, None] * ph[None, :]
    assert abs(mutual_information(joint)) < 1e-14
    assert conditional_entropy(joint) == pytest.approx(
        -(0.5 * math.log2(0.5) + 0.3 * math.log2(0.3) + 0.2 * math.log2(0.2)), abs=1e-14
    )
    assert bayes_error(joint) == pytest.approx(1 - 0.5, abs=1e-14)
    np.testing.assert_allclose(chain_rule_terms(joint), [0.0], atol=1e-14)


def test_deterministic_h_equals_y():
    joint = np.diag([0.1, 0.2, 0.3, 0.4])
    h = conditional_entropy(joint)
    assert h == 0.0
    assert bayes_error(joint) == pytest.approx(0.0, abs=1e-15)
    assert fano_lower_bound(h, 4) == 0.0
    assert hellman_raviv_upper_bound(h) == 0.0


@pytest.mark.parametrize("eps", [0.0, 0.01, 0.1, 0.25, 0.4])
def test_binary_symmetric_channel(eps):
    joint = 0.5 * np.array([[1 - eps, eps], [eps, 1 - eps]])
    hb = -sum(x * math.log2(x) for x in (eps, 1 - eps) if x > 0)
    h = conditional_entropy(joint)
    assert h == pytest.approx(hb, abs=1e-14)
    assert bayes_error(joint) == pytest.approx(eps, abs=1e-14)
    # for |Y| = 2 Fano's bound is H_b^{-1}(H) on [0, 1/2], i.e. eps exactly
    assert fano_lower_bound(h, 2) == pytest.approx(eps, abs=1e-12)
    assert hellman_raviv_upper_bound(h) == pytest.approx(hb / 2, abs=1e-15)


@pytest.mark.parametrize("n_y,q", [(3, 0.8), (4, 0.5), (5, 0.9), (6, 0.3)])
def test_fano_is_tight_for_mary_symmetric_channel(n_y, q):
    # one observation through an M-ary symmetric channel, uniform prior:
    # H(y|h) = H_b(1-q) + (1-q) log2(M-1) and the MAP error is 1-q: Fano holds with equality.
    joint = symmetric_channel(n_y, q) / n_y
    h_ref = ref_hb(1 - q) + (1 - q) * math.log2(n_y - 1)
    h = conditional_entropy(joint)
    assert h == pytest.approx(h_ref, abs=1e-13)
    assert bayes_error(joint) == pytest.approx(1 - q, abs=1e-13)
    assert fano_lower_bound(h, n_y) == pytest.approx(1 - q, abs=1e-10)
    # the paper's implicit form is then an equality too
    assert fano_bound_paper(h, n_y, 1 - q) == pytest.approx(1 - q, abs=1e-12)


@pytest.mark.parametrize("n_y", [2, 3, 7])
def test_fano_endpoints(n_y):
    assert fano_lower_bound(0.0, n_y) == 0.0
    assert fano_lower_bound(math.log2(n_y), n_y) == pytest.approx(1 - 1 / n_y, abs=1e-12)
    # within tolerance outside the range is clipped
    assert fano_lower_bound(-1e-12, n_y) == 0.0
    assert fano_lower_bound(math.log2(n_y) + 1e-12, n_y) == pytest.approx(1 - 1 / n_y, abs=1e-12)
    arr = fano_lower_bound(np.array([0.0, math.log2(n_y)]), n_y)
    assert isinstance(arr, np.ndarray) and arr.shape == (2,)


def test_hellman_raviv_needs_bits_not_nats():
    # uniform binary with no information: p_e = 1/2 = 1/2 * 1 bit (HR is tight), but the same
    # formula in nats (1/2 * ln 2 = 0.347) would be violated.
    joint = np.full((2, 2), 0.25)
    pe = bayes_error(joint)
    h_bits = conditional_entropy(joint)
    assert pe == pytest.approx(hellman_raviv_upper_bound(h_bits), abs=1e-15)
    assert pe > 0.5 * h_bits * math.log(2)


def test_raw_hellman_raviv_exceeds_trivial_cap():
    # uniform over 8 classes, no information: 1/2 * 3 bits = 1.5 > 1 - 1/8
    joint = np.full((8, 2), 1 / 16)
    assert hellman_raviv_upper_bound(conditional_entropy(joint)) == pytest.approx(1.5)
    assert bayes_error(joint) == pytest.approx(7 / 8)


def test_paper_form_rearrangement_is_equivalent_to_explicit_bound():
    n_y, h = 5, 1.3
    p_star = fano_lower_bound(h, n_y)
    for p in np.linspace(0, 1 - 1 / n_y, 41):
        satisfied = p >= fano_bound_paper(h, n_y, p)
        assert satisfied == (p >= p_star - 1e-12), p


def test_binary_entropy_values():
    assert binary_entropy(0.0) == 0.0 and binary_entropy(1.0) == 0.0
    assert binary_entropy(0.5) == 1.0
    np.testing.assert_allclose(binary_entropy(np.array([0.1, 0.7])), [ref_hb(0.1), ref_hb(0.7)])


def test_entropy_of_uniform_is_log_n():
    for n in (2, 3, 10):
        assert entropy(np.full(n, 1 / n)) == pytest.approx(math.log2(n), abs=1e-14)


# ------------------------------------------------------------------------------------------
# reasoning processes
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("eps,n_steps", [(0.1, 15), (0.3, 12), (0.45, 20)])
def test_repeated_bsc_matches_binomial_closed_form(eps, n_steps):
    proc = ReasoningProcess(prior=[0.5, 0.5], channels=[symmetric_channel(2, 1 - eps)] * n_steps)
    curve = proc.bounds_curve()
    for t in range(1, n_steps + 1):
        h_ref, e_ref = ref_repeated_bsc(eps, t)
        assert curve.cond_entropy[t - 1] == pytest.approx(h_ref, abs=1e-11)
        assert curve.bayes_error[t - 1] == pytest.approx(e_ref, abs=1e-11)


def test_symmetric_process_recursive_equals_full_and_has_peaks():
    proc = ReasoningProcess.symmetric(
        n_classes=4, n_steps=8, peak_steps=(3, 6), q_ordinary=0.3, q_peak=0.8
    )
    a = proc.bounds_curve("recursive")
    b = proc.bounds_curve("full")
    for name in ("cond_entropy", "chain_terms", "bayes_error"):
        np.testing.assert_allclose(getattr(a, name), getattr(b, name), atol=1e-12)
    # peak steps carry the largest chain-rule terms
    top2 = set((np.argsort(a.chain_terms)[-2:] + 1).tolist())
    assert top2 == {3, 6}
    v = a.violations()
    assert v["fano"] <= FANO_TOL and v["hellman_raviv"] <= 1e-12 and v["chain_rule"] < 1e-12
    # Bayes error never increases with more observations
    assert np.all(np.diff(a.bayes_error) <= 1e-12)
    assert a.prior_entropy == pytest.approx(2.0) and a.prior_error == pytest.approx(0.75)


def test_nonuniform_prior_process_first_step_matches_loops():
    prior = np.array([0.6, 0.3, 0.1])
    c = symmetric_channel(3, 0.7)
    proc = ReasoningProcess(prior=prior, channels=[c, c])
    curve = proc.bounds_curve()
    joint = prior[:, None] * c
    ref = ref_quantities(joint)
    assert curve.cond_entropy[0] == pytest.approx(ref["H_y_given_h"], abs=1e-12)
    assert curve.bayes_error[0] == pytest.approx(ref["bayes"], abs=1e-12)
    assert curve.prior_error == pytest.approx(0.4)


def test_bounds_curve_save_load_roundtrip(tmp_path):
    curve = ReasoningProcess.symmetric(n_classes=3, n_steps=5, peak_steps=(2, 4)).bounds_curve()
    curve.meta["note"] = "test"
    path = curve.save(tmp_path / "new" / "curve.json")  # folders created, the path returned
    back = BoundsCurve.load(path)
    assert back.n_classes == 3 and back.peak_steps == [2, 4] and back.meta == {"note": "test"}
    for name in ("t", "cond_entropy", "cumulative_mi", "chain_terms", "bayes_error", "fano"):
        np.testing.assert_array_equal(getattr(back, name), getattr(curve, name))
    assert back.t.dtype == np.int64 and back.fano.dtype == np.float64
    assert back.prior_entropy == curve.prior_entropy
    # a file written by the previous save (json.dumps(indent=1) of the same dict) still loads
    old = tmp_path / "old.json"
    old.write_text(json.dumps(curve.to_dict(), indent=1))
    np.testing.assert_array_equal(BoundsCurve.load(old).bayes_error, curve.bayes_error)
    # an undefined value (NaN) is written as null and read back as NaN, in arrays as in scalars
    curve.bayes_error[1] = np.nan
    curve.prior_error = float("nan")
    back = BoundsCurve.load(curve.save(path))
    assert np.isnan(back.bayes_error[1]) and np.isnan(back.prior_error)
    assert "NaN" not in path.read_text()


def test_plot_draws_error_between_bounds_and_mi():
    import matplotlib.pyplot as plt

    curve = ReasoningProcess.symmetric(n_classes=3, n_steps=6, peak_steps=(2, 5)).bounds_curve()
    ax_e, ax_i = curve.plot()
    pe_line = [ln for ln in ax_e.get_lines() if "Bayes" in ln.get_label()][0]
    np.testing.assert_allclose(pe_line.get_ydata()[1:], curve.bayes_error)
    mi_line = [ln for ln in ax_i.get_lines() if ln.get_label().startswith("I(y")][0]
    np.testing.assert_allclose(mi_line.get_ydata()[1:], curve.cumulative_mi)
    peaks = [ln for ln in ax_i.get_lines() if ln.get_label() == "peak steps"][0]
    assert list(peaks.get_xdata()) == [2, 5]
    plt.close("all")
    _, ax = plt.subplots()
    ax_e2, ax_i2 = curve.plot(ax)
    assert ax_e2 is ax and ax_i2 is not ax
    plt.close("all")


# ------------------------------------------------------------------------------------------
# errors
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad,match",
    [
        ([[0.5, 0.6], [-0.1, 0.0]], "negative"),
        ([[0.25, 0.25], [0.25, 0.2]], "sum to 1"),
        ([[0.25, float("nan")], [0.25, 0.25]], "NaN"),
        ([0.5, 0.5], "at least 2 axes"),
        (np.zeros((2, 0)), "empty"),
    ],
)
def test_invalid_joint_tables(bad, match):
    for fn in (validate_joint, conditional_entropy, mutual_information, bayes_error):
        with pytest.raises(ValueError, match=match):
            fn(bad)
    with pytest.raises(ValueError, match=match):
        chain_rule_terms(bad)


def test_invalid_bound_arguments():
    with pytest.raises(ValueError, match="n_classes must be >= 2"):
        fano_lower_bound(0.5, 1)
    with pytest.raises(TypeError, match="n_classes must be an int"):
        fano_lower_bound(0.5, 2.0)
    with pytest.raises(ValueError, match=r"cond_entropy must lie in \[0, log2"):
        fano_lower_bound(1.2, 2)
    with pytest.raises(ValueError, match=r"cond_entropy must lie in \[0, log2"):
        fano_lower_bound(-0.01, 3)
    with pytest.raises(ValueError, match="NaN"):
        fano_lower_bound(float("nan"), 3)
    with pytest.raises(ValueError, match="log2\\(n_classes - 1\\)"):
        fano_bound_paper(0.5, 2, 0.1)
    with pytest.raises(ValueError, match="non-negative"):
        hellman_raviv_upper_bound(-1.0)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        binary_entropy(1.5)
    with pytest.raises(ValueError, match=r"q must be <= 1"):
        symmetric_channel(3, 1.2)
    with pytest.raises(ValueError, match=r"q must be >= 0"):
        symmetric_channel(3, -0.1)
    with pytest.raises(ValueError, match="sum to 1"):
        entropy([0.5, 0.4])


def test_invalid_processes_and_size_guards():
    with pytest.raises(ValueError, match="channel 1 must have shape"):
        ReasoningProcess(prior=[0.5, 0.5], channels=[np.eye(3)])
    with pytest.raises(ValueError, match="channel 2 rows must sum to 1"):
        ReasoningProcess(prior=[0.5, 0.5], channels=[np.eye(2), np.full((2, 2), 0.4)])
    with pytest.raises(ValueError, match="at least one step"):
        ReasoningProcess(prior=[0.5, 0.5], channels=[])
    with pytest.raises(ValueError, match="peak_steps"):
        ReasoningProcess.symmetric(n_classes=2, n_steps=3, peak_steps=(4,))
    with pytest.raises(ValueError, match="n_classes must be >= 2"):
        ReasoningProcess(prior=[1.0], channels=[np.ones((1, 1))])
    proc = ReasoningProcess.symmetric(n_classes=4, n_steps=12)
    with pytest.raises(ValueError, match="max_table_size"):
        proc.joint()
    with pytest.raises(ValueError, match="max_table_size"):
        proc.bounds_curve("full")
    with pytest.raises(ValueError, match="max_states"):
        proc.bounds_curve(max_states=10)
    with pytest.raises(ValueError, match="method must be"):
        proc.bounds_curve("exact")
