"""Functional host API: one-line wrappers over :func:`~tl_thinktok.hosts.registry.adapter`.

Kept so that ``hosts.resid_post_name(model, -1)`` and friends work as before; each call asks the
model's adapter. Checked on TL 3.9 and TL 4.3 + transformers 5.24 (random Qwen2):

* block output: ``blocks.{i}.hook_resid_post`` (hooked) / ``blocks.{i}.hook_out`` (bridge; the
  hooked name also works there as an alias, but inside a hook ``hook.name`` is always the bridge's
  own name, so never route on ``hook.name``);
* logits: ``unembed.hook_out`` on both; final norm output: ``ln_final.hook_normalized`` on both.

Example:
    >>> from tl_thinktok import hosts
    >>> name = hosts.resid_post_name(model, -1)      # doctest: +SKIP
    >>> logits = hosts.unembed_resid(model, resid)   # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from tl_thinktok._validate import as_token_ids
from tl_thinktok.hosts.bridge import BridgeAdapter
from tl_thinktok.hosts.hooked import HookedAdapter
from tl_thinktok.hosts.registry import adapter

__all__ = [
    "is_bridge",
    "is_hooked",
    "check_host",
    "n_layers",
    "d_model",
    "d_vocab",
    "check_layer",
    "resid_post_name",
    "resid_pre_name",
    "logits_name",
    "final_norm_name",
    "unembed_resid",
    "check_token_ids",
    "tokenizer_of",
    "to_tokens",
    "model_device",
    "fix_bridge_kv_cache",
    "hook_points",
    "hook_counts",
]


def is_bridge(model: Any) -> bool:
    """True if ``model`` is a ``transformer_lens.model_bridge.TransformerBridge``."""
    return BridgeAdapter.matches(model)


def is_hooked(model: Any) -> bool:
    """True if ``model`` is a ``HookedTransformer`` (or a subclass such as sae-lens's)."""
    return HookedAdapter.matches(model)


def check_host(model: Any) -> None:
    """Raise ``TypeError`` unless some registered adapter handles ``model``."""
    adapter(model)


def n_layers(model: Any) -> int:
    """Number of decoder blocks."""
    return adapter(model).n_layers


def d_model(model: Any) -> int:
    """Residual-stream width."""
    return adapter(model).d_model


def d_vocab(model: Any) -> int:
    """Size of the output vocabulary (number of logits)."""
    return adapter(model).d_vocab


def check_layer(model: Any, layer: int) -> int:
    """Validate a block index and return it as a non-negative int.

    Raises:
        TypeError: ``layer`` is not an int.
        ValueError: ``layer`` is outside ``[-n_layers, n_layers)``.

    Example:
        >>> check_layer(model, -1) == n_layers(model) - 1  # doctest: +SKIP
        True
    """
    return adapter(model).check_layer(layer)


def resid_post_name(model: Any, layer: int) -> str:
    """Hook name of block ``layer``'s output (SAE-aware: an SAE there gives ``hook_sae_output``)."""
    return adapter(model).resid_post_name(layer)


def resid_pre_name(model: Any, layer: int) -> str:
    """Hook name of block ``layer``'s input (SAE-aware)."""
    return adapter(model).resid_pre_name(layer)


def logits_name(model: Any) -> str:
    """Hook name whose output is the logits (``[batch, pos, d_vocab]``)."""
    return adapter(model).logits_name()


def final_norm_name(model: Any) -> str | None:
    """Hook name of the final norm's output, or ``None`` if the model has no final norm."""
    return adapter(model).final_norm_name()


def unembed_resid(model: Any, resid: Float[Tensor, "... d_model"]) -> Float[Tensor, "... d_vocab"]:
    """Final norm + unembedding of residual-stream vectors, without firing any hook.

    This is the logit lens: at the last block it reproduces the model's logits. User hooks on
    ``ln_final`` / ``unembed`` (e.g. a ``SuppressTokens`` ban) are deliberately NOT applied.

    Example:
        >>> logits = unembed_resid(model, resid[:, -1])  # doctest: +SKIP
    """
    return adapter(model).unembed_resid(resid)


def tokenizer_of(model: Any) -> Any:
    """The model's HF tokenizer; ``ValueError`` if it has none."""
    return adapter(model).tokenizer


def check_token_ids(model_or_vocab: Any, ids: Iterable[int] | Tensor | int) -> list[int]:
    """Validate token ids against a model's (or an int) vocabulary; a list of ints, order kept.

    Raises:
        TypeError: an id is not an integer.
        ValueError: an id lies outside ``[0, d_vocab)`` (the message lists the bad ids).

    Example:
        >>> check_token_ids(384, [1, 2, 3])
        [1, 2, 3]
    """
    if isinstance(model_or_vocab, bool):
        raise TypeError("model_or_vocab must be a model or an int vocabulary size")
    if isinstance(model_or_vocab, int):
        return as_token_ids(ids, vocab=model_or_vocab)
    return adapter(model_or_vocab).check_token_ids(ids)


def model_device(model: Any) -> torch.device:
    """Device of the model's parameters (any ``nn.Module``)."""
    return next(model.parameters()).device


def to_tokens(model: Any, text: str, *, prepend_bos: bool | None = None) -> Int[Tensor, "1 pos"]:
    """Tokenise ``text`` the same way on every host: no special tokens, then optional BOS.

    The hosts' own ``to_tokens`` disagree on BOS, so tl-thinktok tokenises through this helper;
    ``prepend_bos=None`` follows ``model.cfg.default_prepend_bos``.

    Returns:
        ``[1, pos]`` long tensor on the model's device.
    """
    return adapter(model).to_tokens(text, prepend_bos=prepend_bos)


def hook_points(model: Any) -> dict[str, Any]:
    """Canonical hook name → HookPoint (aliases excluded)."""
    return adapter(model).hook_points()


def hook_counts(model: Any) -> dict[str, int]:
    """Number of torch forward hooks on each HookPoint (for leak checks); zero entries dropped."""
    return adapter(model).hook_counts()


def fix_bridge_kv_cache(model: Any) -> int:
    """Make a TransformerBridge's attention see HF's KV cache (TL 3.9 / 4.3 + transformers 5.x).

    A no-op (0) on hosts without the problem. ``load_model`` applies it; call it for bridges
    booted by hand. Idempotent.

    Returns:
        Number of attention modules patched by this call.

    Example:
        >>> fix_bridge_kv_cache(bridge)  # doctest: +SKIP
        2
    """
    return adapter(model).fix_kv_cache()
