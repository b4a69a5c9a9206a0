"""Host compatibility: one API over ``HookedTransformer`` and ``TransformerBridge`` (TL 3.9).

Every tl-thinktok component talks to the model through these helpers, so that the same
component works on both hosts:

* hook names: ``resid_post_name`` / ``logits_name`` / ``final_norm_name`` return the host's
  canonical hook name (the bridge also accepts the HookedTransformer names as aliases, but inside a
  hook ``hook.name`` is always the bridge's own name, so never route on ``hook.name``);
* layer indices: ``check_layer`` (negative = from the end, out of range → ``ValueError``);
* ``unembed_resid``: final norm + unembedding applied to a residual WITHOUT firing any user hook on
  ``ln_final`` / ``unembed`` (uses the weights on HookedTransformer and the wrapped HF ``norm`` /
  ``lm_head`` modules on the bridge);
* ``to_tokens``: the same tokenisation (same BOS policy) on both hosts.

Checked on TL 3.9 + transformers 5.24 (random Qwen2):

* block output: ``blocks.{i}.hook_resid_post`` (hooked) / ``blocks.{i}.hook_out`` (bridge; the
  hooked name also works there as an alias);
* logits: ``unembed.hook_out`` on both (bridge alias: ``hook_unembed``);
* final norm output: ``ln_final.hook_normalized`` on both (bridge also ``ln_final.hook_out``).

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
    try:
        from transformer_lens.model_bridge import TransformerBridge
    except ImportError:  # pragma: no cover - TL without the bridge
        return False
    return isinstance(model, TransformerBridge)


def is_hooked(model: Any) -> bool:
    """True if ``model`` is a ``HookedTransformer`` (or a subclass such as sae-lens's)."""
    from transformer_lens import HookedTransformer

    return isinstance(model, HookedTransformer)


def check_host(model: Any) -> None:
    """Raise ``TypeError`` unless ``model`` is a HookedTransformer or a TransformerBridge."""
    if not (is_hooked(model) or is_bridge(model)):
        raise TypeError(
            "expected a transformer_lens HookedTransformer or TransformerBridge, got "
            f"{type(model).__name__}"
        )


def n_layers(model: Any) -> int:
    """Number of decoder blocks."""
    check_host(model)
    return int(model.cfg.n_layers)


def d_model(model: Any) -> int:
    """Residual-stream width."""
    check_host(model)
    return int(model.cfg.d_model)


def d_vocab(model: Any) -> int:
    """Size of the output vocabulary (number of logits)."""
    check_host(model)
    out = getattr(model.cfg, "d_vocab_out", -1)
    return int(out) if out is not None and int(out) > 0 else int(model.cfg.d_vocab)


def check_layer(model: Any, layer: int) -> int:
    """Validate a block index and return it as a non-negative int.

    Args:
        model: a HookedTransformer or TransformerBridge.
        layer: 0-indexed decoder block; negative counts from the end (-1 = last block).

    Returns:
        The non-negative block index.

    Raises:
        TypeError: ``layer`` is not an int.
        ValueError: ``layer`` is outside ``[-n_layers, n_layers)``.

    Example:
        >>> check_layer(model, -1) == n_layers(model) - 1  # doctest: +SKIP
        True
    """
    if isinstance(layer, bool) or not hasattr(layer, "__index__"):
        raise TypeError(f"layer must be an int, got {type(layer).__name__}: {layer!r}")
    layer = int(layer.__index__())
    n = n_layers(model)
    if not -n <= layer < n:
        raise ValueError(
            f"layer {layer} is out of range for a model with n_layers={n} "
            f"(valid: {-n} … {n - 1}, negative counts from the end)"
        )
    return layer % n


def _sae_aware(model: Any, name: str) -> str:
    """sae-lens replaces a HookPoint by an SAE: hook what flows downstream (its output)."""
    hook_dict = model.hook_dict
    if name not in hook_dict and f"{name}.hook_sae_output" in hook_dict:
        return f"{name}.hook_sae_output"
    return name


def resid_post_name(model: Any, layer: int) -> str:
    """Hook name of the output (residual stream after) block ``layer`` on this host.

    With a sae-lens SAE spliced in at that point (``HookedSAETransformer.add_sae``), this is the
    SAE's ``...hook_sae_output``: the stream the blocks above actually read.
    """
    i = check_layer(model, layer)
    name = f"blocks.{i}.hook_out" if is_bridge(model) else f"blocks.{i}.hook_resid_post"
    return _sae_aware(model, name)


def resid_pre_name(model: Any, layer: int) -> str:
    """Hook name of the input (residual stream before) block ``layer`` on this host."""
    i = check_layer(model, layer)
    name = f"blocks.{i}.hook_in" if is_bridge(model) else f"blocks.{i}.hook_resid_pre"
    return _sae_aware(model, name)


def logits_name(model: Any) -> str:
    """Hook name whose output is the logits (``[batch, pos, d_vocab]``) on both hosts."""
    check_host(model)
    return "unembed.hook_out"


def final_norm_name(model: Any) -> str | None:
    """Hook name of the final norm's output, or ``None`` if the model has no final norm."""
    check_host(model)
    name = "ln_final.hook_normalized"
    return name if name in model.hook_dict else None


def _tl_norm(module: torch.nn.Module, x: Tensor) -> Tensor:
    """Apply a TransformerLens norm module's maths from its weights (no HookPoint fires)."""
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


def unembed_resid(model: Any, resid: Float[Tensor, "... d_model"]) -> Float[Tensor, "... d_vocab"]:
    """Final norm + unembedding of residual-stream vectors, without firing any hook.

    This is the logit lens: at the last block it reproduces the model's logits. User hooks on
    ``ln_final`` / ``unembed`` (e.g. a ``SuppressTokens`` ban) are deliberately NOT applied.

    Args:
        model: HookedTransformer or TransformerBridge (bridge: without weight processing, i.e.
            compatibility mode off; the wrapped HF ``norm`` and ``lm_head`` modules are called).
        resid: ``[..., d_model]`` block outputs (before the final norm).

    Returns:
        ``[..., d_vocab]`` logits.

    Example:
        >>> logits = unembed_resid(model, resid[:, -1])  # doctest: +SKIP
    """
    check_host(model)
    if not isinstance(resid, Tensor):
        raise TypeError(f"resid must be a torch.Tensor, got {type(resid).__name__}")
    if resid.ndim < 1 or resid.shape[-1] != d_model(model):
        raise ValueError(
            f"resid must have shape [..., d_model={d_model(model)}], got {tuple(resid.shape)}"
        )
    if is_bridge(model):
        norm = getattr(getattr(model, "ln_final", None), "original_component", None)
        head = getattr(getattr(model, "unembed", None), "original_component", None)
        if head is None:
            raise ValueError("bridge model has no unembed.original_component (lm_head)")
        w = next(head.parameters())
        x = resid.to(device=w.device, dtype=w.dtype)
        if norm is not None:
            x = norm(x)
        return head(x)
    ln = getattr(model, "ln_final", None)
    x = resid.to(device=model.W_U.device, dtype=model.W_U.dtype)
    if ln is not None:
        x = _tl_norm(ln, x)
    return x @ model.W_U + model.b_U


def tokenizer_of(model: Any):
    """The model's HF tokenizer; ``ValueError`` if it has none."""
    check_host(model)
    tok = getattr(model, "tokenizer", None)
    if tok is None:
        raise ValueError(
            "model has no tokenizer; pass tokenizer= when building it (load_model does this)"
        )
    return tok


def check_token_ids(model_or_vocab: Any, ids: Iterable[int] | Tensor | int) -> list[int]:
    """Validate token ids and return them as a list of Python ints (order kept).

    Args:
        model_or_vocab: a model (its ``d_vocab`` is used) or an int vocabulary size.
        ids: an int, an iterable of ints or an integer tensor.

    Raises:
        TypeError: an id is not an integer.
        ValueError: an id lies outside ``[0, d_vocab)`` (the message lists the bad ids).

    Example:
        >>> check_token_ids(384, [1, 2, 3])
        [1, 2, 3]
    """
    if isinstance(model_or_vocab, bool):
        raise TypeError("model_or_vocab must be a model or an int vocabulary size")
    vocab = model_or_vocab if isinstance(model_or_vocab, int) else d_vocab(model_or_vocab)
    if isinstance(ids, Tensor):
        if ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool:
            raise TypeError(f"token ids must be an integer tensor, got dtype {ids.dtype}")
        out = [int(i) for i in ids.flatten().tolist()]
    else:
        if isinstance(ids, int) and not isinstance(ids, bool):
            ids = [ids]
        out = []
        for i in ids:
            if isinstance(i, bool) or not isinstance(i, int):
                if hasattr(i, "__index__") and not isinstance(i, bool):
                    i = int(i.__index__())
                else:
                    raise TypeError(f"token ids must be ints, got {type(i).__name__}: {i!r}")
            out.append(int(i))
    bad = [i for i in out if not 0 <= i < vocab]
    if bad:
        raise ValueError(
            f"token ids out of range [0, {vocab}): {bad[:10]}{' …' if len(bad) > 10 else ''}"
        )
    return out


def model_device(model: Any) -> torch.device:
    """Device of the model's parameters."""
    return next(model.parameters()).device


def to_tokens(model: Any, text: str, *, prepend_bos: bool | None = None) -> Int[Tensor, "1 pos"]:
    """Tokenise ``text`` the same way on both hosts: no special tokens, then optional BOS.

    The two hosts' own ``to_tokens`` disagree on BOS (HookedTransformer prepends it by default,
    the bridge follows the HF tokenizer), so tl-thinktok tokenises through this helper.

    Args:
        model: HookedTransformer or TransformerBridge with a tokenizer.
        text: raw text (no chat template is applied).
        prepend_bos: prepend ``tokenizer.bos_token_id`` (if the tokenizer has one); ``None``
            (default) follows ``model.cfg.default_prepend_bos`` (``load_model`` sets it to whether
            the HF tokenizer adds BOS itself).

    Returns:
        ``[1, pos]`` long tensor on the model's device.
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    tok = tokenizer_of(model)
    if prepend_bos is None:
        prepend_bos = bool(getattr(model.cfg, "default_prepend_bos", True))
    ids = list(tok(text, add_special_tokens=False)["input_ids"])
    bos = getattr(tok, "bos_token_id", None)
    if prepend_bos and bos is not None:
        ids = [int(bos)] + ids
    if not ids:
        raise ValueError("text tokenised to zero tokens (empty text and no BOS)")
    return torch.tensor([ids], dtype=torch.long, device=model_device(model))


def hook_points(model: Any) -> dict[str, Any]:
    """Canonical hook name → HookPoint (aliases excluded)."""
    check_host(model)
    out: dict[str, Any] = {}
    seen: set[int] = set()
    for name, hp in model.hook_dict.items():
        if id(hp) in seen:
            continue
        seen.add(id(hp))
        out[getattr(hp, "name", None) or name] = hp
    return out


def hook_counts(model: Any) -> dict[str, int]:
    """Number of torch forward hooks on each HookPoint (for leak checks); zero entries dropped."""
    out = {}
    for name, hp in hook_points(model).items():
        n = len(hp._forward_hooks)
        if n:
            out[name] = n
    return out


def _cache_kwarg_pre_hook(module: torch.nn.Module, args: tuple, kwargs: dict) -> tuple:
    if kwargs.get("past_key_values") is None and kwargs.get("cache") is not None:
        kwargs["past_key_values"] = kwargs["cache"]
    return args, kwargs


def fix_bridge_kv_cache(model: Any) -> int:
    """Make a TransformerBridge's attention see HF's KV cache (TL 3.9 + transformers >= 5.x).

    transformers 5.x passes the cache to attention layers as ``cache=``; TL 3.9's attention
    bridges only read ``past_key_values=`` / ``layer_past=``, so with the KV cache on, every
    decoding step attends to itself alone and ``generate`` silently diverges from HF (checked:
    TL 3.9.0 + transformers 5.24, random Qwen2). This installs, on each attention bridge of THIS
    model, a forward pre-hook that forwards ``cache`` as ``past_key_values`` (a plain torch hook,
    so ``reset_hooks()`` keeps it). Idempotent; a no-op on HookedTransformer and where the kwarg is
    already named ``past_key_values``. ``load_model`` applies it; call it for bridges booted by
    hand.

    Returns:
        Number of attention modules patched by this call.

    Example:
        >>> fix_bridge_kv_cache(bridge)  # doctest: +SKIP
        2
    """
    check_host(model)
    if not is_bridge(model):
        return 0
    patched = 0
    for block in model.blocks:
        attn = getattr(block, "attn", None)
        if attn is None or getattr(attn, "_thinktok_cache_alias", False):
            continue
        attn.register_forward_pre_hook(_cache_kwarg_pre_hook, with_kwargs=True)
        attn._thinktok_cache_alias = True
        patched += 1
    return patched
