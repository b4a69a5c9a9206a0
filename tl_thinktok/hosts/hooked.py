"""``HookedAdapter``: ``HookedTransformer`` (and sae-lens's ``HookedSAETransformer``), TL 3.x only.

Hook names ``blocks.{i}.hook_resid_pre`` / ``blocks.{i}.hook_resid_post``; each block receives its
own ``past_kv_cache_entry`` (``past_keys`` / ``past_values``: ``[batch, pos, heads, d_head]``);
the final norm and unembedding are applied from their weights for the hook-free logit lens.

Example:
    >>> ad = HookedAdapter(model)      # doctest: +SKIP
    >>> ad.resid_pre_name(0)           # doctest: +SKIP
    'blocks.0.hook_resid_pre'
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from tl_thinktok.hosts.base import HostAdapter
from tl_thinktok.hosts.versions import supported_hosts

__all__ = ["HookedAdapter"]


def _tl_norm(module: torch.nn.Module, x: Tensor) -> Tensor:
    """Apply a TransformerLens norm module's maths from its weights (no HookPoint fires)."""
    # TL 3.x only (the module is gone in 4.x): imported on the hooked path, never at import time
    from transformer_lens.components import LayerNorm, LayerNormPre, RMSNorm, RMSNormPre

    dtype = x.dtype
    if x.dtype not in (torch.float32, torch.float64):
        x = x.to(torch.float32)
    eps = float(module.eps)
    if isinstance(module, (LayerNorm, LayerNormPre)):
        x = x - x.mean(-1, keepdim=True)
        x = x / (x.pow(2).mean(-1, keepdim=True) + eps).sqrt()
        if isinstance(module, LayerNorm):
            x = x * module.w + module.b
    elif isinstance(module, (RMSNorm, RMSNormPre)):
        x = x / (x.pow(2).mean(-1, keepdim=True) + eps).sqrt()
        if isinstance(module, RMSNorm):
            x = x * module.w
    else:
        raise TypeError(f"unsupported final norm module {type(module).__name__}")
    return x.to(dtype)


class HookedAdapter(HostAdapter):
    """Adapter for ``transformer_lens.HookedTransformer`` and its subclasses.

    Example:
        >>> HookedAdapter(model).logits_name()   # doctest: +SKIP
        'unembed.hook_out'
    """

    name = "hooked"

    @classmethod
    def matches(cls, model: Any) -> bool:
        """True for a ``HookedTransformer`` (or a subclass such as sae-lens's); False on TL 4."""
        if "hooked" not in supported_hosts():  # TL 4.x: no HookedTransformer to import
            return False
        try:
            from transformer_lens import HookedTransformer
        except ImportError:  # pragma: no cover - guarded by the version check above
            return False
        return isinstance(model, HookedTransformer)

    def _resid_post(self, i: int) -> str:
        return f"blocks.{i}.hook_resid_post"

    def _resid_pre(self, i: int) -> str:
        return f"blocks.{i}.hook_resid_pre"

    def _unembed_no_hooks(self, resid: Tensor) -> Tensor:
        m = self.model
        ln = getattr(m, "ln_final", None)
        x = resid.to(device=m.W_U.device, dtype=m.W_U.dtype)
        if ln is not None:
            x = _tl_norm(ln, x)
        return x @ m.W_U + m.b_U

    def additive_position_embedding(self) -> str | None:
        pe = getattr(self.model.cfg, "positional_embedding_type", "rotary")
        return pe if pe in ("standard", "shortformer") else None

    def block_input(self, args: tuple, kwargs: dict[str, Any]) -> Tensor:
        return args[0] if args else kwargs["resid_pre"]

    def kv_cache(self, kwargs: dict[str, Any]) -> Any:
        return kwargs.get("past_kv_cache_entry", None)

    def cache_len(self, i: int, kwargs: dict[str, Any]) -> int:
        c = self.kv_cache(kwargs)
        return 0 if c is None else int(c.past_keys.shape[1])

    def rollback(self, i: int, kwargs: dict[str, Any]) -> None:
        c = self.kv_cache(kwargs)
        c.past_keys = c.past_keys[:, :-1]
        c.past_values = c.past_values[:, :-1]

    def slice_block_kwargs(
        self, kwargs: dict[str, Any], sl: slice, *, keep_cache: bool
    ) -> dict[str, Any]:
        out = dict(kwargs)
        if not keep_cache:
            out["past_kv_cache_entry"] = None
            am = kwargs.get("attention_mask")
            if am is not None and sl.stop is not None:
                out["attention_mask"] = am[:, : sl.stop]
        spe = kwargs.get("shortformer_pos_embed")
        if spe is not None:
            out["shortformer_pos_embed"] = spe[:, sl]
        return out

    # ------------------------------------------------------------------ teacher forcing
    def new_kv_cache(self, batch: int) -> Any:
        """TransformerLens' own KV cache (``TransformerLensKeyValueCache``) for ``batch`` rows."""
        try:  # TL 3.x
            from transformer_lens.cache.key_value_cache import TransformerLensKeyValueCache
        except ImportError:  # older layout
            from transformer_lens.past_key_value_caching import (  # type: ignore[no-redef]
                HookedTransformerKeyValueCache as TransformerLensKeyValueCache,
            )
        return TransformerLensKeyValueCache.init_cache(self.model.cfg, self.device, batch)

    def forward_cached(self, tokens: Tensor, cache: Any, stop_at_layer: int) -> None:
        """``model(tokens, past_kv_cache=cache)`` (base contract).

        An all-ones attention mask is passed: with a cache TransformerLens otherwise derives one
        from the pad id, which would mask real tokens equal to it.
        """
        mask = torch.ones_like(tokens)
        self.model(tokens, past_kv_cache=cache, attention_mask=mask, stop_at_layer=stop_at_layer)
