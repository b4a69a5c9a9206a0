"""Greedy decoding on either host: encode (one BOS policy), generate, decode.

Every tl-thinktok generation goes through here, so the BOS policy (:func:`encode`, via
:func:`tl_thinktok.hosts.to_tokens`), the EOS / padding ids and the context-length rule live in
one place.

Context length: a model attends to at most ``n_ctx = model.cfg.n_ctx`` positions. A prompt longer
than that is refused up front with a ``ValueError`` naming both lengths. A prompt of ``P`` tokens
leaves room for ``n_ctx - P + 1`` new tokens (the last generated token is never fed back); a larger
``max_new_tokens`` is clipped to that room, with a ``UserWarning`` (:func:`max_new_tokens_room`).

Example:
    >>> from tl_thinktok.loading import load_model
    >>> model = load_model("organism")
    >>> ids = encode(model, "Q: 2 + 3 = ?")
    >>> new = greedy(model, ids, max_new_tokens=16)
    >>> text = decode(model, new)
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import torch

from tl_thinktok import hosts
from tl_thinktok._validate import check_int
from tl_thinktok.hosts.versions import quiet_cache_rename

__all__ = [
    "answer_suffix",
    "check_prompt_length",
    "clip_budget",
    "context_length",
    "decode",
    "encode",
    "eos_id",
    "greedy",
    "greedy_batch",
    "max_new_tokens_room",
    "pad_id",
]


def eos_id(model: Any) -> int | None:
    """The tokenizer's EOS id (``None`` if it has none)."""
    return getattr(model.tokenizer, "eos_token_id", None)


def pad_id(model: Any) -> int:
    """Id used for left padding: the tokenizer's pad id, else EOS, else 0."""
    tok = model.tokenizer
    for cand in (getattr(tok, "pad_token_id", None), eos_id(model), 0):
        if cand is not None:
            return int(cand)
    return 0  # pragma: no cover


def encode(model: Any, text: str, *, bos: bool | None = None) -> list[int]:
    """Token ids of ``text`` (no special tokens; BOS per ``bos``).

    Args:
        model: HookedTransformer or TransformerBridge with a tokenizer.
        text: raw text (no chat template).
        bos: prepend BOS; ``None`` = the model's default (whether its HF tokenizer adds BOS).

    Example:
        >>> encode(model, "Hello", bos=False)  # doctest: +SKIP
        [15496]
    """
    return hosts.to_tokens(model, text, prepend_bos=bos)[0].tolist()


def decode(model: Any, ids: Sequence[int]) -> str:
    """Decode ids, dropping special tokens."""
    return model.tokenizer.decode(list(ids), skip_special_tokens=True)


def answer_suffix(family: str) -> str:
    """Text that forces a final answer after truncated thinking, per prompt family.

    Example:
        >>> answer_suffix("organism")
        ' </think> \\\\boxed{'
    """
    if family == "organism":
        return " </think> \\boxed{"
    if family == "r1":
        return "\n</think>\n\nFinal Answer within \\boxed{}: \\boxed{"
    return " Final Answer within \\boxed{}: \\boxed{"


def context_length(model: Any) -> int | None:
    """The model's context length ``model.cfg.n_ctx`` (``None`` if it declares none)."""
    n = getattr(getattr(model, "cfg", None), "n_ctx", None)
    return int(n) if isinstance(n, int) and not isinstance(n, bool) and n > 0 else None


def check_prompt_length(model: Any, prompt_len: int, *, what: str = "prompt") -> None:
    """Refuse a sequence longer than the model's context.

    Raises:
        ValueError: ``prompt_len > model.cfg.n_ctx`` (the message names both lengths).

    Example:
        >>> check_prompt_length(model, 2000)  # doctest: +SKIP
        Traceback (most recent call last):
        ValueError: prompt has 2000 tokens but the model's context (cfg.n_ctx) is 1024 tokens
    """
    n_ctx = context_length(model)
    if n_ctx is not None and prompt_len > n_ctx:
        raise ValueError(
            f"{what} has {prompt_len} tokens but the model's context (cfg.n_ctx) is {n_ctx} "
            "tokens; shorten it"
        )


def max_new_tokens_room(model: Any, prompt_len: int) -> int | None:
    """How many new tokens fit after a prompt of ``prompt_len`` tokens (``None`` = no limit).

    Generating ``N`` tokens feeds ``prompt_len + N - 1`` positions, so the room is
    ``n_ctx - prompt_len + 1``.

    Raises:
        ValueError: the prompt alone is longer than the context.
    """
    check_prompt_length(model, prompt_len)
    n_ctx = context_length(model)
    return None if n_ctx is None else n_ctx - prompt_len + 1


@torch.no_grad()
def greedy_batch(
    model: Any,
    prompts: Sequence[Sequence[int]],
    max_new_tokens: int,
    *,
    fwd_hooks: Sequence[tuple[str, Callable]] = (),
    stop_at_eos: bool = True,
    stop_ids: Sequence[int] = (),
) -> list[list[int]]:
    """Greedy decoding of several prompts at once (left padding, KV cache, hooks attached).

    Equal to one-by-one greedy decoding (tested against HF ``generate``); use it only with hooks
    that treat every sequence the same way (token bans: yes; per-sequence state such as
    Representation Recycling: no). Where the host cannot left-pad exactly
    (:meth:`~tl_thinktok.hosts.base.HostAdapter.left_padding_safe`: the bridge in float64) it
    runs one unpadded batch per prompt length. ``max_new_tokens`` is clipped to the context room
    of the longest prompt (module docstring).

    Args:
        model: HookedTransformer or TransformerBridge with a tokenizer.
        prompts: token ids per prompt (each non-empty).
        max_new_tokens: new tokens per prompt (>= 0).
        fwd_hooks: ``(hook name, hook)`` pairs attached during generation.
        stop_at_eos: stop a sequence at EOS.
        stop_ids: more ids that stop a sequence (kept), with ``stop_at_eos``.

    Returns:
        One list of new token ids per prompt, cut after the first EOS (EOS included) when
        ``stop_at_eos``; without it every row has ``max_new_tokens`` ids.

    Raises:
        ValueError: an empty prompt, or a prompt longer than ``model.cfg.n_ctx``.

    Example:
        >>> greedy_batch(model, [encode(model, "2 + 3 ="), encode(model, "7 - 1 =")], 4)
        ... # doctest: +SKIP
    """
    max_new_tokens = check_int("max_new_tokens", max_new_tokens, low=0)
    if not prompts:
        return []
    max_new_tokens = clip_budget(model, prompts, max_new_tokens)
    if max_new_tokens <= 0:
        return [[] for _ in prompts]
    lengths = sorted({len(p) for p in prompts})
    if len(lengths) > 1 and not hosts.adapter(model).left_padding_safe():
        # one batch per prompt length, none padded (the host cannot left-pad exactly)
        out: list[list[int]] = [[] for _ in prompts]
        for n in lengths:
            rows = [i for i, p in enumerate(prompts) if len(p) == n]
            gens = greedy_batch(
                model, [prompts[i] for i in rows], max_new_tokens,
                fwd_hooks=fwd_hooks, stop_at_eos=stop_at_eos, stop_ids=stop_ids,
            )  # fmt: skip
            for i, g in zip(rows, gens, strict=True):
                out[i] = g
        return out
    toks, _ = _left_pad(model, prompts)
    n = toks.shape[1]
    kwargs: dict[str, Any] = dict(
        max_new_tokens=int(max_new_tokens),
        do_sample=False,
        stop_at_eos=stop_at_eos,
        verbose=False,
        return_type="tokens",
    )
    if len(prompts) > 1:  # a single prompt has no padding
        kwargs["padding_side"] = "left"
    eos = eos_id(model)
    ends = [eos] if eos is not None else []
    ends += [int(t) for t in stop_ids if int(t) not in ends]
    if ends:
        kwargs["eos_token_id"] = ends[0] if len(ends) == 1 else ends
    with model.hooks(fwd_hooks=list(fwd_hooks)), quiet_cache_rename():
        out = model.generate(toks, **kwargs)
    res = []
    for row in out[:, n:].tolist():
        if stop_at_eos:
            cut = next((i for i, t in enumerate(row) if t in ends), None)
            row = row if cut is None else row[: cut + 1]
        res.append(row)
    return res


def greedy(
    model: Any,
    ids: Sequence[int],
    max_new_tokens: int,
    *,
    fwd_hooks: Sequence[tuple[str, Callable]] = (),
    stop_at_eos: bool = True,
) -> list[int]:
    """Greedy decoding of one prompt (the host's ``generate``, KV cache, hooks attached).

    Returns:
        The new token ids (EOS included if produced).

    Example:
        >>> new = greedy(model, encode(model, "2 + 3 ="), max_new_tokens=8)  # doctest: +SKIP
    """
    out = greedy_batch(model, [ids], max_new_tokens, fwd_hooks=fwd_hooks, stop_at_eos=stop_at_eos)
    return out[0]


def clip_budget(model: Any, prompts: Sequence[Sequence[int]], max_new_tokens: int) -> int:
    """Refuse empty prompts; clip ``max_new_tokens`` to the longest prompt's context room.

    Warns (``UserWarning``) when it clips. Every engine applies it (:mod:`tl_thinktok.engines`).
    """
    for i, p in enumerate(prompts):
        if len(p) == 0:
            raise ValueError(f"prompt {i} is empty: give at least one token id")
    n = max(len(p) for p in prompts)
    room = max_new_tokens_room(model, n)
    if room is not None and max_new_tokens > room:
        warnings.warn(
            f"max_new_tokens={max_new_tokens} does not fit: a {n}-token prompt leaves room for "
            f"{room} new tokens in the model's context (cfg.n_ctx={context_length(model)}); "
            f"generating {room}",
            stacklevel=3,
        )
        return room
    return max_new_tokens


def _left_pad(model: Any, prompts: Sequence[Sequence[int]]) -> tuple[torch.Tensor, list[int]]:
    n = max(len(p) for p in prompts)
    pad = pad_id(model)
    rows = [[pad] * (n - len(p)) + list(p) for p in prompts]
    return torch.tensor(rows, device=hosts.model_device(model)), [n - len(p) for p in prompts]
