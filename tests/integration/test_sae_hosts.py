"""sae-lens's SAE models as hosts: ``HookedSAETransformer`` and ``SAETransformerBridge``.

An SAE spliced into the last block's output, MIProbe + SuppressTokens attached, greedy cached
generation; the outside reference is HF ``generate`` (``suppress_tokens``) with the same SAE
applied to the HF decoder layer's output by a plain torch forward hook. Needs the ``[sae]`` extra
(TransformerLens 3.x); skipped with the reason without it (``sae_lens`` fixture, tests/conftest.py).
"""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM

from tl_thinktok import hosts
from tl_thinktok.interventions.suppress import SuppressTokens
from tl_thinktok.loading import keep_tokenizer_class, load_model
from tl_thinktok.probe import MIProbe

PROMPT = [1, 40, 41, 42, 43, 44, 45]
N_NEW = 10


def _random_sae(sae_lens, d_model: int, hook_name: str):
    cfg = sae_lens.StandardSAEConfig(d_in=d_model, d_sae=2 * d_model)
    cfg.metadata.hook_name = hook_name
    sae = sae_lens.StandardSAE(cfg)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in sae.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    return sae.eval()


def _sae_model(kind: str, sae_lens, qwen2_dir):
    base = load_model(str(qwen2_dir), host=kind)
    if kind == "hooked":
        m = sae_lens.HookedSAETransformer(base.cfg, tokenizer=base.tokenizer)
        m.load_state_dict(base.state_dict(), strict=False)
    else:
        # a fresh HF model: a booted bridge rewires the HF module tree it wraps
        hf = AutoModelForCausalLM.from_pretrained(str(qwen2_dir), attn_implementation="eager")
        m = sae_lens.SAETransformerBridge.boot_transformers(
            str(qwen2_dir), hf_model=hf.eval(), tokenizer=base.tokenizer
        )
        keep_tokenizer_class(m, base.tokenizer)
        hosts.fix_bridge_kv_cache(m)  # sae-lens boots its own bridge: apply the KV-cache fix
    m.eval()
    last = hosts.n_layers(m) - 1
    plain_name = hosts.resid_post_name(m, last)
    sae = _random_sae(sae_lens, hosts.d_model(m), plain_name)
    m.add_sae(sae)
    return m, sae


def _hf_reference(qwen2_dir, sae, banned):
    hf = AutoModelForCausalLM.from_pretrained(str(qwen2_dir), attn_implementation="eager").eval()

    def splice(module, args, out):
        if isinstance(out, tuple):
            return (sae(out[0]), *out[1:])
        return sae(out)

    handle = hf.model.layers[-1].register_forward_hook(splice)
    try:
        with torch.no_grad():
            out = hf.generate(
                torch.tensor([PROMPT]), max_new_tokens=N_NEW, min_new_tokens=N_NEW,
                do_sample=False, suppress_tokens=banned, pad_token_id=0,
            )  # fmt: skip
    finally:
        handle.remove()
    return out[0, len(PROMPT) :].tolist()


@pytest.mark.parametrize("kind", ["hooked", "bridge"])
def test_sae_model_with_probe_and_suppress_equals_hf(kind, sae_lens, qwen2_dir):
    if kind not in hosts.supported_hosts():
        pytest.skip(f"host {kind!r} is not in this TransformerLens")
    m, sae = _sae_model(kind, sae_lens, qwen2_dir)
    name = hosts.resid_post_name(m, -1)
    assert name.endswith(".hook_sae_output")  # the stream the model reads downstream
    banned = [PROMPT[-1], 7]
    probe, ban = MIProbe(-1), SuppressTokens(banned)
    with torch.no_grad(), probe.attach(m), ban.attach(m):
        out = m.generate(
            torch.tensor([PROMPT]), max_new_tokens=N_NEW, do_sample=False, stop_at_eos=False,
            verbose=False, use_past_kv_cache=True,
        )  # fmt: skip
    got = out[0, len(PROMPT) :].tolist()
    assert not set(got) & set(banned)
    assert got == _hf_reference(qwen2_dir, sae, banned)
    # the probe read the SAE's output: equal to sae-lens's own cache of a plain forward
    with torch.no_grad():
        _, cache = m.run_with_cache(out[:, :-1])
    ref = cache[name][0, len(PROMPT) - 1 :]
    assert (probe.residuals - ref).abs().max().item() <= 1e-5 * ref.abs().max().item()
    assert hosts.hook_counts(m) == {}
