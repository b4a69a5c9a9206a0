"""Batched interventions: every row of a left-padded batch equals its prompt generated alone.

Covered on both hosts (HookedTransformer and TransformerBridge), prompts of different lengths
(left padding), KV cache on and off: RepresentationRecycling (per-row triggers on different steps,
per-row coins, EOS per row; each row also against the HF two-pass reference of
``test_recycle.py``), SuppressTokens (and HF ``suppress_tokens``), MIProbe (row residuals and MI
to 1e-9 in float64), reference TTTS and ``MITrace.batch_from_model`` (both routes, tl and hf
engines).
"""

from __future__ import annotations

import collections

import numpy as np
import pytest
import torch
import transformers
from test_recycle import _hf_recycle

from tl_thinktok import hosts
from tl_thinktok.interventions.recycle import RepresentationRecycling
from tl_thinktok.interventions.suppress import SuppressTokens
from tl_thinktok.interventions.ttts import reference_ttts, reference_ttts_batch
from tl_thinktok.loading import load_model
from tl_thinktok.mi import hsic_nocco
from tl_thinktok.probe import MIProbe

LAYER = 2
N_STEPS = 16
TEXTS = ["So let me", "Once upon a time there was", "Hmm", "The quick brown fox jumps"]
HOSTS = list(hosts.supported_hosts())  # hooked + bridge on TL 3.x, bridge on TL 4.x


@pytest.fixture(scope="module")
def setup(random_model_dir):
    path = random_model_dir("qwen2", n_layers=4)
    hf = transformers.AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32).eval()
    tok = transformers.PreTrainedTokenizerFast.from_pretrained(str(path))
    prompts = [tok(t, add_special_tokens=False)["input_ids"] for t in TEXTS]
    assert len({len(p) for p in prompts}) > 1  # different lengths: left padding is exercised
    gens = []
    for p in prompts:
        ids = torch.tensor([p])
        out = hf.generate(ids, max_new_tokens=N_STEPS, min_new_tokens=N_STEPS, do_sample=False)
        gens.append(out[0, len(p) :].tolist())
    # trigger set: tokens the random model really emits, so rows trigger on different steps
    trig = [t for t, _ in collections.Counter(sum(gens, [])).most_common(4)]
    models = {h: load_model(path, host=h) for h in HOSTS}
    return dict(hf=hf, tok=tok, prompts=prompts, gens=gens, trig=trig, m=models, path=path)


def _pad(model, prompts):
    n = max(len(p) for p in prompts)
    pad = model.tokenizer.pad_token_id
    return torch.tensor([[pad] * (n - len(p)) + list(p) for p in prompts]), n


def _generate(model, prompts, *components, cache=True, n=N_STEPS, eos=None):
    """Greedy TL generate of a (left-padded) batch; returns each row's new tokens."""
    toks, width = _pad(model, prompts)
    kw = dict(max_new_tokens=n, do_sample=False, verbose=False, use_past_kv_cache=cache)
    kw.update(stop_at_eos=eos is not None, **({"eos_token_id": eos} if eos is not None else {}))
    if len(prompts) > 1:
        kw["padding_side"] = "left"
    from tl_thinktok.interventions.base import attach_all

    with torch.no_grad(), attach_all(model, *components):
        out = model.generate(toks, **kw)
    rows = out[:, width:].tolist()
    if eos is not None:
        rows = [r[: r.index(eos) + 1] if eos in r else r for r in rows]
    return rows


def _alone(model, prompts, make, **kw):
    """Each prompt generated alone with a fresh component from ``make(row)``."""
    rows, comps = [], []
    for i, p in enumerate(prompts):
        c = make(i)
        rows += _generate(model, [p], c, **kw)
        comps.append(c)
    return rows, comps


@pytest.mark.parametrize("host", HOSTS)
@pytest.mark.parametrize("p", [1.0, 0.5])
def test_rr_batch_rows_equal_alone_and_hf_reference(setup, host, p):
    s = setup
    model = s["m"][host]
    rr = RepresentationRecycling(LAYER, s["trig"], p=p, seed=7)
    got = _generate(model, s["prompts"], rr)
    alone, singles = _alone(
        model, s["prompts"], lambda i: RepresentationRecycling(LAYER, s["trig"], p=p,
                                                               seed=rr.row_seed(i))
    )  # fmt: skip
    assert got == alone
    assert rr.fired_rows == [c.fired for c in singles]
    assert rr.fired == sum(rr.fired_rows) > 0
    # rows triggered on different steps (generated-step index = position - prompt width + 1)
    width = max(len(q) for q in s["prompts"])
    steps = [{q - width + 1 for q in pos} for pos in rr.recycled_positions_rows]
    assert len({frozenset(x) for x in steps}) > 1, steps
    assert any(st and len(st) < N_STEPS for st in steps)
    assert got != s["gens"]  # recycling changed something
    for i, q in enumerate(s["prompts"]):  # outside reference, row by row
        ref, ref_fired = _hf_recycle(
            s["hf"], torch.tensor([q]), LAYER, set(s["trig"]), N_STEPS, p, rr.row_seed(i)
        )
        assert got[i] == ref[0, len(q) :].tolist(), (host, p, i)
        assert rr.fired_rows[i] == ref_fired


@pytest.mark.parametrize("host", HOSTS)
def test_rr_batch_uncached_equals_cached(setup, host):
    s = setup
    model = s["m"][host]
    plain = _generate(model, s["prompts"], cache=False)
    if plain != s["gens"]:
        pytest.skip(f"{host}: plain batched generation without a KV cache differs from HF")
    outs, fired = [], []
    for cache in (True, False):
        rr = RepresentationRecycling(LAYER, s["trig"], p=0.5, seed=1)
        outs.append(_generate(model, s["prompts"], rr, cache=cache, n=10))
        fired.append(rr.fired_rows)
    assert outs[0] == outs[1] and fired[0] == fired[1]


@pytest.mark.parametrize("host", HOSTS)
@pytest.mark.parametrize("cache", [True, False])
def test_rr_input_mode_batch_equals_alone(setup, host, cache):
    s = setup
    model = s["m"][host]
    if not cache and _generate(model, s["prompts"], cache=False, n=8) != [g[:8] for g in s["gens"]]:
        pytest.skip(f"{host}: plain batched generation without a KV cache differs from HF")

    def make(seed):
        return RepresentationRecycling(
            LAYER, s["trig"], trigger="input", n_recycles=2, p=0.7, seed=seed
        )

    rr = make(3)
    got = _generate(model, s["prompts"], rr, cache=cache, n=8)
    alone, singles = _alone(model, s["prompts"], lambda i: make(rr.row_seed(i)), cache=cache, n=8)
    assert got == alone
    assert rr.fired_rows == [c.fired for c in singles] and rr.fired > 0


@pytest.mark.parametrize("host", HOSTS)
def test_rr_batch_eos_per_row(setup, host):
    """Every candidate triggers (T = whole vocabulary, p = 1): a row that emitted the stop id
    must stop recycling at once, while the other rows go on."""
    s = setup
    model = s["m"][host]
    every = list(range(hosts.d_vocab(model)))
    free = _generate(model, s["prompts"], RepresentationRecycling(LAYER, every))
    # an "EOS" that one row emits early and the other rows never emit
    counts = collections.Counter(t for r in free for t in set(r))
    eos = next(r[3] for r in free if counts[r[3]] == 1 and r.index(r[3]) == 3)

    def make(seed):
        return RepresentationRecycling(LAYER, every, seed=seed, stop_token_ids=[eos])

    rr = make(5)
    got = _generate(model, s["prompts"], rr, eos=eos)
    alone, singles = _alone(model, s["prompts"], lambda i: make(rr.row_seed(i)), eos=eos)
    assert got == alone
    assert sorted(len(r) for r in got)[0] == 4 and max(len(r) for r in got) == N_STEPS
    assert rr.fired_rows == [c.fired for c in singles] == [len(r) for r in got]


@pytest.mark.parametrize("host", HOSTS)
@pytest.mark.parametrize("cache", [True, False])
def test_suppress_batch_equals_alone_and_hf(setup, host, cache):
    s = setup
    model = s["m"][host]
    banned = sorted({g[0] for g in s["gens"]} | {s["gens"][0][2]})
    ban = SuppressTokens(banned)
    got = _generate(model, s["prompts"], ban, cache=cache, n=8)
    alone, singles = _alone(model, s["prompts"], lambda i: SuppressTokens(banned), cache=cache, n=8)
    assert got == alone
    assert ban.hits == sum(c.hits for c in singles) > 0
    for q, row in zip(s["prompts"], got, strict=True):
        with torch.no_grad():
            ref = s["hf"].generate(
                torch.tensor([q]), max_new_tokens=8, min_new_tokens=8, do_sample=False,
                suppress_tokens=banned,
            )  # fmt: skip
        assert row == ref[0, len(q) :].tolist()
        assert not set(row) & set(banned)


@pytest.fixture(scope="module")
def f64_models(setup):
    return {h: load_model(setup["path"], host=h, dtype=torch.float64) for h in HOSTS}


def _probe_rows(model, prompts, trig, cache, dtype):
    """Batched vs alone (RR at LAYER, p=0.5, + MIProbe at the last block): tokens, h, h alone."""
    rr = RepresentationRecycling(LAYER, trig, p=0.5, seed=4)
    probe = MIProbe(layer=-1)
    got = _generate(model, prompts, rr, probe, cache=cache, n=10)
    assert rr.fired > 0
    out = []
    for i, q in enumerate(prompts):
        alone_rr = RepresentationRecycling(LAYER, trig, p=0.5, seed=rr.row_seed(i))
        alone_probe = MIProbe(layer=-1)
        row = _generate(model, [q], alone_rr, alone_probe, cache=cache, n=10)[0]
        assert got[i] == row
        h_b = probe.row_residuals(i, len(row))
        assert h_b.dtype == alone_probe.residuals.dtype == dtype
        assert h_b.shape == alone_probe.residuals.shape == (10, hosts.d_model(model))
        out.append(
            (h_b, alone_probe.residuals, probe.trajectory(_answer(model), row=i, n_steps=10))
        )
    with pytest.raises(ValueError, match=f"batch of {len(prompts)}"):
        _ = probe.residuals
    with pytest.raises(ValueError, match="out of range"):
        probe.row_residuals(len(prompts))
    return out


def _answer(model):
    g = torch.Generator().manual_seed(0)
    return torch.randn(hosts.d_model(model), generator=g, dtype=torch.float64) * 20


@pytest.mark.parametrize("host", HOSTS)
@pytest.mark.parametrize("cache", [True, False])
def test_probe_batch_rows_equal_alone_mi_1e9(setup, f64_models, host, cache):
    """float64 models: a row's residuals equal the alone run's to round-off, MI to 1e-9.

    TransformerBridge + float64 + left padding is broken upstream (HF eager attention takes the
    softmax in float32: a fully masked pad row becomes -inf, NaN, and the NaN keys of pad positions
    reach every row as 0 * NaN; plain generation without tl-thinktok shows it), so the bridge runs
    prompts of one length here; left padding on the bridge is covered in float32 below.
    """
    s = setup
    prompts = s["prompts"]
    if host == "bridge":
        k = min(len(q) for q in prompts)
        prompts = [q[-k:] for q in prompts]
    y = _answer(f64_models[host])
    for h_b, h_a, mi_b in _probe_rows(f64_models[host], prompts, s["trig"], cache, torch.float64):
        torch.testing.assert_close(h_b, h_a, rtol=0, atol=1e-10 * h_a.abs().max().item())
        assert (mi_b - hsic_nocco(h_a, y)).abs().max().item() <= 1e-9


@pytest.mark.parametrize("host", HOSTS)
def test_probe_batch_rows_equal_alone_float32_padded(setup, host):
    """float32, left padding: tokens equal; residuals equal to float32 round-off of |h|."""
    s = setup
    model = s["m"][host]
    y = _answer(model)
    for h_b, h_a, mi_b in _probe_rows(model, s["prompts"], s["trig"], True, torch.float32):
        scale = h_a.abs().max().item()
        assert (h_b - h_a).abs().max().item() <= 1e-5 * scale  # a misaligned row is O(scale)
        assert (mi_b - hsic_nocco(h_a, y)).abs().max().item() <= 1e-4


@pytest.mark.parametrize("host", HOSTS)
def test_reference_ttts_batch_equals_one_by_one(setup, host):
    s = setup
    model = s["m"][host]
    eos = model.tokenizer.eos_token_id
    qs, sofar, words = TEXTS[:3], [" 1", " 2 +", ""], ["Wait", "So", "Hmm"]

    def parts(seed):
        return (
            SuppressTokens([s["gens"][1][0]]),
            RepresentationRecycling(LAYER, s["trig"], p=0.5, seed=seed, stop_token_ids=[eos]),
        )

    batch_parts = parts(9)
    got = reference_ttts_batch(
        model, qs, sofar, words=words, token_budget=6, answer_tokens=4, components=batch_parts
    )
    rr = batch_parts[1]
    assert rr.fired > 0
    for i, (q, a, w) in enumerate(zip(qs, sofar, words, strict=True)):
        one = reference_ttts(
            model, q, a, word=w, token_budget=6, answer_tokens=4, components=parts(rr.row_seed(i))
        )
        assert got[i] == one, i


#: float32 unit round-off: what HF's eager attention keeps of a float64 model's scores
U32 = 2.0**-24


def _mi_grad(h: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``∇_{h_t} MI_t`` by autograd through PAPER.md §1 written out here in float64."""
    h = h.detach().double().clone().requires_grad_(True)
    y = y.detach().double()
    m = y.shape[0]
    eye = torch.eye(m, dtype=torch.float64)
    cen = eye - 1.0 / m

    def r(v):
        k = torch.exp(-((v[..., :, None] - v[..., None, :]) ** 2) / (2 * 50.0**2))
        kt = k @ cen
        return kt @ torch.linalg.inv(kt + 1e-5 * m * eye)

    mi = (r(h) * r(y).T).sum((-2, -1))
    return torch.autograd.grad(mi.sum(), h)[0]


def _mi_first_order_bound(h: torch.Tensor, y: torch.Tensor, dh: torch.Tensor) -> np.ndarray:
    """Per-step bound on ``|MI(h + dh) - MI(h)|`` from the gradient, for a perturbation ``dh``.

    MI_t depends on h_t alone, so to first order ``|ΔMI_t| <= ||∇MI_t(h_t)|| ||dh_t||``
    (Cauchy-Schwarz); the factor 2 covers the second-order term for ``||dh_t|| / ||h_t|| <= 1e-6``
    (the curvature scale of the Gaussian kernel is sigma = 50 >> ||dh_t||). The gradient is taken
    by autograd through PAPER.md §1 written out in :func:`_mi_grad` (tr(R_x R_y),
    R = K H (K H + eps m I)^-1, sigma 50, eps 1e-5), not through the package's estimator. The
    additive 1e-9 is the float64 evaluation tolerance of the estimator itself (chunked batched
    solves; the same 1e-9 as for a float64 host with identical residuals).
    """
    grad = _mi_grad(h, y)
    return 2 * (grad.norm(dim=-1) * dh.double().norm(dim=-1)).numpy() + 1e-9


@pytest.mark.parametrize("seed", range(4))
def test_mi_first_order_bound_holds_for_float32_roundoff(seed):
    """The bound used below holds for the package's estimator under float32-sized perturbations,
    and is tight: along the gradient the change reaches at least 40% of the bound."""
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(6, 64, generator=g, dtype=torch.float64) * 40
    y = torch.randn(64, generator=g, dtype=torch.float64) * 40
    dh = (torch.rand(6, 64, generator=g, dtype=torch.float64) * 2 - 1) * 16 * U32 * h.abs().max()
    change = (hsic_nocco(h + dh, y) - hsic_nocco(h, y)).abs().numpy()
    bound = _mi_first_order_bound(h, y, dh)
    assert (change <= bound).all()
    grad = _mi_grad(h, y)  # worst direction, same size as dh
    worst = grad / grad.norm(dim=-1, keepdim=True) * dh.norm(dim=-1, keepdim=True)
    change = (hsic_nocco(h + worst, y) - hsic_nocco(h, y)).abs().numpy()
    bound = _mi_first_order_bound(h, y, worst)
    assert (change <= bound).all() and (change >= 0.4 * (bound - 1e-9)).all()


@pytest.mark.parametrize(
    ("engine", "route"), [("tl", "capture"), ("tl", "teacher"), ("hf", "auto")]
)
@pytest.mark.parametrize("host", HOSTS)
def test_trace_batch_from_model_equals_from_model(setup, f64_models, host, engine, route):
    """Batched traces == one-by-one ``MITrace.from_model``: tokens equal, MI to round-off (float64).

    Hooked host: float64 throughout, MI to 1e-9. Bridge: HF's eager attention takes the softmax in
    float32 even in a float64 model (``softmax(scores, dtype=torch.float32)`` in transformers'
    ``eager_attention_forward``), so the scores are rounded to float32 (relative u = 2^-24).
    Batched and single rows compute the float64 scores in different summation orders (round-off
    1e-16), and where a score lies near a float32 rounding boundary the two round it to adjacent
    float32 values: the attention weights, hence the residuals, then differ by float32 round-off
    (seen with transformers 5.24 on CI: MI 0.07750509 vs 0.07750508). There the test bounds the
    residual difference by float32 round-off of |h| (16 u) and the MI difference by the
    first-order propagation of that residual difference (:func:`_mi_first_order_bound`), never by
    a loosened constant. Engine ``hf`` generates with HF's own ``generate``; its residuals come
    from the chunked teacher-forced pass, as route ``teacher``.
    """
    from tl_thinktok.trace import MITrace

    s = setup
    prompts = s["prompts"]
    if host == "bridge":  # float64 + left padding is broken upstream on the bridge (see above)
        k = min(len(q) for q in prompts)
        prompts = [q[-k:] for q in prompts]
    answers = ["So 3 + 4 = 7.", "Once upon a time", "Hmm, the answer is 42.", "The fox"]
    model = f64_models[host]
    # the EOS of this random model is rare: make an emitted token the EOS, so rows stop early and
    # at different steps
    from tl_thinktok.generation import greedy_batch

    free = greedy_batch(model, prompts, 12, stop_at_eos=False)

    def stops(t):
        return {r.index(t) + 1 if t in r else 12 for r in free}

    eos = next(t for r in free for t in r if len(stops(t)) > 1)
    tok = model.tokenizer
    old = tok.eos_token_id
    tok.eos_token_id = eos
    kw = dict(max_new_tokens=12, keep_residuals=True)
    try:
        got = MITrace.batch_from_model(model, prompts, answers, route=route, engine=engine,
                                       meta=[{"id": str(i)} for i in range(4)], **kw)  # fmt: skip
        one = [MITrace.from_model(model, p, a, **kw) for p, a in
               zip(prompts, answers, strict=True)]  # fmt: skip
        alone = [MITrace.batch_from_model(model, [p], [a], route=route, engine=engine, **kw)[0]
                 for p, a in zip(prompts, answers, strict=True)]  # fmt: skip
    finally:
        tok.eos_token_id = old
    assert len({tr.n_steps for tr in got}) > 1  # rows stopped at different steps
    assert any(tr.gen_ids[-1] == eos for tr in got)
    float32_softmax = host == "bridge"  # the bridge's own forward: float32 attention weights

    def close(b: MITrace, ref: MITrace, f32: bool) -> None:
        if not f32:
            assert np.abs(b.mi - ref.mi).max() <= 1e-9
            np.testing.assert_allclose(b.resid_norm, ref.resid_norm, rtol=1e-12)
            return
        dh = b.residuals - ref.residuals
        assert dh.abs().max().item() <= 16 * U32 * ref.residuals.abs().max().item()
        bound = _mi_first_order_bound(ref.residuals, ref.answer_rep, dh)
        assert (np.abs(b.mi - ref.mi) <= bound).all(), (np.abs(b.mi - ref.mi), bound)
        np.testing.assert_allclose(b.resid_norm, ref.resid_norm, rtol=16 * U32)

    for i, (b, a, x) in enumerate(zip(got, one, alone, strict=True)):
        assert b.tokens == a.tokens == x.tokens and b.prompt_len == a.prompt_len
        assert b.id == str(i) and b.text == a.text
        close(b, x, float32_softmax)
        close(b, a, float32_softmax)
        assert b.peaks == a.peaks


@pytest.mark.parametrize("host", HOSTS)
def test_trace_batch_from_model_float32_padded(setup, host):
    from tl_thinktok.trace import MITrace

    s = setup
    model = s["m"][host]
    answers = ["So 3 + 4 = 7.", "Once upon a time", "Hmm, the answer is 42.", "The fox"]
    got = MITrace.batch_from_model(model, s["prompts"], answers, max_new_tokens=8)
    for p, a, b in zip(s["prompts"], answers, got, strict=True):
        one = MITrace.from_model(model, p, a, max_new_tokens=8)
        assert b.tokens == one.tokens
        assert np.abs(b.mi - one.mi).max() <= 1e-4 * np.abs(one.mi).max()
    with pytest.raises(ValueError, match="unknown route"):
        MITrace.batch_from_model(model, s["prompts"], answers, route="bogus")
    with pytest.raises(ValueError, match="4 prompts, 3 answer texts"):
        MITrace.batch_from_model(model, s["prompts"], answers[:3])
    with pytest.raises(ValueError, match="non-empty"):
        MITrace.batch_from_model(model, s["prompts"][:1], [" "])
    assert MITrace.batch_from_model(model, [], []) == []
