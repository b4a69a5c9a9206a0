"""The HookedTransformer fast decoder (``hosts/hooked_decode.py``) against outside references.

Tokens: HF ``generate`` of each prompt alone (the outside reference) and TransformerLens'
``generate`` of the padded batch (``greedy_batch``). States: an :class:`MIProbe` capture during TL's
own ``generate`` (float32: ≤ 1e-5 relative, the round-off of differently ordered float32 sums over
d_model; float64: ≤ 1e-10). Architectures: Qwen2 (GQA, QKV biases), Llama (no biases), Qwen3
(per-head Q/K norms), the trained organism and stories260K (adjacent-pair rotary, llama2.c).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM

from tl_thinktok import generation
from tl_thinktok.hosts import supported_hosts
from tl_thinktok.interventions.base import attach_all
from tl_thinktok.loading import load_model
from tl_thinktok.probe import MIProbe, last_residuals_batch
from tl_thinktok.trace import MITrace, resolve_route

pytestmark = pytest.mark.skipif(
    "hooked" not in supported_hosts(), reason="HookedTransformer needs TransformerLens 3.x"
)

TEXTS = ["Once upon a time", "So, let me compute 3 + 4", "Hmm", "The quick brown fox jumps over"]
N_NEW = 20


def _prompts(model):
    return [generation.encode(model, t) for t in TEXTS]


def _hf_alone(path, prompts, n, eos):
    hf = AutoModelForCausalLM.from_pretrained(str(path)).eval()
    out = []
    for p in prompts:
        ids = hf.generate(torch.tensor([p]), max_new_tokens=n, do_sample=False, eos_token_id=eos)
        row = ids[0, len(p) :].tolist()
        out.append(row[: row.index(eos) + 1] if eos in row else row)
    return out


def _probe_capture(model, prompts, n, layer):
    probe = MIProbe(layer)
    with attach_all(model, probe):
        gens = generation.greedy_batch(model, prompts, n)
    return gens, probe.pop_rows([len(g) for g in gens])


def _rel(a, b):
    return float((a - b).abs().max() / b.abs().max())


@pytest.fixture(scope="module", params=["qwen2", "llama", "qwen3"])
def random_case(request, random_model_dir):
    path = random_model_dir(request.param)
    return path, load_model(str(path), host="hooked")


@pytest.mark.parametrize("layer", [0, -1])
def test_random_architectures_match_hf_and_tl(random_case, layer):
    path, model = random_case
    prompts = _prompts(model)
    assert len({len(p) for p in prompts}) > 1, "prompts of different lengths: left padding used"
    gens, states = generation.greedy_batch_states(model, prompts, N_NEW, layer)
    eos = generation.eos_id(model)
    assert gens == _hf_alone(path, prompts, N_NEW, eos)
    tl_gens, tl_states = _probe_capture(model, prompts, N_NEW, layer)
    assert gens == tl_gens
    for h, ref in zip(states, tl_states, strict=True):
        assert h.shape == ref.shape
        assert _rel(h, ref) <= 1e-5


def test_answer_states_match_teacher_forced_pass(random_case):
    _, model = random_case
    seqs = _prompts(model)
    for layer in (0, model.cfg.n_layers - 1):
        fast = generation.last_states_batch(model, seqs, layer)
        ref = last_residuals_batch(model, seqs, layer)
        for a, b in zip(fast, ref, strict=True):
            assert _rel(a, b) <= 1e-5


def test_float64_model_is_exact_to_round_off(qwen2_dir):
    model = load_model(str(qwen2_dir), host="hooked", dtype=torch.float64)
    prompts = _prompts(model)
    gens, states = generation.greedy_batch_states(model, prompts, N_NEW, -1)
    tl_gens, tl_states = _probe_capture(model, prompts, N_NEW, -1)
    assert gens == tl_gens
    assert max(_rel(a, b) for a, b in zip(states, tl_states, strict=True)) <= 1e-10


def test_organism_batch_matches_tl_generate_with_eos_stops():
    model = load_model("organism", host="hooked")
    from tl_thinktok.datasets import load_dataset, prompt_for

    items = load_dataset("organism", n=12, seed=3)
    prompts = [generation.encode(model, prompt_for("organism", it.question)) for it in items]
    gens, states = generation.greedy_batch_states(model, prompts, 200, -1)
    eos = generation.eos_id(model)
    stopped = [g for g in gens if g[-1] == eos]
    assert stopped and len({len(g) for g in stopped}) > 1, "rows must stop at EOS on their own"
    tl_gens, tl_states = _probe_capture(model, prompts, 200, -1)
    assert gens == tl_gens
    assert max(_rel(a, b) for a, b in zip(states, tl_states, strict=True)) <= 1e-5


def test_stories260k_matches_tl():
    model = load_model("stories260k", host="hooked")
    prompts = [generation.encode(model, t) for t in ("Once upon a time", "The cat", "Lily")]
    gens, states = generation.greedy_batch_states(model, prompts, 40, 2)
    tl_gens, tl_states = _probe_capture(model, prompts, 40, 2)
    assert gens == tl_gens
    assert max(_rel(a, b) for a, b in zip(states, tl_states, strict=True)) <= 1e-5


def test_adjacent_pair_rotary_follows_tl(llama_dir):
    """GPT-J-style rotary (``rotary_adjacent_pairs``): TL reads the flag at call time and both
    decoders read the same sin/cos tables, so flipping it on a loaded model is a fair check of
    that branch (the HF checkpoint itself uses the NeoX convention)."""
    model = load_model(str(llama_dir), host="hooked")
    model.cfg.rotary_adjacent_pairs = True
    prompts = _prompts(model)
    gens, states = generation.greedy_batch_states(model, prompts, N_NEW, -1)
    tl_gens, tl_states = _probe_capture(model, prompts, N_NEW, -1)
    assert gens == tl_gens
    assert max(_rel(a, b) for a, b in zip(states, tl_states, strict=True)) <= 1e-5
    model.cfg.rotary_adjacent_pairs = False
    neox, _ = generation.greedy_batch_states(model, prompts, N_NEW, -1)
    assert neox != gens, "the flag must change the result, or this test checks nothing"


def test_refuses_while_hooks_are_attached_and_auto_falls_back(qwen2_dir):
    model = load_model(str(qwen2_dir), host="hooked")
    prompts = _prompts(model)
    assert resolve_route(model) == "fast"
    probe = MIProbe(-1)
    with attach_all(model, probe):
        why = generation.fast_decode_unsupported(model)
        assert why is not None and "hooks are attached" in why
        with pytest.raises(ValueError, match="hooks are attached"):
            generation.greedy_batch_states(model, prompts, 4)
        with pytest.raises(ValueError, match="hooks are attached"):
            MITrace.batch_from_model(model, prompts, ["2 + 2 = 4"] * 4, max_new_tokens=4,
                                     route="fast")  # fmt: skip
        assert resolve_route(model) == "capture"
    assert model.hook_dict["blocks.0.hook_resid_post"]._forward_hooks == {}
    assert resolve_route(model) == "fast"


def test_unsupported_architecture_is_named():
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    cfg = HookedTransformerConfig(n_layers=1, d_model=16, n_ctx=32, d_head=8, d_vocab=50,
                                  act_fn="gelu", normalization_type="LN")  # fmt: skip
    model = HookedTransformer(cfg)
    why = generation.fast_decode_unsupported(model)
    assert why is not None and "normalization_type" in why
    with pytest.raises(ValueError, match="fast decoding is not available: normalization_type"):
        generation.greedy_batch_states(model, [[1, 2, 3]], 2)
    assert resolve_route(model) == "capture"


def test_trace_routes_agree_and_mi_tol_is_recorded(tmp_path):
    model = load_model("organism", host="hooked")
    from tl_thinktok.datasets import load_dataset, prompt_for

    items = load_dataset("organism", n=6, seed=1)
    prompts = [prompt_for("organism", it.question) for it in items]
    texts = [it.solution for it in items]
    fast = MITrace.batch_from_model(model, prompts, texts, max_new_tokens=48)  # auto = fast
    cap = MITrace.batch_from_model(model, prompts, texts, max_new_tokens=48, route="capture")
    tol = MITrace.batch_from_model(model, prompts, texts, max_new_tokens=48, mi_tol=1e-10)
    for f, c, t in zip(fast, cap, tol, strict=True):
        assert f.tokens == c.tokens == t.tokens
        assert f.mi_tol is None and t.mi_tol == 1e-10
        # float32 states of two correct decoders differ by ~1e-6; MI follows within 1e-4
        np.testing.assert_allclose(f.mi, c.mi, rtol=0, atol=1e-4 * np.abs(c.mi).max())
        np.testing.assert_allclose(t.mi, f.mi, rtol=0, atol=1e-5 * np.abs(f.mi).max())
    back = MITrace.load(tol[0].save(tmp_path / "t.json"))
    assert back.mi_tol == 1e-10
    with pytest.raises(ValueError, match="mi_tol must be > 0"):
        MITrace.batch_from_model(model, prompts[:1], texts[:1], max_new_tokens=4, mi_tol=0.0)


def test_refuses_with_sae_spliced_and_auto_keeps_the_sae(qwen2_dir, sae_lens):
    """HookedSAETransformer with an SAE at the last block: the fast decoder would bypass the SAE,
    so it is refused and ``auto`` takes the capture route, whose states are the SAE's output."""
    base = load_model(str(qwen2_dir), host="hooked")
    m = sae_lens.HookedSAETransformer(base.cfg, tokenizer=base.tokenizer)
    m.load_state_dict(base.state_dict(), strict=False)
    m.eval()
    assert generation.fast_decode_unsupported(m) is None
    cfg = sae_lens.StandardSAEConfig(d_in=base.cfg.d_model, d_sae=2 * base.cfg.d_model)
    cfg.metadata.hook_name = f"blocks.{base.cfg.n_layers - 1}.hook_resid_post"
    m.add_sae(sae_lens.StandardSAE(cfg).eval())
    why = generation.fast_decode_unsupported(m)
    assert why is not None and "SAE" in why
    with pytest.raises(ValueError, match="SAEs are attached"):
        generation.greedy_batch_states(m, _prompts(m), 2)
    assert resolve_route(m) == "capture"


@pytest.mark.parametrize("ungroup", [False, True])
def test_grouped_and_ungrouped_kv_heads(ungroup):
    """GQA (``_W_K`` holds n_key_value_heads heads) with and without TL's
    ``ungroup_grouped_query_attention`` (K/V repeated to every head inside TL's attention): the
    decoder takes the head count from the stored weights and matches TL either way."""
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    torch.manual_seed(0)
    cfg = HookedTransformerConfig(
        n_layers=2, d_model=64, n_ctx=64, d_head=16, n_heads=4, n_key_value_heads=2, d_vocab=97,
        d_mlp=128, act_fn="silu", normalization_type="RMS", positional_embedding_type="rotary",
        rotary_dim=16, gated_mlp=True, original_architecture="LlamaForCausalLM",
        initializer_range=0.3, ungroup_grouped_query_attention=ungroup,
    )  # fmt: skip
    model = HookedTransformer(cfg).eval()
    # equal lengths: without a tokenizer TL's generate cannot mask pads (padding is tested above)
    prompts = [[1, 5, 9, 13], [7, 3, 60, 2], [4, 4, 8, 90]]
    gens, states = generation.greedy_batch_states(model, prompts, 12, -1, stop_at_eos=False)
    assert len(set(map(tuple, gens))) > 1
    # reference: TL's own forward without a KV cache (TL 3.9's cached generate fails with
    # ungroup_grouped_query_attention: its cache keeps n_key_value_heads heads)
    full = torch.tensor([p + g for p, g in zip(prompts, gens, strict=True)])
    name = f"blocks.{cfg.n_layers - 1}.hook_resid_post"
    with torch.no_grad():
        logits, cache = model.run_with_cache(full, names_filter=name)
    for i, (p, g, h) in enumerate(zip(prompts, gens, states, strict=True)):
        steps = slice(len(p) - 1, len(p) + len(g) - 1)
        assert logits[i, steps].argmax(-1).tolist() == g
        assert _rel(h, cache[name][i, steps]) <= 1e-5
