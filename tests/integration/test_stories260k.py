"""stories260K (a genuinely trained llama2.c model) through load_model, against outside oracles.

Oracles: (1) the text llama2.c's own ``run.c`` printed (tests/integration/data/, see README there);
(2) a float64 NumPy re-implementation of llama2.c's forward pass (adjacent-pair RoPE, as in run.c),
written here independently of ``tl_thinktok.loading.llama2c``.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from tl_thinktok.hosts import supported_hosts
from tl_thinktok.loading import bundled_model_dir, load_model

DATA = Path(__file__).parent / "data"
REFERENCE = (DATA / "stories260k_reference_greedy_once_upon_a_time.txt").read_text()
PROMPT = "Once upon a time"
STEPS = 120  # run.c -n 120: the sequence after BOS holds 120 tokens, prompt included


@pytest.fixture(scope="module", params=list(supported_hosts()))
def model(request):
    return load_model("stories260k", host=request.param)


def _run_c_generate(model) -> str:
    tokens = model.to_tokens(PROMPT)
    assert tokens[0, 0].item() == 1, "llama2.c prompts start with BOS"
    n_new = STEPS + 1 - tokens.shape[1]
    out = model.generate(
        tokens,
        max_new_tokens=n_new,
        do_sample=False,
        stop_at_eos=False,
        use_past_kv_cache=True,
        verbose=False,
    )
    new = out[0, tokens.shape[1] :].tolist()
    assert 1 not in new, "run.c stops at BOS; the reference ran all 120 steps"
    return model.tokenizer.decode(out[0], skip_special_tokens=True)


def test_greedy_generation_reproduces_run_c(model):
    assert model.cfg.default_prepend_bos is True
    text = _run_c_generate(model)
    # run.c prints a final newline after the last token.
    assert text + "\n" == REFERENCE


def _read_checkpoint_f64(path: Path):
    raw = path.read_bytes()
    dim, hidden, n_layers, n_heads, n_kv, vocab, seq_len = struct.unpack("<7i", raw[:28])
    floats = np.frombuffer(raw[28:], dtype="<f4").astype(np.float64)
    kv_dim = dim * n_kv // n_heads
    sizes = {
        "emb": (vocab, dim),
        "rms_att": (n_layers, dim),
        "wq": (n_layers, dim, dim),
        "wk": (n_layers, kv_dim, dim),
        "wv": (n_layers, kv_dim, dim),
        "wo": (n_layers, dim, dim),
        "rms_ffn": (n_layers, dim),
        "w1": (n_layers, hidden, dim),
        "w2": (n_layers, dim, hidden),
        "w3": (n_layers, hidden, dim),
        "rms_final": (dim,),
    }
    w, off = {}, 0
    for name, shape in sizes.items():
        n = int(np.prod(shape))
        w[name] = floats[off : off + n].reshape(shape)
        off += n
    return (dim, n_layers, n_heads, n_kv), w


def _reference_logits(tokens: list[int]) -> np.ndarray:
    """llama2.c forward (run.c semantics) in float64: RMSNorm eps 1e-5, adjacent-pair RoPE."""
    (dim, n_layers, n_heads, n_kv), w = _read_checkpoint_f64(
        bundled_model_dir("stories260k") / "checkpoint_legacy.bin"
    )
    hs = dim // n_heads
    T = len(tokens)

    def rms(x, g):
        return g * x / np.sqrt((x * x).mean(-1, keepdims=True) + 1e-5)

    def rope(x):  # x: [T, heads, hs]; rotate pairs (2i, 2i+1) by pos * 10000^(-2i/hs)
        pos = np.arange(T)[:, None]
        freq = 10000.0 ** (-np.arange(0, hs, 2) / hs)
        ang = pos * freq[None, :]
        cos, sin = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
        x0, x1 = x[..., 0::2], x[..., 1::2]
        out = np.empty_like(x)
        out[..., 0::2] = x0 * cos - x1 * sin
        out[..., 1::2] = x0 * sin + x1 * cos
        return out

    x = w["emb"][tokens]
    mask = np.triu(np.full((T, T), -np.inf), 1)
    for layer in range(n_layers):
        h = rms(x, w["rms_att"][layer])
        q = rope((h @ w["wq"][layer].T).reshape(T, n_heads, hs))
        k = rope((h @ w["wk"][layer].T).reshape(T, n_kv, hs))
        v = (h @ w["wv"][layer].T).reshape(T, n_kv, hs)
        rep = n_heads // n_kv
        k, v = np.repeat(k, rep, axis=1), np.repeat(v, rep, axis=1)
        att = np.einsum("qhd,khd->hqk", q, k) / np.sqrt(hs) + mask
        att = np.exp(att - att.max(-1, keepdims=True))
        att /= att.sum(-1, keepdims=True)
        o = np.einsum("hqk,khd->qhd", att, v).reshape(T, dim)
        x = x + o @ w["wo"][layer].T
        h = rms(x, w["rms_ffn"][layer])
        a, b = h @ w["w1"][layer].T, h @ w["w3"][layer].T
        x = x + ((a / (1 + np.exp(-a))) * b) @ w["w2"][layer].T
    return rms(x, w["rms_final"]) @ w["emb"].T


def test_logits_match_float64_llama2c_forward(model):
    tokens = model.to_tokens(PROMPT + ", there was a little girl")
    ref = _reference_logits(tokens[0].tolist())
    with torch.no_grad():
        got = model(tokens)[0].double().cpu().numpy()
    assert got.shape == ref.shape
    assert np.abs(got - ref).max() < 1e-4


def test_load_from_explicit_paths_matches_bundled(tmp_path):
    src = bundled_model_dir("stories260k")
    ckpt = tmp_path / "model.bin"
    ckpt.write_bytes((src / "checkpoint_legacy.bin").read_bytes())
    model = load_model(ckpt, tokenizer=src / "tokenizer.bin")
    assert model.thinktok_info.path == str(ckpt.resolve())
    tokens = model.to_tokens(PROMPT)
    ref = _reference_logits(tokens[0].tolist())
    with torch.no_grad():
        got = model(tokens)[0].double().numpy()
    assert np.abs(got - ref).max() < 1e-4
