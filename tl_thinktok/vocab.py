"""Thinking-token lists: word ↔ every token id that decodes to that word (PAPER.md §3).

The reference code stores one JSON record per word, ``{"word": "So", "freq": 394,
"token_ids": [2100, 4516, 78012]}``, where ``token_ids`` are the ids whose decoded text, stripped of
surrounding whitespace, is the word: case-sensitive, so ``"So"`` and ``" So"`` but not ``"so"``
(``case_insensitive=True`` adds the case variants). Its loader keeps the first 10 purely alphabetic
words of the file (``^[a-zA-Z]+$``) and skips the rest (``" "``, ``"\n\n"``, ``"="`` …), as
:meth:`ThinkingTokens.load_jsonl` does by default. :class:`ThinkingTokens` builds such lists for any
HF tokenizer, reads and writes the jsonl format, and hands the flattened ids to
:class:`tl_thinktok.SuppressTokens` / :class:`tl_thinktok.RepresentationRecycling`.

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
import re
import warnings
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tl_thinktok._validate import as_token_ids, check_bool, check_int

__all__ = ["REFERENCE_N_WORDS", "ThinkingTokens", "VocabIndex", "vocab_index"]

_CACHE_ATTR = "_thinktok_vocab_index"
#: The reference loader keeps the first this many alphabetic words of a thinking-token file.
REFERENCE_N_WORDS = 10
_ALPHABETIC = re.compile(r"[a-zA-Z]+")


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

    def ids_for(self, word: str, *, case_insensitive: bool = False) -> list[int]:
        """All ids whose decoded text, stripped, equals ``word`` (case-sensitive unless asked)."""
        check_bool("case_insensitive", case_insensitive)
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
        skipped: records :meth:`load_jsonl` left out, as ``(line, word, reason)`` (empty otherwise;
            not part of equality).
    """

    words: list[str]
    freqs: list[int | None]
    ids: list[list[int]]
    vocab_size: int | None = None
    skipped: list[tuple[int, str, str]] = field(default_factory=list, compare=False, repr=False)

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
        if self.vocab_size is not None:
            self.vocab_size = check_int("vocab_size", self.vocab_size, low=1)
        self.freqs = [
            None if f is None else check_int(f"freq of {w!r}", f, low=0)
            for w, f in zip(self.words, self.freqs, strict=True)
        ]
        for w, ids in zip(self.words, self.ids, strict=True):
            if not ids:
                raise ValueError(f"word {w!r} maps to no token id")
        self.ids = [
            as_token_ids(
                ids, name=f"token ids of word {w!r} (tokenizer vocabulary)", vocab=self.vocab_size
            )
            for w, ids in zip(self.words, self.ids, strict=True)
        ]

    # ---------------------------------------------------------------- construction
    @classmethod
    def from_words(
        cls,
        tokenizer: Any,
        words: Iterable[str],
        freqs: Iterable[int | None] | None = None,
        *,
        case_insensitive: bool = False,
    ) -> ThinkingTokens:
        """Map words to all their token ids for ``tokenizer``.

        Args:
            tokenizer: HF tokenizer (the vocabulary is decoded once and cached on it).
            words: words in list order, e.g. ``["So", "Let", "Hmm"]``.
            freqs: optional frequencies, same length as ``words``.
            case_insensitive: also match case variants (``"so"``, ``"SO"``). Default ``False``
                as the reference: ``"So"`` takes ``"So"`` and ``" So"`` only.

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
        case_insensitive: bool = False,
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
        if k is not None:
            k = check_int("k", k, low=1)
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
        k = check_int("k", k, low=0)
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
        cls,
        path: str | Path,
        tokenizer: Any = None,
        *,
        vocab_size: int | None = None,
        n_words: int | None = REFERENCE_N_WORDS,
        alphabetic: bool = True,
    ) -> ThinkingTokens:
        """Read the reference jsonl format the way the reference loader does.

        Records are read in file order; with ``alphabetic`` (default) a record whose word is not
        purely alphabetic (``^[a-zA-Z]+$``: ``" "``, ``"\\n\\n"``, ``"="``, ``"1"`` …) is skipped,
        and reading stops after ``n_words`` kept words (default 10, as the reference; ``None``
        keeps all). What was left out is listed in :attr:`skipped` and named in a warning.

        Args:
            path: jsonl file, one ``{"word": str, "freq": int|null, "token_ids": [int]}`` per line
                (blank lines ignored; ``freq`` may be absent).
            tokenizer: if given, ids are checked against its vocabulary size.
            vocab_size: alternatively, the vocabulary size to check ids against.
            n_words: keep at most this many words (``None``: all).
            alphabetic: skip non-alphabetic words; ``False`` keeps every record (each must then
                have a non-empty word and ids).

        Raises:
            ValueError: a malformed kept line (its 1-based number is named), no word kept, or ids
                outside the vocabulary.

        Example:
            >>> tt = ThinkingTokens.load_jsonl("R1-Distill-Llama-8B.jsonl")  # doctest: +SKIP
            >>> tt.words[:4], tt.skipped[0]  # doctest: +SKIP
            (['So', 'Let', 'Hmm', 'I'], (4, ' ', 'not alphabetic'))
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no thinking-token file at {path}")
        if n_words is not None:
            n_words = check_int("n_words", n_words, low=1)
        check_bool("alphabetic", alphabetic)
        if tokenizer is not None:
            vocab_size = len(tokenizer)
        words: list[str] = []
        freqs: list[int | None] = []
        ids: list[list[int]] = []
        skipped: list[tuple[int, str, str]] = []
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
            if n_words is not None and len(words) >= n_words:  # the reference stops reading here
                skipped.append((n, str(word), f"beyond the first {n_words} words"))
                continue
            if not isinstance(word, str):
                raise ValueError(f"{path}:{n}: 'word' must be a string, got {word!r}")
            if alphabetic and not _ALPHABETIC.fullmatch(word):
                skipped.append((n, word, "not alphabetic"))
                continue
            if not word.strip():
                raise ValueError(f"{path}:{n}: 'word' must be a non-empty string, got {word!r}")
            try:
                if freq is not None:
                    freq = check_int("'freq' (an int or null)", freq)
                if not isinstance(tids, list):
                    raise TypeError(f"'token_ids' must be a list of ints, got {tids!r}")
                tids = as_token_ids(tids, name="'token_ids'", allow_empty=False)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"{path}:{n}: {exc}") from None
            words.append(word)
            freqs.append(freq)
            ids.append(tids)
        if not words:
            what = f" ({len(skipped)} records skipped as not alphabetic)" if skipped else ""
            raise ValueError(f"{path}: no records (empty word set){what}")
        if skipped:
            shown = ", ".join(f"{w!r}" for _, w, _ in skipped[:12])
            more = f" and {len(skipped) - 12} more" if len(skipped) > 12 else ""
            n_alpha = sum(r == "not alphabetic" for _, _, r in skipped)
            warnings.warn(
                f"{path.name}: kept {len(words)} words, skipped {len(skipped)} records "
                f"({n_alpha} not alphabetic, {len(skipped) - n_alpha} beyond n_words={n_words}): "
                f"{shown}{more} (see .skipped)",
                stacklevel=2,
            )
        out = cls(words, freqs, ids, vocab_size=vocab_size)
        out.skipped = skipped
        return out
