"""Step representations h_t and the answer representation h_y (PAPER.md §1).

* :func:`step_residuals` — teacher-forced: ONE forward pass over ``prompt + generated`` that stops
  after block ``layer``; returns the block output at positions ``prompt_len − 1 … len − 2``, i.e.
  row ``t`` is the state whose next-token prediction is generated token ``t``.
* :func:`answer_representation` — the answer text fed alone; last-token state of block ``layer``.
* :class:`MIProbe` — the same states recorded live during ``model.generate``: one row per forward
  call (the prefill, then one call per later step), position −1 of each call. With
  ``max_new_tokens = N`` and no early stop, ``generate`` makes exactly N calls, so
  ``probe.residuals[t]`` is the state that predicted generated token ``t`` and equals
  ``step_residuals(model, out[0], prompt_len, layer)[t]`` (tested on both hosts, with and without
  the KV cache).

Example:
    >>> probe = MIProbe(layer=-1)
    >>> with probe.attach(model):                                          # doctest: +SKIP
    ...     out = model.generate(prompt, max_new_tokens=64, do_sample=False)
    >>> h_y = answer_representation(model, solution_text, layer=-1)       # doctest: +SKIP
    >>> mi = probe.trajectory(h_y)                                         # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from tl_thinktok import hosts
from tl_thinktok._validate import check_int
from tl_thinktok.interventions.base import Component
from tl_thinktok.mi import estimate

#: Steps of a trajectory estimated per call: at most this many bytes of float64 step states.
_STREAM_BYTES = 64 * 2**20

__all__ = [
    "step_residuals",
    "step_residuals_batch",
    "answer_representation",
    "last_residuals_batch",
    "MIProbe",
]


def _as_1d_tokens(tokens: Any) -> Tensor:
    if not isinstance(tokens, Tensor):
        try:
            tokens = torch.as_tensor(tokens)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"tokens must be a tensor or a list of ints: {exc}") from None
    if tokens.is_floating_point() or tokens.dtype == torch.bool:
        raise TypeError(f"tokens must be an integer tensor, got dtype {tokens.dtype}")
    if tokens.ndim == 2:
        if tokens.shape[0] != 1:
            raise ValueError(
                f"tokens must be one sequence ([pos] or [1, pos]), got shape {tuple(tokens.shape)}"
            )
        tokens = tokens[0]
    if tokens.ndim != 1:
        raise ValueError(f"tokens must be [pos] or [1, pos], got shape {tuple(tokens.shape)}")
    return tokens.long()


def _residuals_at(model: Any, tokens: Tensor, layer: int) -> Tensor:
    """Block ``layer`` output for all positions of ``tokens`` ([pos]) → [pos, d_model]."""
    i = hosts.check_layer(model, layer)
    name = hosts.resid_post_name(model, i)
    captured: list[Tensor] = []

    def capture(x: Tensor, hook: Any) -> None:
        captured.append(x.detach())

    toks = tokens.to(hosts.model_device(model))[None]
    with torch.no_grad(), model.hooks(fwd_hooks=[(name, capture)]):
        model(toks, stop_at_layer=i + 1)
    if len(captured) != 1:
        raise RuntimeError(f"expected one call of {name}, saw {len(captured)}")
    return captured[0][0].clone()


def step_residuals(
    model: Any,
    tokens: Int[Tensor, " pos"] | Int[Tensor, "1 pos"],
    prompt_len: int,
    layer: int = -1,
) -> Float[Tensor, "step d_model"]:
    """Step representations h_t of a finished trace from one teacher-forced forward pass.

    Args:
        model: HookedTransformer or TransformerBridge.
        tokens: the full trace ``prompt + generated`` (``[pos]`` or ``[1, pos]``), exactly the ids
            that were fed to / returned by ``generate`` (no re-tokenisation, so no BOS question).
        prompt_len: number of prompt tokens (``1 <= prompt_len < pos``).
        layer: decoder block (negative counts from the end; ``-1`` = last block, the paper's L).

    Returns:
        ``[pos - prompt_len, d_model]``: row ``t`` is block ``layer``'s output at position
        ``prompt_len - 1 + t``, the state whose next-token prediction is generated token ``t``.

    Example:
        >>> out = model.generate(prompt, max_new_tokens=8, do_sample=False)  # doctest: +SKIP
        >>> h = step_residuals(model, out[0], prompt.shape[-1], layer=-1)    # doctest: +SKIP
        >>> h.shape                                                          # doctest: +SKIP
        torch.Size([8, 64])
    """
    tokens = _as_1d_tokens(tokens)
    prompt_len = check_int("prompt_len", prompt_len)
    if not 1 <= prompt_len < tokens.shape[0]:
        raise ValueError(
            f"prompt_len={prompt_len} must satisfy 1 <= prompt_len < len(tokens)={tokens.shape[0]} "
            "(the trace needs at least one prompt token and one generated token)"
        )
    hosts.check_token_ids(model, tokens)
    # the last token is never fed to predict anything: skip it
    resid = _residuals_at(model, tokens[:-1], layer)
    return resid[prompt_len - 1 :]


def _right_padded(model: Any, seqs: list[list[int]]) -> Tensor:
    """``[b, width]`` ids of ``seqs`` right-padded (the tokenizer's pad id, else 0: causal
    attention never lets a real position see the pads after it) on the model's device."""
    width = max(len(q) for q in seqs)
    pad = getattr(getattr(model, "tokenizer", None), "pad_token_id", None)
    pad = 0 if pad is None else int(pad)
    dev = hosts.model_device(model)
    return torch.tensor([list(q) + [pad] * (width - len(q)) for q in seqs], device=dev)


def _capture_one(model: Any, name: str, forward: Callable[[], Any]) -> Tensor:
    """The activation at hook ``name`` during ``forward()`` (exactly one call, no grad)."""
    captured: list[Tensor] = []

    def capture(x: Tensor, hook: Any) -> None:
        captured.append(x.detach())

    with torch.no_grad(), model.hooks(fwd_hooks=[(name, capture)]):
        forward()
    if len(captured) != 1:
        raise RuntimeError(f"expected one call of {name}, saw {len(captured)}")
    return captured[0]


def _padded_pass(model: Any, seqs: list[list[int]], layer: int) -> Tensor:
    """One forward pass over right-padded ``seqs`` stopping after block ``layer`` → ``[b, w, d]``.

    Right padding needs no attention mask: in a causal model position ``j`` only sees positions
    ``<= j``, so every real position of a row is computed exactly as in the row's own pass (up
    to the round-off of a different matmul shape) and the pad positions after it are ignored.
    (Left padding would need a mask, and a fully masked pad row is NaN in float64 on some hosts.)
    """
    if not seqs or any(len(q) == 0 for q in seqs):
        raise ValueError("give at least one non-empty token sequence")
    i = hosts.check_layer(model, layer)
    toks = _right_padded(model, seqs)
    name = hosts.resid_post_name(model, i)
    return _capture_one(model, name, lambda: model(toks, stop_at_layer=i + 1))


def _chunked_steps(
    model: Any, seqs: list[list[int]], prompt_lens: list[int], layer: int, chunk: int
) -> list[Tensor]:
    """Rows ``prompt_len - 1 … len - 1`` of block ``layer``'s output, ``chunk`` positions a call.

    Right-padded as :func:`_padded_pass`; the host's KV cache carries the earlier positions.
    """
    ad = hosts.adapter(model)
    i = ad.check_layer(layer)
    name = ad.resid_post_name(i)
    toks = _right_padded(model, seqs)
    parts: list[list[Tensor]] = [[] for _ in seqs]
    cache = ad.new_kv_cache(len(seqs))
    for s in range(0, toks.shape[1], chunk):
        piece = toks[:, s : s + chunk]
        h = _capture_one(model, name, lambda piece=piece: ad.forward_cached(piece, cache, i + 1))
        for j, (q, p) in enumerate(zip(seqs, prompt_lens, strict=True)):
            lo, hi = max(p - 1, s), min(len(q), s + h.shape[1])
            if lo < hi:  # this chunk holds step rows of trace j
                parts[j].append(h[j, lo - s : hi - s].clone())
    return [torch.cat(p) for p in parts]


def step_residuals_batch(
    model: Any,
    traces: Sequence[Sequence[int]],
    prompt_lens: Sequence[int],
    layer: int = -1,
    *,
    chunk: int | None = None,
) -> list[Float[Tensor, "step d_model"]]:
    """:func:`step_residuals` of several finished traces from ONE right-padded forward pass.

    Row ``t`` of trace ``i`` equals ``step_residuals(model, traces[i], prompt_lens[i], layer)[t]``
    up to the round-off of a different matmul shape (tested on both hosts).

    With ``chunk`` the pass runs ``chunk`` positions at a time with the host's KV cache
    (:meth:`~tl_thinktok.hosts.base.HostAdapter.forward_cached`): no ``[pos, pos]`` attention
    matrix is built (a 16k-token trace needs ``[chunk, pos]``), and only the step rows are kept,
    so the memory is the residuals, the KV cache and one chunk's activations (measured:
    docs/performance.md). Every hook fires in each chunk. A width within one chunk runs unchunked.

    Args:
        model: HookedTransformer or TransformerBridge.
        traces: per trace the ids ``prompt + generated``.
        prompt_lens: per trace the number of prompt ids (``1 <= prompt_len < len(trace)``).
        layer: decoder block (negative counts from the end).
        chunk: positions per cached forward call (``None``: one call over the whole width).

    Returns:
        One ``[len(trace) - prompt_len, d_model]`` tensor per trace.

    Example:
        >>> hs = step_residuals_batch(model, [a + b, c + d], [len(a), len(c)])  # doctest: +SKIP
    """
    seqs = [_as_1d_tokens(t).tolist() for t in traces]
    lens = [check_int("prompt_len", p) for p in prompt_lens]
    if len(lens) != len(seqs):
        raise ValueError(f"got {len(seqs)} traces but {len(lens)} prompt lengths")
    for j, (q, p) in enumerate(zip(seqs, lens, strict=True)):
        if not 1 <= p < len(q):
            raise ValueError(
                f"trace {j}: prompt_len={p} must satisfy 1 <= prompt_len < len(trace)={len(q)}"
            )
        hosts.check_token_ids(model, q)
    # the last token of a trace is never fed to predict anything: skip it
    if chunk is not None and max(len(q) for q in seqs) - 1 > check_int("chunk", chunk, low=1):
        return _chunked_steps(model, [q[:-1] for q in seqs], lens, layer, chunk)
    h = _padded_pass(model, [q[:-1] for q in seqs], layer)
    return [
        h[j, p - 1 : len(q) - 1].clone() for j, (q, p) in enumerate(zip(seqs, lens, strict=True))
    ]


def last_residuals_batch(
    model: Any, sequences: Sequence[Sequence[int]], layer: int = -1, *, chunk: int | None = None
) -> Float[Tensor, "batch d_model"]:
    """Block ``layer``'s output at the last token of each sequence (one right-padded pass).

    The batched form of :func:`answer_representation` for already-encoded answer texts. With
    ``chunk``, sequences longer than ``chunk`` run ``chunk`` positions a call with the KV cache
    (as :func:`step_residuals_batch`): a batch of long solutions never builds a full
    ``[pos, pos]`` attention matrix.

    Example:
        >>> ys = last_residuals_batch(model, [encode(model, a) for a in answers])  # doctest: +SKIP
    """
    seqs = [_as_1d_tokens(t).tolist() if len(t) else [] for t in sequences]
    for q in seqs:
        hosts.check_token_ids(model, q)
    if (
        chunk is not None
        and seqs
        and all(seqs)
        and max(len(q) for q in seqs) > check_int("chunk", chunk, low=1)
    ):
        rows = _chunked_steps(model, seqs, [len(q) for q in seqs], layer, chunk)
        return torch.stack([r[-1] for r in rows])
    h = _padded_pass(model, seqs, layer)
    return torch.stack([h[j, len(q) - 1] for j, q in enumerate(seqs)])


def answer_representation(
    model: Any, text: str, layer: int = -1, *, prepend_bos: bool | None = None
) -> Float[Tensor, " d_model"]:
    """The answer representation h_y: ``text`` fed alone, last-token state of block ``layer``.

    Args:
        model: HookedTransformer or TransformerBridge with a tokenizer.
        text: the gold solution text (PAPER.md §1: the worked solution, not just the answer).
        layer: decoder block (negative counts from the end).
        prepend_bos: BOS policy, as for the trace; ``None`` follows
            ``model.cfg.default_prepend_bos`` (see :func:`tl_thinktok.hosts.to_tokens`, identical
            on both hosts).

    Returns:
        ``[d_model]`` tensor.

    Example:
        >>> h_y = answer_representation(model, "2 + 2 = 4, so the answer is 4.")  # doctest: +SKIP
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError("answer text must be a non-empty string")
    tokens = hosts.to_tokens(model, text, prepend_bos=prepend_bos)[0]
    return _residuals_at(model, tokens, layer)[-1]


class MIProbe(Component):
    """Record block ``layer``'s last-position residual once per forward pass (generation step).

    During ``model.generate`` the prefill sees ``[batch, prompt_len, d]`` and each later step
    ``[batch, 1, d]`` with the KV cache (``[batch, prompt_len + t, d]`` without); the probe keeps
    position −1, so with ``N`` new tokens it holds ``N`` rows aligned with :func:`step_residuals`
    (row ``t`` predicted generated token ``t``). A trace that stops early at EOS yields one row per
    generated token as well. Every forward pass made while attached is recorded: attach it only
    around the ``generate`` call you want (``attach`` resets by default).

    One row per pass: if block ``layer`` runs more than once in a pass (a component that reruns
    upper blocks, e.g. :class:`~tl_thinktok.interventions.recycle.RepresentationRecycling`), the
    LAST output of the pass is kept, i.e. the state whose logits chose the emitted token. Passes
    are delimited by block 0's input hook (``hosts.resid_pre_name(model, 0)``), which fires once at
    the start of every forward (``hook_embed`` does not fire in HookedTransformer.generate).
    Limitation: a component that calls block 0 itself mid-pass (recycling at layer 0) splits that
    pass into two rows.

    Batches: rows are kept per batch element; ``.residuals`` needs batch 1, ``.batch_residuals``
    gives ``[batch, step, d]`` and :meth:`row_residuals` one element's steps. Left padding needs no
    mask (position −1 is always the newest token of every row); a row that stopped at EOS before
    the others keeps being recorded after its EOS, so pass its generated length as ``n_steps``.
    Row ``i`` equals the probe of prompt ``i`` generated alone (tested on both hosts).

    Args:
        layer: decoder block (negative counts from the end).

    Example:
        >>> probe = MIProbe(layer=-1)
        >>> with probe.attach(model):                                       # doctest: +SKIP
        ...     out = model.generate(prompt, max_new_tokens=32, do_sample=False)
        >>> probe.residuals.shape                                           # doctest: +SKIP
        torch.Size([32, 64])
    """

    def __init__(self, layer: int = -1) -> None:
        self.layer = check_int("layer", layer)
        self._rows: list[Tensor] = []
        self._pending: Tensor | None = None

    def __repr__(self) -> str:
        return f"MIProbe(layer={self.layer}, steps={len(self)})"

    def __len__(self) -> int:
        return len(self._rows) + (self._pending is not None)

    def reset(self) -> None:
        """Forget all recorded steps (``attach`` does this by default)."""
        self._rows = []
        self._pending = None

    def _flush(self) -> None:
        if self._pending is not None:
            self._rows.append(self._pending)
            self._pending = None

    def _pass_start_hook(self, x: Tensor, hook: Any) -> None:
        self._flush()

    def _hook(self, x: Tensor, hook: Any) -> None:
        # record only; never route on hook.name (the bridge reports its own names)
        self._pending = x[:, -1].detach().clone()

    def _fwd_hooks(self, model: Any) -> list[tuple[str, Callable]]:
        """``[(block 0 input: pass delimiter), (resid_post of block layer: recorder)]``."""
        return [
            (hosts.resid_pre_name(model, 0), self._pass_start_hook),
            (hosts.resid_post_name(model, self.layer), self._hook),
        ]

    @property
    def batch_residuals(self) -> Float[Tensor, "batch step d_model"]:
        """All recorded rows, ``[batch, step, d_model]``."""
        self._flush()
        if not self._rows:
            raise ValueError("MIProbe has recorded nothing: run model.generate inside attach()")
        sizes = {r.shape[0] for r in self._rows}
        if len(sizes) != 1:
            raise ValueError(f"recorded calls have different batch sizes {sorted(sizes)}")
        return torch.stack(self._rows, dim=1)

    @property
    def residuals(self) -> Float[Tensor, "step d_model"]:
        """Recorded step states ``[step, d_model]`` (batch 1 only; see ``batch_residuals``)."""
        rows = self.batch_residuals
        if rows.shape[0] != 1:
            raise ValueError(
                f"MIProbe recorded a batch of {rows.shape[0]} sequences; .residuals needs batch 1, "
                "use .batch_residuals[i] for sequence i"
            )
        return rows[0]

    def row_residuals(self, row: int, n_steps: int | None = None) -> Float[Tensor, "step d_model"]:
        """Recorded steps of batch element ``row``, the first ``n_steps`` of them (default: all).

        Only this row is copied (not the whole batch).

        Args:
            row: batch index (``0 <= row < batch``).
            n_steps: that row's number of generated tokens (a row that stopped at EOS early).

        Example:
            >>> h = probe.row_residuals(1, n_steps=len(new_tokens[1]))   # doctest: +SKIP
        """
        self._flush()
        if not self._rows:
            raise ValueError("MIProbe has recorded nothing: run model.generate inside attach()")
        b = self._rows[0].shape[0]
        if any(r.shape[0] != b for r in self._rows):
            sizes = sorted({r.shape[0] for r in self._rows})
            raise ValueError(f"recorded calls have different batch sizes {sizes}")
        row = check_int("row", row, low=0)
        if row >= b:
            raise ValueError(f"row {row} is out of range for a batch of {b}")
        n = len(self._rows)
        if n_steps is not None:
            n_steps = check_int("n_steps", n_steps, low=1)
            if n_steps > n:
                raise ValueError(f"n_steps={n_steps} but the probe recorded {n} steps")
            n = n_steps
        return torch.stack([r[row] for r in self._rows[:n]])

    def pop_rows(self, n_steps: Sequence[int]) -> list[Float[Tensor, "step d_model"]]:
        """Hand over every batch element's steps and forget the records (moved, not copied twice).

        The records are copied into the per-row outputs a chunk of steps at a time and dropped as
        they are consumed, so peak memory stays at the residuals plus one chunk (``row_residuals``
        for every row would briefly hold everything twice).

        Args:
            n_steps: per batch element, its number of generated tokens (``<=`` recorded steps).

        Returns:
            One ``[n_steps[i], d_model]`` tensor per batch element; the probe is empty afterwards.

        Example:
            >>> hs = probe.pop_rows([len(g) for g in generated])          # doctest: +SKIP
        """
        self._flush()
        if not self._rows:
            raise ValueError("MIProbe has recorded nothing: run model.generate inside attach()")
        first = self._rows[0]
        b, n = first.shape[0], len(self._rows)
        lens = [check_int("n_steps", k, low=1) for k in n_steps]
        if len(lens) != b:
            raise ValueError(f"got {len(lens)} step counts for a batch of {b}")
        if max(lens) > n:
            raise ValueError(f"n_steps={max(lens)} but the probe recorded {n} steps")
        out = [first.new_empty((k, first.shape[-1])) for k in lens]
        rows, self._rows = self._rows, []
        step = max(1, _STREAM_BYTES // max(1, first.numel() * first.element_size()))
        for s0 in range(0, n, step):
            block = torch.stack(rows[s0 : s0 + step], 1)  # [b, chunk, d]
            for i, k in enumerate(lens):
                if s0 < k:
                    out[i][s0 : min(k, s0 + step)] = block[i, : k - s0]
            rows[s0 : s0 + step] = [None] * len(rows[s0 : s0 + step])  # release the records
        return out

    def trajectory(
        self,
        answer_rep: Float[Tensor, " d_model"],
        estimator: str = "nocco",
        *,
        row: int | None = None,
        n_steps: int | None = None,
        **kwargs: Any,
    ) -> Float[Tensor, " step"]:
        """MI proxy between each recorded step and ``answer_rep`` (float64).

        Args:
            answer_rep: ``[d_model]`` answer representation (:func:`answer_representation`).
            estimator: name understood by :func:`tl_thinktok.mi.estimate` (``"nocco"`` is the
                paper's reference estimator, σ = 50, ε = 1e-5).
            row: batch element (``None``: batch 1 required); see :meth:`row_residuals`.
            n_steps: that row's generated length (``None``: every recorded step).
            **kwargs: forwarded to the estimator.

        Long traces are estimated in chunks of steps (64 MiB of float64 states each), so the
        float64 working copy never holds the whole trace.

        Returns:
            ``[step]`` float64 MI trajectory.
        """
        if row is None and n_steps is None:
            x = self.residuals
        else:
            x = self.row_residuals(0 if row is None else row, n_steps)
        if not isinstance(answer_rep, Tensor) or answer_rep.shape != (x.shape[-1],):
            shape = tuple(answer_rep.shape) if isinstance(answer_rep, Tensor) else answer_rep
            raise ValueError(f"answer_rep must have shape [{x.shape[-1]}], got {shape}")
        y = answer_rep.to(x.device)
        step = max(1, _STREAM_BYTES // (8 * x.shape[-1]))  # float64 copies made per chunk only
        if x.shape[0] <= step or kwargs.get("return_info"):
            return estimate(x, y, estimator, **kwargs)
        return torch.cat([estimate(x[i : i + step], y, estimator, **kwargs)
                          for i in range(0, x.shape[0], step)])  # fmt: skip
