"""Llama2cTokenizer encodes/decodes exactly like llama2.c's run.c.

The reference below is written independently of tl_thinktok.loading.llama2c (its own
tokenizer.bin reader and a string-level re-statement of run.c's rules); the hand-checked cases
were read off the vocabulary by hand.
"""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tl_thinktok.loading import bundled_model_dir
from tl_thinktok.loading.llama2c import Llama2cTokenizer

TOKENIZER_BIN = bundled_model_dir("stories260k") / "tokenizer.bin"


def _read_vocab(path):
    raw = path.read_bytes()
    pos, pieces, scores = 4, [], []
    while pos < len(raw):
        score, n = struct.unpack("<fi", raw[pos : pos + 8])
        pieces.append(raw[pos + 8 : pos + 8 + n])
        scores.append(score)
        pos += 8 + n
    return pieces, scores


PIECES, SCORES = _read_vocab(TOKENIZER_BIN)
INDEX = {p: i for i, p in enumerate(PIECES)}


def reference_encode(text: str) -> list[int]:
    """run.c encode(bos=1, eos=0), restated: dummy " ", per-UTF-8-char lookup, byte+3 fallback,
    then repeatedly merge the best-scoring adjacent pair (first such pair on ties)."""
    data = text.encode("utf-8")
    if not data:
        return [1]
    # split into UTF-8 characters (lead byte + continuation bytes, at most 4 bytes per chunk)
    chars: list[bytes] = []
    for b in data:
        if chars and (b & 0xC0) == 0x80 and len(chars[-1]) < 4:
            chars[-1] += bytes([b])
        else:
            chars.append(bytes([b]))
    ids = [INDEX[b" "]]
    for ch in chars:
        ids += [INDEX[ch]] if ch in INDEX else [b + 3 for b in ch]
    while True:
        candidates = [
            (SCORES[INDEX[PIECES[a] + PIECES[b]]], -i, INDEX[PIECES[a] + PIECES[b]])
            for i, (a, b) in enumerate(zip(ids, ids[1:], strict=False))
            if PIECES[a] + PIECES[b] in INDEX
        ]
        if not candidates:
            break
        _, neg_i, new = max(candidates)
        ids[-neg_i : -neg_i + 2] = [new]
    return [1] + ids


@pytest.fixture(scope="module")
def tok():
    return Llama2cTokenizer(TOKENIZER_BIN)


def test_vocab_and_specials(tok):
    assert len(tok) == 512 == len(PIECES)
    assert (tok.bos_token_id, tok.eos_token_id, tok.unk_token_id) == (1, 2, 0)
    assert tok.convert_ids_to_tokens(261) == " a"


@pytest.mark.parametrize(
    ("text", "ids"),
    [
        ("", [1]),  # no dummy prefix for empty text
        ("a", [1, 261]),  # " " + "a" merges to " a" (id 261)
        ("é", [1, 410, 485]),  # "é" is a vocab piece (485); " é" is not
        ("☃", [1, 410, 0xE2 + 3, 0x98 + 3, 0x83 + 3]),  # not in vocab: byte fallback
        ("\n", [1, 410, 0x0A + 3]),
    ],
)
def test_hand_checked_encodings(tok, text, ids):
    assert tok.encode(text) == ids
    assert tok(text)["input_ids"] == ids


def test_known_sentence(tok):
    ids = tok.encode("Once upon a time")
    assert ids == reference_encode("Once upon a time")
    assert [PIECES[i] for i in ids[1:]] == [b" Once", b" upon", b" a", b" time"]


def test_decode_like_run_c(tok):
    # run.c strips the leading space of the piece after BOS, and prints <0xXX> as the raw byte.
    assert tok.decode([1, 261], skip_special_tokens=True) == "a"
    assert tok.decode([261]) == " a"
    assert tok.decode([1, 261]) == "<s>a"
    assert tok.decode([1, 410, 0xE2 + 3, 0x98 + 3, 0x83 + 3], skip_special_tokens=True) == "☃"


def test_no_bos_option():
    tok = Llama2cTokenizer(TOKENIZER_BIN, add_bos_token=False)
    assert tok.encode("a") == [261]


# Any text except NUL (C strings end there) and the literal special-token names, which HF slow
# tokenizers split out before tokenizing.
_TEXT = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    max_size=40,
).filter(lambda t: not any(s in t for s in ("<s>", "</s>", "<unk>")))


@settings(max_examples=150, deadline=None)
@given(_TEXT)
def test_encode_matches_reference(text):
    tok = _TOK
    assert tok.encode(text) == reference_encode(text)


@settings(max_examples=150, deadline=None)
@given(_TEXT)
def test_round_trip(text):
    tok = _TOK
    assert tok.decode(tok.encode(text), skip_special_tokens=True) == text


_TOK = Llama2cTokenizer(TOKENIZER_BIN)
