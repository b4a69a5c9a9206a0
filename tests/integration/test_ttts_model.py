"""Budget forcing and reference TTTS on a random Qwen2 (load_model, every available host)."""

from __future__ import annotations

import math

import pytest
import torch

from tl_thinktok.hosts import supported_hosts
from tl_thinktok.interventions.ttts import budget_forcing, reference_ttts
from tl_thinktok.loading import load_model

PROMPT = "User: What is 12 times 3?\nAssistant: <think>"


@pytest.fixture(scope="module", params=list(supported_hosts()))
def model(request, qwen2_dir):
    return load_model(qwen2_dir, host=request.param)


def _ids(model, text):
    return model.tokenizer(text, add_special_tokens=False)["input_ids"]


def _greedy(model, ids, n, hooks=()):
    with model.hooks(fwd_hooks=list(hooks)):
        out = model.generate(
            torch.tensor([ids]),
            max_new_tokens=n,
            do_sample=False,
            verbose=False,
            stop_at_eos=False,
        )
    return out[0, len(ids) :].tolist()


def test_budget_forcing_forces_the_end_at_the_maximum(model):
    eos = model.tokenizer.eos_token_id
    end_first = _ids(model, "</think>")[0]

    def ban(logits, hook):  # the model can never end its thinking by itself
        logits = logits.clone()
        logits[..., [eos, end_first]] = -1e9
        return logits

    hooks = [("unembed.hook_out", ban)]
    r = budget_forcing(
        model,
        PROMPT,
        min_thinking_tokens=4,
        max_thinking_tokens=12,
        max_answer_tokens=5,
        fwd_hooks=hooks,
    )
    assert r.forced_end and r.thinking_tokens_used == 12 and r.budget_left == 0
    assert r.words_appended == 0
    thinking = _greedy(model, _ids(model, PROMPT), 12, hooks)  # plain generate, same hooks
    assert r.thinking_text == model.tokenizer.decode(thinking)
    ctx = _ids(model, PROMPT) + thinking + _ids(model, "</think>") + _ids(model, "Final Answer:")
    answer = _greedy(model, ctx, 5, hooks)
    assert r.answer_tokens_used == 5 and r.answer_text == model.tokenizer.decode(answer)
    assert r.text == model.tokenizer.decode(ctx + answer)


def test_budget_forcing_replaces_early_ends_with_the_word(model):
    eos = model.tokenizer.eos_token_id

    def force_eos(logits, hook):  # every thinking chunk ends at once
        logits = logits.clone()
        logits[..., eos] = 1e9
        return logits

    word = _ids(model, " Wait")
    r = budget_forcing(
        model,
        PROMPT,
        min_thinking_tokens=7,
        max_thinking_tokens=30,
        max_answer_tokens=3,
        fwd_hooks=[("unembed.hook_out", force_eos)],
    )
    k = math.ceil(7 / len(word))
    assert r.words_appended == k and r.thinking_tokens_used == k * len(word)
    assert r.thinking_text == model.tokenizer.decode(word * k)
    assert not r.forced_end and r.budget_left == 30 - k * len(word)
    assert r.answer_tokens_used == 1  # the forced EOS


def test_reference_ttts_matches_manual_pipeline(model):
    q, so_far = "User: What is 12 times 3?\nAssistant:", " So 12 * 3"
    r = reference_ttts(model, q, so_far, word="Wait", token_budget=10, answer_tokens=4)
    prompt = _ids(model, q + so_far + " Wait")
    eos = model.tokenizer.eos_token_id
    cont = _greedy(model, prompt, 10)
    if eos in cont:
        cont = cont[: cont.index(eos) + 1]
    assert r.thinking_tokens_used == len(cont) <= 10 and r.budget_left == 10 - len(cont)
    body = cont[:-1] if cont and cont[-1] == eos else cont
    ctx = prompt + body + _ids(model, " Final Answer within \\boxed{}:")
    ans = _greedy(model, ctx, 4)
    if eos in ans:
        ans = ans[: ans.index(eos)]
    assert r.answer_text == model.tokenizer.decode(ans)
    assert r.text == model.tokenizer.decode(ctx + ans)
