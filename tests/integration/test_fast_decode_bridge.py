"""Fast decoding on the TransformerBridge (TL 3.9 and 4.3).

Two paths: the shared hook-free decoder (``hosts/fast_decoder.py``) run on the wrapped HF modules
for Llama / Qwen2 / Qwen3, and, for other architectures, the wrapped HF model's own ``generate``
with one torch hook on the decoder layer (forced here with the ``hf_generate_path`` fixture).
``generation.greedy_batch_states`` / ``last_states_batch`` are checked against the bridge's own
``greedy_batch`` (tokens), HF ``generate`` of each prompt alone on a fresh, un-bridged HF model
(tokens), an :class:`~tl_thinktok.probe.MIProbe` capture of ``blocks.{layer}.hook_out`` /
``probe.last_residuals_batch`` (states), and in float64 HF's own layer output (states, 1e-12).
Then the refusals (a TL hook, a user's torch hook on an HF module) and no leak on an exception.

Tolerances (float32): ``atol=1e-4, rtol=1e-5``, the room different matmul shapes and kernel order
need (the same states from each prompt generated alone differ by up to 6.1e-5 at |h| <= 38,
where one float32 ulp is 3.8e-6). float64: the decoder equals HF's own float64 forward (SDPA
attention) to 1e-12; the bridge's own forward is not float64 throughout (HF's eager attention,
which the bridge runs, takes the softmax in float32), so the probe there differs by ~2e-7.
"""

from __future__ import annotations

import copy

import pytest
import torch
from leaks import all_hooks  # tests/integration/leaks.py
from transformers import AutoModelForCausalLM

from tl_thinktok import generation, hosts, organism
from tl_thinktok.interventions.base import attach_all
from tl_thinktok.loading import load_model
from tl_thinktok.loading.models import bundled_model_dir
from tl_thinktok.probe import MIProbe, last_residuals_batch

N_NEW = 24
ATOL, RTOL = 1e-4, 1e-5
TEXTS = [
    "Once upon a time there was",
    "So,",
    "Hmm, therefore the answer is \\boxed{42}. Okay, now I am",
    "The quick brown fox",
]
NAMES = ["qwen2", "llama", "organism"]


def _organism_texts() -> list[str]:
    """Prompts that end 0, ~4 and ~16 tokens before the organism's EOS (and one far from it)."""
    ps = organism.problems("test", 3, seed=0)
    q = [organism.prompt(p.question) for p in ps]
    t = [organism.reasoning_trace(p) for p in ps]
    return [
        q[0],
        q[1] + " " + t[1].rsplit("Therefore", 1)[0],
        q[2] + " " + t[2].rsplit("\\boxed{", 1)[0] + "\\boxed{",
        q[0] + " " + t[0],
    ]


@pytest.fixture(scope="module", params=NAMES)
def setup(request, qwen2_dir, llama_dir):
    """``(name, bridge, fresh HF reference, prompts)``; prompts of pairwise different lengths."""
    name = request.param
    if name == "organism":
        bridge, path = load_model("organism", host="bridge"), bundled_model_dir("organism")
    else:
        path = {"qwen2": qwen2_dir, "llama": llama_dir}[name]
        bridge = load_model(str(path), host="bridge")
    hf = AutoModelForCausalLM.from_pretrained(str(path), attn_implementation="eager").eval()
    texts = _organism_texts() if name == "organism" else TEXTS
    prompts = [generation.encode(bridge, t) for t in texts]
    assert len({len(p) for p in prompts}) == len(prompts), "prompt lengths must differ"
    return name, bridge, hf, prompts


def _hf_alone(hf, ids: list[int], eos: int | None, pad: int) -> list[int]:
    """HF greedy ``generate`` of one prompt (no padding), cut after its first EOS.

    ``eos_token_id`` goes as a keyword: a ``generation_config`` with ``eos_token_id=None`` would be
    refilled from the checkpoint's (transformers 5 fills every unset field from it).
    """
    x = torch.tensor([ids])
    with torch.no_grad():
        out = hf.generate(
            x,
            attention_mask=torch.ones_like(x),
            max_new_tokens=N_NEW,
            do_sample=False,
            eos_token_id=eos,
            pad_token_id=pad,
        )
    row = out[0, len(ids) :].tolist()
    return row[: row.index(eos) + 1] if eos is not None and eos in row else row


def _captured(bridge, prompts, layer: int):
    """``greedy_batch`` with an MIProbe at ``layer`` (MITrace's "capture" route)."""
    probe = MIProbe(layer)
    with attach_all(bridge, probe):
        gens = generation.greedy_batch(bridge, prompts, N_NEW)
    return gens, probe.pop_rows([len(g) for g in gens])


def _check_against_references(bridge, hf, prompts, layers) -> None:
    eos, pad = generation.eos_id(bridge), generation.pad_id(bridge)
    alone = [_hf_alone(hf, p, eos, pad) for p in prompts]
    for layer in layers:
        new, states = generation.greedy_batch_states(bridge, prompts, N_NEW, layer)
        assert new == generation.greedy_batch(bridge, prompts, N_NEW)
        assert new == alone
        gens, rows = _captured(bridge, prompts, layer)
        assert gens == new
        for h, ref, g in zip(states, rows, new, strict=True):
            assert h.shape == (len(g), hosts.d_model(bridge))
            torch.testing.assert_close(h, ref, atol=ATOL, rtol=RTOL)


def test_tokens_and_states_match_references(setup):
    name, bridge, hf, prompts = setup
    _check_against_references(bridge, hf, prompts, [0, -1])
    if name == "organism":  # the trained model really stops: some rows end at EOS, not all
        new, _ = generation.greedy_batch_states(bridge, prompts, N_NEW, -1)
        eos = generation.eos_id(bridge)
        stopped = [g for g in new if g[-1] == eos]
        assert 0 < len(stopped) < len(new)
        assert len({len(g) for g in stopped}) > 1 and all(eos not in g[:-1] for g in new)
        # stop_at_eos=False: every row runs N_NEW steps, through its EOS, as HF without an EOS
        free, _ = generation.greedy_batch_states(bridge, prompts, N_NEW, stop_at_eos=False)
        pad = generation.pad_id(bridge)
        assert free == [_hf_alone(hf, p, None, pad) for p in prompts]
        assert all(len(g) == N_NEW for g in free) and any(eos in g[:-1] for g in free)


def test_eos_forced_on_a_frequent_token(setup, monkeypatch):
    """EOS set to a token the model really emits early: rows stop there, the batch goes on."""
    _, bridge, hf, prompts = setup
    free, _ = generation.greedy_batch_states(bridge, prompts, N_NEW, stop_at_eos=False)
    frequent = free[0][2]  # row 0 emits it at step 2 at the latest
    tok = copy.deepcopy(bridge.tokenizer)
    tok.eos_token = tok.convert_ids_to_tokens(frequent)
    assert tok.eos_token_id == frequent
    monkeypatch.setattr(bridge, "tokenizer", tok)
    new, states = generation.greedy_batch_states(bridge, prompts, N_NEW, -1)
    assert len(new[0]) <= 3 and new[0][-1] == frequent
    assert any(len(g) > len(new[0]) for g in new)  # the other rows went on
    for g, f in zip(new, free, strict=True):  # each row: the free run cut at its first EOS
        assert g == (f[: f.index(frequent) + 1] if frequent in f else f)
    _check_against_references(bridge, hf, prompts, [-1])


def test_checkpoint_generation_config_ignored(setup, monkeypatch):
    """A generation config that changes HF's greedy output does not reach the fast decoder."""
    _, bridge, _, prompts = setup
    om = bridge.original_model
    cfg = copy.deepcopy(om.generation_config)
    cfg.no_repeat_ngram_size, cfg.repetition_penalty = 1, 5.0
    monkeypatch.setattr(om, "generation_config", cfg)
    want = generation.greedy_batch(bridge, prompts, N_NEW)
    new, _ = generation.greedy_batch_states(bridge, prompts, N_NEW)
    assert new == want and om.generation_config is cfg
    x = torch.tensor([prompts[0]])
    with torch.no_grad():  # the config matters to HF generate itself
        out = om.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=N_NEW)
    assert out[0, x.shape[1] :].tolist() != want[0]


@pytest.fixture
def hf_generate_path(monkeypatch):
    """Force the bridge's fallback (HF's own ``generate``), used for architectures the shared
    decoder does not implement: the tests below exercise that path on these stand-ins."""
    from tl_thinktok.hosts import bridge as bridge_mod

    monkeypatch.setattr(bridge_mod, "_hf_decoder_unsupported", lambda om: "forced by the test")


def test_bridge_booted_without_kv_fix(qwen2_dir, hf_generate_path):
    """A bridge booted outside load_model gets the KV-cache fix from the fast decoder itself."""
    from transformer_lens.model_bridge import TransformerBridge
    from transformers import PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast.from_pretrained(str(qwen2_dir))
    hf = AutoModelForCausalLM.from_pretrained(str(qwen2_dir), attn_implementation="eager").eval()
    raw = TransformerBridge.boot_transformers(str(qwen2_dir), hf_model=hf, tokenizer=tok).eval()
    assert not any(b.attn._forward_pre_hooks for b in raw.blocks)  # no fix yet
    ref = AutoModelForCausalLM.from_pretrained(str(qwen2_dir), attn_implementation="eager").eval()
    prompts = [[tok.bos_token_id] + tok(t, add_special_tokens=False)["input_ids"] for t in TEXTS]
    new, _ = generation.greedy_batch_states(raw, prompts, N_NEW)
    eos, pad = generation.eos_id(raw), generation.pad_id(raw)
    assert new == [_hf_alone(ref, p, eos, pad) for p in prompts]
    assert all(b.attn._forward_pre_hooks for b in raw.blocks)  # fix_kv_cache applied


def test_last_states_match_last_residuals(setup):
    _, bridge, _, prompts = setup
    for layer in (0, -1):
        fast = generation.last_states_batch(bridge, prompts, layer)
        ref = last_residuals_batch(bridge, prompts, layer)
        assert len(fast) == len(prompts)
        for h, r in zip(fast, ref, strict=True):
            torch.testing.assert_close(h, r, atol=ATOL, rtol=RTOL)


def test_refuses_with_tl_hooks_and_user_hooks(setup):
    _, bridge, _, prompts = setup
    before = all_hooks(bridge)
    assert generation.fast_decode_unsupported(bridge) is None
    name = hosts.resid_post_name(bridge, 0)
    with bridge.hooks(fwd_hooks=[(name, lambda x, hook: x)]):
        why = generation.fast_decode_unsupported(bridge)
        assert why is not None and "TransformerLens hooks" in why and name in why
        with pytest.raises(ValueError, match="TransformerLens hooks are attached"):
            generation.greedy_batch_states(bridge, prompts, 4)
        with pytest.raises(ValueError, match="TransformerLens hooks are attached"):
            generation.last_states_batch(bridge, prompts)
    with attach_all(bridge, MIProbe(-1)):  # a probe attached: refused as well
        with pytest.raises(ValueError, match="TransformerLens hooks are attached"):
            generation.greedy_batch_states(bridge, prompts, 4)
    mlp = bridge.blocks[0].original_component.mlp
    handle = mlp.register_forward_hook(lambda module, args, out: None)
    try:
        why = generation.fast_decode_unsupported(bridge)
        assert why is not None and "torch forward hooks" in why and "mlp" in why
        with pytest.raises(ValueError, match="torch forward hooks"):
            generation.greedy_batch_states(bridge, prompts, 4)
    finally:
        handle.remove()
    assert generation.fast_decode_unsupported(bridge) is None
    assert all_hooks(bridge) == before


def test_refuses_without_hf_model_or_with_processed_weights(setup, monkeypatch):
    _, bridge, _, prompts = setup

    def no_local_module(self):
        raise AttributeError("this driver exposes no nn.Module")  # as TL 4 for vLLM / Inspect

    # TL 3.9's __getattr__ answers original_model from __dict__ after the property raises
    getters = [no_local_module] if hosts.tl_version()[0] >= 4 else []
    for getter in [*getters, lambda self: None]:
        with monkeypatch.context() as mp:
            mp.setattr(type(bridge), "original_model", property(getter))
            with pytest.raises(ValueError, match="no local HF model"):
                generation.greedy_batch_states(bridge, prompts, 2)
    with monkeypatch.context() as mp:
        mp.setattr(bridge, "compatibility_mode", True)
        with pytest.raises(ValueError, match="compatibility mode"):
            generation.last_states_batch(bridge, prompts)
    assert generation.fast_decode_unsupported(bridge) is None


def test_no_leak_on_exception(setup, monkeypatch, hf_generate_path):
    _, bridge, _, prompts = setup
    om = bridge.original_model
    generation.greedy_batch_states(bridge, prompts[:1], 1)  # the bridge wires its own hooks
    before, before_hf, counts = all_hooks(bridge), all_hooks(om), hosts.hook_counts(bridge)
    gen_cfg = om.generation_config

    def boom(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(om, "generate", boom)
    with pytest.raises(RuntimeError, match="boom"):
        generation.greedy_batch_states(bridge, prompts, 4)
    monkeypatch.setattr(om, "forward", boom)
    with pytest.raises(RuntimeError, match="boom"):
        generation.last_states_batch(bridge, prompts)
    monkeypatch.undo()
    assert all_hooks(bridge) == before and all_hooks(om) == before_hf
    assert hosts.hook_counts(bridge) == counts == {}
    assert om.generation_config is gen_cfg
    assert generation.fast_decode_unsupported(bridge) is None


def test_float64_unequal_lengths_decoded_in_groups(qwen2_dir, monkeypatch, hf_generate_path):
    """float64 + left padding is NaN upstream (HF eager softmax in float32): equal-length groups.

    Each row equals HF float64 ``generate`` alone, and its states the probe on the prompt alone
    (no padding, so no NaN there) to float64 round-off; with an EOS the groups stop at different
    steps and are put back together row by row.
    """
    bridge = load_model(str(qwen2_dir), host="bridge", dtype=torch.float64)
    hf = AutoModelForCausalLM.from_pretrained(
        str(qwen2_dir), dtype=torch.float64, attn_implementation="eager"
    ).eval()
    prompts = [generation.encode(bridge, t) for t in TEXTS[:3]] + [generation.encode(bridge, "So,")]
    new, states = generation.greedy_batch_states(bridge, prompts, N_NEW, -1, stop_at_eos=False)
    pad = generation.pad_id(bridge)
    assert new == [_hf_alone(hf, p, None, pad) for p in prompts]
    for p, g, h in zip(prompts, new, states, strict=True):
        assert h.dtype == torch.float64 and not h.isnan().any()
        probe = MIProbe(-1)
        with attach_all(bridge, probe):
            assert generation.greedy_batch(bridge, [p], N_NEW, stop_at_eos=False) == [g]
        torch.testing.assert_close(h, probe.pop_rows([len(g)])[0], atol=1e-10, rtol=1e-10)
    # EOS forced on a token that row 1 emits at step 2 at the latest
    eos = new[1][2]
    tok = copy.deepcopy(bridge.tokenizer)
    tok.eos_token = tok.convert_ids_to_tokens(eos)
    monkeypatch.setattr(bridge, "tokenizer", tok)
    stopped, cut = generation.greedy_batch_states(bridge, prompts, N_NEW, -1)
    assert stopped == [_hf_alone(hf, p, eos, pad) for p in prompts]
    assert len({len(g) for g in stopped}) > 1
    for g, h, ref in zip(stopped, cut, states, strict=True):
        torch.testing.assert_close(h, ref[: len(g)], atol=1e-10, rtol=1e-10)
    ys = generation.last_states_batch(bridge, prompts, -1)
    for y, r in zip(ys, last_residuals_batch(bridge, prompts, -1), strict=True):
        assert not y.isnan().any()
        torch.testing.assert_close(y, r, atol=1e-10, rtol=1e-10)


def test_refuses_with_sae_spliced(qwen2_dir, sae_lens):
    """sae-lens's SAETransformerBridge with an SAE at the last block: refused, naming the SAE."""
    from transformers import PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast.from_pretrained(str(qwen2_dir))
    hf = AutoModelForCausalLM.from_pretrained(str(qwen2_dir), attn_implementation="eager").eval()
    m = sae_lens.SAETransformerBridge.boot_transformers(str(qwen2_dir), hf_model=hf, tokenizer=tok)
    assert generation.fast_decode_unsupported(m) is None
    cfg = sae_lens.StandardSAEConfig(d_in=hosts.d_model(m), d_sae=2 * hosts.d_model(m))
    cfg.metadata.hook_name = hosts.resid_post_name(m, -1)
    m.add_sae(sae_lens.StandardSAE(cfg).eval())
    why = generation.fast_decode_unsupported(m)
    assert why is not None and "SAE" in why
    with pytest.raises(ValueError, match="SAEs are attached"):
        generation.greedy_batch_states(m, [[1, 40, 41]], 2)


def _hf_layer_out(hf, ids: list[int], layer: int) -> torch.Tensor:
    """HF's own decoder-layer output ``[pos, d]`` for one sequence (a torch hook, removed)."""
    cap: list[torch.Tensor] = []

    def keep(module, args, out):
        cap.append(out[0] if isinstance(out, tuple) else out)

    handle = hf.model.layers[layer].register_forward_hook(keep)
    try:
        with torch.no_grad():
            hf(torch.tensor([ids]))
    finally:
        handle.remove()
    return cap[0][0]


def test_float64_decoder_path_equals_hf_layers(qwen2_dir):
    """The shared decoder on the bridge's HF modules, float64, prompts of unequal lengths (left
    padding: no NaN, each row decoded as HF's own forward of that prompt alone)."""
    bridge = load_model(str(qwen2_dir), host="bridge", dtype=torch.float64)
    # HF's SDPA attention keeps float64 (its eager attention takes the softmax in float32)
    hf = AutoModelForCausalLM.from_pretrained(
        str(qwen2_dir), dtype=torch.float64, attn_implementation="sdpa"
    ).eval()
    prompts = [generation.encode(bridge, t) for t in TEXTS]
    assert len({len(p) for p in prompts}) > 1
    pad = generation.pad_id(bridge)
    for layer in (0, -1):
        new, states = generation.greedy_batch_states(
            bridge, prompts, N_NEW, layer, stop_at_eos=False
        )
        assert new == [_hf_alone(hf, p, None, pad) for p in prompts]
        for p, g, h in zip(prompts, new, states, strict=True):
            ref = _hf_layer_out(hf, p + g[:-1], layer)[len(p) - 1 :]
            assert float((h - ref).abs().max() / ref.abs().max()) <= 1e-12
        ys = generation.last_states_batch(bridge, prompts, layer)
        for p, y in zip(prompts, ys, strict=True):
            ref = _hf_layer_out(hf, p, layer)[-1]
            assert float((y - ref).abs().max() / ref.abs().max()) <= 1e-12
