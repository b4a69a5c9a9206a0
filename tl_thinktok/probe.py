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

from collections.abc import Callable
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from tl_thinktok import hosts
from tl_thinktok._validate import check_int
from tl_thinktok.interventions.base import Component
from tl_thinktok.mi import estimate

__all__ = ["step_residuals", "answer_representation", "MIProbe"]


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

        Args:
            row: batch index (``0 <= row < batch``).
            n_steps: that row's number of generated tokens (a row that stopped at EOS early).

        Example:
            >>> h = probe.row_residuals(1, n_steps=len(new_tokens[1]))   # doctest: +SKIP
        """
        rows = self.batch_residuals
        row = check_int("row", row, low=0)
        if row >= rows.shape[0]:
            raise ValueError(f"row {row} is out of range for a batch of {rows.shape[0]}")
        if n_steps is None:
            return rows[row]
        n_steps = check_int("n_steps", n_steps, low=1)
        if n_steps > rows.shape[1]:
            raise ValueError(f"n_steps={n_steps} but the probe recorded {rows.shape[1]} steps")
        return rows[row, :n_steps]

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
        return estimate(x, answer_rep.to(x.device), estimator, **kwargs)
