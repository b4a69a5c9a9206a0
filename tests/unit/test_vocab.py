"""vocab.ThinkingTokens against a brute-force per-id decode of the tokenizer, io, errors."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tl_thinktok.testing.models import make_tokenizer
from tl_thinktok.vocab import ThinkingTokens, vocab_index


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    return make_tokenizer(tmp_path_factory.mktemp("tok"))


def brute_force_ids(tok, word: str) -> list[int]:
    """Independent reference: decode every id alone, strip, compare case-insensitively."""
    return [i for i in range(len(tok)) if tok.decode([i]).strip().lower() == word.lower()]


WORDS = ["So", "the", "But", "is", "Ok", "answer", "I", "think"]


def test_word_maps_to_every_variant(tok):
    tt = ThinkingTokens.from_words(tok, WORDS)
    assert tt.words == WORDS
    for word, ids in zip(tt.words, tt.ids, strict=True):
        assert ids == brute_force_ids(tok, word)
    so = dict(zip(tt.words, tt.ids, strict=True))["So"]
    assert sorted(tok.decode([i]) for i in so) == [" So", "So"]  # leading-space variant found
    assert {tok.decode([i]) for i in dict(zip(tt.words, tt.ids, strict=True))["the"]} == {
        " the",
        "The",
    }  # case variant found
    exact = ThinkingTokens.from_words(tok, ["the"], case_insensitive=False)
    assert [tok.decode([i]) for i in exact.ids[0]] == [" the"]


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    order=st.permutations(WORDS),
    k=st.integers(min_value=0, max_value=len(WORDS)),
    freqs=st.lists(st.integers(0, 1000), min_size=len(WORDS), max_size=len(WORDS)),
)
def test_token_ids_union_and_roundtrip(tok, tmp_path_factory, order, k, freqs):
    tt = ThinkingTokens.from_words(tok, order, freqs)
    expected: list[int] = []
    for w in order[:k]:
        for i in brute_force_ids(tok, w):
            if i not in expected:
                expected.append(i)
    assert tt.token_ids(k) == expected
    if k:
        assert tt.top(k).words == list(order[:k]) and tt.top(k).freqs == freqs[:k]
    path = tmp_path_factory.mktemp("tt") / "tt.jsonl"
    tt.save_jsonl(path)
    back = ThinkingTokens.load_jsonl(path, tok)
    assert back == tt
    first = json.loads(path.read_text().splitlines()[0])
    assert first == {
        "word": order[0],
        "freq": freqs[0],
        "token_ids": brute_force_ids(tok, order[0]),
    }


def test_from_counts_sorted_by_frequency(tok):
    counts = {"the": 5, "So": 9, "But": 5, "Ok": 1}
    tt = ThinkingTokens.from_counts(tok, counts, k=3)
    assert tt.words == ["So", "But", "the"]  # ties broken alphabetically
    assert tt.freqs == [9, 5, 5]

    class Table:  # lens.TokenCounts-like: a .counts mapping
        def __init__(self, counts):
            self.counts = counts

    assert ThinkingTokens.from_counts(tok, Table(counts)).words == ["So", "But", "the", "Ok"]


def test_reference_format_file_loads(tok, tmp_path):
    path = tmp_path / "ref.jsonl"
    path.write_text('{"word": "So", "freq": 394, "token_ids": [281, 376]}\n\n{"word": "the"}\n')
    with pytest.raises(ValueError, match=r"ref.jsonl:3: 'token_ids'"):
        ThinkingTokens.load_jsonl(path)
    path.write_text('{"word": "So", "freq": 394, "token_ids": [281, 376]}\n{"word": "the", ')
    with pytest.raises(ValueError, match=r"ref.jsonl:2: not valid JSON"):
        ThinkingTokens.load_jsonl(path)
    path.write_text('{"word": "So", "freq": 394, "token_ids": [281, 999]}\n')
    with pytest.raises(ValueError, match=r"token id 999 of word 'So' is outside"):
        ThinkingTokens.load_jsonl(path, tok)
    assert ThinkingTokens.load_jsonl(path).token_ids() == [281, 999]  # no vocab given: no check
    path.write_text("[1, 2]\n")
    with pytest.raises(ValueError, match=r":1: expected a JSON object"):
        ThinkingTokens.load_jsonl(path)
    path.write_text("\n")
    with pytest.raises(ValueError, match="empty word set"):
        ThinkingTokens.load_jsonl(path)


def test_errors(tok):
    with pytest.raises(ValueError, match="empty word set"):
        ThinkingTokens.from_words(tok, [])
    with pytest.raises(ValueError, match=r"\['Zebra', 'Qqq'\]"):
        ThinkingTokens.from_words(tok, ["So", "Zebra", "Qqq"])
    with pytest.raises(ValueError, match="duplicate word 'So'"):
        ThinkingTokens.from_words(tok, ["So", "So"])
    with pytest.raises(TypeError, match="not one string"):
        ThinkingTokens.from_words(tok, "So")
    with pytest.raises(ValueError, match="2 freqs for 1 words"):
        ThinkingTokens.from_words(tok, ["So"], [1, 2])
    with pytest.raises(ValueError, match="outside the tokenizer vocabulary"):
        ThinkingTokens(["So"], [None], [[len(tok)]], vocab_size=len(tok))
    with pytest.raises(ValueError, match="maps to no token"):
        ThinkingTokens(["So"], [None], [[]])
    tt = ThinkingTokens.from_words(tok, ["So"])
    with pytest.raises(ValueError, match="k=2 exceeds"):
        tt.token_ids(2)
    with pytest.raises(ValueError, match="counts is empty"):
        ThinkingTokens.from_counts(tok, {})


def test_index_cached_on_tokenizer(tok):
    assert vocab_index(tok) is vocab_index(tok)
    assert vocab_index(tok).vocab_size == len(tok)
