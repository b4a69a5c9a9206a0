"""importance.py and counterfactual.py against definitions written here, on every host.

* entropy: ``−Σ p ln p`` of HF's own next-token softmax (float64) at each step;
* lens depth: per-layer argmax of ``lm_head(norm(hidden_state))`` from HF's ``hidden_states``
  (the last block: HF's logits), then the first block from which every later block agrees;
* counterfactual importance: a hand-made bigram model whose answer provably depends on one step.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from leaks import all_hooks  # tests/integration/leaks.py

from tl_thinktok import generation
from tl_thinktok.counterfactual import CounterfactualImportance, CounterfactualResult
from tl_thinktok.hosts import supported_hosts
from tl_thinktok.importance import (
    LayerStatesProbe,
    StepMeasures,
    lens_depth,
    step_measures,
    token_entropy,
)
from tl_thinktok.interventions.base import attach_all
from tl_thinktok.loading import load_model
from tl_thinktok.runs import RunDir

PROMPT = [1, 40, 41, 42, 43, 44, 45]


@pytest.fixture(scope="module")
def traces(model):
    """Two greedy traces of different lengths (tokens, prompt_len)."""
    out = []
    for p, n in ((PROMPT, 10), (PROMPT[:4], 7)):
        new = generation.greedy(model, p, n, stop_at_eos=False)
        out.append((p + new, len(p)))
    return out


def _hf_entropy(hf, tokens, prompt_len):
    with torch.no_grad():
        logits = hf(torch.tensor([tokens[:-1]])).logits[0, prompt_len - 1 :].double()
    p = torch.softmax(logits, -1)
    return -(p * torch.log(p)).nan_to_num().sum(-1).numpy()


def _hf_depth(hf, tokens, prompt_len):
    """Per-layer argmax through HF's final norm + lm_head, and the settling block by a loop."""
    with torch.no_grad():
        out = hf(torch.tensor([tokens[:-1]]), output_hidden_states=True)
        hs = out.hidden_states  # embeddings, block 0 … block L-1 (the last one already normed)
        n_layers = len(hs) - 1
        tops = []
        for layer in range(n_layers):
            if layer == n_layers - 1:
                logits = out.logits[0, prompt_len - 1 :]
            else:
                logits = hf.lm_head(hf.model.norm(hs[layer + 1][0, prompt_len - 1 :]))
            tops.append(logits.double().argmax(-1).tolist())
    depth = []
    for t in range(len(tops[0])):
        d = n_layers - 1
        while d > 0 and tops[d - 1][t] == tops[-1][t]:
            d -= 1
        depth.append(float(d))
    return np.array(depth)


def test_entropy_is_direct_softmax_entropy(model, hf, traces):
    got = token_entropy(model, traces)
    for (ids, p), h in zip(traces, got, strict=True):
        assert h.dtype == np.float64 and h.shape == (len(ids) - p,)
        np.testing.assert_allclose(h, _hf_entropy(hf, ids, p), rtol=1e-4, atol=1e-4)


def test_lens_depth_is_per_layer_argmax(model, hf, traces):
    got = lens_depth(model, traces)
    for (ids, p), d in zip(traces, got, strict=True):
        np.testing.assert_array_equal(d, _hf_depth(hf, ids, p))
        assert ((0 <= d) & (d <= model.cfg.n_layers - 1)).all()


def test_batched_equals_one_by_one_and_mitrace_input(model, traces):
    from tl_thinktok.trace import MITrace

    both = step_measures(model, traces)
    for tr, m in zip(traces, both, strict=True):
        alone = step_measures(model, [tr])[0]
        np.testing.assert_allclose(m.entropy, alone.entropy, atol=1e-5)
        np.testing.assert_array_equal(m.lens_depth, alone.lens_depth)
    ids, p = traces[0]
    mt = MITrace.from_tokens(model, ids, p, answer_rep=torch.ones(model.cfg.d_model))
    np.testing.assert_array_equal(step_measures(model, mt)[0].lens_depth, both[0].lens_depth)


def test_layer_states_probe_during_generate_equals_teacher_forced(model):
    probe = LayerStatesProbe()
    before = all_hooks(model)
    with attach_all(model, probe), torch.no_grad():
        out = model.generate(torch.tensor([PROMPT]), max_new_tokens=8, do_sample=False,
                             stop_at_eos=False, verbose=False)  # fmt: skip
    live = probe.measures(model)
    ref = step_measures(model, [(out[0].tolist(), len(PROMPT))])[0]
    np.testing.assert_allclose(live.entropy, ref.entropy, atol=1e-4)
    np.testing.assert_array_equal(live.lens_depth, ref.lens_depth)
    assert all_hooks(model) == before  # nothing leaks


def test_step_measures_roundtrip_and_plot(tmp_path, model, traces):
    import matplotlib

    matplotlib.use("Agg")
    m = step_measures(model, traces[:1])[0]
    back = StepMeasures.load(m.save(tmp_path / "m.json"))
    np.testing.assert_array_equal(back.lens_depth, m.lens_depth)
    assert 0.0 <= m.deep_ratio() <= 1.0
    assert m.plot() is not None


# ---------------------------------------------------------------- counterfactual importance

Q, CHAIN, KEY, W, A, A2, Z, W_ALT = 10, list(range(20, 26)), 3, 100, 101, 102, 103, 104
EOS = 2


def _bigram_table(vocab: int) -> torch.Tensor:
    """Next-token logits per current token: a top (10) and one alternative (5), the rest -1e4.

    Greedy from ``[<s>, Q]``: ``c0 c1 c2 c3 c4 c5 A </s>`` (steps 0-7). The one alternative at
    each step (the only token a replacement draw can pick: every other has probability 0 in
    float64) is:

    * steps 0-5 (``c_i``, i ≠ KEY): ``d_i``, whose greedy successor is ``c_{i+1}`` (or ``A``
      after the last): the continuation rejoins the chain, so ``A`` is still generated;
    * step KEY: ``W``, and ``W → W`` forever: ``A`` is never generated;
    * step 6 (``A``): ``A2`` (another spelling of the right answer), then ``</s>``;
    * step 7 (``</s>``): ``Z``, then ``</s>``; ``A`` is already there.

    The grader says correct iff ``A`` or ``A2`` is generated. Hence every resample is correct
    except at step KEY, where every resample is wrong: importance = 1 at KEY and 0 elsewhere,
    exactly, for any seed and any number of samples.
    """
    t = torch.full((vocab, vocab), -1e4)

    def rule(cur, top, alt):
        t[cur, top], t[cur, alt] = 10.0, 5.0

    d = [60 + i for i in range(len(CHAIN))]
    rule(Q, CHAIN[0], W if KEY == 0 else d[0])
    for i, c in enumerate(CHAIN):
        nxt = CHAIN[i + 1] if i + 1 < len(CHAIN) else A
        alt = W if i + 1 == KEY else (d[i + 1] if i + 1 < len(CHAIN) else A2)
        rule(c, nxt, alt)
        rule(d[i], nxt, W_ALT)
    rule(A, EOS, Z)
    rule(A2, EOS, Z)
    rule(Z, EOS, A2)
    rule(W, W, W_ALT)
    rule(W_ALT, W, Z)
    return t


@pytest.fixture(scope="module")
def bigram_dir(tmp_path_factory):
    """A 1-block Qwen2 that is exactly the bigram table: attention and MLP weights 0, one-hot
    embeddings (d_model = vocab), lm_head = table / sqrt(vocab) (the final RMSNorm scales a one-hot
    row by sqrt(vocab))."""
    from transformers import AutoModelForCausalLM

    from tl_thinktok.testing.models import make_random_hf_model

    path = tmp_path_factory.mktemp("bigram")
    make_random_hf_model(path, "qwen2", n_layers=1, d_model=384, n_heads=4, n_kv_heads=2, d_mlp=8)
    hf = AutoModelForCausalLM.from_pretrained(str(path))
    vocab = hf.config.vocab_size
    assert vocab == 384
    with torch.no_grad():
        for p in hf.model.layers.parameters():
            p.zero_()
        hf.model.embed_tokens.weight.copy_(torch.eye(vocab))
        hf.model.norm.weight.fill_(1.0)
        hf.lm_head.weight.copy_(_bigram_table(vocab).T / vocab**0.5)
    hf.save_pretrained(str(path))
    return path


@pytest.fixture(scope="module", params=list(supported_hosts()))
def bigram(request, bigram_dir):
    return load_model(str(bigram_dir), host=request.param)


def _grade(ids):
    return A in ids or A2 in ids


def _answer(ids):
    return "A" if (A in ids or A2 in ids) else None


def test_bigram_model_is_the_table(bigram):
    gen = generation.greedy(bigram, [1, Q], 8)
    assert gen == [*CHAIN, A, EOS]


def test_counterfactual_finds_the_one_step(bigram):
    prompt = [1, Q]
    gen = generation.greedy(bigram, prompt, 8)
    ci = CounterfactualImportance(n_samples=3, seed=7, batch_size=4)
    res = ci.estimate(bigram, prompt + gen, len(prompt), _grade, answer=_answer,
                      max_new_tokens=8)  # fmt: skip
    expected = np.zeros(len(gen))
    expected[KEY] = 1.0
    np.testing.assert_array_equal(res.importance, expected)
    np.testing.assert_array_equal(res.answer_change, expected)
    assert res.acc_original == 1.0
    assert res.replaced[KEY] == [W, W, W]
    assert res.importance.dtype == np.float64


def test_counterfactual_resumes_and_is_seeded(tmp_path, bigram, monkeypatch):
    prompt = [1, Q]
    ids = prompt + generation.greedy(bigram, prompt, 8)
    ci = CounterfactualImportance(n_samples=2, seed=1, batch_size=2)
    run = RunDir.open(tmp_path / "run", {**ci.config(), "test": 1})
    first = ci.estimate(bigram, ids, 2, _grade, steps=[1, KEY], run=run, key="t0")
    calls = []
    real = generation.greedy_batch
    monkeypatch.setattr(
        generation, "greedy_batch", lambda *a, **k: calls.append(1) or real(*a, **k)
    )
    reopened = RunDir.open(run.path, run.config)
    again = ci.estimate(bigram, ids, 2, _grade, steps=[1, KEY], run=reopened, key="t0")
    assert calls == []  # every step came from results.jsonl
    np.testing.assert_array_equal(first.importance, again.importance)
    assert first.replaced == again.replaced
    back = CounterfactualResult.load(first.save(tmp_path / "r.json"))
    assert back.steps == [1, KEY] and np.isnan(back.answer_change).all()  # no answer extractor
    np.testing.assert_array_equal(back.dense(8), [np.nan, 0, np.nan, 1, *[np.nan] * 4])
