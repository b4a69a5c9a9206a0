"""Cheap per-step importance measures beside MI: next-token entropy and logit-lens depth.

Row ``t`` of every measure belongs to generated token ``t`` (as ``MITrace.mi``): it is read from
the states at position ``prompt_len − 1 + t``, whose next-token prediction is token ``t``.

* **Entropy** ("forking tokens", Wang et al. 2025, arXiv 2506.01939: a minority of high-entropy
  tokens carry the reasoning): ``H_t = −Σ_v p_t(v) ln p_t(v)`` in nats, ``p_t`` the model's
  next-token distribution (final norm + unembedding of the last block's output), float64.
* **Lens depth** ("Think Deep, Not Just Long", arXiv 2602.13517): the logit lens's top-1 at block
  ``l`` is ``argmax W_U norm(h_t^l)``; the depth of step ``t`` is the first block after which it
  stops changing, ``d_t = min{l : top1_{l'} = top1_{L−1} for every l' ≥ l}`` (0-based, so
  ``0 ≤ d_t ≤ L − 1``; ``L − 1``: the prediction settles only in the last block). Their
  deep-thinking ratio (the share of late-settling tokens) correlates with accuracy (r = 0.68).

Two routes, both hosts, batched: teacher-forced (:func:`step_measures`, :func:`token_entropy`,
:func:`lens_depth` over finished traces: ONE right-padded pass captures every block), or live
during ``generate`` (:class:`LayerStatesProbe`, an :class:`MIProbe` per block). The lens reads
through :func:`tl_thinktok.hosts.unembed_resid`, so hooks on ``ln_final`` / ``unembed`` do not
change it (as :class:`~tl_thinktok.lens.PeakTokenLens`).

Example:
    >>> from tl_thinktok.loading import load_model
    >>> from tl_thinktok.trace import MITrace
    >>> model = load_model("organism")
    >>> tr = MITrace.from_model(model, "Q: 2 + 3 = ?", "2 + 3 = 5.", max_new_tokens=16)
    >>> sm = step_measures(model, [tr])[0]
    >>> len(sm.entropy) == len(sm.lens_depth) == tr.n_steps
    True
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from tl_thinktok import hosts
from tl_thinktok._io import JsonIO
from tl_thinktok._validate import as_f64_vector, as_token_ids, check_int
from tl_thinktok.interventions.base import Component
from tl_thinktok.probe import MIProbe

__all__ = [
    "LayerStatesProbe",
    "StepMeasures",
    "entropy_from_states",
    "layer_states_batch",
    "lens_depth",
    "lens_depth_from_states",
    "step_measures",
    "token_entropy",
]

#: Steps unembedded per call (bounds the ``[steps, d_vocab]`` float64 logits of a big vocabulary).
_CHUNK = 64


def _pairs(traces: Any) -> list[tuple[list[int], int]]:
    """``(tokens, prompt_len)`` per trace: ``MITrace``-likes or ``(tokens, prompt_len)`` pairs."""
    if hasattr(traces, "tokens") and hasattr(traces, "prompt_len"):
        traces = [traces]
    out = []
    for tr in traces:
        if hasattr(tr, "tokens") and hasattr(tr, "prompt_len"):
            ids, p = tr.tokens, tr.prompt_len
        else:
            ids, p = tr
        ids = as_token_ids(ids, name="tokens", allow_empty=False)
        p = check_int("prompt_len", p)
        if not 1 <= p < len(ids):
            raise ValueError(
                f"prompt_len={p} must satisfy 1 <= prompt_len < len(tokens)={len(ids)}"
            )
        out.append((ids, p))
    return out


def layer_states_batch(model: Any, traces: Any) -> list[Float[Tensor, "layer step d_model"]]:
    """Every block's output at every step of finished traces: ONE right-padded forward pass.

    Args:
        model: HookedTransformer or TransformerBridge.
        traces: ``MITrace`` objects (or anything with ``tokens`` / ``prompt_len``), or
            ``(tokens, prompt_len)`` pairs.

    Returns:
        Per trace ``[n_layers, n_steps, d_model]``: ``[l, t]`` is block ``l``'s output at position
        ``prompt_len − 1 + t`` (right padding needs no mask in a causal model, as
        :func:`~tl_thinktok.probe.step_residuals_batch`).

    Example:
        >>> hs = layer_states_batch(model, [trace])  # doctest: +SKIP
    """
    pairs = _pairs(traces)
    if not pairs:
        return []
    for ids, _ in pairs:
        hosts.check_token_ids(model, ids)
    n_layers = hosts.n_layers(model)
    seqs = [ids[:-1] for ids, _ in pairs]  # the last token predicts nothing
    width = max(len(q) for q in seqs)
    pad = getattr(getattr(model, "tokenizer", None), "pad_token_id", None)
    pad = 0 if pad is None else int(pad)
    dev = hosts.model_device(model)
    toks = torch.tensor([q + [pad] * (width - len(q)) for q in seqs], device=dev)
    captured: dict[int, Tensor] = {}

    def recorder(i: int) -> Callable:
        def hook(x: Tensor, hook: Any) -> None:
            captured[i] = x.detach()

        return hook

    names = [(hosts.resid_post_name(model, i), recorder(i)) for i in range(n_layers)]
    with torch.no_grad(), model.hooks(fwd_hooks=names):
        model(toks)
    if len(captured) != n_layers:
        raise RuntimeError(f"captured {len(captured)} of {n_layers} block outputs")
    full = torch.stack([captured[i] for i in range(n_layers)], dim=1)  # [b, layer, w, d]
    return [full[j, :, p - 1 : len(ids) - 1].clone() for j, (ids, p) in enumerate(pairs)]


def entropy_from_states(
    model: Any, h_last: Float[Tensor, "step d_model"]
) -> Float[np.ndarray, " step"]:
    """Next-token entropy (nats, float64) of last-block states ``h_last`` (final norm + unembed).

    Example:
        >>> entropy_from_states(model, trace.residuals)  # doctest: +SKIP
    """
    if not isinstance(h_last, Tensor) or h_last.ndim != 2:
        raise ValueError("h_last must be a [step, d_model] tensor of last-block states")
    out = []
    with torch.no_grad():
        for i in range(0, h_last.shape[0], _CHUNK):
            logp = torch.log_softmax(
                hosts.unembed_resid(model, h_last[i : i + _CHUNK]).double(), -1
            )
            out.append(-(logp.exp() * logp).nansum(-1).cpu())
    return torch.cat(out).numpy() if out else np.zeros(0)


def _top1(model: Any, h: Tensor) -> Tensor:
    """Logit-lens top-1 token of ``[step, d]`` states (float64 logits, first index on ties)."""
    with torch.no_grad():
        return torch.cat([hosts.unembed_resid(model, h[i : i + _CHUNK]).double().argmax(-1).cpu()
                          for i in range(0, h.shape[0], _CHUNK)])  # fmt: skip


def lens_depth_from_states(
    model: Any, states: Float[Tensor, "layer step d_model"]
) -> Float[np.ndarray, " step"]:
    """Lens depth per step (float64) from every block's states (``[n_layers, step, d]``).

    ``d_t`` is the first block from which the logit lens's top-1 equals the last block's at every
    later block (module docstring).

    Example:
        >>> lens_depth_from_states(model, layer_states_batch(model, [trace])[0])  # doctest: +SKIP
    """
    if not isinstance(states, Tensor) or states.ndim != 3:
        raise ValueError("states must be a [n_layers, step, d_model] tensor")
    n_layers = states.shape[0]
    if n_layers != hosts.n_layers(model):
        raise ValueError(f"states hold {n_layers} blocks, the model has {hosts.n_layers(model)}")
    top = torch.stack([_top1(model, states[i]) for i in range(n_layers)])  # [layer, step]
    same = top == top[-1:]
    # depth = n_layers minus the length of the run of agreeing blocks at the top
    run = torch.cumprod(same.flip(0).long(), dim=0).sum(0)
    return (n_layers - run).double().numpy()


@dataclass
class StepMeasures(JsonIO):
    """Entropy and lens depth of one trace's steps (row ``t`` = generated token ``t``).

    Attributes:
        entropy: ``[step]`` next-token entropy in nats (float64).
        lens_depth: ``[step]`` block after which the lens's top-1 stops changing (float64 ints).
        n_layers: number of blocks (depths lie in ``0 … n_layers − 1``).
    """

    entropy: Float[np.ndarray, " step"]
    lens_depth: Float[np.ndarray, " step"]
    n_layers: int

    def __post_init__(self) -> None:
        self.entropy = as_f64_vector("entropy", self.entropy)
        self.lens_depth = as_f64_vector("lens_depth", self.lens_depth)
        self.n_layers = check_int("n_layers", self.n_layers, low=1)
        if self.entropy.shape != self.lens_depth.shape:
            raise ValueError(
                f"entropy has {self.entropy.size} steps, lens_depth {self.lens_depth.size}"
            )

    def __len__(self) -> int:
        return int(self.entropy.size)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StepMeasures:
        """Inverse of ``to_dict`` (``None`` → NaN)."""
        d = dict(data)
        for k in ("entropy", "lens_depth"):
            d[k] = [np.nan if v is None else v for v in d[k]]
        return super().from_dict(d)

    def deep_ratio(self, frac: float = 0.5) -> float:
        """Share of steps whose depth is at least ``frac`` of the way to the last block.

        A deep-thinking ratio in the spirit of arXiv 2602.13517 (NaN for an empty trace).
        """
        if not len(self):
            return float("nan")
        return float(np.mean(self.lens_depth >= frac * (self.n_layers - 1)))

    def plot(self, ax: Any = None, *, title: str | None = None) -> Any:
        """Entropy (left axis) and lens depth (right axis) per step. Returns the axes."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(9, 2.8))
        steps = np.arange(len(self))
        ax.plot(steps, self.entropy, color="tab:orange", lw=1.0, label="entropy (nats)")
        ax.set_xlabel("generation step t")
        ax.set_ylabel("next-token entropy")
        ax2 = ax.twinx()
        ax2.step(steps, self.lens_depth, where="mid", color="tab:green", lw=0.8,
                 label="lens depth")  # fmt: skip
        ax2.set_ylabel("lens depth (block)")
        ax2.set_ylim(-0.5, self.n_layers - 0.5)
        if title:
            ax.set_title(title, fontsize=9)
        return ax


def step_measures(model: Any, traces: Any) -> list[StepMeasures]:
    """Entropy and lens depth of finished traces, teacher-forced (one batched pass).

    Args:
        model: HookedTransformer or TransformerBridge.
        traces: ``MITrace`` objects or ``(tokens, prompt_len)`` pairs (one, or a list).

    Example:
        >>> [m.entropy for m in step_measures(model, traces)]  # doctest: +SKIP
    """
    out = []
    for states in layer_states_batch(model, traces):
        out.append(StepMeasures(
            entropy_from_states(model, states[-1]),
            lens_depth_from_states(model, states),
            hosts.n_layers(model),
        ))  # fmt: skip
    return out


def token_entropy(model: Any, traces: Any) -> list[Float[np.ndarray, " step"]]:
    """Next-token entropy per step of finished traces (teacher-forced, batched; nats, float64).

    Example:
        >>> h = token_entropy(model, [trace])[0]  # doctest: +SKIP
    """
    return [m.entropy for m in step_measures(model, traces)]


def lens_depth(model: Any, traces: Any) -> list[Float[np.ndarray, " step"]]:
    """Lens depth per step of finished traces (teacher-forced, batched).

    Example:
        >>> d = lens_depth(model, [trace])[0]  # doctest: +SKIP
    """
    return [m.lens_depth for m in step_measures(model, traces)]


class LayerStatesProbe(Component):
    """Record every block's last-position output per forward pass (one :class:`MIProbe` per block).

    Attach it around ``generate``: step ``t``'s states are the ones that predicted generated token
    ``t`` (as :class:`MIProbe`), so :meth:`measures` gives the entropy and lens depth of the
    generation without a second pass (equal to :func:`step_measures` of the finished trace up to
    round-off; tested on both hosts).

    Example:
        >>> probe = LayerStatesProbe()
        >>> with probe.attach(model):                                    # doctest: +SKIP
        ...     out = model.generate(prompt, max_new_tokens=32, do_sample=False)
        >>> probe.measures(model).lens_depth                             # doctest: +SKIP
    """

    def __init__(self) -> None:
        self.probes: list[MIProbe] = []

    def __repr__(self) -> str:
        return f"LayerStatesProbe(blocks={len(self.probes)})"

    def reset(self) -> None:
        """Forget everything recorded."""
        for p in self.probes:
            p.reset()

    def _fwd_hooks(self, model: Any) -> list[tuple[str, Callable]]:
        n = hosts.n_layers(model)
        if len(self.probes) != n:
            self.probes = [MIProbe(i) for i in range(n)]
        return [h for p in self.probes for h in p._fwd_hooks(model)]

    def states(self, row: int = 0, n_steps: int | None = None) -> Float[Tensor, "layer step d"]:
        """``[n_layers, step, d_model]`` of batch element ``row`` (its first ``n_steps`` steps)."""
        if not self.probes:
            raise ValueError("LayerStatesProbe has recorded nothing: attach it around generate")
        return torch.stack([p.row_residuals(row, n_steps) for p in self.probes])

    def measures(self, model: Any, row: int = 0, n_steps: int | None = None) -> StepMeasures:
        """Entropy and lens depth of the recorded generation (batch element ``row``)."""
        states = self.states(row, n_steps)
        return StepMeasures(
            entropy_from_states(model, states[-1]),
            lens_depth_from_states(model, states),
            hosts.n_layers(model),
        )
