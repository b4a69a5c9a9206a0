"""``BridgeAdapter``: TransformerLens' ``TransformerBridge`` (a wrapped HF model; TL 3.9 and 4.x).

Hook names ``blocks.{i}.hook_in`` / ``blocks.{i}.hook_out``; blocks are HF decoder layers called
with HF keyword arguments and an HF ``DynamicCache`` (``cache=`` in transformers 5.x,
``past_key_values=`` before); the hook-free logit lens calls the wrapped HF ``norm`` and
``lm_head`` modules.

Teacher forcing in chunks (:meth:`BridgeAdapter.forward_cached`) runs the bridge's own forward
with HF's ``DynamicCache``, so every hook fires; generation itself is the bridge's ``generate``
or an engine's (:mod:`tl_thinktok.engines`): no attention or rotary maths of our own.

Example:
    >>> ad = BridgeAdapter(bridge)     # doctest: +SKIP
    >>> ad.resid_post_name(-1)         # doctest: +SKIP
    'blocks.1.hook_out'
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from tl_thinktok.hosts.base import HostAdapter
from tl_thinktok.hosts.versions import quiet_cache_rename

__all__ = ["LENGTH_DEPENDENT_ROPE", "BridgeAdapter", "rope_type"]


def _cache_kwarg_pre_hook(module: torch.nn.Module, args: tuple, kwargs: dict) -> tuple:
    if kwargs.get("past_key_values") is None and kwargs.get("cache") is not None:
        kwargs["past_key_values"] = kwargs["cache"]
    return args, kwargs


class BridgeAdapter(HostAdapter):
    """Adapter for ``transformer_lens.model_bridge.TransformerBridge``.

    Unembedding needs the bridge without weight processing (compatibility mode off).

    Example:
        >>> BridgeAdapter(bridge).fix_kv_cache()   # doctest: +SKIP
        0
    """

    name = "bridge"

    @classmethod
    def matches(cls, model: Any) -> bool:
        """True for a ``TransformerBridge``."""
        try:
            from transformer_lens.model_bridge import TransformerBridge
        except ImportError:  # pragma: no cover - TL without the bridge
            return False
        return isinstance(model, TransformerBridge)

    def _resid_post(self, i: int) -> str:
        return f"blocks.{i}.hook_out"

    def _resid_pre(self, i: int) -> str:
        return f"blocks.{i}.hook_in"

    def _unembed_no_hooks(self, resid: Tensor) -> Tensor:
        m = self.model
        norm = getattr(getattr(m, "ln_final", None), "original_component", None)
        head = getattr(getattr(m, "unembed", None), "original_component", None)
        if head is None:
            raise ValueError("bridge model has no unembed.original_component (lm_head)")
        w = next(head.parameters())
        x = resid.to(device=w.device, dtype=w.dtype)
        if norm is not None:
            x = norm(x)
        return head(x)

    def block_input(self, args: tuple, kwargs: dict[str, Any]) -> Tensor:
        return args[0] if args else kwargs["hidden_states"]

    def kv_cache(self, kwargs: dict[str, Any]) -> Any:
        c = kwargs.get("cache", None)
        return c if c is not None else kwargs.get("past_key_values", None)

    def cache_len(self, i: int, kwargs: dict[str, Any]) -> int:
        c = self.kv_cache(kwargs)
        if c is None:
            return 0
        return int(c.layers[i].get_seq_length()) if len(c.layers) > i else 0

    def rollback(self, i: int, kwargs: dict[str, Any]) -> None:
        lay = self.kv_cache(kwargs).layers[i]
        if getattr(lay, "is_sliding", False) or not getattr(lay, "is_croppable", True):
            raise NotImplementedError(
                f"cannot roll back a {type(lay).__name__} KV-cache layer "
                "(only DynamicLayer is supported)"
            )
        lay.crop(-1)

    def slice_block_kwargs(
        self, kwargs: dict[str, Any], sl: slice, *, keep_cache: bool
    ) -> dict[str, Any]:
        out = dict(kwargs)
        if not keep_cache:
            out.pop("past_key_values", None)
            out["cache"] = None
            out["use_cache"] = False
        pe = kwargs.get("position_embeddings")
        if pe is not None:
            out["position_embeddings"] = tuple(t[:, sl] for t in pe)
        if kwargs.get("position_ids") is not None:
            out["position_ids"] = kwargs["position_ids"][..., sl]
        if kwargs.get("cache_position") is not None:
            out["cache_position"] = kwargs["cache_position"][sl]
        am = kwargs.get("attention_mask")
        if isinstance(am, Tensor) and am.ndim == 4:
            am = am[..., sl, :]
            if not keep_cache and sl.stop is not None:
                am = am[..., : sl.stop]
            out["attention_mask"] = am
        elif isinstance(am, Tensor) and am.ndim == 2 and not keep_cache:
            out["attention_mask"] = am[:, : sl.stop]
        return out

    def left_padding_safe(self) -> bool:
        """False in float64: HF eager attention takes its softmax in float32, where a fully
        masked pad query is NaN, and ``0 * NaN`` carries it into every row (measured: a batch of
        two organism prompts of unequal length decodes to all zeros)."""
        return next(self.model.parameters()).dtype != torch.float64

    def fix_kv_cache(self) -> int:
        """Forward transformers 5.x's ``cache=`` kwarg as ``past_key_values=`` to attention.

        The attention bridges of TL 3.9 and TL 4.3 (``AttentionBridge._update_kv_cache``) only read
        ``past_key_values`` / ``layer_past``, while transformers 5's decoder layers pass the cache
        as ``cache=``; so with the KV cache on, every decoding step would attend to itself alone
        (checked on 4.3 + transformers 5.24; guarded by the cached-generation parity tests against
        HF ``generate``). Installs a plain torch
        forward pre-hook per attention bridge (``reset_hooks()`` keeps it); idempotent.
        """
        patched = 0
        for block in self.model.blocks:
            attn = getattr(block, "attn", None)
            if attn is None or getattr(attn, "_thinktok_cache_alias", False):
                continue
            attn.register_forward_pre_hook(_cache_kwarg_pre_hook, with_kwargs=True)
            attn._thinktok_cache_alias = True
            patched += 1
        return patched

    # ------------------------------------------------------------------ teacher forcing
    def new_kv_cache(self, batch: int) -> Any:
        """An empty HF ``DynamicCache`` (built from the HF config where it takes one)."""
        from transformers import DynamicCache

        try:  # TL 4 raises AttributeError for drivers without a local module
            config = self.model.original_model.config
        except AttributeError:
            config = None
        try:
            return DynamicCache(config=config) if config is not None else DynamicCache()
        except TypeError:  # transformers before the config argument
            return DynamicCache()

    def forward_cached(self, tokens: Tensor, cache: Any, stop_at_layer: int) -> None:
        """``bridge(tokens, past_key_values=cache)`` (base contract; HF's own cache object)."""
        self.fix_kv_cache()
        with quiet_cache_rename():  # transformers' rename warning, caused by this call
            self.model(tokens, past_key_values=cache, use_cache=True, stop_at_layer=stop_at_layer)


#: RoPE kinds whose tables HF recomputes from the current sequence length (batched generation
#: cannot reproduce each prompt generated alone: refused at load, tl_thinktok.loading).
LENGTH_DEPENDENT_ROPE = ("dynamic", "longrope", "su")


def rope_type(cfg: Any) -> str:
    """The HF config's RoPE kind (``rope_parameters`` in transformers 5, ``rope_scaling`` before).

    Example:
        >>> from transformers import LlamaConfig
        >>> rope_type(LlamaConfig(rope_parameters={"rope_type": "linear", "factor": 2.0}))
        'linear'
    """
    for name in ("rope_parameters", "rope_scaling"):
        params = getattr(cfg, name, None)
        if isinstance(params, dict) and (params.get("rope_type") or params.get("type")):
            return str(params.get("rope_type") or params.get("type")).lower()
    return "default"
