"""Representation Recycling (RR): run decoder block ``L`` a second time on thinking tokens.

Qian et al. 2025 (arXiv 2506.02867, §5 / Fig. 6) and their reference code (ChnQ/MI-Peaks,
Apache-2.0) recycle the block-``L`` representation when the model is about to emit a thinking
token. The reference algorithm, per greedy decoding step, is:

1. normal pass on the new input with the pre-step KV cache; remember block ``L``'s output at the
   last position; ``candidate = argmax(logits)``;
2. trigger if ``candidate in T and random() < p`` (``p = 0.5`` in the reference);
3. if triggered, rerun the step from the SAME pre-step cache with block ``L``'s input at the last
   position replaced by block ``L``'s remembered output (block ``L`` runs twice, the blocks above
   run on the recycled stream); the emitted token is the argmax of the recycled logits and the
   recycled pass's cache replaces the normal one.

:class:`RepresentationRecycling` implements this inside ``model.generate`` with hooks, on
``HookedTransformer`` and ``TransformerBridge``. Only blocks ``>= L`` are recomputed, and only for
the last position: the KV cache of every block ``>= L`` is rolled back by one entry first, so each
position keeps exactly one entry per layer (the recycled one where the step was triggered).

``trigger="input"`` is a single-pass variant: when the token fed at a step (its last input token)
is in ``T``, block ``L`` is applied ``1 + n_recycles`` times at that position in the same pass.

Cached and uncached generation agree: the component remembers which positions of the current
sequence were recycled and, in a pass that recomputes the whole sequence (``generate`` with
``use_past_kv_cache=False``, or a new prompt that extends the previous sequence by one token),
re-applies recycling at those positions exactly as the KV cache would hold it.

Example:
    >>> rr = RepresentationRecycling(layer=-3, trigger_token_ids=[12, 40], p=0.5, seed=0)
    >>> with rr.attach(model):                                   # doctest: +SKIP
    ...     out = model.generate("So", max_new_tokens=32, do_sample=False)
    >>> rr.fired                                                 # doctest: +SKIP
    3
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from tl_thinktok import hosts
from tl_thinktok._validate import as_token_ids, check_int, check_prob
from tl_thinktok.hosts import HostAdapter
from tl_thinktok.interventions.base import Component, ModuleHook

__all__ = ["RepresentationRecycling", "TRIGGER_MODES"]

TRIGGER_MODES = ("candidate", "input")


@dataclass
class _Step:
    """What one forward pass of the host exposed to the hooks (internal)."""

    x0: Tensor  # block-0 input (token embeddings) of this pass, [1, n, d]
    kwargs: dict[int, dict[str, Any]] = field(default_factory=dict)  # block i >= L call kwargs
    offset: int = 0  # positions already in the KV cache before this pass
    x_in: Tensor | None = None  # block-L input after replay, [1, n, d]
    h_last: Tensor | None = None  # block-L output at the last position, [1, 1, d]
    last_pos: int = 0  # absolute position of the last input token


class _Sequence:
    """Block-0 inputs of the current sequence in a buffer that grows by doubling (internal).

    Appending one position per decoding step is amortised O(1) (a ``torch.cat`` per step would
    copy the whole history every step: quadratic in the trace length).
    """

    def __init__(self, x: Tensor) -> None:
        self._buf = x.clone()
        self.n = x.shape[1]

    @property
    def value(self) -> Tensor:
        """The stored positions, ``[1, n, d]`` (a view)."""
        return self._buf[:, : self.n]

    def append(self, x: Tensor) -> None:
        """Append ``x`` (``[1, k, d]``) after the stored positions."""
        k = x.shape[1]
        if self.n + k > self._buf.shape[1]:
            cap = max(2 * self._buf.shape[1], self.n + k, 16)
            buf = self._buf.new_empty((self._buf.shape[0], cap, self._buf.shape[2]))
            buf[:, : self.n] = self._buf[:, : self.n]
            self._buf = buf
        self._buf[:, self.n : self.n + k] = x.to(self._buf.device, self._buf.dtype)
        self.n += k


class RepresentationRecycling(Component):
    """Recycle block ``layer``'s output through block ``layer`` again on thinking tokens.

    Args:
        layer: 0-indexed decoder block ``L`` (negative counts from the end).
        trigger_token_ids: the trigger set ``T`` (non-empty; checked against the vocabulary when
            hooks are built for a model).
        trigger: ``"candidate"`` (the reference algorithm: trigger on the greedy candidate of a
            normal pass, rerun the step) or ``"input"`` (trigger on the token fed at the step,
            single pass).
        p: probability of recycling when the trigger condition holds (the reference uses 0.5).
            The coin ``rng.random() < p`` is drawn only when the condition holds, from a
            ``random.Random(seed)`` owned by this instance.
        n_recycles: extra applications of block ``L`` in ``"input"`` mode; ``"candidate"`` mode
            recycles exactly once (as the reference) and needs ``n_recycles == 1``.
        seed: seed of the instance's RNG (``reset()`` re-seeds it).

    Attributes:
        fired: number of recycles performed since the last ``reset()`` (``attach`` resets by
            default; ``attach(model, reset=False)`` keeps counting and keeps the RNG stream).

    RR needs the arguments each block is called with (KV cache, masks, rotary embeddings), which
    only ``attach`` / ``attach_all`` capture (torch block pre-hooks): ``requires_attach`` is True
    and ``fwd_hooks()`` raises. Its ``hook_order`` is the highest, so in ``attach_all`` its logits
    hook runs after every other component's (it sees a ban's ``-inf`` logits).

    Raises:
        ValueError: empty trigger set, negative ids, ``p`` outside ``[0, 1]``, ``n_recycles < 1``,
            an unknown trigger mode; at attach time: layer out of range, ids outside the vocab.

    Example:
        >>> rr = RepresentationRecycling(-3, [12, 40])
        >>> with rr.attach(model):                              # doctest: +SKIP
        ...     model.generate(tokens, max_new_tokens=16, do_sample=False)
        >>> rr.fired                                            # doctest: +SKIP
        2
    """

    requires_attach = True
    hook_order = 100  # innermost: its logits hook sees the other components' edits

    def __init__(
        self,
        layer: int,
        trigger_token_ids: Iterable[int] | Tensor,
        trigger: str = "candidate",
        p: float = 1.0,
        n_recycles: int = 1,
        seed: int = 0,
    ) -> None:
        layer = check_int("layer", layer)
        if trigger not in TRIGGER_MODES:
            raise ValueError(f"unknown trigger mode {trigger!r}; expected one of {TRIGGER_MODES}")
        p = check_prob("p", p)
        n_recycles = check_int("n_recycles", n_recycles, low=1)
        seed = check_int("seed", seed)
        if trigger == "candidate" and n_recycles != 1:
            raise ValueError(
                f"trigger='candidate' recycles exactly once (as the reference); got "
                f"n_recycles={n_recycles}. Use trigger='input' for repeated recycling."
            )
        # ids >= 0 here; the vocabulary bound is checked when attached to a model
        ids = as_token_ids(trigger_token_ids, name="trigger_token_ids", allow_empty=False)
        self.layer = layer
        self.trigger_token_ids: tuple[int, ...] = tuple(sorted(set(ids)))
        self.trigger = trigger
        self.p = float(p)
        self.n_recycles = n_recycles
        self.seed = seed
        self.fired = 0
        self._rng = random.Random(seed)
        self._busy = False
        self._step: _Step | None = None
        self._emb: _Sequence | None = None  # block-0 inputs of the current sequence
        self._recycled: list[int] = []  # recycled positions of the current sequence
        self._trigger_emb: dict[int, Tensor] = {}  # id(model) -> [|T|, d] embeddings

    # ------------------------------------------------------------------ public API
    def __repr__(self) -> str:
        return (
            f"RepresentationRecycling(layer={self.layer}, |T|={len(self.trigger_token_ids)}, "
            f"trigger={self.trigger!r}, p={self.p}, n_recycles={self.n_recycles}, "
            f"seed={self.seed}, fired={self.fired})"
        )

    @property
    def recycled_positions(self) -> list[int]:
        """Absolute positions recycled in the current sequence (prompt positions count)."""
        return list(self._recycled)

    def reset(self) -> None:
        """Zero ``fired``, re-seed the RNG and forget the current sequence (``attach`` calls it)."""
        self.fired = 0
        self._rng = random.Random(self.seed)
        self._step = None
        self._emb = None
        self._recycled = []

    def _fwd_hooks(self, model: Any) -> list[tuple[str, Callable]]:
        """RR's TransformerLens hooks (block-L input; in candidate mode also its output, logits).

        They need the block pre-hooks of :meth:`_module_hooks` (``requires_attach``).
        """
        ad = self._check_model(model)
        layer = ad.check_layer(self.layer)
        hooks: list[tuple[str, Callable]] = [
            (ad.resid_pre_name(layer), self._make_resid_pre_hook(ad, layer)),
        ]
        if self.trigger == "candidate":
            hooks.append((ad.resid_post_name(layer), self._make_resid_post_hook()))
            hooks.append((ad.logits_name(), self._make_logits_hook(ad, layer)))
        return hooks

    def _module_hooks(self, model: Any) -> list[ModuleHook]:
        """Pre-hooks on block 0 (pass start) and blocks ``>= L`` (their call kwargs, KV cache)."""
        ad = hosts.adapter(model)
        layer = ad.check_layer(self.layer)
        return [
            ModuleHook(ad.block(i), self._make_block_pre_hook(ad, i, layer))
            for i in sorted({0, *range(layer, ad.n_layers)})
        ]

    def _on_detach(self) -> None:
        self._step = None

    # ------------------------------------------------------------------ checks
    def _check_model(self, model: Any) -> HostAdapter:
        ad = hosts.adapter(model)
        ad.check_layer(self.layer)
        ad.check_token_ids(list(self.trigger_token_ids))
        if self.trigger == "input":
            pe = ad.additive_position_embedding()
            if pe is not None:
                raise ValueError(
                    "trigger='input' identifies the fed token by its embedding at block 0, which "
                    f"needs a model without additive position embeddings (got {pe!r})"
                )
        return ad

    # ------------------------------------------------------------------ host plumbing
    @staticmethod
    def _rollback(ad: HostAdapter, step: _Step, layers: Iterable[int]) -> None:
        """Remove the newest KV entry of each block in ``layers``."""
        for i in layers:
            try:
                ad.rollback(i, step.kwargs[i])
            except NotImplementedError as err:
                raise NotImplementedError(f"RepresentationRecycling {err}") from err

    def _trigger_embeddings(self, ad: HostAdapter) -> Tensor:
        key = id(ad.model)
        if key not in self._trigger_emb:
            ids = torch.tensor(self.trigger_token_ids, device=ad.device)
            with torch.no_grad():
                emb = ad.embed_tokens(ids[None])[0]
            self._trigger_emb = {key: emb.detach()}
        return self._trigger_emb[key]

    def _is_trigger_input(self, ad: HostAdapter, emb: Tensor) -> bool:
        ref = self._trigger_embeddings(ad).to(emb.device, emb.dtype)
        return bool((ref == emb.reshape(1, -1)).all(-1).any())

    # ------------------------------------------------------------------ hooks
    def _make_block_pre_hook(self, ad: HostAdapter, i: int, layer: int) -> Callable:
        def pre_hook(module: Any, args: tuple, kwargs: dict) -> None:
            if self._busy:
                return None
            if i == 0:
                x0 = ad.block_input(args, kwargs)
                if x0.shape[0] != 1:
                    raise ValueError(
                        "RepresentationRecycling supports batch size 1 only; got a batch of "
                        f"{x0.shape[0]} sequences (generate one prompt at a time)"
                    )
                self._step = _Step(x0=x0.detach())
            if i >= layer:
                if self._step is None:
                    raise RuntimeError("RepresentationRecycling: block 0 was not seen this pass")
                self._step.kwargs[i] = dict(kwargs)
                if i == layer:
                    self._step.offset = ad.cache_len(layer, kwargs)
            return None

        return pre_hook

    def _require_step(self) -> _Step:
        if self._step is None:
            raise RuntimeError(
                "RepresentationRecycling hooks fired without the block pre-hooks: run the model "
                "inside `with rr.attach(model):` (TL hooks alone cannot see the KV cache)"
            )
        return self._step

    def _update_sequence(self, step: _Step, n: int) -> list[int]:
        """Track the current sequence; return recycled positions to replay in this pass."""
        if step.offset == 0:
            x0 = step.x0
            cont = (
                self._emb is not None
                and x0.shape[1] == self._emb.n + 1
                and torch.equal(x0[:, :-1].to(self._emb.value.device), self._emb.value)
            )
            if not cont:
                self._recycled = []
            self._emb = _Sequence(x0)
            step.last_pos = n - 1
            return list(self._recycled)
        seen = 0 if self._emb is None else self._emb.n
        if self._emb is None or step.offset != seen or n != 1:
            raise RuntimeError(
                f"RepresentationRecycling lost track of the sequence: the KV cache holds "
                f"{step.offset} positions, {n} new, but {seen} were seen "
                "(call rr.reset() before reusing a cache)"
            )
        self._emb.append(step.x0)
        step.last_pos = step.offset
        return []

    def _make_resid_pre_hook(self, ad: HostAdapter, layer: int) -> Callable:
        reps = self.n_recycles if self.trigger == "input" else 1

        def resid_pre_hook(x: Tensor, hook: Any) -> Tensor:
            if self._busy:
                return x
            step = self._require_step()
            n = x.shape[1]
            replay = self._update_sequence(step, n)
            fire_now = False
            if self.trigger == "input" and self._is_trigger_input(ad, step.x0[0, -1]):
                fire_now = self._rng.random() < self.p
            self._busy = True
            try:
                x = x.clone()
                if step.offset == 0:
                    todo = sorted(set(replay) | ({n - 1} if fire_now else set()))
                    for j in todo:
                        a = x[:, j : j + 1]
                        kw = ad.slice_block_kwargs(
                            step.kwargs[layer], slice(0, j + 1), keep_cache=False
                        )
                        for _ in range(reps):
                            a = ad.call_block(layer, torch.cat([x[:, :j], a], 1), kw)
                            a = a[:, -1:]
                        x[:, j : j + 1] = a
                elif fire_now:
                    a = x
                    for _ in range(reps):
                        a = ad.call_block(layer, a, step.kwargs[layer])
                        self._rollback(ad, step, [layer])
                    x = a.clone()
            finally:
                self._busy = False
            if fire_now:
                self.fired += 1
                self._recycled.append(step.last_pos)
            step.x_in = x
            return x

        return resid_pre_hook

    def _make_resid_post_hook(self) -> Callable:
        def resid_post_hook(x: Tensor, hook: Any) -> None:
            if self._busy:
                return None
            self._require_step().h_last = x[:, -1:].detach().clone()
            return None

        return resid_post_hook

    def _make_logits_hook(self, ad: HostAdapter, layer: int) -> Callable:
        trig = set(self.trigger_token_ids)

        def logits_hook(logits: Tensor, hook: Any) -> Tensor:
            if self._busy:
                return logits
            step = self._require_step()
            if step.h_last is None or step.x_in is None:
                raise RuntimeError(f"RepresentationRecycling: block {layer} did not run this pass")
            candidate = int(logits[0, -1].argmax())
            if not (candidate in trig and self._rng.random() < self.p):
                return logits
            self._busy = True
            try:
                new_last = self._recycled_logits(ad, step, layer)
            finally:
                self._busy = False
            self.fired += 1
            self._recycled.append(step.last_pos)
            logits = logits.clone()
            logits[:, -1:] = new_last.to(logits.dtype)
            return logits

        return logits_hook

    def _recycled_logits(
        self, ad: HostAdapter, step: _Step, layer: int
    ) -> Float[Tensor, "1 1 d_vocab"]:
        """Rerun blocks ``>= layer`` with block ``layer``'s input at the last position replaced.

        Called from the logits hook: with a KV cache, the newest entry of every block
        ``>= layer`` is rolled back and only the last position is recomputed (the recycled
        entries replace the normal ones); without one, blocks ``>= layer`` rerun over the whole
        sequence. The final norm and unembedding are called as modules, so other components'
        logit hooks apply to the recycled logits too.
        """
        top = range(layer, ad.n_layers)
        kw_l = step.kwargs[layer]
        # a cache that really holds this pass's entries (a host may pass one and ignore it)
        cached = ad.kv_cache(kw_l) is not None and ad.cache_len(layer, kw_l) == step.last_pos + 1
        if cached:
            self._rollback(ad, step, top)
            h = step.h_last
            for i in top:
                kw = ad.slice_block_kwargs(step.kwargs[i], slice(-1, None), keep_cache=True)
                h = ad.call_block(i, h, kw)
        else:
            h = step.x_in.clone()
            h[:, -1:] = step.h_last
            for i in top:
                kw = ad.slice_block_kwargs(step.kwargs[i], slice(0, None), keep_cache=False)
                h = ad.call_block(i, h, kw)
            h = h[:, -1:]
        return ad.unembed_with_hooks(h)
