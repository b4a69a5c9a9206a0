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

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from tl_thinktok.hosts import fast_decoder
from tl_thinktok.hosts.base import HostAdapter
from tl_thinktok.hosts.fast_decoder import BlockWeights, DecoderWeights
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

    # ------------------------------------------------------------------ fast decoding
    def fast_decode_unsupported(self) -> str | None:
        """``None`` when :mod:`~tl_thinktok.hosts.fast_decoder` can run this model now."""
        why = _decoder_unsupported(self.model)
        if why is not None:
            return why
        return self._attached_hooks_reason()

    def _decoder_weights(self) -> DecoderWeights:
        why = self.fast_decode_unsupported()
        if why is not None:
            raise ValueError(f"fast decoding is not available: {why}")
        return _hooked_weights(self.model)

    def fast_decode(
        self,
        tokens: Tensor,
        n_pad: Sequence[int],
        max_new_tokens: int,
        layer: int,
        eos: int | None,
    ) -> tuple[Tensor, Tensor]:
        """Greedy decoding with :func:`tl_thinktok.hosts.fast_decoder.decode` (base contract)."""
        w = self._decoder_weights()
        return fast_decoder.decode(w, tokens, n_pad, max_new_tokens, self.check_layer(layer), eos)

    def fast_last_states(self, tokens: Tensor, n_pad: Sequence[int], layer: int) -> Tensor:
        """Block ``layer``'s output at each row's last position (fast_decoder, no hooks)."""
        w = self._decoder_weights()
        return fast_decoder.last_states(w, tokens, n_pad, self.check_layer(layer))


#: ``(cfg field, value it must have)`` for the fast decoder to reproduce TransformerLens' forward.
_REQUIRED: tuple[tuple[str, Any], ...] = (
    ("positional_embedding_type", "rotary"),
    ("gated_mlp", True),
    ("act_fn", "silu"),
    ("attn_only", False),
    ("parallel_attn_mlp", False),
    ("post_embedding_ln", False),
    ("use_normalization_before_and_after", False),
    ("use_logn_attn", False),
    ("use_dynamic_ntk_rope", False),
    ("use_attention_sinks", False),
    ("clip_qkv", None),
    ("load_in_4bit", False),
    ("attention_dir", "causal"),
    ("attn_types", None),
)
_NORMS = ("RMS", "RMSPre")
_ARCHITECTURES = (None, "LlamaForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM")


def _decoder_unsupported(model: Any) -> str | None:
    """Why the fast decoder cannot reproduce this HookedTransformer's forward (``None``: it can)."""
    cfg = model.cfg
    arch = getattr(cfg, "original_architecture", None)
    if arch not in _ARCHITECTURES:
        return f"architecture {arch} is not one of {[a for a in _ARCHITECTURES if a]}"
    if getattr(cfg, "normalization_type", None) not in _NORMS:
        return f"normalization_type={cfg.normalization_type!r} (needs one of {_NORMS})"
    for name, want in _REQUIRED:
        got = getattr(cfg, name, want)
        if got != want:
            return f"cfg.{name}={got!r} (the fast decoder needs {want!r})"
    for name in ("attn_scores_soft_cap", "output_logits_soft_cap"):
        cap = getattr(cfg, name, -1.0)
        if cap is not None and cap > 0:
            return f"cfg.{name}={cap} (soft caps are not implemented)"
    if getattr(model, "acts_to_saes", None):
        return "SAEs are attached (sae-lens splices them into the forward)"
    return fast_decoder.device_problem(model)


def _hooked_weights(model: Any) -> DecoderWeights:
    """TransformerLens' parameters as :class:`DecoderWeights` (only Q/K/V are copied, fused)."""
    cfg = model.cfg
    attn0 = model.blocks[0].attn
    # K/V heads as stored (GQA keeps n_key_value_heads; ungroup_grouped_query_attention expands)
    n_kv = int(getattr(attn0, "_W_K", attn0.W_K).shape[0])
    blocks = []
    for block in model.blocks:
        attn, mlp = block.attn, block.mlp
        w_k, w_v = getattr(attn, "_W_K", attn.W_K), getattr(attn, "_W_V", attn.W_V)
        b_k, b_v = getattr(attn, "_b_K", attn.b_K), getattr(attn, "_b_V", attn.b_V)
        # [heads, d_model, d_head] -> [d_model, heads * d_head], Q | K | V side by side
        ws = [w.permute(1, 0, 2).reshape(w.shape[1], -1) for w in (attn.W_Q, w_k, w_v)]
        qk_norm = bool(getattr(cfg, "use_qk_norm", False))
        blocks.append(
            BlockWeights(
                ln1=block.ln1,
                ln2=block.ln2,
                w_qkv=torch.cat(ws, dim=1),
                b_qkv=torch.cat([attn.b_Q.reshape(-1), b_k.reshape(-1), b_v.reshape(-1)]),
                w_o=attn.W_O.reshape(cfg.n_heads * cfg.d_head, -1),  # a view
                b_o=attn.b_O,
                q_norm=attn.q_norm if qk_norm else None,
                k_norm=attn.k_norm if qk_norm else None,
                scale=1.0 / float(attn.attn_scale),
                w_gate=mlp.W_gate,
                w_up=mlp.W_in,
                b_up=mlp.b_in,
                w_down=mlp.W_out,
                b_down=mlp.b_out,
            )
        )

    def rotary(n: int) -> tuple[Tensor, Tensor]:
        if attn0.rotary_cos.shape[0] < n:
            attn0._extend_rotary_embeddings(n)
        return attn0.rotary_cos, attn0.rotary_sin  # every block holds the same tables

    return DecoderWeights(
        embed=model.embed,
        blocks=blocks,
        ln_final=model.ln_final,
        w_u=model.unembed.W_U,
        b_u=model.unembed.b_U,
        n_heads=cfg.n_heads,
        n_kv=n_kv,
        d_head=cfg.d_head,
        rotary_dim=cfg.rotary_dim or cfg.d_head,
        adjacent_pairs=bool(cfg.rotary_adjacent_pairs),
        rotary=rotary,
    )
