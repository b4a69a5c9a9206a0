"""Fast greedy decoding for ``HookedTransformer``: the model's weights, no HookPoints.

TransformerLens' ``generate`` runs every HookPoint and, in 3.9, rebuilds transposed copies of the
attention and gated-MLP weights at every call (``einops.rearrange(...)`` / ``.T.contiguous()``);
on one CPU thread that made it about 2x slower than HF ``generate`` on the same Qwen2. Where no
hook is needed (a trace whose states are only read), this decoder runs the same maths directly:
one fused QKV matrix per block built once per call (a copy of the Q/K/V weights for the duration
of the call; every other weight is used in place), a preallocated KV cache, PyTorch's
``scaled_dot_product_attention`` with grouped-query heads, and TransformerLens' own norm modules
and rotary tables. Left padding follows TransformerLens: pads are masked as keys and each row's
positions count from its first real token.

Supported: the pre-norm decoders of today's reasoning models (Llama, Qwen2, Qwen3 and the
llama2.c models): RMS norms, rotary positions, gated SiLU MLP, optional grouped-query heads,
Q/K/V biases and per-head Q/K norms. :func:`unsupported` names the first feature outside that set.

Example:
    >>> new, states = decode(model, tokens, n_pad, 16, layer=-1, eos=2)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor

__all__ = ["decode", "last_states", "unsupported"]

#: ``(cfg field, value it must have)`` for the decoder to reproduce TransformerLens' forward.
_REQUIRED: tuple[tuple[str, Any], ...] = (
    ("positional_embedding_type", "rotary"),
    ("gated_mlp", True),
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


def unsupported(model: Any) -> str | None:
    """Why :func:`decode` cannot reproduce ``model``'s forward (``None``: it can)."""
    cfg = model.cfg
    arch = getattr(cfg, "original_architecture", None)
    if arch not in _ARCHITECTURES:
        return f"architecture {arch} is not one of {[a for a in _ARCHITECTURES if a]}"
    if getattr(cfg, "normalization_type", None) not in _NORMS:
        return f"normalization_type={cfg.normalization_type!r} (needs one of {_NORMS})"
    for field, want in _REQUIRED:
        got = getattr(cfg, field, want)
        if got != want:
            return f"cfg.{field}={got!r} (the fast decoder needs {want!r})"
    for field in ("attn_scores_soft_cap", "output_logits_soft_cap"):
        cap = getattr(cfg, field, -1.0)
        if cap is not None and cap > 0:
            return f"cfg.{field}={cap} (soft caps are not implemented)"
    if getattr(cfg, "act_fn", None) != "silu":
        return f"act_fn={cfg.act_fn!r} (the fast decoder implements silu)"
    if getattr(model, "acts_to_saes", None):
        return "SAEs are attached (sae-lens splices them into the forward)"
    return None


class _Block:
    """One block's weights in the layout the decoder multiplies with (built once per call)."""

    def __init__(self, block: Any, n_heads: int, n_kv: int, d_head: int) -> None:
        attn, mlp = block.attn, block.mlp
        w_k = getattr(attn, "_W_K", attn.W_K)
        w_v = getattr(attn, "_W_V", attn.W_V)
        b_k = getattr(attn, "_b_K", attn.b_K)
        b_v = getattr(attn, "_b_V", attn.b_V)
        # [heads, d_model, d_head] -> [d_model, heads * d_head], Q | K | V side by side
        ws = [w.permute(1, 0, 2).reshape(w.shape[1], -1) for w in (attn.W_Q, w_k, w_v)]
        self.w_qkv = torch.cat(ws, dim=1)
        self.b_qkv = torch.cat([attn.b_Q.reshape(-1), b_k.reshape(-1), b_v.reshape(-1)])
        self.w_o = attn.W_O.reshape(n_heads * d_head, -1)  # a view: W_O is [heads, d_head, d]
        self.b_o = attn.b_O
        self.splits = (n_heads * d_head, n_kv * d_head, n_kv * d_head)
        self.ln1, self.ln2 = block.ln1, block.ln2
        self.q_norm = getattr(attn, "q_norm", None) if attn.cfg.use_qk_norm else None
        self.k_norm = getattr(attn, "k_norm", None) if attn.cfg.use_qk_norm else None
        self.scale = 1.0 / float(attn.attn_scale)
        self.attn = attn
        self.mlp = mlp


class _Decoder:
    """State of one decoding call: weights, KV cache, pad mask and rotary positions.

    Prompts are prefilled one row at a time on their real tokens only (no compute on pads, and
    a causal pass needs no mask); decoding steps then run the whole batch, with pad keys masked.
    """

    def __init__(
        self, model: Any, batch: int, capacity: int, n_pad: Sequence[int], record: int
    ) -> None:
        cfg = model.cfg
        self.model, self.cfg, self.record = model, cfg, record
        self.n_heads, self.d_head = cfg.n_heads, cfg.d_head
        self.n_kv = cfg.n_key_value_heads or cfg.n_heads
        self.rot = cfg.rotary_dim or cfg.d_head
        self.blocks = [_Block(b, self.n_heads, self.n_kv, self.d_head) for b in model.blocks]
        p = next(model.parameters())
        shape = (batch, self.n_kv, capacity, self.d_head)
        # zeros, not empty: a masked pad key still enters the value product as 0 * V
        self.k = [torch.zeros(shape, dtype=p.dtype, device=p.device) for _ in self.blocks]
        self.v = [torch.zeros(shape, dtype=p.dtype, device=p.device) for _ in self.blocks]
        self.n_pad = [int(n) for n in n_pad]
        pad = torch.as_tensor(self.n_pad, device=p.device)
        pos = torch.arange(capacity, device=p.device)
        self.real = pos[None, :] >= pad[:, None]  # [batch, capacity]: key is a real token
        self.pos_ids = (pos[None, :] - pad[:, None]).clamp(min=0)  # TL: pads at position 0
        attn = self.blocks[0].attn
        if attn.rotary_cos.shape[0] < capacity:
            attn._extend_rotary_embeddings(capacity)
        # every block holds the same tables (same cfg); read them once
        self.cos, self.sin = attn.rotary_cos, attn.rotary_sin

    def _rotate(self, x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
        """Rotary embedding of ``x`` ``[b, h, s, d_head]`` (TransformerLens' conventions)."""
        r = self.rot
        x_rot, x_pass = x[..., :r], x[..., r:]
        if self.cfg.rotary_adjacent_pairs:
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
        x = self.model.embed(tokens)
        pos = self.pos_ids[rows, start:end]
        cos, sin = self.cos[pos][:, None], self.sin[pos][:, None]  # [b, 1, s, rot]
        mask = None if prefill else self.real[rows, None, None, lo:end]  # [b, 1, 1, keys]
        states = x
        for i, blk in enumerate(self.blocks):
            h = blk.ln1(x)
            qkv = torch.addmm(blk.b_qkv, h.reshape(b * s, -1), blk.w_qkv)
            q, k, v = qkv.reshape(b, s, -1).split(blk.splits, dim=-1)
            q = q.reshape(b, s, self.n_heads, self.d_head)
            k = k.reshape(b, s, self.n_kv, self.d_head)
            if blk.q_norm is not None:
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
            x = x + torch.addmm(blk.b_o, z, blk.w_o).reshape(b, s, -1)
            h = blk.ln2(x)
            mlp = blk.mlp
            act = F.silu(h @ mlp.W_gate) * (h @ mlp.W_in + mlp.b_in)
            x = x + (act @ mlp.W_out + mlp.b_out)
            if stop_after is not None and i == stop_after:
                return None, x
            if i == self.record:
                states = x
        last = self.model.ln_final(x[:, -1])
        return last @ self.model.unembed.W_U + self.model.unembed.b_U, states

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
    model: Any,
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
    dec = _Decoder(model, b, p + max_new_tokens, n_pad, layer)
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
    model: Any, tokens: Int[Tensor, "b p"], n_pad: Sequence[int], layer: int
) -> Float[Tensor, "b d_model"]:
    """Block ``layer``'s output at the last position of each left-padded row (one pass each)."""
    dec = _Decoder(model, tokens.shape[0], tokens.shape[1], n_pad, layer)
    return dec.prefill(tokens, stop_after=layer)[1]
