"""RepresentationRecycling vs an independent two-pass reference written against the HF model.

The reference (``_hf_recycle``) follows PAPER.md §5 literally with plain transformers code: per
step, deep-copy the DynamicCache, run normally while a forward hook on ``model.model.layers[L]``
remembers its output at the last position; if ``argmax in T and rng.random() < p``, rerun the
step from the copied cache with a forward pre-hook that replaces that layer's input at the last
position by the remembered output.
"""

from __future__ import annotations

import collections
import copy
import random

import pytest
import torch
import transformers
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tl_thinktok import hosts
from tl_thinktok.interventions.recycle import RepresentationRecycling
from tl_thinktok.loading import load_model

N_STEPS = 32
LAYER = 2
PROMPT = "So let me"


@torch.no_grad()
def _hf_recycle(hf, ids, layer, trig, n_steps, p=1.0, seed=0):
    """Reference two-pass RR on the HF model (returns tokens and number of recycles)."""
    rng = random.Random(seed)
    block = hf.model.layers[layer]
    cache, inp, seq, fired = None, ids, ids, 0
    for _ in range(n_steps):
        pre_cache = copy.deepcopy(cache)
        store = {}

        def remember(_m, _a, out, store=store):
            store["h"] = (out[0] if isinstance(out, tuple) else out)[:, -1:].clone()

        handle = block.register_forward_hook(remember)
        out = hf(inp, cache=cache, use_cache=True)
        handle.remove()
        if int(out.logits[0, -1].argmax()) in trig and rng.random() < p:
            fired += 1

            def replace(_m, args, kwargs, store=store):
                x = args[0].clone()
                x[:, -1:] = store["h"]
                return (x, *args[1:]), kwargs

            handle = block.register_forward_pre_hook(replace, with_kwargs=True)
            out = hf(inp, cache=pre_cache, use_cache=True)
            handle.remove()
        cache = out.cache
        nxt = out.logits[0, -1].argmax().view(1, 1)
        seq, inp = torch.cat([seq, nxt], 1), nxt
    return seq, fired


@pytest.fixture(scope="module")
def setup(random_model_dir):
    path = random_model_dir("qwen2", n_layers=4)
    hf = transformers.AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32).eval()
    tok = transformers.PreTrainedTokenizerFast.from_pretrained(str(path))
    ids = tok(PROMPT, return_tensors="pt").input_ids
    plain = hf.generate(ids, max_new_tokens=N_STEPS, min_new_tokens=N_STEPS, do_sample=False)
    gen = plain[0, ids.shape[1] :].tolist()
    # trigger set = tokens the random model really emits (so recycling fires)
    trig = [t for t, _ in collections.Counter(gen).most_common(3)]
    ref, ref_fired = _hf_recycle(hf, ids, LAYER, set(trig), N_STEPS)
    models = {h: load_model(path, host=h) for h in hosts.supported_hosts()}
    return dict(hf=hf, ids=ids, plain=plain, trig=trig, ref=ref, ref_fired=ref_fired, m=models)


def _gen(model, ids, rr=None, cache=True, n=N_STEPS):
    kw = dict(max_new_tokens=n, do_sample=False, verbose=False, stop_at_eos=False)
    if rr is None:
        return model.generate(ids, use_past_kv_cache=cache, **kw)
    with rr.attach(model):
        return model.generate(ids, use_past_kv_cache=cache, **kw)


@pytest.mark.parametrize("host", list(hosts.supported_hosts()))
def test_candidate_matches_hf_two_pass_reference(setup, host):
    s = setup
    assert s["ref_fired"] > 0
    assert not torch.equal(s["ref"], s["plain"])  # recycling changes the output
    model = s["m"][host]
    assert torch.equal(_gen(model, s["ids"]), s["plain"])  # host parity without RR
    outs = {}
    for cache in (True, False):
        rr = RepresentationRecycling(LAYER, s["trig"])
        outs[cache] = _gen(model, s["ids"], rr, cache=cache)
        assert rr.fired == s["ref_fired"], (host, cache)
        assert outs[cache].tolist() == s["ref"].tolist(), (host, cache)
    assert torch.equal(outs[True], outs[False])  # cached == uncached


@pytest.mark.parametrize("host", list(hosts.supported_hosts()))
def test_seeded_coin_flip_matches_reference_and_is_deterministic(setup, host):
    s = setup
    ref, ref_fired = _hf_recycle(s["hf"], s["ids"], LAYER, set(s["trig"]), N_STEPS, 0.5, seed=3)
    model = s["m"][host]
    rr = RepresentationRecycling(LAYER, s["trig"], p=0.5, seed=3)
    out1 = _gen(model, s["ids"], rr)
    fired1 = rr.fired
    rr.reset()
    out2 = _gen(model, s["ids"], rr, cache=False)
    assert out1.tolist() == ref.tolist() and fired1 == ref_fired
    assert torch.equal(out1, out2) and rr.fired == fired1


@pytest.mark.parametrize("host", list(hosts.supported_hosts()))
def test_trigger_that_never_fires_is_plain_greedy(setup, host):
    s = setup
    never = [t for t in range(300) if t not in s["ref"][0].tolist()][:2]
    rr = RepresentationRecycling(LAYER, never)
    out = _gen(s["m"][host], s["ids"], rr)
    assert rr.fired == 0
    assert torch.equal(out, s["plain"])


@torch.no_grad()
def _hf_input_mode(hf, ids, layer, trig, n_steps, n_recycles):
    """Reference single-pass variant on HF: if the fed token is a trigger, re-call layer L on its
    own output ``n_recycles`` times (cache entry rolled back before each call)."""
    block = hf.model.layers[layer]
    cache, inp, seq = None, ids, ids
    for _ in range(n_steps):
        state = {"busy": False}

        def again(_m, args, kwargs, out, state=state, inp=inp):
            if state["busy"] or int(inp[0, -1]) not in trig:
                return None
            h = out.clone()
            state["busy"] = True
            for _ in range(n_recycles):
                kwargs["cache"].layers[layer].crop(-1)  # one K/V entry per position
                kw = dict(kwargs)
                kw["position_embeddings"] = tuple(t[:, -1:] for t in kwargs["position_embeddings"])
                kw["position_ids"] = kwargs["position_ids"][:, -1:]
                kw["attention_mask"] = None  # one query attends to every cached key
                h = torch.cat([h[:, :-1], block(h[:, -1:], **kw)], 1)
            state["busy"] = False
            return h

        handle = block.register_forward_hook(again, with_kwargs=True)
        out = hf(inp, cache=cache, use_cache=True)
        handle.remove()
        cache = out.cache
        nxt = out.logits[0, -1].argmax().view(1, 1)
        seq, inp = torch.cat([seq, nxt], 1), nxt
    return seq


@pytest.mark.parametrize("host", list(hosts.supported_hosts()))
def test_input_mode_matches_hf_reference_cached_and_uncached(setup, host):
    s = setup
    trig = set(s["trig"])
    ref = _hf_input_mode(s["hf"], s["ids"], LAYER, trig, 16, n_recycles=2)
    n_trig_inputs = sum(int(t) in trig for t in ref[0, s["ids"].shape[1] - 1 : -1])
    assert n_trig_inputs > 0
    outs = []
    for cache in (True, False):
        rr = RepresentationRecycling(LAYER, s["trig"], trigger="input", n_recycles=2)
        outs.append(_gen(s["m"][host], s["ids"], rr, cache=cache, n=16))
        assert rr.fired == n_trig_inputs
    assert outs[0].tolist() == ref.tolist()
    assert torch.equal(outs[0], outs[1])


def test_validation_errors(setup):
    model = setup["m"][hosts.default_host()]
    with pytest.raises(ValueError, match="empty"):
        RepresentationRecycling(1, [])
    with pytest.raises(ValueError, match=r"p must be <= 1"):
        RepresentationRecycling(1, [3], p=1.5)
    with pytest.raises(ValueError, match="n_recycles"):
        RepresentationRecycling(1, [3], trigger="input", n_recycles=0)
    with pytest.raises(ValueError, match="exactly once"):
        RepresentationRecycling(1, [3], n_recycles=2)
    with pytest.raises(ValueError, match="unknown trigger mode"):
        RepresentationRecycling(1, [3], trigger="output")
    with pytest.raises(ValueError, match="trigger_token_ids must be non-negative"):
        RepresentationRecycling(1, [-1])
    with pytest.raises(ValueError, match="layer 4 is out of range.*n_layers=4"):
        with RepresentationRecycling(4, [3]).attach(model):
            pass
    with pytest.raises(ValueError, match="out of range"):
        with RepresentationRecycling(1, [hosts.d_vocab(model)]).attach(model):
            pass
    with pytest.raises(ValueError, match="stop_token_ids must be non-negative"):
        RepresentationRecycling(1, [3], stop_token_ids=[-2])
    with pytest.raises(ValueError, match="out of range"):
        with RepresentationRecycling(1, [3], stop_token_ids=[hosts.d_vocab(model)]).attach(model):
            pass
    with pytest.raises(ValueError, match="row must be >= 0"):
        RepresentationRecycling(1, [3]).row_seed(-1)
    rr = RepresentationRecycling(1, [3])
    with rr.attach(model):  # batches are supported (tests/integration/test_batched.py)
        model(torch.tensor([[1, 2, 3], [4, 5, 6]]))
    assert len(rr.fired_rows) == 2 and sum(rr.fired_rows) == rr.fired
    with pytest.raises(ValueError, match="batch of 2 rows"):
        _ = rr.recycled_positions


@pytest.mark.parametrize("host", list(hosts.supported_hosts()))
def test_hooks_removed_on_exit_and_on_error(setup, host):
    model = setup["m"][host]
    before = hosts.hook_counts(model)
    pre = [len(b._forward_pre_hooks) for b in model.blocks]
    rr = RepresentationRecycling(LAYER, setup["trig"])
    with rr.attach(model):
        assert hosts.hook_counts(model) != before
        model(setup["ids"])
    assert hosts.hook_counts(model) == before
    with pytest.raises(RuntimeError, match="boom"):
        with rr.attach(model):
            raise RuntimeError("boom")
    assert hosts.hook_counts(model) == before
    assert [len(b._forward_pre_hooks) for b in model.blocks] == pre


@settings(
    max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    layer=st.integers(-4, 3),
    n_trig=st.integers(1, 6),
    p=st.sampled_from([0.3, 0.5, 1.0]),
    seed=st.integers(0, 10),
)
def test_any_layer_p_and_seed_match_reference_cached_and_uncached(setup, layer, n_trig, p, seed):
    s = setup
    trig = sorted(set(s["plain"][0, s["ids"].shape[1] :].tolist()))[:n_trig]
    ref, ref_fired = _hf_recycle(s["hf"], s["ids"], layer % 4, set(trig), 12, p, seed)
    for cache in (True, False):
        rr = RepresentationRecycling(layer, trig, p=p, seed=seed)
        out = _gen(s["m"][hosts.default_host()], s["ids"], rr, cache=cache, n=12)
        assert out.tolist() == ref.tolist() and rr.fired == ref_fired, (cache, rr)
