"""load_model parity with HuggingFace: random-weight Qwen2 / Qwen3 / Llama checkpoints, both hosts.

The HF model is the outside reference: logits must agree within 1e-4 (float32) and greedy
generation (KV cache on and off) must agree token for token with ``transformers`` ``generate``.
"""

from __future__ import annotations

import copy

import pytest
import torch

from tl_thinktok.loading import load_model

PROMPTS = ["Once upon a time there was", "So, let me compute 3 + 4 step by step."]
N_NEW = 32
ARCHS = ["qwen2", "llama", "qwen3"]
HOSTS = ["hooked", "bridge"]


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Tiny models run faster on one thread (no OpenMP spinning on a busy 2-core box)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def arch_dirs(qwen2_dir, llama_dir, random_model_dir):
    return {"qwen2": qwen2_dir, "llama": llama_dir, "qwen3": random_model_dir("qwen3")}


@pytest.fixture(scope="module")
def hf_pair(arch_dirs):
    """``get(arch) -> (hf_model, hf_tokenizer)`` (cached)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cache: dict = {}

    def get(arch):
        if arch not in cache:
            path = arch_dirs[arch]
            hf = AutoModelForCausalLM.from_pretrained(
                str(path), dtype=torch.float32, attn_implementation="eager"
            ).eval()
            cache[arch] = (hf, AutoTokenizer.from_pretrained(str(path)))
        return cache[arch]

    return get


@pytest.fixture(scope="module")
def tl_model(arch_dirs):
    cache: dict = {}

    def get(arch, host):
        if (arch, host) not in cache:
            cache[(arch, host)] = load_model(arch_dirs[arch], host=host)
        return cache[(arch, host)]

    return get


def _hf_greedy(hf, ids: torch.Tensor, n_new: int) -> torch.Tensor:
    gen_cfg = copy.deepcopy(hf.generation_config)
    gen_cfg.eos_token_id = None  # TL is asked not to stop at EOS either
    gen_cfg.pad_token_id = 0
    with torch.no_grad():
        out = hf.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            generation_config=gen_cfg,
            max_new_tokens=n_new,
            min_new_tokens=n_new,
            do_sample=False,
        )
    return out


@pytest.mark.parametrize("host", HOSTS)
@pytest.mark.parametrize("arch", ARCHS)
def test_logits_match_hf(arch, host, hf_pair, tl_model):
    hf, tok = hf_pair(arch)
    model = tl_model(arch, host)
    assert model.thinktok_info.architecture == hf.config.architectures[0]
    assert model.thinktok_info.host == host
    cfg = hf.config
    assert model.cfg.n_layers == cfg.num_hidden_layers
    assert model.cfg.n_heads == cfg.num_attention_heads
    assert cfg.num_key_value_heads < cfg.num_attention_heads  # the fixtures exercise GQA
    for text in PROMPTS:
        ids = tok(text, return_tensors="pt").input_ids
        # Same BOS handling as HF: the stand-in tokenizer (like Qwen's) adds no BOS.
        assert torch.equal(model.to_tokens(text).cpu(), ids)
        with torch.no_grad():
            ref = hf(ids).logits
            got = model(ids)
        assert got.shape == ref.shape
        err = (got.float() - ref).abs().max().item()
        assert err < 1e-4, f"{arch}/{host}: max |logit diff| {err:.2e}"


@pytest.mark.parametrize("host", HOSTS)
@pytest.mark.parametrize("arch", ARCHS)
def test_greedy_generation_matches_hf(arch, host, hf_pair, tl_model):
    hf, tok = hf_pair(arch)
    model = tl_model(arch, host)
    ids = tok(PROMPTS[0], return_tensors="pt").input_ids
    ref = _hf_greedy(hf, ids, N_NEW)
    assert ref.shape[1] == ids.shape[1] + N_NEW
    assert len(set(ref[0, ids.shape[1] :].tolist())) > 3, "degenerate reference generation"
    for use_cache in (True, False):
        out = model.generate(
            ids,
            max_new_tokens=N_NEW,
            do_sample=False,
            stop_at_eos=False,
            use_past_kv_cache=use_cache,
            verbose=False,
        )
        assert torch.equal(out.cpu(), ref), f"{arch}/{host} use_past_kv_cache={use_cache}"


@pytest.mark.parametrize("host", HOSTS)
def test_generate_from_string_decodes_like_hf(host, hf_pair, tl_model):
    hf, tok = hf_pair("qwen2")
    model = tl_model("qwen2", host)
    ids = tok(PROMPTS[1], return_tensors="pt").input_ids
    ref = _hf_greedy(hf, ids, 8)
    text = model.generate(
        PROMPTS[1], max_new_tokens=8, do_sample=False, stop_at_eos=False, verbose=False
    )
    assert isinstance(text, str)
    assert text == tok.decode(ref[0])
