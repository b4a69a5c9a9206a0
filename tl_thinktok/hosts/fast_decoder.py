"""Fast greedy decoding without HookPoints, shared by both hosts.

TransformerLens' ``generate`` runs every HookPoint and, in TL 3.9's ``HookedTransformer``,
rebuilds transposed copies of the attention and gated-MLP weights at every call; the bridge's
``generate`` runs the HF model through its bridge modules. On one CPU thread both decode slower
than needed (docs/performance.md). Where no hook is needed (a trace whose states are only read),
this decoder runs the same maths from the model's own weight tensors: one fused QKV matrix per
block built once per call (a copy of the Q/K/V weights for the duration of the call; every other
weight is used in place), a preallocated KV cache, PyTorch's ``scaled_dot_product_attention``
with grouped-query heads, and the model's own norm modules and rotary tables. Prompts are
prefilled one row at a time on their real tokens; decoding steps run the whole batch with pad
keys masked, each row's positions counting from its first real token (as TransformerLens and HF).

The host adapters describe a model as :class:`DecoderWeights` (``HookedAdapter`` from
TransformerLens' parameters, ``BridgeAdapter`` from the wrapped HF modules); the decoder never
looks at the host. Supported: the pre-norm decoders of today's reasoning models (Llama, Qwen2,
Qwen3, llama2.c): RMS norms, rotary positions, gated SiLU MLP, optional grouped-query heads,
Q/K/V biases and per-head Q/K norms. Checked in float32 and float64 against TransformerLens and
HF (tests/integration/test_fast_decode*.py); in bfloat16 / float16 its kernels round differently
from the host's, so greedy tokens can part at near-ties (as HF's eager and SDPA attention do).

Example:
    >>> new, states = decode(weights, tokens, n_pad, 16, layer=-1, eos=2)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor

__all__ = ["BlockWeights", "DecoderWeights", "decode", "device_problem", "last_states"]

Fn = Callable[[Tensor], Tensor]


@dataclass
class BlockWeights:
    """One pre-norm decoder block; matrices are ``[in, out]`` (views where the host allows).

    Attributes:
        ln1, ln2: the block's norm modules (attention input, MLP input).
        w_qkv, b_qkv: ``[d_model, (n_heads + 2 n_kv) d_head]`` Q | K | V and its bias.
        w_o, b_o: ``[n_heads d_head, d_model]`` output projection and bias (or ``None``).
        q_norm, k_norm: per-head norms applied before the rotary embedding, or ``None``.
        scale: attention logit scale (``1 / sqrt(d_head)`` for these models).
        w_gate, w_up, b_up, w_down, b_down: gated MLP ``down(silu(x W_gate) * (x W_up + b_up))``.
    """

    ln1: Fn
    ln2: Fn
    w_qkv: Tensor
    b_qkv: Tensor | None
    w_o: Tensor
    b_o: Tensor | None
    q_norm: Fn | None
    k_norm: Fn | None
    scale: float
    w_gate: Tensor
    w_up: Tensor
    b_up: Tensor | None
    w_down: Tensor
    b_down: Tensor | None


@dataclass
class DecoderWeights:
    """A whole decoder as the fast path needs it (built by a host adapter).

    Attributes:
        embed: token ids ``[b, s]`` -> ``[b, s, d_model]``.
        blocks: the blocks in order.
        ln_final: final norm module.
        w_u, b_u: unembedding ``[d_model, d_vocab]`` and bias (or ``None``).
        n_heads, n_kv, d_head: head counts and size.
        rotary_dim: leading dims of each head that rotate.
        adjacent_pairs: GPT-J rotary (pairs ``(0, 1), (2, 3)``) instead of NeoX halves.
        rotary: ``n -> (cos, sin)`` tables ``[n, rotary_dim]`` for positions ``0 .. n-1``.
    """

    embed: Fn
    blocks: list[BlockWeights]
    ln_final: Fn
    w_u: Tensor
    b_u: Tensor | None
    n_heads: int
    n_kv: int
    d_head: int
    rotary_dim: int
    adjacent_pairs: bool
    rotary: Callable[[int], tuple[Tensor, Tensor]]


def device_problem(module: torch.nn.Module) -> str | None:
    """Why the decoder cannot run on ``module``'s parameters (``None``: all on one device)."""
    devices = {p.device for p in module.parameters()}
    if any(d.type == "meta" for d in devices):
        return "some parameters are offloaded (meta device)"
    if len(devices) > 1:
        names = ", ".join(sorted(str(d) for d in devices))
        return f"parameters span several devices ({names}; device_map / n_devices)"
    return None


def _affine(x: Tensor, w: Tensor, b: Tensor | None) -> Tensor:
    return x @ w if b is None else torch.addmm(b, x, w)


class _Decoder:
    """State of one decoding call: weights, KV cache, pad mask and rotary positions.

    Prompts are prefilled one row at a time on their real tokens only (no compute on pads, and
    a causal pass needs no mask); decoding steps then run the whole batch, with pad keys masked.
    """

    def __init__(
        self, w: DecoderWeights, batch: int, capacity: int, n_pad: Sequence[int], record: int
    ) -> None:
        self.w, self.record = w, record
        self.n_heads, self.d_head, self.n_kv, self.rot = w.n_heads, w.d_head, w.n_kv, w.rotary_dim
        self.blocks = w.blocks
        p = w.w_u
        self.splits = (w.n_heads * w.d_head, w.n_kv * w.d_head, w.n_kv * w.d_head)
        shape = (batch, self.n_kv, capacity, self.d_head)
        # zeros, not empty: a masked pad key still enters the value product as 0 * V
        self.k = [torch.zeros(shape, dtype=p.dtype, device=p.device) for _ in self.blocks]
        self.v = [torch.zeros(shape, dtype=p.dtype, device=p.device) for _ in self.blocks]
        self.n_pad = [int(n) for n in n_pad]
        pad = torch.as_tensor(self.n_pad, device=p.device)
        pos = torch.arange(capacity, device=p.device)
        self.real = pos[None, :] >= pad[:, None]  # [batch, capacity]: key is a real token
        self.pos_ids = (pos[None, :] - pad[:, None]).clamp(min=0)  # TL: pads at position 0
        self.cos, self.sin = w.rotary(capacity)

    def _rotate(self, x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
        """Rotary embedding of ``x`` ``[b, h, s, d_head]`` (TransformerLens' conventions)."""
        r = self.rot
        x_rot, x_pass = x[..., :r], x[..., r:]
        if self.w.adjacent_pairs:
            flip = torch.stack((-x_rot[..., 1::2], x_rot[..., ::2]), dim=-1).flatten(-2)
        else:
            half = r // 2
            flip = torch.cat((-x_rot[..., half:], x_rot[..., :half]), dim=-1)
        out = x_rot * cos + flip * sin
        return torch.cat((out, x_pass), dim=-1) if x_pass.shape[-1] else out

    def _run(
        self, tokens: Tensor, rows: slice, start: int, stop_after: int | None
    ) -> tuple[Tensor | None, Tensor]:
        """Feed ``tokens`` ``[b, s]`` of ``rows`` at absolute positions ``start ..``.

        One row (a prefill): its keys from its first real token, plain causal attention. All
        rows (a decoding step, ``s = 1``): every key so far, pad keys masked. Returns the
        last-position logits (``None`` with ``stop_after``) and block ``record``'s output (or
        block ``stop_after``'s, where the pass then ends) ``[b, s, d]``.
        """
        b, s = tokens.shape
        end = start + s
        prefill = rows.stop is not None
        lo = start if prefill else 0
        x = self.w.embed(tokens)
        pos = self.pos_ids[rows, start:end]
        cos, sin = self.cos[pos][:, None], self.sin[pos][:, None]  # [b, 1, s, rot]
        mask = None if prefill else self.real[rows, None, None, lo:end]  # [b, 1, 1, keys]
        states = x
        for i, blk in enumerate(self.blocks):
            h = blk.ln1(x)
            qkv = _affine(h.reshape(b * s, -1), blk.w_qkv, blk.b_qkv)
            q, k, v = qkv.reshape(b, s, -1).split(self.splits, dim=-1)
            q = q.reshape(b, s, self.n_heads, self.d_head)
            k = k.reshape(b, s, self.n_kv, self.d_head)
            if blk.q_norm is not None and blk.k_norm is not None:
                q = blk.q_norm(q.reshape(-1, self.d_head)).reshape(q.shape)
                k = blk.k_norm(k.reshape(-1, self.d_head)).reshape(k.shape)
            q = self._rotate(q.transpose(1, 2), cos, sin)
            k = self._rotate(k.transpose(1, 2), cos, sin)
            v = v.reshape(b, s, self.n_kv, self.d_head).transpose(1, 2)
            self.k[i][rows, :, start:end] = k
            self.v[i][rows, :, start:end] = v
            z = F.scaled_dot_product_attention(
                q,
                self.k[i][rows, :, lo:end],
                self.v[i][rows, :, lo:end],
                attn_mask=mask,
                is_causal=prefill and s > 1,
                scale=blk.scale,
                enable_gqa=self.n_kv != self.n_heads,
            )
            z = z.transpose(1, 2).reshape(b * s, -1)
            x = x + _affine(z, blk.w_o, blk.b_o).reshape(b, s, -1)
            h = blk.ln2(x).reshape(b * s, -1)
            act = F.silu(h @ blk.w_gate) * _affine(h, blk.w_up, blk.b_up)
            x = x + _affine(act, blk.w_down, blk.b_down).reshape(b, s, -1)
            if stop_after is not None and i == stop_after:
                return None, x
            if i == self.record:
                states = x
        last = self.w.ln_final(x[:, -1])
        return _affine(last, self.w.w_u, self.w.b_u), states

    def prefill(
        self, tokens: Tensor, stop_after: int | None = None
    ) -> tuple[Tensor | None, Tensor]:
        """All prompts, one row at a time → (last logits ``[b, vocab]``, states ``[b, d]``)."""
        logits, states = [], []
        for i, n in enumerate(self.n_pad):
            lg, h = self._run(tokens[i : i + 1, n:], slice(i, i + 1), n, stop_after)
            logits.append(lg)
            states.append(h[:, -1])
        out = None if stop_after is not None else torch.cat(logits)
        return out, torch.cat(states)

    def step(self, tokens: Tensor, start: int) -> tuple[Tensor, Tensor]:
        """One decoding step of all rows at position ``start`` → (logits, states ``[b, d]``)."""
        logits, h = self._run(tokens, slice(None), start, None)
        return logits, h[:, -1]


@torch.no_grad()
def decode(
    weights: DecoderWeights,
    tokens: Int[Tensor, "b p"],
    n_pad: Sequence[int],
    max_new_tokens: int,
    layer: int,
    eos: int | None,
) -> tuple[Int[Tensor, "b n"], Float[Tensor, "b n d_model"]]:
    """Greedy decoding of a left-padded batch; block ``layer``'s output at each step.

    See :meth:`tl_thinktok.hosts.base.HostAdapter.fast_decode` for the contract.
    """
    b, p = tokens.shape
    dec = _Decoder(weights, b, p + max_new_tokens, n_pad, layer)
    done = torch.zeros(b, dtype=torch.bool, device=tokens.device)
    new, states = [], []
    logits, h = dec.prefill(tokens)
    for t in range(max_new_tokens):
        if t:
            logits, h = dec.step(new[-1][:, None], p + t - 1)
        nxt = logits.argmax(-1)
        new.append(nxt)
        states.append(h)
        if eos is not None:
            done |= nxt == eos
            if bool(done.all()):
                break
    return torch.stack(new, 1), torch.stack(states, 1)


@torch.no_grad()
def last_states(
    weights: DecoderWeights, tokens: Int[Tensor, "b p"], n_pad: Sequence[int], layer: int
) -> Float[Tensor, "b d_model"]:
    """Block ``layer``'s output at the last position of each left-padded row (one pass each)."""
    dec = _Decoder(weights, tokens.shape[0], tokens.shape[1], n_pad, layer)
    return dec.prefill(tokens, stop_after=layer)[1]
