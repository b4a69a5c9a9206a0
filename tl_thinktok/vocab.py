"""Thinking-token lists: word ↔ every token id that decodes to that word (PAPER.md §3).

The reference code stores one JSON record per word, ``{"word": "So", "freq": 394,
"token_ids": [2100, 4516, 78012]}``, where ``token_ids`` are all ids whose decoded text, stripped of
surrounding whitespace, is the word (leading-space and case variants: ``"So"``, ``" So"``, ``"so"``,
``" so"``, ``"SO"`` …). :class:`ThinkingTokens` builds such lists for any HF tokenizer, reads and
writes the jsonl format, and hands the flattened ids to :class:`tl_thinktok.SuppressTokens` /
:class:`tl_thinktok.RepresentationRecycling`.

The vocabulary is decoded once per tokenizer (one ``batch_decode`` of all ids) and the index is
cached on the tokenizer object itself (attribute ``_thinktok_vocab_index``), so there is no global
state.

Example:
    >>> tt = ThinkingTokens.from_words(tokenizer, ["So", "Wait", "Hmm"])  # doctest: +SKIP
    >>> tt.token_ids(k=2)                       # ids of "So" and "Wait" variants  # doctest: +SKIP
    >>> tt.save_jsonl("thinking_tokens.jsonl")  # doctest: +SKIP
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["ThinkingTokens", "VocabIndex", "vocab_index"]

_CACHE_ATTR = "_thinktok_vocab_index"


class VocabIndex:
    """Decoded vocabulary of one tokenizer: stripped text → token ids (exact and case-folded).

    Args:
        tokenizer: an HF tokenizer (or anything with ``decode`` and ``len()``).

    Example:
        >>> index = VocabIndex(tokenizer)  # doctest: +SKIP
        >>> index.ids_for("So")            # doctest: +SKIP
        [2100, 4516, 78012]
    """

    def __init__(self, tokenizer: Any) -> None:
        n = len(tokenizer)
        if n <= 0:
            raise ValueError("tokenizer has an empty vocabulary")
        ids = [[i] for i in range(n)]
        if hasattr(tokenizer, "batch_decode"):
            texts = tokenizer.batch_decode(ids, skip_special_tokens=False)
        else:
            texts = [tokenizer.decode(i) for i in ids]
        self.vocab_size = n
        self.texts: list[str] = [str(t) for t in texts]
        self._exact: dict[str, list[int]] = {}
        self._folded: dict[str, list[int]] = {}
        for i, text in enumerate(self.texts):
            key = text.strip()
            if not key:
                continue
            self._exact.setdefault(key, []).append(i)
            self._folded.setdefault(key.casefold(), []).append(i)

    def ids_for(self, word: str, *, case_insensitive: bool = True) -> list[int]:
        """All ids whose decoded text, stripped, equals ``word`` (optionally ignoring case)."""
        key = word.strip()
        table = self._folded if case_insensitive else self._exact
        return list(table.get(key.casefold() if case_insensitive else key, []))


def vocab_index(tokenizer: Any) -> VocabIndex:
    """The (cached) :class:`VocabIndex` of ``tokenizer``."""
    if tokenizer is None:
        raise ValueError("a tokenizer is required to map words to token ids")
    cached = getattr(tokenizer, _CACHE_ATTR, None)
    if isinstance(cached, VocabIndex) and cached.vocab_size == len(tokenizer):
        return cached
    index = VocabIndex(tokenizer)
    try:
        setattr(tokenizer, _CACHE_ATTR, index)
    except (AttributeError, TypeError):  # pragma: no cover - immutable tokenizer objects
        pass
    return index


def _check_word(word: Any) -> str:
    if not isinstance(word, str):
        raise TypeError(f"words must be strings, got {type(word).__name__}: {word!r}")
    if not word.strip():
        raise ValueError(f"empty word {word!r}")
    return word.strip()


@dataclass
class ThinkingTokens:
    """An ordered list of thinking words, each with its frequency and all its token ids.

    Order matters: ``top(k)`` / ``token_ids(k)`` take the first ``k`` words (the paper suppresses
    the first k words of the frequency-sorted list).

    Attributes:
        words: the words, in list order.
        freqs: frequency per word (``None`` when unknown).
        ids: token ids per word.
        vocab_size: size of the tokenizer vocabulary the ids belong to (``None`` if unknown).
    """

    words: list[str]
    freqs: list[int | None]
    ids: list[list[int]]
    vocab_size: int | None = None

    def __post_init__(self) -> None:
        if not self.words:
            raise ValueError("ThinkingTokens needs at least one word (got an empty word set)")
        if not len(self.words) == len(self.freqs) == len(self.ids):
            raise ValueError(
                f"words, freqs and ids must have equal lengths, got {len(self.words)}, "
                f"{len(self.freqs)}, {len(self.ids)}"
            )
        self.words = [_check_word(w) for w in self.words]
        seen: dict[str, str] = {}
        for w in self.words:
            if w in seen:
                raise ValueError(f"duplicate word {w!r}")
            seen[w] = w
        for w, f in zip(self.words, self.freqs, strict=True):
            if f is not None and (isinstance(f, bool) or not isinstance(f, int) or f < 0):
                raise ValueError(f"freq of {w!r} must be a non-negative int or None, got {f!r}")
        for w, ids in zip(self.words, self.ids, strict=True):
            if not ids:
                raise ValueError(f"word {w!r} maps to no token id")
            for i in ids:
                if isinstance(i, bool) or not isinstance(i, int):
                    raise TypeError(f"token ids of {w!r} must be ints, got {i!r}")
                if i < 0 or (self.vocab_size is not None and i >= self.vocab_size):
                    raise ValueError(
                        f"token id {i} of word {w!r} is outside the tokenizer vocabulary "
                        f"[0, {self.vocab_size})"
                    )

    # ---------------------------------------------------------------- construction
    @classmethod
    def from_words(
        cls,
        tokenizer: Any,
        words: Iterable[str],
        freqs: Iterable[int | None] | None = None,
        *,
        case_insensitive: bool = True,
    ) -> ThinkingTokens:
        """Map words to all their token ids for ``tokenizer``.

        Args:
            tokenizer: HF tokenizer (the vocabulary is decoded once and cached on it).
            words: words in list order, e.g. ``["So", "Let", "Hmm"]``.
            freqs: optional frequencies, same length as ``words``.
            case_insensitive: also match case variants (``"so"``, ``"SO"``), as the reference list.

        Raises:
            ValueError: empty word list, duplicate word, or a word that no token decodes to
                (all such words are named).

        Example:
            >>> tt = ThinkingTokens.from_words(tokenizer, ["So", "Wait"])  # doctest: +SKIP
        """
        if isinstance(words, str):
            raise TypeError("words must be a list of strings, not one string")
        words = [_check_word(w) for w in words]
        if not words:
            raise ValueError("ThinkingTokens needs at least one word (got an empty word set)")
        freq_list: list[int | None]
        if freqs is None:
            freq_list = [None] * len(words)
        else:
            freq_list = list(freqs)
            if len(freq_list) != len(words):
                raise ValueError(f"got {len(freq_list)} freqs for {len(words)} words")
        index = vocab_index(tokenizer)
        ids = [index.ids_for(w, case_insensitive=case_insensitive) for w in words]
        missing = [w for w, i in zip(words, ids, strict=True) if not i]
        if missing:
            raise ValueError(f"no token of this tokenizer decodes to the word(s) {missing}")
        return cls(words, freq_list, ids, vocab_size=index.vocab_size)

    @classmethod
    def from_counts(
        cls,
        tokenizer: Any,
        counts: Mapping[str, int] | Any,
        k: int | None = None,
        *,
        case_insensitive: bool = True,
    ) -> ThinkingTokens:
        """Most frequent words first (ties: alphabetical) from a word → count table.

        Args:
            tokenizer: HF tokenizer.
            counts: a mapping word → count, or a :class:`tl_thinktok.lens.TokenCounts`.
            k: keep the ``k`` most frequent words (all if ``None``).
            case_insensitive: as in :meth:`from_words`.

        Example:
            >>> counts = thinking_token_counts(lens_results)          # doctest: +SKIP
            >>> tt = ThinkingTokens.from_counts(tokenizer, counts, k=10)  # doctest: +SKIP
        """
        table = getattr(counts, "counts", counts)
        if not isinstance(table, Mapping):
            raise TypeError(f"counts must be a mapping word -> count, got {type(counts).__name__}")
        if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 1):
            raise ValueError(f"k must be a positive int or None, got {k!r}")
        items = sorted(table.items(), key=lambda kv: (-kv[1], kv[0]))
        if k is not None:
            items = items[:k]
        if not items:
            raise ValueError("counts is empty: no words to build ThinkingTokens from")
        words = [w for w, _ in items]
        freqs = [int(c) for _, c in items]
        return cls.from_words(tokenizer, words, freqs, case_insensitive=case_insensitive)

    # ---------------------------------------------------------------- access
    def __len__(self) -> int:
        return len(self.words)

    def __iter__(self) -> Iterator[tuple[str, int | None, list[int]]]:
        return iter(zip(self.words, self.freqs, self.ids, strict=True))

    def _check_k(self, k: int | None) -> int:
        if k is None:
            return len(self.words)
        if isinstance(k, bool) or not isinstance(k, int) or k < 0:
            raise ValueError(f"k must be a non-negative int or None, got {k!r}")
        if k > len(self.words):
            raise ValueError(f"k={k} exceeds the {len(self.words)} words in the list")
        return k

    def top(self, k: int) -> ThinkingTokens:
        """The first ``k`` words (``k >= 1``) as a new list."""
        k = self._check_k(k)
        if k == 0:
            raise ValueError("top(0) would be an empty word set; use token_ids(0) for no ids")
        return ThinkingTokens(self.words[:k], self.freqs[:k], self.ids[:k], self.vocab_size)

    def token_ids(self, k: int | None = None) -> list[int]:
        """Token ids of the first ``k`` words (all if ``None``): flattened, deduped, in order."""
        k = self._check_k(k)
        out: dict[int, None] = {}
        for ids in self.ids[:k]:
            for i in ids:
                out.setdefault(i, None)
        return list(out)

    # ---------------------------------------------------------------- io
    def save_jsonl(self, path: str | Path) -> Path:
        """Write one ``{"word", "freq", "token_ids"}`` record per line (the reference format)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", encoding="utf-8") as fh:
            for w, f, ids in self:
                rec = {"word": w, "freq": f, "token_ids": list(ids)}
                fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
        return path

    @classmethod
    def load_jsonl(
        cls, path: str | Path, tokenizer: Any = None, *, vocab_size: int | None = None
    ) -> ThinkingTokens:
        """Read the reference jsonl format.

        Args:
            path: jsonl file, one ``{"word": str, "freq": int|null, "token_ids": [int]}`` per line
                (blank lines ignored; ``freq`` may be absent).
            tokenizer: if given, ids are checked against its vocabulary size.
            vocab_size: alternatively, the vocabulary size to check ids against.

        Raises:
            ValueError: a malformed line (its 1-based number is named), an empty file, or ids
                outside the vocabulary.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no thinking-token file at {path}")
        if tokenizer is not None:
            vocab_size = len(tokenizer)
        words: list[str] = []
        freqs: list[int | None] = []
        ids: list[list[int]] = []
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{n}: not valid JSON ({exc.msg})") from None
            if not isinstance(rec, dict):
                raise ValueError(f"{path}:{n}: expected a JSON object, got {type(rec).__name__}")
            word, freq, tids = rec.get("word"), rec.get("freq"), rec.get("token_ids")
            if not isinstance(word, str) or not word.strip():
                raise ValueError(f"{path}:{n}: 'word' must be a non-empty string, got {word!r}")
            if freq is not None and (isinstance(freq, bool) or not isinstance(freq, int)):
                raise ValueError(f"{path}:{n}: 'freq' must be an int or null, got {freq!r}")
            if (
                not isinstance(tids, list)
                or not tids
                or not all(isinstance(i, int) and not isinstance(i, bool) for i in tids)
            ):
                raise ValueError(f"{path}:{n}: 'token_ids' must be a non-empty list of ints")
            words.append(word)
            freqs.append(freq)
            ids.append(tids)
        if not words:
            raise ValueError(f"{path}: no records (empty word set)")
        return cls(words, freqs, ids, vocab_size=vocab_size)
