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

Batches (left padding, as :func:`tl_thinktok.generation.greedy_batch` does): every row has its own
trigger decision and its own coins. Row ``i`` draws from ``random.Random(rr.row_seed(i))``
(``row_seed(0) == seed``, so a batch of one is the single-sequence algorithm above, and a row's
coins depend on the seed and its row index only, never on its batch-mates: a prompt generated
alone with ``seed=rr.row_seed(i)`` is recycled exactly as row ``i``). The KV cache holds one length
for the whole batch, so a step is rerun for the WHOLE batch whenever at least one row triggers: the
newest entry of every block ``>= L`` is rolled back for all rows, triggered rows rerun on the
recycled representation and the other rows on their original block-``L`` input, which recomputes
their entries and logits to the same values (same inputs, same shapes); only the triggered rows'
logits are replaced. Every row thus keeps exactly one KV entry per position. Rows that emitted one
of ``stop_token_ids`` (EOS: pass what ``generate`` stops at) stop recycling and drawing coins, as
the same prompt generated alone would have stopped.

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

import hashlib
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

    x0: Tensor  # block-0 input (token embeddings) of this pass, [b, n, d]
    kwargs: dict[int, dict[str, Any]] = field(default_factory=dict)  # block i >= L call kwargs
    offset: int = 0  # positions already in the KV cache before this pass
    x_in: Tensor | None = None  # block-L input after replay, [b, n, d]
    h_last: Tensor | None = None  # block-L output at the last position, [b, 1, d]
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
        """The stored positions, ``[b, n, d]`` (a view)."""
        return self._buf[:, : self.n]

    def append(self, x: Tensor) -> None:
        """Append ``x`` (``[b, k, d]``) after the stored positions."""
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
            The coin ``rng.random() < p`` is drawn only when the condition holds, from the row's
            own ``random.Random(row_seed(row))`` owned by this instance.
        n_recycles: extra applications of block ``L`` in ``"input"`` mode; ``"candidate"`` mode
            recycles exactly once (as the reference) and needs ``n_recycles == 1``.
        seed: seed of row 0's RNG (``reset()`` re-seeds every row); see :meth:`row_seed`.
        stop_token_ids: a row that emitted one of these ids (its greedy token: the argmax of the
            final logits) is finished: it is no longer recycled and draws no more coins, as the
            same prompt generated alone with ``stop_at_eos`` would have stopped. Pass the EOS id(s)
            ``generate`` stops at; empty (default): rows are never considered finished.

    Attributes:
        fired: number of recycles performed since the last ``reset()``, all rows together
            (``attach`` resets by default; ``attach(model, reset=False)`` keeps counting and keeps
            the RNG streams).
        fired_rows: recycles per batch row since the last ``reset()``.

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
        >>> rr.row_seed(0) == rr.seed
        True
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
        stop_token_ids: Iterable[int] | Tensor = (),
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
        stops = as_token_ids(stop_token_ids, name="stop_token_ids")
        self.layer = layer
        self.trigger_token_ids: tuple[int, ...] = tuple(sorted(set(ids)))
        self.stop_token_ids: tuple[int, ...] = tuple(sorted(set(stops)))
        self.trigger = trigger
        self.p = float(p)
        self.n_recycles = n_recycles
        self.seed = seed
        self.fired = 0
        self.fired_rows: list[int] = []
        self._rngs: list[random.Random] = []
        self._busy = False
        self._step: _Step | None = None
        self._emb: _Sequence | None = None  # block-0 inputs of the current sequence
        self._recycled: list[list[int]] = []  # per row: recycled positions of the sequence
        self._done: Tensor | None = None  # [b] bool: rows that emitted a stop id
        self._trigger_emb: dict[int, Tensor] = {}  # id(model) -> [|T|, d] embeddings
        self._id_tensors: dict[tuple[str, torch.device], Tensor] = {}

    # ------------------------------------------------------------------ public API
    def __repr__(self) -> str:
        return (
            f"RepresentationRecycling(layer={self.layer}, |T|={len(self.trigger_token_ids)}, "
            f"trigger={self.trigger!r}, p={self.p}, n_recycles={self.n_recycles}, "
            f"seed={self.seed}, fired={self.fired})"
        )

    def row_seed(self, row: int) -> int:
        """Seed of batch row ``row``'s coins: ``seed`` for row 0, else a hash of (seed, row).

        A row's coins depend on ``seed`` and its row index only (never on the other rows), so
        row ``i`` of a batch is recycled exactly as its prompt generated alone with
        ``RepresentationRecycling(..., seed=rr.row_seed(i))``.

        Example:
            >>> rr = RepresentationRecycling(0, [5], p=0.5, seed=3)
            >>> rr.row_seed(0), rr.row_seed(1) == rr.row_seed(1), rr.row_seed(1) != 3
            (3, True, True)
        """
        row = check_int("row", row, low=0)
        if row == 0:
            return self.seed
        key = f"tl_thinktok.RepresentationRecycling/{self.seed}/{row}".encode()
        return int.from_bytes(hashlib.sha256(key).digest()[:8], "big")

    @property
    def recycled_positions(self) -> list[int]:
        """Absolute positions recycled in the current sequence (batch 1; prompt positions count).

        Raises:
            ValueError: the current sequence is a batch (use :attr:`recycled_positions_rows`).
        """
        if len(self._recycled) > 1:
            raise ValueError(
                f"the current sequence is a batch of {len(self._recycled)} rows; "
                "use recycled_positions_rows"
            )
        return list(self._recycled[0]) if self._recycled else []

    @property
    def recycled_positions_rows(self) -> list[list[int]]:
        """Per batch row, the recycled positions (padded-batch coordinates: left padding counts)."""
        return [list(r) for r in self._recycled]

    def reset(self) -> None:
        """Zero ``fired``, re-seed every row's RNG and forget the current sequence."""
        self.fired = 0
        self.fired_rows = []
        self._rngs = []
        self._step = None
        self._emb = None
        self._recycled = []
        self._done = None

    def _fwd_hooks(self, model: Any) -> list[tuple[str, Callable]]:
        """RR's TransformerLens hooks (block-L input, its output in candidate mode, the logits).

        They need the block pre-hooks of :meth:`_module_hooks` (``requires_attach``).
        """
        ad = self._check_model(model)
        layer = ad.check_layer(self.layer)
        hooks: list[tuple[str, Callable]] = [
            (ad.resid_pre_name(layer), self._make_resid_pre_hook(ad, layer)),
        ]
        if self.trigger == "candidate":
            hooks.append((ad.resid_post_name(layer), self._make_resid_post_hook()))
        if self.trigger == "candidate" or self.stop_token_ids:
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
        if self.stop_token_ids:
            ad.check_token_ids(list(self.stop_token_ids))
        if self.trigger == "input":
            pe = ad.additive_position_embedding()
            if pe is not None:
                raise ValueError(
                    "trigger='input' identifies the fed token by its embedding at block 0, which "
                    f"needs a model without additive position embeddings (got {pe!r})"
                )
        return ad

    # ------------------------------------------------------------------ per-row state
    def _ensure_rows(self, b: int) -> None:
        """Create the RNG, counter and position list of rows ``< b`` that do not exist yet."""
        while len(self._rngs) < b:
            self._rngs.append(random.Random(self.row_seed(len(self._rngs))))
        while len(self.fired_rows) < b:
            self.fired_rows.append(0)

    def _coins(self, rows: Tensor) -> list[int]:
        """Rows (of those whose trigger condition holds) whose own coin says recycle."""
        out = []
        for r in rows.tolist():
            if self._rngs[r].random() < self.p:
                out.append(int(r))
        return out

    def _record(self, rows: list[int], pos: int) -> None:
        for r in rows:
            self.fired += 1
            self.fired_rows[r] += 1
            self._recycled[r].append(pos)

    def _ids(self, kind: str, device: torch.device) -> Tensor:
        key = (kind, device)
        if key not in self._id_tensors:
            ids = self.trigger_token_ids if kind == "trigger" else self.stop_token_ids
            self._id_tensors[key] = torch.tensor(ids, dtype=torch.long, device=device)
        return self._id_tensors[key]

    def _live(self, b: int, device: torch.device) -> Tensor:
        """``[b]`` bool: rows not finished (no stop id emitted yet)."""
        if self._done is None or self._done.shape[0] != b:
            self._done = torch.zeros(b, dtype=torch.bool, device=device)
        return ~self._done.to(device)

    # ------------------------------------------------------------------ host plumbing
    @staticmethod
    def _rollback(ad: HostAdapter, step: _Step, layers: Iterable[int]) -> None:
        """Remove the newest KV entry of each block in ``layers`` (every batch row)."""
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

    def _trigger_inputs(self, ad: HostAdapter, emb: Tensor) -> Tensor:
        """``[b]`` bool: rows whose fed token (block-0 input ``emb``, ``[b, d]``) is in ``T``."""
        ref = self._trigger_embeddings(ad).to(emb.device, emb.dtype)
        return (ref[None] == emb[:, None]).all(-1).any(-1)

    # ------------------------------------------------------------------ hooks
    def _make_block_pre_hook(self, ad: HostAdapter, i: int, layer: int) -> Callable:
        def pre_hook(module: Any, args: tuple, kwargs: dict) -> None:
            if self._busy:
                return None
            if i == 0:
                self._step = _Step(x0=ad.block_input(args, kwargs).detach())
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

    def _update_sequence(self, step: _Step, n: int) -> list[list[int]]:
        """Track the current sequence; return each row's recycled positions to replay now."""
        b = step.x0.shape[0]
        self._ensure_rows(b)
        if step.offset == 0:
            x0 = step.x0
            cont = (
                self._emb is not None
                and x0.shape[0] == self._emb.value.shape[0]
                and x0.shape[1] == self._emb.n + 1
                and torch.equal(x0[:, :-1].to(self._emb.value.device), self._emb.value)
            )
            if not cont:
                self._recycled = [[] for _ in range(b)]
                self._done = None
            self._emb = _Sequence(x0)
            step.last_pos = n - 1
            return [list(r) for r in self._recycled]
        seen = 0 if self._emb is None else self._emb.n
        if self._emb is None or step.offset != seen or n != 1 or b != len(self._recycled):
            raise RuntimeError(
                f"RepresentationRecycling lost track of the sequence: the KV cache holds "
                f"{step.offset} positions, {n} new, but {seen} were seen "
                "(call rr.reset() before reusing a cache)"
            )
        self._emb.append(step.x0)
        step.last_pos = step.offset
        return [[] for _ in range(b)]

    def _make_resid_pre_hook(self, ad: HostAdapter, layer: int) -> Callable:
        reps = self.n_recycles if self.trigger == "input" else 1

        def resid_pre_hook(x: Tensor, hook: Any) -> Tensor:
            if self._busy:
                return x
            step = self._require_step()
            b, n = x.shape[0], x.shape[1]
            replay = self._update_sequence(step, n)
            fire_rows: list[int] = []
            if self.trigger == "input":
                cond = self._trigger_inputs(ad, step.x0[:, -1]) & self._live(b, x.device)
                fire_rows = self._coins(cond.nonzero().flatten())
            self._busy = True
            try:
                x = x.clone()
                if step.offset == 0:
                    todo: dict[int, list[int]] = {}
                    for r, positions in enumerate(replay):
                        for j in positions:
                            todo.setdefault(j, []).append(r)
                    for r in fire_rows:
                        todo.setdefault(n - 1, []).append(r)
                    for j in sorted(todo):
                        rows = torch.tensor(sorted(set(todo[j])), device=x.device)
                        a = x[:, j : j + 1]
                        kw = ad.slice_block_kwargs(
                            step.kwargs[layer], slice(0, j + 1), keep_cache=False
                        )
                        for _ in range(reps):
                            a = ad.call_block(layer, torch.cat([x[:, :j], a], 1), kw)
                            a = a[:, -1:]
                        x[rows, j : j + 1] = a[rows].to(x.dtype)
                elif fire_rows:
                    a = x
                    for _ in range(reps):
                        a = ad.call_block(layer, a, step.kwargs[layer])
                        self._rollback(ad, step, [layer])
                    rows = torch.tensor(fire_rows, device=x.device)
                    x[rows] = a[rows].to(x.dtype)
            finally:
                self._busy = False
            self._record(fire_rows, step.last_pos)
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
        def logits_hook(logits: Tensor, hook: Any) -> Tensor:
            if self._busy:
                return logits
            step = self._require_step()
            b = logits.shape[0]
            if self.trigger == "candidate":
                if step.h_last is None or step.x_in is None:
                    raise RuntimeError(
                        f"RepresentationRecycling: block {layer} did not run this pass"
                    )
                cand = logits[:, -1].argmax(-1)
                trig = self._ids("trigger", cand.device)
                cond = torch.isin(cand, trig) & self._live(b, cand.device)
                rows = self._coins(cond.nonzero().flatten()) if bool(cond.any()) else []
                if rows:
                    self._busy = True
                    try:
                        new_last = self._recycled_logits(ad, step, layer, rows)
                    finally:
                        self._busy = False
                    self._record(rows, step.last_pos)
                    idx = torch.tensor(rows, device=logits.device)
                    logits = logits.clone()
                    logits[idx, -1:] = new_last[idx].to(logits.dtype)
            if self.stop_token_ids:
                emitted = logits[:, -1].argmax(-1)
                stopped = torch.isin(emitted, self._ids("stop", emitted.device))
                live = self._live(b, emitted.device)
                self._done = ~live | stopped
            return logits

        return logits_hook

    def _recycled_logits(
        self, ad: HostAdapter, step: _Step, layer: int, rows: list[int]
    ) -> Float[Tensor, "b 1 d_vocab"]:
        """Rerun blocks ``>= layer``: block ``layer``'s input at the last position replaced by its
        output on the triggered ``rows``, unchanged on the others.

        Called from the logits hook: with a KV cache, the newest entry of every block
        ``>= layer`` is rolled back (every row) and only the last position is recomputed for the
        whole batch (the triggered rows' recycled entries replace the normal ones; the other rows
        recompute the same entries); without one, blocks ``>= layer`` rerun over the whole
        sequence. The final norm and unembedding are called as modules, so other components'
        logit hooks apply to the recycled logits too.
        """
        top = range(layer, ad.n_layers)
        kw_l = step.kwargs[layer]
        idx = torch.tensor(rows, device=step.h_last.device)
        # a cache that really holds this pass's entries (a host may pass one and ignore it)
        cached = ad.kv_cache(kw_l) is not None and ad.cache_len(layer, kw_l) == step.last_pos + 1
        if cached:
            self._rollback(ad, step, top)
            h = step.x_in[:, -1:].clone()
            h[idx] = step.h_last[idx].to(h.dtype)
            for i in top:
                kw = ad.slice_block_kwargs(step.kwargs[i], slice(-1, None), keep_cache=True)
                h = ad.call_block(i, h, kw)
        else:
            h = step.x_in.clone()
            h[idx, -1:] = step.h_last[idx].to(h.dtype)
            for i in top:
                kw = ad.slice_block_kwargs(step.kwargs[i], slice(0, None), keep_cache=False)
                h = ad.call_block(i, h, kw)
            h = h[:, -1:]
        return ad.unembed_with_hooks(h)
