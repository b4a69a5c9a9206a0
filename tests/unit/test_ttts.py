"""Contract tests of budget forcing / reference TTTS with a scripted fake model (char tokens)."""

from __future__ import annotations

import dataclasses
import json
from contextlib import contextmanager

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tl_thinktok.interventions.ttts import TTTSResult, budget_forcing, reference_ttts

EOS, BOS = 0, 1


class CharTokenizer:
    """One token per character (id = ord); EOS = 0, BOS = 1."""

    eos_token_id = EOS
    bos_token_id = BOS

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": [ord(c) for c in text]}

    def decode(self, ids):
        return "".join(chr(i) for i in ids if i not in (EOS, BOS))


class ScriptedModel:
    """Emits 'a' until ``run`` tokens were generated since the last 'Wait'/prompt, then EOS
    (``run=None``: never ends). Answers with 'x' then EOS. Records every generate call."""

    def __init__(self, run):
        self.tokenizer = CharTokenizer()
        self.run = run
        self.calls = []
        self.hooks_seen = []

    @contextmanager
    def hooks(self, fwd_hooks=()):
        self.hooks_seen.append(list(fwd_hooks))
        yield self

    def _next(self, ctx):
        text = self.tokenizer.decode(ctx)
        if text.endswith(":"):
            return ord("x")
        if text.endswith("x"):
            return EOS
        tail = len(text) - max(text.rfind("Wait") + 4, text.rfind(">") + 1)
        return EOS if self.run is not None and tail >= self.run else ord("a")

    def generate(self, tokens, max_new_tokens, do_sample, stop_at_eos, eos_token_id, verbose):
        assert not do_sample and tokens.shape[0] == 1
        ctx = tokens[0].tolist()
        self.calls.append((list(ctx), max_new_tokens))
        for _ in range(max_new_tokens):
            t = self._next(ctx)
            ctx.append(t)
            if stop_at_eos and t in eos_token_id:
                break
        return torch.tensor([ctx])


PROMPT = "Q: 1+1? <think>"


def test_early_end_is_extended_until_the_minimum():
    m = ScriptedModel(run=5)
    r = budget_forcing(
        m, PROMPT, min_thinking_tokens=12, max_thinking_tokens=40, max_answer_tokens=4
    )
    # 5 a's, end < 12 -> " Wait" (5 chars) -> 5 a's = 15 >= 12 -> accept the end
    assert r.thinking_text == "aaaaa Waitaaaaa"
    assert (r.thinking_tokens_used, r.words_appended, r.budget_left) == (15, 1, 25)
    assert not r.forced_end
    assert r.answer_text == "x"
    assert r.text == PROMPT + "aaaaa Waitaaaaa</think>Final Answer:x"


def test_budget_forces_the_end_and_an_answer():
    m = ScriptedModel(run=None)
    r = budget_forcing(
        m, PROMPT, min_thinking_tokens=0, max_thinking_tokens=20, max_answer_tokens=3
    )
    assert r.thinking_tokens_used == 20 and r.budget_left == 0 and r.forced_end
    assert r.text.endswith("a" * 20 + "</think>Final Answer:x")
    assert r.answer_tokens_used >= 1


def test_max_extensions_and_word_that_does_not_fit():
    r = budget_forcing(
        ScriptedModel(3), PROMPT, min_thinking_tokens=30, max_thinking_tokens=40, max_extensions=2
    )
    assert r.words_appended == 2 and r.thinking_tokens_used == 3 + 2 * (5 + 3)
    # 3 a's + " Wait" would need 8 > 7 tokens left -> the end is accepted
    r = budget_forcing(ScriptedModel(3), PROMPT, min_thinking_tokens=7, max_thinking_tokens=7)
    assert r.words_appended == 0 and r.thinking_tokens_used == 3 and not r.forced_end


@settings(max_examples=60, deadline=None)
@given(
    run=st.one_of(st.none(), st.integers(0, 12)),
    lo=st.integers(0, 40),
    extra=st.integers(0, 40),
    ext=st.one_of(st.none(), st.integers(0, 4)),
)
def test_budget_contract_holds(run, lo, extra, ext):
    m = ScriptedModel(run)
    hi = lo + extra
    r = budget_forcing(
        m,
        PROMPT,
        min_thinking_tokens=lo,
        max_thinking_tokens=hi,
        max_extensions=ext,
        max_answer_tokens=2,
    )
    assert 0 <= r.thinking_tokens_used <= hi
    assert r.budget_left == hi - r.thinking_tokens_used >= 0
    assert r.answer_tokens_used >= 1 and r.answer_text == "x"
    assert r.words_appended == r.thinking_text.count(" Wait")
    assert ext is None or r.words_appended <= ext
    used = 0
    for ctx, max_new in m.calls[:-1]:  # thinking calls never ask beyond the remaining budget
        used = len(ctx) - len(PROMPT)
        assert max_new == hi - used
    if not r.forced_end and r.thinking_tokens_used < lo:  # could not extend: limit or no room
        assert (ext is not None and r.words_appended == ext) or r.thinking_tokens_used + 5 > hi


def test_reference_ttts_prompt_and_budget():
    m = ScriptedModel(run=4)
    r = reference_ttts(
        m,
        "Q: 1+1?",
        " It is",
        word="Wait",
        token_budget=10,
        answer_tokens=5,
        fwd_hooks=[("unembed.hook_out", print)],
    )
    (ctx1, n1), (ctx2, n2) = m.calls
    assert m.tokenizer.decode(ctx1) == "Q: 1+1? It is Wait" and n1 == 10
    assert m.tokenizer.decode(ctx2) == "Q: 1+1? It is Waitaaaa Final Answer within \\boxed{}:"
    assert n2 == 5 and r.answer_text == "x" and r.words_appended == 1
    assert r.thinking_tokens_used == 5 and r.budget_left == 5 and not r.forced_end
    assert m.hooks_seen == [[("unembed.hook_out", print)]] * 2
    r = reference_ttts(ScriptedModel(None), "Q", "", word="So", token_budget=6)
    assert r.forced_end and r.budget_left == 0 and r.thinking_tokens_used == 6


def test_errors_and_save_load(tmp_path):
    m = ScriptedModel(3)
    with pytest.raises(ValueError, match="exceeds max_thinking_tokens"):
        budget_forcing(m, PROMPT, min_thinking_tokens=5, max_thinking_tokens=4)
    with pytest.raises(ValueError, match="max_answer_tokens"):
        budget_forcing(m, PROMPT, max_thinking_tokens=4, max_answer_tokens=0)
    with pytest.raises(ValueError, match="token_budget"):
        reference_ttts(m, "Q", "", word="So", token_budget=-1)
    with pytest.raises(ValueError, match="word"):
        reference_ttts(m, "Q", "", word=" ", token_budget=3)
    with pytest.raises(TypeError, match="max_thinking_tokens"):
        budget_forcing(m, PROMPT, max_thinking_tokens=2.5)
    with pytest.raises(TypeError, match="components must be Component instances"):
        budget_forcing(m, PROMPT, max_thinking_tokens=4, components=[print])
    assert len(m.calls) == 0  # refused before any generation
    r = budget_forcing(m, PROMPT, min_thinking_tokens=4, max_thinking_tokens=9)
    path = r.save(tmp_path / "new" / "r.json")  # returns the path, creates the folder
    assert path == tmp_path / "new" / "r.json"
    assert TTTSResult.load(path) == r


def test_files_of_the_previous_format_still_load(tmp_path):
    old = tmp_path / "old.json"  # what TTTSResult.save wrote before the JsonIO mixin
    r = TTTSResult("t", "t", "4", 3, 1, 5, False, "reference", 1)
    old.write_text(json.dumps(dataclasses.asdict(r), indent=2))
    assert TTTSResult.load(old) == r
