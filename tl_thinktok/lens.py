"""Peak-token logit lens and thinking-token frequency tables (PAPER.md §3, Figs. 4/8).

:class:`PeakTokenLens` is a reader: it maps step representations h_t (block ``layer`` outputs: a
``[step, d_model]`` tensor from :func:`tl_thinktok.probe.step_residuals`, or anything with a
``.residuals`` tensor such as an :class:`~tl_thinktok.probe.MIProbe`) through the final norm and
unembedding, ``p_t = softmax(W_U norm(h_t) + b)``, and returns the top-``k`` tokens.
It calls :func:`tl_thinktok.hosts.unembed_resid`, so hooks the user put on ``ln_final`` /
``unembed`` (a :class:`~tl_thinktok.interventions.suppress.SuppressTokens` ban, a steering hook)
do NOT change what the lens reads. At the last block under greedy decoding, the top-1 token at
step t is the generated token t; at other layers it is the logit lens.

:func:`thinking_token_counts` applies the paper's aggregation — decode, strip, keep
``^[a-zA-Z]+$`` — and returns a :class:`TokenCounts` table (``top``, ``save``/``load``, ``plot``).

Example:
    >>> h = step_residuals(model, out[0], prompt_len, layer=-1)           # doctest: +SKIP
    >>> peaks = find_peaks(mi)                                              # doctest: +SKIP
    >>> res = PeakTokenLens(layer=-1).decode(model, h, steps=peaks)         # doctest: +SKIP
    >>> counts = thinking_token_counts([res])                               # doctest: +SKIP
    >>> counts.top(5), counts.plot()                                        # doctest: +SKIP
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from tl_thinktok import hosts
from tl_thinktok._io import JsonIO
from tl_thinktok._validate import check_int
from tl_thinktok.interventions.base import Component
from tl_thinktok.probe import MIProbe

__all__ = ["LensResult", "PeakTokenLens", "TokenCounts", "thinking_token_counts", "WORD_RE"]

WORD_RE = re.compile(r"^[a-zA-Z]+$")
"""The paper's filter: purely alphabetic tokens (after decoding and stripping)."""


@dataclass
class LensResult(JsonIO):
    """Top-``k`` lens readout at a set of steps.

    Attributes:
        steps: step indices that were decoded (rows of the residual matrix).
        token_ids: ``[n, k]`` token ids, most probable first.
        tokens: ``n`` lists of ``k`` decoded strings (not stripped).
        probs: ``[n, k]`` softmax probabilities (computed in float64).
        layer: block the residuals came from (as given to the lens).
    """

    steps: list[int]
    token_ids: Int[Tensor, "n k"]
    tokens: list[list[str]]
    probs: Float[Tensor, "n k"]
    layer: int = -1

    def __len__(self) -> int:
        return len(self.steps)

    @property
    def top1(self) -> list[str]:
        """Most probable token string per step."""
        return [t[0] for t in self.tokens]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LensResult:
        """Inverse of ``to_dict`` (tensors rebuilt; a ``None`` probability is NaN)."""
        n = len(data["steps"])
        probs = [[float("nan") if p is None else p for p in row] for row in data["probs"]]
        return cls(
            steps=[int(s) for s in data["steps"]],
            token_ids=torch.tensor(data["token_ids"], dtype=torch.long).reshape(n, -1),
            tokens=[list(t) for t in data["tokens"]],
            probs=torch.tensor(probs, dtype=torch.float64).reshape(n, -1),
            layer=int(data.get("layer", -1)),
        )


class PeakTokenLens(Component):
    """Decode step representations to tokens through the final norm + unembedding.

    Args:
        layer: block the residuals come from (stored in the result; used by the recorder).
        k: number of top tokens per step.

    A reader: :meth:`decode` reads a ``[step, d_model]`` tensor or anything with
    ``.residuals`` (an :class:`~tl_thinktok.probe.MIProbe`). For convenience it also owns a
    recorder, ``lens.probe = MIProbe(layer)``: ``with lens.attach(model): model.generate(...)``
    records through it, then ``lens.decode(model)`` reads it.

    Example:
        >>> lens = PeakTokenLens(layer=-1, k=3)
        >>> res = lens.decode(model, residuals, steps=[4, 17])  # doctest: +SKIP
        >>> res = lens.decode(model, probe, steps=peaks)        # doctest: +SKIP
        >>> res.tokens[0]                                        # doctest: +SKIP
        [' So', ' Let', ' Hmm']
    """

    def __init__(self, layer: int = -1, k: int = 1) -> None:
        self.layer = check_int("layer", layer)
        self.k = check_int("k", k, low=1)
        self.probe = MIProbe(self.layer)

    def __repr__(self) -> str:
        return f"PeakTokenLens(layer={self.layer}, k={self.k})"

    @property
    def residuals(self) -> Float[Tensor, "step d_model"]:
        """Residuals recorded by :attr:`probe` while attached."""
        return self.probe.residuals

    def reset(self) -> None:
        """Forget recorded residuals."""
        self.probe.reset()

    def _fwd_hooks(self, model: Any) -> list[tuple[str, Callable]]:
        """The recorder's hooks (those of :attr:`probe`)."""
        return self.probe._fwd_hooks(model)

    def decode(
        self,
        model: Any,
        residuals: Float[Tensor, "step d_model"] | Any = None,
        steps: Sequence[int] | Tensor | None = None,
    ) -> LensResult:
        """Top-``k`` tokens of ``softmax(unembed(norm(h)))`` at ``steps``.

        Args:
            model: HookedTransformer or TransformerBridge (with a tokenizer for the strings).
            residuals: ``[step, d_model]`` block outputs, or an object with ``.residuals`` (an
                :class:`~tl_thinktok.probe.MIProbe`); ``None`` → :attr:`probe`'s recording.
            steps: rows to decode (e.g. MI peak indices); ``None`` → all rows.

        Returns:
            :class:`LensResult` with ``n = len(steps)`` rows.
        """
        if residuals is None:
            residuals = self.probe
        if not isinstance(residuals, Tensor) and hasattr(residuals, "residuals"):
            residuals = residuals.residuals
        if not isinstance(residuals, Tensor) or residuals.ndim != 2:
            shape = tuple(residuals.shape) if isinstance(residuals, Tensor) else residuals
            raise ValueError(f"residuals must be a [step, d_model] tensor, got {shape}")
        width = hosts.d_model(model)
        if residuals.shape[-1] != width:
            raise ValueError(f"residuals have width {residuals.shape[-1]}, model d_model={width}")
        n = residuals.shape[0]
        if steps is None:
            idx = list(range(n))
        else:
            if isinstance(steps, Tensor):
                steps = steps.flatten().tolist()
            idx = []
            for s in steps:
                s = check_int("steps", s)
                if not -n <= s < n:
                    raise ValueError(f"step {s} is out of range for {n} residual rows")
                idx.append(s % n)
        k = min(self.k, hosts.d_vocab(model))
        with torch.no_grad():
            logits = hosts.unembed_resid(model, residuals[idx]).double()
            probs = torch.softmax(logits, dim=-1)
            top = probs.topk(k, dim=-1)
        token_ids = top.indices.cpu()
        tok = hosts.tokenizer_of(model)
        tokens = [[tok.decode([int(i)]) for i in row] for row in token_ids.tolist()]
        return LensResult(idx, token_ids, tokens, top.values.cpu(), self.layer)


@dataclass
class TokenCounts(JsonIO):
    """Frequency table of thinking words (Counter-like).

    Attributes:
        counts: word → count, most frequent first (ties alphabetical).
        total: number of tokens seen before filtering.
    """

    counts: dict[str, int] = field(default_factory=dict)
    total: int = 0

    def __post_init__(self) -> None:
        self.counts = dict(sorted(self.counts.items(), key=lambda kv: (-kv[1], kv[0])))

    def __getitem__(self, word: str) -> int:
        return self.counts.get(word, 0)

    def __len__(self) -> int:
        return len(self.counts)

    def __iter__(self) -> Iterator[str]:
        return iter(self.counts)

    def items(self):
        return self.counts.items()

    def top(self, k: int = 15) -> list[tuple[str, int]]:
        """The ``k`` most frequent ``(word, count)`` pairs."""
        k = check_int("k", k, low=0)
        return list(self.counts.items())[:k]

    most_common = top

    def __add__(self, other: TokenCounts) -> TokenCounts:
        merged = dict(self.counts)
        for w, c in other.counts.items():
            merged[w] = merged.get(w, 0) + c
        return TokenCounts(merged, self.total + other.total)

    @classmethod
    def from_dict(cls, data: Any) -> TokenCounts:
        """Inverse of ``to_dict`` (``{"counts": {word: n}, "total": n}``)."""
        if not isinstance(data, dict) or not isinstance(data.get("counts"), dict):
            raise ValueError("not a TokenCounts file (missing 'counts' mapping)")
        return cls({str(w): int(c) for w, c in data["counts"].items()}, int(data.get("total", 0)))

    @classmethod
    def load(cls, path: str | Path) -> TokenCounts:
        """Read a file written by ``save`` (a wrong file: ``ValueError`` naming it)."""
        try:
            return super().load(path)
        except ValueError as err:
            raise ValueError(f"{path}: {err}") from None

    def plot(self, k: int = 15, ax: Any = None, title: str | None = None) -> Any:
        """Bar chart of the top-``k`` words (Fig. 4 style). Returns the matplotlib Axes."""
        if ax is None:
            import matplotlib.pyplot as plt

            _, ax = plt.subplots(figsize=(max(4.0, 0.5 * k), 3.0))
        pairs = self.top(k)
        ax.bar([w for w, _ in pairs], [c for _, c in pairs], color="tab:blue")
        ax.set_ylabel("frequency at MI peaks")
        ax.tick_params(axis="x", rotation=45)
        if title:
            ax.set_title(title)
        return ax


def _iter_strings(items: Any, tokenizer: Any) -> Iterator[str]:
    if isinstance(items, LensResult):
        yield from items.top1
    elif isinstance(items, str):
        yield items
    elif isinstance(items, Tensor):
        yield from _iter_strings(items.flatten().tolist(), tokenizer)
    elif isinstance(items, int) and not isinstance(items, bool):
        if tokenizer is None:
            raise ValueError("token ids need tokenizer= to be decoded")
        yield tokenizer.decode([items])
    elif isinstance(items, Iterable):
        for it in items:
            yield from _iter_strings(it, tokenizer)
    else:
        raise TypeError(
            f"expected LensResult, str, token id or an iterable of them, got {type(items).__name__}"
        )


def thinking_token_counts(
    tokens_or_lens_results: Any, tokenizer: Any = None, *, pattern: re.Pattern = WORD_RE
) -> TokenCounts:
    """Count thinking words over peaks (paper: decode, strip, keep ``^[a-zA-Z]+$``).

    Args:
        tokens_or_lens_results: :class:`LensResult` objects (their top-1 tokens), decoded token
            strings, token ids (with ``tokenizer``), or nested iterables of these.
        tokenizer: needed only for raw token ids.
        pattern: the keep-filter applied to the stripped string.

    Returns:
        :class:`TokenCounts`.

    Example:
        >>> thinking_token_counts([" So", "So", " 3", "Wait", " so"]).top(2)
        [('So', 2), ('Wait', 1)]
    """
    counts: dict[str, int] = {}
    total = 0
    for s in _iter_strings(tokens_or_lens_results, tokenizer):
        total += 1
        w = s.strip()
        if pattern.fullmatch(w):
            counts[w] = counts.get(w, 0) + 1
    return TokenCounts(counts, total)
