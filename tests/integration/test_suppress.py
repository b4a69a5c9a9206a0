"""suppress.py: SuppressTokens vs HF generate(suppress_tokens=...) on both hosts; random_control."""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tl_thinktok import hosts
from tl_thinktok.interventions.suppress import SuppressTokens, random_control
from tl_thinktok.vocab import ThinkingTokens

PROMPT = [1, 40, 41, 42, 43, 44, 45]
N_NEW = 10


def _tl_generate(model, n=N_NEW, kv=True):
    with torch.no_grad():
        out = model.generate(
            torch.tensor([PROMPT]),
            max_new_tokens=n,
            do_sample=False,
            use_past_kv_cache=kv,
            stop_at_eos=False,
            verbose=False,
        )
    return out[0, len(PROMPT) :].tolist()


def _hf_generate(hf, banned, n=N_NEW):
    with torch.no_grad():
        out = hf.generate(
            torch.tensor([PROMPT]),
            max_new_tokens=n,
            min_new_tokens=n,  # never stop at EOS, like stop_at_eos=False
            do_sample=False,
            suppress_tokens=list(banned) or None,
        )
    return out[0, len(PROMPT) :].tolist()


@pytest.mark.parametrize("kv", [True, False])
def test_equals_hf_suppress_tokens(model, hf, kv):
    plain = _tl_generate(model, kv=kv)
    assert plain == _hf_generate(hf, [])
    # ban what the model would say first, so the ban has to act
    banned = sorted(set(plain[:3]))
    ban = SuppressTokens(banned)
    before = hosts.hook_counts(model)
    with ban.attach(model):
        got = _tl_generate(model, kv=kv)
    assert hosts.hook_counts(model) == before
    assert got == _hf_generate(hf, banned)
    assert got != plain and not set(got) & set(banned)
    assert ban.hits >= 1


@settings(
    max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(banned=st.sets(st.integers(0, 383), min_size=1, max_size=120))
def test_never_emits_banned(model, banned):
    ban = SuppressTokens(sorted(banned))
    with ban.attach(model):
        got = _tl_generate(model, n=6)
    assert not set(got) & banned


def test_thinking_tokens_input_and_errors(model):
    tok = hosts.tokenizer_of(model)
    tt = ThinkingTokens.from_words(tok, ["So", "the"])
    assert SuppressTokens(tt).token_ids == sorted(tt.token_ids())
    with pytest.raises(ValueError, match="empty set"):
        SuppressTokens([])
    with pytest.raises(ValueError, match="non-negative"):
        SuppressTokens([-1])
    with pytest.raises(TypeError, match="not a string"):
        SuppressTokens("So")
    too_big = SuppressTokens([5, hosts.d_vocab(model)])
    before = hosts.hook_counts(model)
    with pytest.raises(ValueError, match=r"out of range \[0, 384\): \[384\]"):
        with too_big.attach(model):
            pass
    assert hosts.hook_counts(model) == before


@settings(max_examples=60, deadline=None)
@given(
    vocab=st.integers(1, 300),
    data=st.data(),
)
def test_random_control_laws(vocab, data):
    exclude = data.draw(st.sets(st.integers(0, vocab - 1)))
    n = data.draw(st.integers(0, vocab - len(exclude)))
    seed = data.draw(st.integers(0, 2**31))
    ids = random_control(vocab, n, exclude, seed)
    assert len(ids) == n == len(set(ids))
    assert all(0 <= i < vocab and i not in exclude for i in ids)
    assert ids == random_control(vocab, n, sorted(exclude, reverse=True), seed)  # deterministic
    with pytest.raises(ValueError, match="cannot draw"):
        random_control(vocab, vocab - len(exclude) + 1, exclude, seed)


def test_random_control_varies_with_seed_and_errors():
    draws = {tuple(random_control(1000, 5, range(10), s)) for s in range(5)}
    assert len(draws) == 5
    with pytest.raises(ValueError, match="n must be >= 0"):
        random_control(10, -1)
    with pytest.raises(ValueError, match="vocab_size must be >= 1"):
        random_control(0, 0)
    with pytest.raises(TypeError, match="n must be an int"):
        random_control(10, 2.0)
