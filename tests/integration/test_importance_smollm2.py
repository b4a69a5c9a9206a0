"""Entropy and lens depth on a real pretrained model (SmolLM2-135M-Instruct, float64, 30 blocks)
against HF's own softmax and per-layer argmax (definitions in ``test_importance.py``), every host;
and one counterfactual step on it (the grader and answer extractor the experiment uses)."""

from __future__ import annotations

import numpy as np
import pytest
from test_importance import _hf_depth, _hf_entropy

from tl_thinktok import hosts
from tl_thinktok.counterfactual import CounterfactualImportance
from tl_thinktok.datasets import grade, load_dataset, prompt_for
from tl_thinktok.generation import decode, encode, greedy
from tl_thinktok.importance import step_measures
from tl_thinktok.reproduce.experiments.importance import final_answer

N_NEW = 6


@pytest.fixture(scope="module")
def hf(smollm2_hf64):
    return smollm2_hf64


@pytest.fixture(scope="module", params=list(hosts.supported_hosts()))
def smol(request, smollm2_f64):
    return smollm2_f64(request.param)


@pytest.fixture(scope="module")
def trace(smol):
    """A GSM8K prompt and N_NEW greedy tokens: (item, prompt ids, all ids)."""
    item = load_dataset("gsm8k", n=1, seed=0)[0]
    prompt = encode(smol, prompt_for("smollm2", item.question))
    return item, prompt, prompt + greedy(smol, prompt, N_NEW, stop_at_eos=False)


def test_entropy_and_lens_depth_match_hf(smol, hf, trace):
    _, prompt, ids = trace
    (m,) = step_measures(smol, [(ids, len(prompt))])
    np.testing.assert_allclose(m.entropy, _hf_entropy(hf, ids, len(prompt)), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(m.lens_depth, _hf_depth(hf, ids, len(prompt)))
    assert m.n_layers == 30


def test_counterfactual_step_with_the_experiments_grader(smol, trace):
    item, prompt, ids = trace
    ci = CounterfactualImportance(n_samples=2, seed=0)
    step = N_NEW - 2
    res = ci.estimate(
        smol, ids, len(prompt), lambda g: grade("gsm8k", decode(smol, g), item.answer),
        answer=lambda g: final_answer("gsm8k", decode(smol, g)), steps=[step],
        max_new_tokens=N_NEW,
    )  # fmt: skip
    assert res.steps == [step] and len(res.replaced[0]) == 2
    assert ids[len(prompt) + step] not in res.replaced[0]  # never the original token
    assert 0.0 <= res.importance[0] <= 1.0 and 0.0 <= res.answer_change[0] <= 1.0
