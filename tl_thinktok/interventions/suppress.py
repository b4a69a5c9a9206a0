"""Thinking-token suppression (PAPER.md §4, Fig. 5): logit −inf for banned ids at every step.

:class:`SuppressTokens` hooks the logits (``unembed.hook_out`` on both hosts) and sets the banned
ids to ``-inf`` at every position of every forward call, so greedy or sampled ``model.generate``
can never emit them (HF equivalent: ``generate(..., suppress_tokens=ids)``).
:func:`random_control` draws the paper's control: the same number of random non-thinking ids.

Example:
    >>> tt = ThinkingTokens.from_words(model.tokenizer, ["So", "Let", "Hmm"])  # doctest: +SKIP
    >>> ban = SuppressTokens(tt.token_ids(k=2))                                # doctest: +SKIP
    >>> with ban.attach(model):                                                # doctest: +SKIP
    ...     out = model.generate(prompt, max_new_tokens=256, do_sample=False)
    >>> ids = random_control(50257, len(ban), tt.token_ids(), seed=0)        # doctest: +SKIP
    >>> control = SuppressTokens(ids)                                          # doctest: +SKIP
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor

from tl_thinktok import hosts
from tl_thinktok._validate import as_token_ids, check_int
from tl_thinktok.interventions.base import Component

__all__ = ["SuppressTokens", "random_control"]


class SuppressTokens(Component):
    """Ban token ids: their logits are ``-inf`` at every position and generation step.

    Args:
        token_ids: ids to ban (ints, an integer tensor, or a
            :class:`~tl_thinktok.vocab.ThinkingTokens` whose ids are all banned). Duplicates are
            dropped. Checked against the model's vocabulary when attached.

    Attributes:
        token_ids: the banned ids (sorted, unique).
        hits: number of (sequence, forward call) pairs in which the model's top-1 next token at the
            last position was a banned id before suppression (how often the ban had to act).

    Example:
        >>> ban = SuppressTokens([2100, 4516])
        >>> with ban.attach(model):                                          # doctest: +SKIP
        ...     out = model.generate(prompt, max_new_tokens=64, do_sample=False)
    """

    def __init__(self, token_ids: Iterable[int] | Tensor | Any) -> None:
        ids = as_token_ids(token_ids, name="token_ids", unique=True)
        if not ids:
            raise ValueError("SuppressTokens needs at least one token id (got an empty set)")
        self.token_ids: list[int] = sorted(ids)
        self._hits: list[Tensor] = []  # per-call top-1 ids, checked lazily (no sync per step)
        self._index: dict[torch.device, Tensor] = {}

    def __repr__(self) -> str:
        return f"SuppressTokens(n={len(self.token_ids)}, hits={self.hits})"

    def __len__(self) -> int:
        return len(self.token_ids)

    @property
    def hits(self) -> int:
        """How often the top-1 next token was banned before suppression (see class doc)."""
        if not self._hits:
            return 0
        tops = [t.to("cpu") for t in self._hits]
        return int(torch.isin(torch.cat(tops), torch.tensor(self.token_ids)).sum())

    def reset(self) -> None:
        """Zero the ``hits`` counter (``attach`` does this by default)."""
        self._hits = []

    def _idx(self, device: torch.device) -> Tensor:
        idx = self._index.get(device)
        if idx is None:
            idx = torch.tensor(self.token_ids, dtype=torch.long, device=device)
            self._index[device] = idx
        return idx

    def _hook(self, logits: Tensor, hook: Any) -> Tensor:
        if logits.shape[-1] <= self.token_ids[-1]:
            raise ValueError(
                f"banned id {self.token_ids[-1]} is outside the logits' vocabulary "
                f"({logits.shape[-1]})"
            )
        idx = self._idx(logits.device)
        last = logits[..., -1, :] if logits.ndim == 3 else logits
        self._hits.append(last.argmax(-1).flatten())  # one kernel; compared with the ban lazily
        if torch.is_grad_enabled() and logits.requires_grad:
            return logits.index_fill(-1, idx, float("-inf"))
        return logits.index_fill_(-1, idx, float("-inf"))  # in place: no copy of the logits

    def _fwd_hooks(self, model: Any) -> list[tuple[str, Callable]]:
        """``[(logits hook name, ban)]``; raises ``ValueError`` for ids outside the vocab."""
        hosts.check_token_ids(model, self.token_ids)
        return [(hosts.logits_name(model), self._hook)]


def random_control(
    vocab_size: int, n: int, exclude: Iterable[int] = (), seed: int = 0
) -> list[int]:
    """``n`` distinct random ids in ``[0, vocab_size)`` not in ``exclude`` (the Fig. 5 control).

    Deterministic: the same arguments give the same ids (independent of the global RNGs).

    Args:
        vocab_size: vocabulary size.
        n: number of ids (``0 <= n <= vocab_size - |exclude ∩ vocab|``).
        exclude: ids never drawn (the thinking-token ids, special tokens …).
        seed: RNG seed.

    Returns:
        ``n`` ids, sorted.

    Raises:
        ValueError: impossible request (too few candidates), negative ``n``, bad ``vocab_size``.

    Example:
        >>> ids = random_control(100, 3, exclude=[1, 2, 3], seed=0)
        >>> len(ids), len(set(ids)), any(i in (1, 2, 3) for i in ids)
        (3, 3, False)
    """
    vocab_size = check_int("vocab_size", vocab_size, low=1)
    n = check_int("n", n, low=0)
    seed = check_int("seed", seed)
    excl = set(as_token_ids(list(exclude), name="exclude"))
    candidates = [i for i in range(vocab_size) if i not in excl]
    if n > len(candidates):
        raise ValueError(
            f"cannot draw {n} distinct ids: only {len(candidates)} of {vocab_size} are not excluded"
        )
    return sorted(random.Random(seed).sample(candidates, n))
