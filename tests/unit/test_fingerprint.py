"""model_fingerprint: resumable runs are keyed on the weights, not only on the model's name."""

from __future__ import annotations

import json

import pytest

from tl_thinktok.loading import model_fingerprint
from tl_thinktok.loading import models as loading
from tl_thinktok.reproduce import ExpContext, accuracy_run


@pytest.fixture
def model_dir(tmp_path):
    d = tmp_path / "m"
    d.mkdir()
    (d / "config.json").write_text(json.dumps({"model_type": "qwen2"}))
    (d / "model.safetensors").write_bytes(bytes(range(256)) * 64)
    (d / "tokenizer.json").write_text("{}")
    return d


def _flip(path, offset):
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def test_fingerprint_tracks_weights_config_and_tokenizer(model_dir):
    fp = model_fingerprint(model_dir)
    assert fp == model_fingerprint(str(model_dir)) and len(fp) == 16
    (model_dir / "README.md").write_text("notes")  # not part of the model
    assert model_fingerprint(model_dir) == fp
    _flip(model_dir / "model.safetensors", 5000)
    fp_w = model_fingerprint(model_dir)
    assert fp_w != fp
    (model_dir / "config.json").write_text(json.dumps({"model_type": "llama"}))
    fp_c = model_fingerprint(model_dir)
    assert fp_c not in (fp, fp_w)
    (model_dir / "tokenizer.json").write_text('{"v": 1}')
    assert model_fingerprint(model_dir) not in (fp, fp_w, fp_c)


def test_large_files_hash_head_tail_and_size(model_dir, monkeypatch):
    monkeypatch.setattr(loading, "_FULL_HASH_BYTES", 1000)
    w = model_dir / "model.safetensors"  # 16 KiB > 1000 bytes: head/tail sampled
    w.write_bytes(bytes(3 * 2**20))
    fp = model_fingerprint(model_dir)
    _flip(w, 3 * 2**20 - 1)  # inside the last MiB
    assert model_fingerprint(model_dir) != fp
    _flip(w, 3 * 2**20 - 1)
    _flip(w, 3 * 2**19)  # the middle is not read (documented)
    assert model_fingerprint(model_dir) == fp
    w.write_bytes(bytes(3 * 2**20 + 1))  # size changes
    assert model_fingerprint(model_dir) != fp


def test_names_and_bundled_models():
    assert model_fingerprint("owner/model").startswith("id-")
    assert model_fingerprint("owner/model") != model_fingerprint("owner/other")
    bundled = loading.bundled_model_dir("organism")
    assert model_fingerprint("organism") == model_fingerprint(bundled)
    assert not model_fingerprint("organism").startswith("id-")
    for bad in (None, 3, ""):
        with pytest.raises(TypeError, match="model name or path"):
            model_fingerprint(bad)


def test_accuracy_runs_change_directory_when_weights_change(model_dir, tmp_path):
    ctx = ExpContext(model=str(model_dir), run_dir=tmp_path / "runs", out=tmp_path / "out")
    first = accuracy_run(ctx, "suppression", {"k": 1}).path
    assert accuracy_run(ctx, "suppression", {"k": 1}).path == first  # same weights: resume
    _flip(model_dir / "model.safetensors", 7)
    assert accuracy_run(ctx, "suppression", {"k": 1}).path != first
