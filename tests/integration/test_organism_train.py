"""The organism trainer end to end: the ``--smoke`` CLI run, determinism, and early stopping."""

from __future__ import annotations

import json
from dataclasses import replace

import torch
from safetensors.torch import load_file

from tl_thinktok.organism import train as ot


def test_smoke_cli_writes_loadable_checkpoints(tmp_path):
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

    assert ot.main(["--smoke", "--out", str(tmp_path)]) == 0
    for name, style in (("organism", "reasoning"), ("organism-base", "base")):
        d = tmp_path / name
        metrics = json.loads((d / "training_metrics.json").read_text())
        assert metrics["style"] == style and metrics["steps_done"] == ot.SMOKE["steps"]
        losses = [row["loss"] for row in metrics["curve"]]
        assert losses[-1] < losses[0]
        assert (d / "special_tokens_map.json").is_file()
        model = AutoModelForCausalLM.from_pretrained(str(d))
        tok = PreTrainedTokenizerFast.from_pretrained(str(d))
        assert model.config.vocab_size == len(tok)
        assert model.config.architectures == ["Qwen2ForCausalLM"]
        assert ("acceptance" in metrics) == (style == "reasoning")
    acc = metrics_r = json.loads((tmp_path / "organism" / "training_metrics.json").read_text())
    assert set(metrics_r["acceptance"]) == {"k5"}
    assert len(acc["acceptance"]["k5"]["random_ban"]) == 3


def _tiny(**kw):
    base = replace(ot.TrainConfig(style="base"), **ot.SMOKE)
    return replace(base, steps=6, eval_every=1000, eval_n=2, max_new_tokens=4, **kw)


def test_training_is_deterministic_and_stop_step_stops(tmp_path):
    ot.train(_tiny(), tmp_path / "a", verbose=False)
    ot.train(_tiny(), tmp_path / "b", verbose=False)
    m = ot.train(_tiny(bucket=False, stop_step=3), tmp_path / "c", verbose=False)
    a = load_file(str(tmp_path / "a" / "model.safetensors"))
    b = load_file(str(tmp_path / "b" / "model.safetensors"))
    c = load_file(str(tmp_path / "c" / "model.safetensors"))
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)
    assert m["steps_done"] == 3 and m["stopped_early"]
