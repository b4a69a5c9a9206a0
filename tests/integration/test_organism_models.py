"""The bundled model organisms: files, offline loading on both TransformerLens hosts, greedy
generations (checked against the HF model's own greedy decoding) and thinking-word dependence."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tl_thinktok import organism
from tl_thinktok.hosts import supported_hosts
from tl_thinktok.organism import train as ot

MODELS = Path(organism.__file__).resolve().parent.parent / "assets" / "models"
NAMES = ("organism", "organism-base")
FILES = (
    "config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "training_metrics.json",
)


@pytest.fixture(scope="module")
def hf_pair():
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

    out = {}
    for name in NAMES:
        path = MODELS / name
        model = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32).eval()
        out[name] = (model, PreTrainedTokenizerFast.from_pretrained(str(path)))
    return out


def test_bundled_files_and_same_architecture():
    configs = {}
    for name in NAMES:
        for f in FILES:
            assert (MODELS / name / f).is_file(), f"{name}/{f} missing"
        configs[name] = json.loads((MODELS / name / "config.json").read_text())
        assert configs[name]["architectures"] == ["Qwen2ForCausalLM"]
        metrics = json.loads((MODELS / name / "training_metrics.json").read_text())
        curve = metrics["curve"]
        assert len(curve) >= 5 and curve[-1]["loss"] < curve[0]["loss"] / 4
        assert 0.0 <= metrics["final"]["test_accuracy"] <= 1.0
    keys = [
        "hidden_size",
        "num_hidden_layers",
        "num_attention_heads",
        "num_key_value_heads",
        "intermediate_size",
        "vocab_size",
        "tie_word_embeddings",
    ]
    assert [configs["organism"][k] for k in keys] == [configs["organism-base"][k] for k in keys]
    total = sum((MODELS / n / "model.safetensors").stat().st_size for n in NAMES)
    assert total <= 25 * 2**20


def test_bundled_tokenizer_is_the_organism_tokenizer(hf_pair):
    ref = organism.tokenizer()
    text = "".join(organism.training_text(organism.problems("test", 1, seed=9)[0], "reasoning"))
    for name in NAMES:
        tok = hf_pair[name][1]
        assert tok.get_vocab() == ref.get_vocab()
        assert tok(text)["input_ids"] == ref(text)["input_ids"]


def _tl_greedy(model, ids: list[int], n_new: int, eos: int) -> list[int]:
    out = list(ids)
    with torch.no_grad():
        for _ in range(n_new):
            logits = model(torch.tensor([out]))
            nxt = int(logits[0, -1].argmax())
            if nxt == eos:
                break
            out.append(nxt)
    return out[len(ids) :]


@pytest.mark.parametrize("host", list(supported_hosts()))
def test_load_model_generates_like_hf(host, hf_pair):
    from tl_thinktok.loading import load_model

    hf, tok = hf_pair["organism"]
    model = load_model("organism", host=host)
    probs = organism.problems("test", 1, seed=4)
    ref = ot.greedy_generate(hf, tok, [organism.prompt(p.question) for p in probs])
    for p, (ref_text, n_new) in zip(probs, ref, strict=True):
        ids = tok(organism.prompt(p.question), add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            tl_logits = model(torch.tensor([ids]))
            hf_logits = hf(torch.tensor([ids])).logits
        torch.testing.assert_close(tl_logits, hf_logits, atol=1e-3, rtol=1e-3)
        gen = _tl_greedy(model, ids, 40, tok.eos_token_id)  # first 40 greedy tokens
        assert gen == tok(ref_text, add_special_tokens=False)["input_ids"][:40]
        text = ref_text
        assert n_new > 40
        assert text.startswith("<think>") and "</think>" in text
        assert text.rstrip().endswith("}")
        assert organism.extract_answer(text.split("</think>")[-1]) is not None


def test_reasoning_organism_accuracy_and_thinking_dependence(hf_pair):
    pair = hf_pair["organism"]
    tok = pair[1]
    ev = {"n": 30, "seed": 11, "max_new_tokens": 300}
    plain = ot.evaluate(pair, **ev)
    assert plain.well_formed == 1.0
    assert plain.accuracy >= 0.5  # the organism is imperfect by design (60-95%)
    think = ot.evaluate(pair, ban_ids=ot.thinking_ids(tok, 5), **ev)
    rand = ot.evaluate(pair, ban_ids=ot.random_ids(tok, 5, 1000), **ev)
    assert think.accuracy <= plain.accuracy - 0.3
    assert rand.accuracy >= think.accuracy + 0.3
    for sample in plain.samples:
        assert sample["completion"].startswith("<think> Okay")


def test_base_organism_is_terse(hf_pair):
    pair = hf_pair["organism-base"]
    r = ot.evaluate(pair, n=20, seed=12, max_new_tokens=80)
    assert r.well_formed >= 0.9
    for s in r.samples:
        assert "<think>" not in s["completion"]
        words = set(s["completion"].replace(",", " ").split())
        assert not words & set(organism.THINKING_WORDS[:8])
