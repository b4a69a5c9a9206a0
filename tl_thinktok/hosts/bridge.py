"""``BridgeAdapter``: TransformerLens' ``TransformerBridge`` (a wrapped HF model; TL 3.9 and 4.x).

Hook names ``blocks.{i}.hook_in`` / ``blocks.{i}.hook_out``; blocks are HF decoder layers called
with HF keyword arguments and an HF ``DynamicCache`` (``cache=`` in transformers 5.x,
``past_key_values=`` before); the hook-free logit lens calls the wrapped HF ``norm`` and
``lm_head`` modules.

Fast decoding (:meth:`BridgeAdapter.fast_decode`): for Llama / Qwen2 / Qwen3 the shared hook-free
decoder (:mod:`~tl_thinktok.hosts.fast_decoder`) runs on the wrapped HF modules' own weights (it
equals HF's forward; in float64, HF's SDPA forward to 1e-12). Other architectures fall back to the
wrapped HF model's own ``generate`` (greedy, left padding with an attention mask) with one plain
torch forward hook on the HF decoder layer of the recorded block. The bridge rewires that model in
place (its decoder layers are the bridge's ``BlockBridge`` modules wrapping the HF layers), so that
``generate`` runs through the bridge's components: with no hook attached their HookPoints are
identities, and the recorded state is exactly ``blocks.{layer}.hook_out``.

Example:
    >>> ad = BridgeAdapter(bridge)     # doctest: +SKIP
    >>> ad.resid_post_name(-1)         # doctest: +SKIP
    'blocks.1.hook_out'
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor
from torch.nn.modules import module as nn_module

from tl_thinktok.hosts import fast_decoder
from tl_thinktok.hosts.base import HostAdapter
from tl_thinktok.hosts.fast_decoder import BlockWeights, DecoderWeights

__all__ = ["LENGTH_DEPENDENT_ROPE", "BridgeAdapter", "rope_type"]


def _cache_kwarg_pre_hook(module: torch.nn.Module, args: tuple, kwargs: dict) -> tuple:
    if kwargs.get("past_key_values") is None and kwargs.get("cache") is not None:
        kwargs["past_key_values"] = kwargs["cache"]
    return args, kwargs


class _StopForward(Exception):
    """Raised by the recorder of :meth:`BridgeAdapter.fast_last_states`: no block above needed."""


def _pad_counts(tokens: Tensor, n_pad: Sequence[int]) -> list[int]:
    n_pad = [int(k) for k in n_pad]
    if tokens.ndim != 2 or len(n_pad) != tokens.shape[0]:
        raise ValueError(
            f"tokens must be [batch, pos] with one pad count per row, got shape "
            f"{tuple(tokens.shape)} and {len(n_pad)} pad counts"
        )
    if any(not 0 <= k < tokens.shape[1] for k in n_pad):
        raise ValueError(f"pad counts {n_pad} must lie in [0, {tokens.shape[1]}) (rows non-empty)")
    return n_pad


def _first_tensor(out: Any) -> Tensor:
    return out[0] if isinstance(out, tuple) else out


def _own_hook(fn: Any) -> bool:
    """True for a module hook installed by TransformerLens or by tl-thinktok's KV-cache fix.

    The bridge registers hooks of its own on its modules, permanently and lazily (e.g. TL 3.9 and
    4.3 ``BlockBridge._maybe_wire_capture_hooks`` on ``ln1`` / ``ln2`` at the first forward). They
    only route activations through HookPoints (whose hooks :meth:`HostAdapter.hook_counts`
    checks) and so change nothing while no TL hook is attached; ``_cache_kwarg_pre_hook`` only
    renames a keyword argument. Any other hook may read or change activations.
    """
    while isinstance(fn, functools.partial):
        fn = fn.func
    if fn is _cache_kwarg_pre_hook:
        return True
    mod = getattr(fn, "__module__", None) or ""
    return mod == "transformer_lens" or mod.startswith("transformer_lens.")


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

    # ------------------------------------------------------------------ fast decoding (no hooks)
    def _hf_model(self) -> torch.nn.Module | None:
        """The wrapped HF model (``bridge.original_model`` on TL 3.9 and 4.3), None without one."""
        try:  # TL 4 raises AttributeError for drivers without a local module (vLLM, Inspect)
            om = self.model.original_model
        except AttributeError:
            return None
        if not isinstance(om, torch.nn.Module) or not callable(getattr(om, "generate", None)):
            return None
        return om

    def _foreign_hooks(self, om: torch.nn.Module) -> list[str]:
        """Modules of the bridge or its HF model holding a forward (pre-)hook not its own."""
        m = self.model
        names: dict[int, str] = {}
        mods: dict[int, torch.nn.Module] = {}
        for prefix, root in (("", m), ("original_model.", om)):
            for name, mod in root.named_modules():
                if id(mod) not in mods:
                    mods[id(mod)] = mod
                    names[id(mod)] = (prefix + name) or type(mod).__name__
        out = []
        for key, mod in mods.items():
            hooks = [*mod._forward_hooks.values(), *mod._forward_pre_hooks.values()]
            if any(not _own_hook(fn) for fn in hooks):
                out.append(names[key])
        if nn_module._global_forward_hooks or nn_module._global_forward_pre_hooks:
            out.append("every module (torch.nn.modules.module.register_module_forward_hook)")
        return out

    def fast_decode_unsupported(self) -> str | None:
        """Why :meth:`fast_decode` cannot run now (``None``: it can).

        Refused: no local HF model, processed weights (compatibility mode: the bridge's residual
        stream is not the HF model's), spliced SAEs, attached TransformerLens hooks, or any other
        forward hook on the bridge's or the HF model's modules (one that reads or changes
        activations would see the fast decoder's passes, or change what it records). The bridge's
        own wiring hooks and the KV-cache fix are not counted (see ``_own_hook``).
        """
        m = self.model
        om = self._hf_model()
        if om is None:
            return "the bridge exposes no local HF model (original_model) with a generate method"
        if getattr(m, "compatibility_mode", False) or getattr(m, "_weights_processed", False):
            return (
                "the bridge's weights are processed (compatibility mode): its residual stream is "
                "no longer the HF model's"
            )
        if getattr(m, "acts_to_saes", None) or any("hook_sae" in n for n in m.hook_dict):
            return "SAEs are attached (sae-lens splices them into the forward)"
        attached = self._attached_hooks_reason()
        if attached is not None:
            return attached
        foreign = self._foreign_hooks(om)
        if foreign:
            names = ", ".join(foreign[:3])
            return (
                f"torch forward hooks that TransformerLens did not install are registered on "
                f"{names}{', ...' if len(foreign) > 3 else ''}; remove them or use "
                "generation.greedy_batch"
            )
        reachable = {id(x) for x in om.modules()}
        for i, block in enumerate(m.blocks):
            layer = getattr(block, "original_component", None)
            if layer is None or id(layer) not in reachable:
                return f"block {i} has no HF decoder layer inside the HF model (original_component)"
        return None

    def _checked_hf(self, layer: int) -> tuple[torch.nn.Module, torch.nn.Module]:
        why = self.fast_decode_unsupported()
        if why is not None:
            raise ValueError(f"fast decoding is not available: {why}")
        return self._hf_model(), self.model.blocks[self.check_layer(layer)].original_component

    def _decoder_weights(self, om: torch.nn.Module) -> DecoderWeights | None:
        """The HF modules as the shared decoder's weights; ``None``: use HF's ``generate``."""
        if _hf_decoder_unsupported(om) is not None:
            return None
        return _hf_weights(om, [b.original_component for b in self.model.blocks])

    def fast_decode(
        self,
        tokens: Int[Tensor, "b p"],
        n_pad: Sequence[int],
        max_new_tokens: int,
        layer: int,
        eos: int | None,
    ) -> tuple[Int[Tensor, "b n"], Float[Tensor, "b n d_model"]]:
        """Greedy decoding without hooks, recording block ``layer``'s output.

        Base contract (:meth:`HostAdapter.fast_decode`). Llama / Qwen2 / Qwen3: the shared
        decoder on the HF modules' weights. Otherwise HF ``generate`` of the wrapped model: its
        generation config is then set aside for the call (a blank ``GenerationConfig``: plain
        argmax, no repetition penalty or suppressed tokens from the checkpoint's config), and
        :meth:`fix_kv_cache` is applied first (idempotent; the HF decoder layers call the bridge's
        attention modules, which need it).

        float64 on the ``generate`` path: HF eager attention takes the softmax in float32, where
        float64's mask value is ``-inf``; a fully masked pad query is then NaN and the NaN
        reaches its row. So a float64 model with prompts of unequal lengths is decoded there in
        groups of equal-length prompts, each without padding (same tokens and states as one
        prompt alone; less batching).

        Example:
            >>> new, h = BridgeAdapter(bridge).fast_decode(toks, [0, 2], 8, 1, eos=2)
            ... # doctest: +SKIP
        """
        om, decoder_layer = self._checked_hf(layer)
        n_pad = _pad_counts(tokens, n_pad)
        w = self._decoder_weights(om)
        if w is not None:
            return fast_decoder.decode(
                w, tokens, n_pad, max_new_tokens, self.check_layer(layer), eos
            )
        self.fix_kv_cache()
        dtype = next(om.parameters()).dtype
        if dtype == torch.float64 and len(set(n_pad)) > 1:
            groups = [[i for i, k in enumerate(n_pad) if k == g] for g in sorted(set(n_pad))]
        else:
            groups = [list(range(len(n_pad)))]
        results = []
        for rows in groups:
            cut = min(n_pad[i] for i in rows)  # > 0 only for a group of equal pads: drop them
            toks = tokens[rows, cut:]
            pads = [n_pad[i] - cut for i in rows]
            results.append(_hf_generate(om, decoder_layer, toks, pads, max_new_tokens, eos))
        if len(results) == 1:
            return results[0]
        n = max(r[0].shape[1] for r in results)
        fill = eos if eos is not None else 0
        new = results[0][0].new_full((tokens.shape[0], n), fill)
        states = results[0][1].new_zeros((tokens.shape[0], n, results[0][1].shape[-1]))
        for rows, (g_new, g_states) in zip(groups, results, strict=True):
            idx = torch.tensor(rows, device=new.device)
            new[idx, : g_new.shape[1]] = g_new.to(new.device)
            states[idx.to(states.device), : g_states.shape[1]] = g_states.to(states.device)
        return new, states

    def fast_last_states(
        self, tokens: Int[Tensor, "b p"], n_pad: Sequence[int], layer: int
    ) -> Float[Tensor, "b d_model"]:
        """Block ``layer``'s output at each row's last token, no hooks.

        Llama / Qwen2 / Qwen3: the shared decoder's prefill, stopped after block ``layer``.
        Otherwise one HF forward, stopped after that block, with the rows re-padded on the right
        (with an attention mask): in a causal model a real position never sees the pads after it,
        and no query is fully masked (the float64 NaN of left padding, see :meth:`fast_decode`,
        cannot happen).

        Example:
            >>> h = BridgeAdapter(bridge).fast_last_states(toks, [0, 2], layer=1)  # doctest: +SKIP
        """
        om, decoder_layer = self._checked_hf(layer)
        n_pad = _pad_counts(tokens, n_pad)
        w = self._decoder_weights(om)
        if w is not None:
            return fast_decoder.last_states(w, tokens, n_pad, self.check_layer(layer))
        width = tokens.shape[1]
        right = torch.stack([torch.roll(row, -k) for row, k in zip(tokens, n_pad, strict=True)])
        lengths = torch.tensor([width - k for k in n_pad], device=tokens.device)
        mask = (torch.arange(width, device=tokens.device)[None, :] < lengths[:, None]).long()
        captured: list[Tensor] = []

        def record(module: torch.nn.Module, args: tuple, out: Any) -> None:
            captured.append(_first_tensor(out).detach())
            raise _StopForward

        handle = decoder_layer.register_forward_hook(record)
        try:
            with torch.no_grad():
                om(input_ids=right, attention_mask=mask, use_cache=False)
        except _StopForward:
            pass
        finally:
            handle.remove()
        if len(captured) != 1:
            raise RuntimeError(f"expected one call of block {layer}, saw {len(captured)}")
        h = captured[0]
        last = (lengths - 1).to(h.device)
        return h[torch.arange(h.shape[0], device=h.device), last].clone()


def _hf_generate(
    om: torch.nn.Module,
    decoder_layer: torch.nn.Module,
    tokens: Tensor,
    n_pad: Sequence[int],
    max_new_tokens: int,
    eos: int | None,
) -> tuple[Tensor, Tensor]:
    """One HF ``generate`` call on a left-padded batch, recording ``decoder_layer``'s ``[:, -1]``.

    Every forward pass of ``generate`` (the prefill, then one per new token) predicts one new token
    from the last position, so the recorded rows align with the new ids, as ``MIProbe``'s.
    """
    from transformers import GenerationConfig

    width = tokens.shape[1]
    pad = torch.tensor(list(n_pad), device=tokens.device)
    mask = (torch.arange(width, device=tokens.device)[None, :] >= pad[:, None]).long()
    rec: list[Tensor] = []

    def record(module: torch.nn.Module, args: tuple, out: Any) -> None:
        rec.append(_first_tensor(out)[:, -1].detach().clone())

    cfg = GenerationConfig(
        max_new_tokens=int(max_new_tokens),
        do_sample=False,
        num_beams=1,
        use_cache=True,
        eos_token_id=eos,
        pad_token_id=eos if eos is not None else 0,  # only fills rows that are done
    )
    saved = om.generation_config
    handle = decoder_layer.register_forward_hook(record)
    try:
        # transformers 5 fills every unset field of the config passed from the checkpoint's own
        # (``model.generation_config``): set that aside so only this config shapes the decoding
        om.generation_config = GenerationConfig()
        with torch.no_grad():
            out = om.generate(tokens, attention_mask=mask, generation_config=cfg)
    finally:
        om.generation_config = saved
        handle.remove()
    new = out[:, width:]
    if len(rec) != new.shape[1]:
        raise RuntimeError(
            f"HF generate made {len(rec)} forward passes for {new.shape[1]} new tokens"
        )
    return new, torch.stack(rec, dim=1)


_HF_TYPES = ("llama", "qwen2", "qwen3")


def _raw(module: Any) -> Any:
    """The HF module a bridge component wraps (the module itself if it wraps nothing)."""
    while getattr(module, "original_component", None) is not None:
        module = module.original_component
    return module


def _hf_decoder_unsupported(om: torch.nn.Module) -> str | None:
    """Why :mod:`~tl_thinktok.hosts.fast_decoder` cannot run this HF model (``None``: it can).

    Elsewhere the bridge's fast path is HF's own ``generate`` (same tokens, no speed-up).
    """
    cfg = om.config
    if cfg.model_type not in _HF_TYPES:
        return f"model_type {cfg.model_type!r} is not one of {_HF_TYPES}"
    if getattr(cfg, "hidden_act", None) != "silu":
        return f"hidden_act={cfg.hidden_act!r}"
    kinds = set(getattr(cfg, "layer_types", None) or ["full_attention"])
    if kinds != {"full_attention"} or getattr(cfg, "use_sliding_window", False):
        return f"sliding-window layers ({sorted(kinds)})"
    if getattr(cfg, "mlp_bias", False):
        return "mlp_bias=True"
    rope = rope_type(cfg)
    if rope not in _STATIC_ROPE:
        return (f"rope_type={rope!r}: HF recomputes its rotary tables from the sequence length "
                f"(the decoder supports the fixed tables of {_STATIC_ROPE})")  # fmt: skip
    return fast_decoder.device_problem(om)


#: RoPE kinds whose tables HF recomputes from the current sequence length (batched generation
#: cannot reproduce each prompt generated alone: refused at load, tl_thinktok.loading).
LENGTH_DEPENDENT_ROPE = ("dynamic", "longrope", "su")
#: RoPE kinds whose tables do not depend on the sequence length (HF computes them once), so the
#: decoder's one table for every position equals what HF uses at each step.
_STATIC_ROPE = ("default", "linear", "llama3")


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


def _bias(linear: Any) -> Tensor | None:
    return getattr(_raw(linear), "bias", None)


def _hf_weights(om: torch.nn.Module, layers: Sequence[torch.nn.Module]) -> DecoderWeights:
    """The wrapped HF Llama / Qwen2 / Qwen3 as :class:`DecoderWeights` (views; Q/K/V fused)."""
    cfg = om.config
    inner = om.model
    blocks = []
    for layer in layers:
        layer = _raw(layer)
        attn, mlp = _raw(layer.self_attn), _raw(layer.mlp)
        projs = [_raw(attn.q_proj), _raw(attn.k_proj), _raw(attn.v_proj)]
        biases = [p.bias for p in projs]
        b_qkv = None if all(b is None for b in biases) else torch.cat(
            [b if b is not None else p.weight.new_zeros(p.weight.shape[0])
             for b, p in zip(biases, projs, strict=True)]
        )  # fmt: skip
        q_norm = getattr(attn, "q_norm", None)
        k_norm = getattr(attn, "k_norm", None)
        blocks.append(
            BlockWeights(
                ln1=_raw(layer.input_layernorm),
                ln2=_raw(layer.post_attention_layernorm),
                w_qkv=torch.cat([p.weight for p in projs], dim=0).T,  # HF [out, in] -> [in, out]
                b_qkv=b_qkv,
                w_o=_raw(attn.o_proj).weight.T,
                b_o=_bias(attn.o_proj),
                q_norm=_raw(q_norm) if q_norm is not None else None,
                k_norm=_raw(k_norm) if k_norm is not None else None,
                scale=float(attn.scaling),
                w_gate=_raw(mlp.gate_proj).weight.T,
                w_up=_raw(mlp.up_proj).weight.T,
                b_up=_bias(mlp.up_proj),
                w_down=_raw(mlp.down_proj).weight.T,
                b_down=_bias(mlp.down_proj),
            )
        )
    n_heads = cfg.num_attention_heads
    d_head = getattr(cfg, "head_dim", None) or cfg.hidden_size // n_heads
    rotary_emb = _raw(inner.rotary_emb)
    head = _raw(om.lm_head)

    def rotary(n: int) -> tuple[Tensor, Tensor]:
        w = head.weight
        pos = torch.arange(n, device=w.device)[None]
        cos, sin = rotary_emb(w.new_zeros(1, n, d_head), pos)  # HF's own tables (any scaling)
        return cos[0], sin[0]

    return DecoderWeights(
        embed=_raw(inner.embed_tokens),
        blocks=blocks,
        ln_final=_raw(inner.norm),
        w_u=head.weight.T,
        b_u=getattr(head, "bias", None),
        n_heads=n_heads,
        n_kv=getattr(cfg, "num_key_value_heads", None) or n_heads,
        d_head=d_head,
        rotary_dim=d_head,
        adjacent_pairs=False,
        rotary=rotary,
    )
