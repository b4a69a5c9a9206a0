"""load_model parity with HuggingFace: random-weight Qwen2 / Qwen3 / Llama checkpoints, both hosts.

The HF model is the outside reference: logits must agree within 1e-4 (float32) and greedy
generation (KV cache on and off) must agree token for token with ``transformers`` ``generate``.
"""

from __future__ import annotations

import copy

import pytest
import torch

from tl_thinktok.hosts import supported_hosts
from tl_thinktok.loading import load_model

PROMPTS = ["Once upon a time there was", "So, let me compute 3 + 4 step by step."]
N_NEW = 32
ARCHS = ["qwen2", "llama", "qwen3"]
HOSTS = list(supported_hosts())  # hooked + bridge on TL 3.x, bridge on TL 4.x


@pytest.fixture(scope="module")
def arch_dirs(qwen2_dir, llama_dir, random_model_dir):
    return {"qwen2": qwen2_dir, "llama": llama_dir, "qwen3": random_model_dir("qwen3")}


@pytest.fixture(scope="module")
def hf_pair(arch_dirs):
    """``get(arch) -> (hf_model, hf_tokenizer)`` (cached)."""
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

    cache: dict = {}

    def get(arch):
        if arch not in cache:
            path = arch_dirs[arch]
            hf = AutoModelForCausalLM.from_pretrained(
                str(path), dtype=torch.float32, attn_implementation="eager"
            ).eval()
            # The stand-ins save a generic tokenizer.json (tokenizer_class PreTrainedTokenizerFast);
            # transformers 5's AutoTokenizer would swap in the model_type's class and re-tokenise.
            cache[arch] = (hf, PreTrainedTokenizerFast.from_pretrained(str(path)))
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


@pytest.fixture(scope="module")
def qwen3_wide_head_dir(tmp_path_factory):
    """Qwen3 with head_dim * n_heads != hidden_size (as in real Qwen3 checkpoints)."""
    import transformers

    from tl_thinktok.testing.models import make_tokenizer

    path = tmp_path_factory.mktemp("qwen3_wide_head")
    tok = make_tokenizer(path)
    cfg = transformers.Qwen3Config(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=32,
        max_position_embeddings=512,
        initializer_range=0.2,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    torch.manual_seed(1)
    transformers.Qwen3ForCausalLM(cfg).eval().save_pretrained(str(path))
    return path


@pytest.mark.parametrize("host", HOSTS)
def test_qwen3_head_dim_not_d_model_over_heads(host, qwen3_wide_head_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    hf = AutoModelForCausalLM.from_pretrained(
        str(qwen3_wide_head_dir), attn_implementation="eager"
    ).eval()
    tok = AutoTokenizer.from_pretrained(str(qwen3_wide_head_dir))
    model = load_model(qwen3_wide_head_dir, host=host)
    assert model.cfg.d_head == 32
    ids = tok(PROMPTS[1], return_tensors="pt").input_ids
    with torch.no_grad():
        err = (model(ids).float() - hf(ids).logits).abs().max().item()
    assert err < 1e-4
    ref = _hf_greedy(hf, ids, N_NEW)
    out = model.generate(
        ids,
        max_new_tokens=N_NEW,
        do_sample=False,
        stop_at_eos=False,
        use_past_kv_cache=True,
        verbose=False,
    )
    assert torch.equal(out.cpu(), ref)
