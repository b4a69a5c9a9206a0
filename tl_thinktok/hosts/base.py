"""``HostAdapter``: everything tl-thinktok needs to know about one kind of TransformerLens model.

A host is a model class the components can run on (``HookedTransformer``, ``TransformerBridge``).
Each host gets one adapter subclass that answers, for one model instance: hook names, sizes, how a
decoder block is called (its KV cache, its per-position keyword arguments), how to unembed a
residual without firing hooks, and how to tokenise. Components never branch on the host: they ask
the adapter. Supporting a new host means writing one subclass and registering it
(:func:`tl_thinktok.hosts.registry.register_adapter`).

Example:
    >>> from tl_thinktok import hosts
    >>> ad = hosts.adapter(model)                  # doctest: +SKIP
    >>> ad.resid_post_name(-1)                     # doctest: +SKIP
    'blocks.1.hook_resid_post'
"""

from __future__ import annotations

import weakref
from abc import ABC, abstractmethod
from collections.abc import Iterable
from typing import Any, ClassVar

import torch
from jaxtyping import Float, Int
from torch import Tensor

from tl_thinktok._validate import as_token_ids, check_int

__all__ = ["HostAdapter"]


class HostAdapter(ABC):
    """One model seen through its host's conventions (subclass per host).

    Args:
        model: a model for which :meth:`matches` is true.

    Attributes:
        name: short host name (``"hooked"``, ``"bridge"``).

    Example:
        >>> ad = HookedAdapter(model)          # doctest: +SKIP
        >>> ad.n_layers, ad.logits_name()      # doctest: +SKIP
        (2, 'unembed.hook_out')
    """

    name: ClassVar[str] = "?"

    def __init__(self, model: Any) -> None:
        if not self.matches(model):
            raise TypeError(f"{type(self).__name__} cannot adapt a {type(model).__name__}")
        self._ref = weakref.ref(model)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({type(self.model).__name__})"

    # ------------------------------------------------------------------ identity
    @classmethod
    @abstractmethod
    def matches(cls, model: Any) -> bool:
        """True if this adapter handles ``model``."""

    @property
    def model(self) -> Any:
        """The adapted model (the adapter holds it weakly)."""
        m = self._ref()
        if m is None:  # pragma: no cover - the caller holds the model while using the adapter
            raise ReferenceError("the adapted model no longer exists")
        return m

    # ------------------------------------------------------------------ sizes
    @property
    def n_layers(self) -> int:
        """Number of decoder blocks."""
        return int(self.model.cfg.n_layers)

    @property
    def d_model(self) -> int:
        """Residual-stream width."""
        return int(self.model.cfg.d_model)

    @property
    def d_vocab(self) -> int:
        """Size of the output vocabulary (number of logits)."""
        cfg = self.model.cfg
        out = getattr(cfg, "d_vocab_out", -1)
        return int(out) if out is not None and int(out) > 0 else int(cfg.d_vocab)

    @property
    def device(self) -> torch.device:
        """Device of the model's parameters."""
        return next(self.model.parameters()).device

    def check_layer(self, layer: int) -> int:
        """Validate a block index (negative counts from the end); return it non-negative.

        Raises:
            TypeError: ``layer`` is not an int.
            ValueError: ``layer`` is outside ``[-n_layers, n_layers)``.
        """
        layer = check_int("layer", layer)
        n = self.n_layers
        if not -n <= layer < n:
            raise ValueError(
                f"layer {layer} is out of range for a model with n_layers={n} "
                f"(valid: {-n} … {n - 1}, negative counts from the end)"
            )
        return layer % n

    def check_token_ids(self, ids: Iterable[int] | Tensor | int) -> list[int]:
        """Token ids as a list of ints, each in ``[0, d_vocab)`` (order and repeats kept)."""
        return as_token_ids(ids, vocab=self.d_vocab)

    # ------------------------------------------------------------------ hook names
    @abstractmethod
    def _resid_post(self, i: int) -> str:
        """Host's own name of block ``i``'s output hook."""

    @abstractmethod
    def _resid_pre(self, i: int) -> str:
        """Host's own name of block ``i``'s input hook."""

    def _sae_aware(self, name: str) -> str:
        """sae-lens replaces a HookPoint by an SAE: hook what flows downstream (its output)."""
        hook_dict = self.model.hook_dict
        if name not in hook_dict and f"{name}.hook_sae_output" in hook_dict:
            return f"{name}.hook_sae_output"
        return name

    def resid_post_name(self, layer: int) -> str:
        """Hook name of block ``layer``'s output (an SAE spliced there: its ``hook_sae_output``)."""
        return self._sae_aware(self._resid_post(self.check_layer(layer)))

    def resid_pre_name(self, layer: int) -> str:
        """Hook name of block ``layer``'s input (an SAE spliced there: its ``hook_sae_output``)."""
        return self._sae_aware(self._resid_pre(self.check_layer(layer)))

    def logits_name(self) -> str:
        """Hook name whose output is the logits ``[batch, pos, d_vocab]``."""
        return "unembed.hook_out"

    def final_norm_name(self) -> str | None:
        """Hook name of the final norm's output, or ``None`` without a final norm."""
        name = "ln_final.hook_normalized"
        return name if name in self.model.hook_dict else None

    def hook_points(self) -> dict[str, Any]:
        """Canonical hook name → HookPoint (aliases excluded)."""
        out: dict[str, Any] = {}
        seen: set[int] = set()
        for name, hp in self.model.hook_dict.items():
            if id(hp) in seen:
                continue
            seen.add(id(hp))
            out[getattr(hp, "name", None) or name] = hp
        return out

    def hook_counts(self) -> dict[str, int]:
        """Number of torch forward hooks on each HookPoint (leak checks); zero entries dropped."""
        out = {}
        for name, hp in self.hook_points().items():
            n = len(hp._forward_hooks)
            if n:
                out[name] = n
        return out

    # ------------------------------------------------------------------ unembedding
    def unembed_resid(self, resid: Float[Tensor, "... d_model"]) -> Float[Tensor, "... d_vocab"]:
        """Final norm + unembedding of residual vectors, without firing any hook (logit lens)."""
        if not isinstance(resid, Tensor):
            raise TypeError(f"resid must be a torch.Tensor, got {type(resid).__name__}")
        if resid.ndim < 1 or resid.shape[-1] != self.d_model:
            raise ValueError(
                f"resid must have shape [..., d_model={self.d_model}], got {tuple(resid.shape)}"
            )
        return self._unembed_no_hooks(resid)

    @abstractmethod
    def _unembed_no_hooks(self, resid: Tensor) -> Tensor:
        """Host-specific maths of :meth:`unembed_resid` (shape already checked)."""

    def unembed_with_hooks(
        self, resid: Float[Tensor, "b p d_model"]
    ) -> Float[Tensor, "b p d_vocab"]:
        """Final norm + unembedding called as modules: hooks on them fire (a ban applies)."""
        m = self.model
        return m.unembed(m.ln_final(resid))

    # ------------------------------------------------------------------ embeddings
    def embed_tokens(self, ids: Int[Tensor, "b p"]) -> Float[Tensor, "b p d_model"]:
        """Token embeddings (block-0 input without position terms) of ``ids``."""
        return self.model.embed(ids)

    def additive_position_embedding(self) -> str | None:
        """Name of an additive position-embedding scheme that changes block 0's input, or None."""
        return None

    # ------------------------------------------------------------------ blocks
    def block(self, i: int) -> torch.nn.Module:
        """Decoder block ``i`` as a module."""
        return self.model.blocks[i]

    def call_block(self, i: int, x: Tensor, kwargs: dict[str, Any]) -> Tensor:
        """Run block ``i`` on ``x`` with the keyword arguments the host called it with."""
        out = self.block(i)(x, **kwargs)
        return out[0] if isinstance(out, tuple) else out

    @abstractmethod
    def block_input(self, args: tuple, kwargs: dict[str, Any]) -> Tensor:
        """The residual input from a block forward pre-hook's ``(args, kwargs)``."""

    @abstractmethod
    def kv_cache(self, kwargs: dict[str, Any]) -> Any:
        """The KV cache (or this block's entry) in a block's call kwargs; None without one."""

    @abstractmethod
    def cache_len(self, i: int, kwargs: dict[str, Any]) -> int:
        """Positions held by block ``i``'s KV cache (0 without a cache)."""

    @abstractmethod
    def rollback(self, i: int, kwargs: dict[str, Any]) -> None:
        """Drop the newest KV-cache entry of block ``i``."""

    @abstractmethod
    def slice_block_kwargs(
        self, kwargs: dict[str, Any], sl: slice, *, keep_cache: bool
    ) -> dict[str, Any]:
        """Restrict per-position block kwargs to query positions ``sl``.

        ``keep_cache=True``: keys/values still come from the cache (a step from the cache);
        ``False``: the cache is dropped and the call sees positions ``[0, sl.stop)`` only.
        """

    def fix_kv_cache(self) -> int:
        """Patch host/transformers KV-cache mismatches on this model; number of modules patched."""
        return 0

    def left_padding_safe(self) -> bool:
        """Whether a left-padded batch decodes as each prompt alone would (default: yes)."""
        return True

    # ------------------------------------------------------------------ teacher forcing, in chunks
    def new_kv_cache(self, batch: int) -> Any:
        """An empty KV cache of the host's own kind for ``batch`` rows (:meth:`forward_cached`).

        Optional for a host: without it only the unchunked teacher-forced pass runs there.
        """
        raise NotImplementedError(f"the {self.name} host has no chunked teacher forcing")

    def forward_cached(self, tokens: Int[Tensor, "b c"], cache: Any, stop_at_layer: int) -> None:
        """The host's forward on ``tokens`` placed after the positions ``cache`` holds.

        Every hook attached to the model fires; ``cache`` grows by ``tokens.shape[1]`` positions
        (blocks ``< stop_at_layer``; the pass stops there). No attention mask: the caller pads on
        the right, which a causal model's real positions never see.
        """
        raise NotImplementedError(f"the {self.name} host has no chunked teacher forcing")

    # ------------------------------------------------------------------ tokenisation
    @property
    def tokenizer(self) -> Any:
        """The model's HF tokenizer; ``ValueError`` if it has none."""
        tok = getattr(self.model, "tokenizer", None)
        if tok is None:
            raise ValueError(
                "model has no tokenizer; pass tokenizer= when building it (load_model does this)"
            )
        return tok

    def to_tokens(self, text: str, *, prepend_bos: bool | None = None) -> Int[Tensor, "1 pos"]:
        """Tokenise ``text`` with no special tokens, then prepend BOS per ``prepend_bos``.

        ``None`` follows ``model.cfg.default_prepend_bos``. Same result on every host.
        """
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        tok = self.tokenizer
        if prepend_bos is None:
            prepend_bos = bool(getattr(self.model.cfg, "default_prepend_bos", True))
        ids = list(tok(text, add_special_tokens=False)["input_ids"])
        bos = getattr(tok, "bos_token_id", None)
        if prepend_bos and bos is not None:
            ids = [int(bos)] + ids
        if not ids:
            raise ValueError("text tokenised to zero tokens (empty text and no BOS)")
        return torch.tensor([ids], dtype=torch.long, device=self.device)
