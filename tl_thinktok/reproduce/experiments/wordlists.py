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

__all__ = ["FOUND_FILE", "found_list", "frequency_matched", "generation_counts", "word_lists"]

#: fig4's list of the words at MI peaks (reference jsonl format), relative to ``ctx.out``.
FOUND_FILE = "fig4_thinking_tokens.jsonl"


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


def frequency_matched(
    target_ids: Sequence[int],
    counts: Counter,
    exclude: set[int],
    vocab: int,
    seed: int,
    nearest: int = 5,
) -> list[int]:
    """Random ids matched one by one to the generation frequency of ``target_ids``.

    For each target id (in order) one id is drawn at random among the ``nearest`` not yet chosen,
    non-excluded ids whose count is closest to the target's on a log scale (``log1p``), so the
    banned set is about as often generated as the thinking ids — unlike a uniform draw, which
    mostly bans ids the model never generates.

    Raises:
        ValueError: fewer candidate ids than targets.
    """
    pool = np.array([i for i in range(vocab) if i not in exclude], dtype=np.int64)
    if pool.size < len(target_ids):
        raise ValueError(f"only {pool.size} candidate ids to match {len(target_ids)} ids")
    logc = np.log1p(np.array([counts.get(int(i), 0) for i in pool], dtype=np.float64))
    rng = np.random.default_rng(seed)
    free = np.ones(pool.size, bool)
    out = []
    for t in target_ids:
        d = np.abs(logc - np.log1p(counts.get(int(t), 0)))
        d[~free] = np.inf
        cand = np.argsort(d + 1e-9 * rng.random(d.size), kind="stable")[:nearest]
        cand = cand[np.isfinite(d[cand])]
        j = int(rng.choice(cand))
        free[j] = False
        out.append(int(pool[j]))
    return out


def banned_mass(ids: Sequence[int], counts: Counter) -> float:
    """Fraction of the generated tokens (of ``counts``) that are one of ``ids``."""
    total = sum(counts.values())
    return sum(counts.get(int(i), 0) for i in set(ids)) / total if total else float("nan")
