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


def brute_force_ids(tok, word: str, case_insensitive: bool = False) -> list[int]:
    """Independent reference: decode every id alone, strip, compare (as the reference: exact)."""
    if case_insensitive:
        return [i for i in range(len(tok)) if tok.decode([i]).strip().lower() == word.lower()]
    return [i for i in range(len(tok)) if tok.decode([i]).strip() == word]


WORDS = ["So", "the", "But", "is", "Ok", "answer", "I", "think"]


def test_word_maps_to_every_variant(tok):
    tt = ThinkingTokens.from_words(tok, WORDS)
    assert tt.words == WORDS
    for word, ids in zip(tt.words, tt.ids, strict=True):
        assert ids == brute_force_ids(tok, word)
    so = dict(zip(tt.words, tt.ids, strict=True))["So"]
    assert sorted(tok.decode([i]) for i in so) == [" So", "So"]  # leading-space variant found
    assert [tok.decode([i]) for i in dict(zip(tt.words, tt.ids, strict=True))["the"]] == [" the"]
    folded = ThinkingTokens.from_words(tok, ["the"], case_insensitive=True)
    assert {tok.decode([i]) for i in folded.ids[0]} == {" the", "The"}  # case variant on request
    assert folded.ids[0] == brute_force_ids(tok, "the", case_insensitive=True)


@pytest.fixture(scope="module")
def organism_tok():
    from tl_thinktok import organism

    return organism.tokenizer()


def test_case_sensitive_by_default_as_the_reference(organism_tok):
    """B1: "So" takes "So" / " So", never "so" (the reference list is case-sensitive)."""
    tok = organism_tok
    lower = tok.convert_tokens_to_ids("so")
    assert lower != tok.unk_token_id  # the organism's vocabulary has both "So" and "so"
    tt = ThinkingTokens.from_words(tok, ["So"])
    assert {tok.decode([i]).strip() for i in tt.ids[0]} == {"So"}
    assert lower not in tt.token_ids()
    assert tt.ids[0] == brute_force_ids(tok, "So")
    assert ThinkingTokens.from_counts(tok, {"So": 3}).token_ids() == tt.token_ids()
    both = ThinkingTokens.from_words(tok, ["So"], case_insensitive=True)
    assert lower in both.token_ids() and set(tt.token_ids()) < set(both.token_ids())
    with pytest.raises(TypeError, match="case_insensitive must be a bool"):
        ThinkingTokens.from_words(tok, ["So"], case_insensitive="yes")


# The head of the reference's DeepSeek-R1-Distill-Llama-8B.jsonl (ids of that tokenizer): words
# that are not purely alphabetic (" " with no ids, "\n\n", "\\", "-") sit between thinking words.
REFERENCE_HEAD = [
    {"word": "So", "freq": 394, "token_ids": [2100, 4516, 78012]},
    {"word": "Let", "freq": 218, "token_ids": [6914, 10267]},
    {"word": "Hmm", "freq": 127, "token_ids": [81122, 89290]},
    {"word": " ", "freq": 118, "token_ids": []},
    {"word": "\n\n", "freq": 114, "token_ids": [271, 4815, 15152]},
    {"word": "I", "freq": 112, "token_ids": [40, 358, 25494]},
    {"word": "The", "freq": 89, "token_ids": [578, 791, 33026]},
    {"word": "Okay", "freq": 88, "token_ids": [33413, 36539]},
    {"word": "That", "freq": 81, "token_ids": [3011, 4897]},
    {"word": "First", "freq": 79, "token_ids": [5451, 5629]},
    {"word": "Now", "freq": 74, "token_ids": [4800, 7184]},
    {"word": "\\", "freq": 70, "token_ids": [59, 1144]},
    {"word": "Wait", "freq": 68, "token_ids": [14144, 14524]},
    {"word": "But", "freq": 64, "token_ids": [2030, 4071]},
    {"word": "-", "freq": 47, "token_ids": [12, 482]},
    {"word": "Then", "freq": 45, "token_ids": [5112, 12487]},
]
#: The reference RR script's trigger words: the first 10 alphabetic words of that file.
REFERENCE_FIRST_10 = ["So", "Let", "Hmm", "I", "The", "Okay", "That", "First", "Now", "Wait"]


def test_reference_jsonl_loads_like_the_reference_loader(tmp_path):
    """B2: the reference file loads; non-alphabetic words skipped, first 10 alphabetic kept."""
    path = tmp_path / "DeepSeek-R1-Distill-Llama-8B.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in REFERENCE_HEAD))
    with pytest.warns(UserWarning, match=r"kept 10 words, skipped 6 records .*' '"):
        tt = ThinkingTokens.load_jsonl(path, vocab_size=128256)
    assert tt.words == REFERENCE_FIRST_10
    by_word = {r["word"]: r for r in REFERENCE_HEAD}
    assert tt.freqs == [by_word[w]["freq"] for w in tt.words]
    assert tt.ids == [by_word[w]["token_ids"] for w in tt.words]
    assert tt.skipped == [
        (4, " ", "not alphabetic"),
        (5, "\n\n", "not alphabetic"),
        (12, "\\", "not alphabetic"),
        (14, "But", "beyond the first 10 words"),
        (15, "-", "beyond the first 10 words"),
        (16, "Then", "beyond the first 10 words"),
    ]
    with pytest.warns(UserWarning, match="skipped 4 records"):
        every = ThinkingTokens.load_jsonl(path, n_words=None)
    assert every.words == REFERENCE_FIRST_10 + ["But", "Then"]
    with pytest.warns(UserWarning):
        assert ThinkingTokens.load_jsonl(path, n_words=2).words == ["So", "Let"]
    with pytest.raises(ValueError, match=r":4: 'word' must be a non-empty string"):
        ThinkingTokens.load_jsonl(path, alphabetic=False)
    with pytest.raises(ValueError, match="n_words must be >= 1"):
        ThinkingTokens.load_jsonl(path, n_words=0)
    path.write_text(json.dumps(REFERENCE_HEAD[3]) + "\n")
    with pytest.raises(ValueError, match=r"empty word set\) \(1 records skipped"):
        ThinkingTokens.load_jsonl(path)


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
    with pytest.raises(
        ValueError, match=r"token ids of word 'So' .* out of range \[0, \d+\): \[999\]"
    ):
        ThinkingTokens.load_jsonl(path, tok)
    assert ThinkingTokens.load_jsonl(path).token_ids() == [281, 999]  # no vocab given: no check
    path.write_text("[1, 2]\n")
    with pytest.raises(ValueError, match=r":1: expected a JSON object"):
        ThinkingTokens.load_jsonl(path)
    path.write_text("\n")
    with pytest.raises(ValueError, match="empty word set"):
        ThinkingTokens.load_jsonl(path)


@pytest.mark.parametrize(
    ("record", "match"),
    [
        ('{"word": "So", "freq": 1.5, "token_ids": [1]}', r":1: 'freq' .* must be an int"),
        ('{"word": "So", "token_ids": []}', r":1: 'token_ids' is empty"),
        ('{"word": "So", "token_ids": [true]}', r":1: 'token_ids' must be ints, got bool"),
        ('{"word": "So", "token_ids": [-3]}', r":1: 'token_ids' must be non-negative"),
        ('{"word": "So", "token_ids": 7}', r":1: 'token_ids' must be a list of ints"),
    ],
)
def test_malformed_kept_record_names_file_line_and_field(tmp_path, record, match):
    path = tmp_path / "bad.jsonl"
    path.write_text(record + "\n")
    with pytest.raises(ValueError, match="bad.jsonl" + match):
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
    with pytest.raises(ValueError, match="tokenizer vocabulary.* out of range"):
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
