"""The two thinking-word lists of the accuracy experiments (fig5, fig6, fig7): the hand list and
the words found at MI peaks, so that the chain "MI peaks → words → intervention" is tested end to
end.

* ``hand``: the paper's hand list — the organism's ``THINKING_WORDS`` (its training traces' think-
  aloud words), or for a real model the paper's reported top words (``PAPER_TOP_WORDS``);
* ``found``: the words the peak-token lens found at this run's MI peaks
  (``<out>/fig4_thinking_tokens.jsonl``, written by fig4, most frequent first), when fig4 ran.

Example:
    >>> lists = word_lists(ctx, model, n_words=None)      # doctest: +SKIP
    >>> lists["hand"].words[:3], "found" in lists          # doctest: +SKIP
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tl_thinktok import organism
from tl_thinktok.reproduce.accuracy import PAPER_TOP_WORDS, thinking_list
from tl_thinktok.vocab import ThinkingTokens

__all__ = ["FOUND_FILE", "SHARE_TOL", "banned_mass", "found_list", "generation_counts",
           "share_matched", "word_lists"]  # fmt: skip

#: fig4's list of the words at MI peaks (reference jsonl format), relative to ``ctx.out``.
FOUND_FILE = "fig4_thinking_tokens.jsonl"
#: Relative band of the frequency-matched control's banned share around the hand list's.
SHARE_TOL = 0.10


def found_list(out: Path, tokenizer: Any, n_words: int | None) -> ThinkingTokens | None:
    """fig4's words at MI peaks, or ``None`` if fig4 has not written them in ``out``.

    ``n_words``: keep the first ``n_words`` alphabetic words (10 = the reference loader's rule,
    ``None`` = the whole file's list, as fig4 wrote it).
    """
    path = Path(out) / FOUND_FILE
    if not path.is_file():
        return None
    with warnings.catch_warnings():  # the file is ours: what was skipped is in .skipped
        warnings.simplefilter("ignore")
        return ThinkingTokens.load_jsonl(path, tokenizer, n_words=n_words)


def word_lists(ctx: Any, model: Any, n_words: int | None = None) -> dict[str, ThinkingTokens]:
    """``{"hand": ..., "found": ...}`` (``"found"`` only when fig4's file exists)."""
    hand = list(organism.THINKING_WORDS) if ctx.is_organism else PAPER_TOP_WORDS
    lists = {"hand": thinking_list(ctx, model, hand)}
    found = found_list(ctx.out, model.tokenizer, n_words)
    if found is not None:
        lists["found"] = found
    return lists


def generation_counts(token_lists: Iterable[Sequence[int]]) -> Counter:
    """How often each id was generated, over unconstrained generations."""
    c: Counter = Counter()
    for ids in token_lists:
        c.update(int(i) for i in ids)
    return c


def share_matched(
    target_share: float,
    n_target: int,
    counts: Counter,
    exclude: set[int],
    vocab: int,
    seed: int,
    tol: float = SHARE_TOL,
) -> list[int]:
    """Random ids whose banned share of generated tokens is within ``±tol`` (relative) of
    ``target_share`` — several ids where one cannot match.

    Ids are taken in a seeded random order among the non-excluded ids that were generated; an id
    is added when the share stays at most ``target · (1 + tol)``, until it reaches
    ``target · (1 − tol)``. A target of 0 (the banned words are never generated) gets ``n_target``
    random ids that were never generated either. Check the result with :func:`banned_mass`.

    Raises:
        ValueError: no set of candidate ids reaches the band (the message gives the best share).

    Example:
        >>> from collections import Counter
        >>> c = Counter({i: 10 for i in range(1, 50)})
        >>> ids = share_matched(0.2, 1, c, exclude={1}, vocab=60, seed=0)
        >>> abs(banned_mass(ids, c) - 0.2) <= 0.02
        True
    """
    total = sum(counts.values())
    rng = np.random.default_rng(seed)
    if target_share <= 0 or total == 0:
        zero = np.array([i for i in range(vocab) if i not in exclude and not counts.get(i)])
        if zero.size < n_target:
            raise ValueError(f"only {zero.size} never-generated ids to match {n_target} ids")
        return sorted(int(i) for i in rng.choice(zero, n_target, replace=False))
    lo, hi = target_share * (1 - tol), target_share * (1 + tol)
    pool = [i for i in range(vocab) if i not in exclude and counts.get(i)]
    chosen, share = [], 0.0
    for j in rng.permutation(len(pool)):
        c = counts[pool[j]] / total
        if share + c <= hi:
            chosen.append(int(pool[j]))
            share += c
        if share >= lo:
            return sorted(chosen)
    raise ValueError(
        f"no random set of generated ids reaches the banned share {target_share:.4f} ±{tol:.0%} "
        f"(best {share:.4f})"
    )


def banned_mass(ids: Sequence[int], counts: Counter) -> float:
    """Fraction of the generated tokens (of ``counts``) that are one of ``ids``."""
    total = sum(counts.values())
    return sum(counts.get(int(i), 0) for i in set(ids)) / total if total else float("nan")
