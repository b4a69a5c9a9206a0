"""Deterministic training and evaluation of the model-organism pair (reasoning + base).

Two HF ``Qwen2ForCausalLM`` of the same small architecture are trained in plain torch on
:mod:`tl_thinktok.organism` problems: the *reasoning* organism on think-aloud traces
(``<think> ... </think> \\boxed{N}``), the *base* organism on terse solutions. Loss is on the
completion only. Each checkpoint directory holds config.json, model.safetensors, the word-level
tokenizer (tokenizer.json, tokenizer_config.json, special_tokens_map.json) and
training_metrics.json (config, training curve, final held-out greedy accuracy, and for the
reasoning organism the thinking-word-ban vs random-ban acceptance numbers).

Command line (also ``python -m tl_thinktok train-organism ...``)::

    python -m tl_thinktok.organism.train [--smoke] [--out DIR] [--steps N] [--device cpu|cuda]
        [--only reasoning|base] [--set FIELD=VALUE ...]

Without ``--smoke`` each style runs its entry of :data:`RECIPES`, the configurations of the bundled
checkpoints, both trained on 2 CPU cores: the reasoning organism in 1400 steps of batch 32 (2 torch
threads, ~20 min), the base organism in 2000 steps of batch 16 (1 thread, 15 min).

Example:
    >>> from tl_thinktok.organism.train import evaluate
    >>> r = evaluate("tl_thinktok/assets/models/organism", n=50)  # doctest: +SKIP
    >>> r.accuracy  # doctest: +SKIP
    0.8
"""

from __future__ import annotations

import argparse
import inspect
import json
import math
import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Int
from torch import Tensor

from tl_thinktok._io import JsonIO
from tl_thinktok._validate import as_token_ids, check_int
from tl_thinktok.organism import task as organism

ASSETS = Path(__file__).resolve().parent.parent / "assets" / "models"
STYLES = ("reasoning", "base")
DIR_NAMES = {"reasoning": "organism", "base": "organism-base"}


@dataclass
class TrainConfig:
    """Hyper-parameters of one organism run (architecture, optimisation, data, evaluation)."""

    style: str = "reasoning"
    d_model: int = 96
    n_layers: int = 3
    n_heads: int = 4
    n_kv_heads: int = 2
    d_mlp: int = 384
    tie_embeddings: bool = False
    steps: int = 900
    batch_size: int = 16
    lr: float = 3e-3
    min_lr_frac: float = 0.05
    warmup: int = 50
    weight_decay: float = 0.05
    grad_clip: float = 1.0
    bos_prob: float = 0.5
    n_train: int = 24000
    seed: int = 0
    log_every: int = 50
    eval_every: int = 250
    eval_n_curve: int = 50
    eval_n: int = 500
    eval_batch_size: int = 250
    max_new_tokens: int = 320
    max_train_s: float | None = None
    snapshot_dir: str | None = None
    bucket: bool = True
    stop_step: int | None = None
    acceptance_k: tuple[int, ...] = (5,)
    device: str = "cpu"
    threads: int | None = 1

    def __post_init__(self) -> None:
        if self.style not in STYLES:
            raise ValueError(f"style must be one of {STYLES}, got {self.style!r}")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model {self.d_model} not divisible by n_heads {self.n_heads}")
        check_int("steps", self.steps, low=1)
        check_int("batch_size", self.batch_size, low=1)


SMOKE = dict(d_model=32, n_layers=1, d_mlp=64, steps=30, batch_size=8, n_train=300, warmup=5,
             log_every=10, eval_every=30, eval_n_curve=8, eval_n=16,
             max_new_tokens=24)  # fmt: skip


RECIPES: dict[str, dict[str, Any]] = {
    # the bundled reasoning organism: 2 CPU cores (2 torch threads), length-bucketed batches of
    # 32, a cosine schedule planned for 2400 steps and stopped at 1400 -- chosen on validation
    # problems (test split, seed 1, disjoint from the seed-0 test set): 78.6% at 1400, 94.4% at
    # 1600, 96% (100 problems) at 1800; the issue asks for an imperfect organism (60-95%)
    "reasoning": dict(d_model=128, n_layers=4, d_mlp=512, steps=2400, stop_step=1400,
                      batch_size=32, warmup=100, n_train=60000, bucket=True, eval_every=200,
                      eval_n_curve=100, acceptance_k=(5, 10), threads=2),
    # the bundled base organism: trained on 2 shared CPU cores (1 torch thread)
    "base": dict(d_model=128, n_layers=4, d_mlp=512, steps=2000, batch_size=16, warmup=50,
                 n_train=16000, bucket=True, eval_every=500, eval_n_curve=50),
}  # fmt: skip
"""Per-style configurations of the bundled checkpoints (what ``train-organism`` runs by default)."""


@dataclass
class EvalResult(JsonIO):
    """Greedy held-out evaluation of one organism.

    Attributes:
        accuracy: fraction graded correct. n: number of problems. well_formed: fraction whose
        completion has a parseable ``\\boxed{}`` (and, for think-style output, ``</think>``
        before it). ban_ids: token ids whose logits were set to -inf. samples: a few
        (question, completion, answer) triples.
    """

    accuracy: float
    n: int
    n_correct: int
    well_formed: float
    mean_new_tokens: float
    ban_ids: list[int] = field(default_factory=list)
    samples: list[dict[str, Any]] = field(default_factory=list)
    # to_dict / from_dict / save(path) -> Path / load(path): JsonIO (NaN as null)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EvalResult:
        """Inverse of :meth:`to_dict` (an undefined ``null`` rate back to NaN)."""
        d = dict(data)
        for k in ("accuracy", "well_formed", "mean_new_tokens"):
            if k in d and d[k] is None:
                d[k] = math.nan
        return super().from_dict(d)


def build_model(cfg: TrainConfig, tok: Any) -> Any:
    """A freshly initialised (seeded) ``Qwen2ForCausalLM`` for ``cfg`` and tokenizer ``tok``."""
    import transformers

    config = transformers.Qwen2Config(
        vocab_size=len(tok),
        hidden_size=cfg.d_model,
        intermediate_size=cfg.d_mlp,
        num_hidden_layers=cfg.n_layers,
        num_attention_heads=cfg.n_heads,
        num_key_value_heads=cfg.n_kv_heads,
        max_position_embeddings=1024,
        rms_norm_eps=1e-6,
        rope_theta=10000.0,
        tie_word_embeddings=cfg.tie_embeddings,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        initializer_range=0.02,
    )
    torch.manual_seed(cfg.seed)
    return transformers.Qwen2ForCausalLM(config)


def encode_pool(
    probs: Sequence[organism.Problem], tok: Any, style: str, bos_prob: float, seed: int
) -> list[tuple[list[int], int]]:
    """Token ids of ``prompt + completion + </s>`` and the completion start, per problem.

    With probability ``bos_prob`` the sequence starts with ``<s>`` (the organism then works
    with and without a BOS token, as TransformerLens prepends one by default).
    """
    rng = random.Random(seed)
    out = []
    for p in probs:
        pr, comp = organism.training_text(p, style)
        pids = tok(pr, add_special_tokens=False)["input_ids"]
        cids = tok(comp, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        if rng.random() < bos_prob:
            pids = [tok.bos_token_id] + pids
        out.append((pids + cids, len(pids)))
    return out


def _batch(
    pool: list[tuple[list[int], int]], idx: list[int], pad: int
) -> tuple[Int[Tensor, "b t"], Int[Tensor, "b t"], Int[Tensor, "b t"]]:
    seqs = [pool[i] for i in idx]
    t = max(len(s) for s, _ in seqs)
    ids = torch.full((len(seqs), t), pad, dtype=torch.long)
    labels = torch.full((len(seqs), t), -100, dtype=torch.long)
    mask = torch.zeros((len(seqs), t), dtype=torch.long)
    for j, (s, start) in enumerate(seqs):
        ids[j, : len(s)] = torch.tensor(s)
        labels[j, start : len(s)] = torch.tensor(s[start:])
        mask[j, : len(s)] = 1
    return ids, labels, mask


def _length_buckets(
    pool: list[tuple[list[int], int]], batch_size: int, gen: torch.Generator
) -> list[list[int]]:
    """One epoch of batches of similar length (little padding), in seeded random order."""
    perm = torch.randperm(len(pool), generator=gen).tolist()
    order = sorted(perm, key=lambda i: len(pool[i][0]))
    chunks = [order[i : i + batch_size] for i in range(0, len(order) - batch_size + 1, batch_size)]
    return [chunks[i] for i in torch.randperm(len(chunks), generator=gen).tolist()]


def _lr(step: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    frac = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * (cfg.min_lr_frac + (1 - cfg.min_lr_frac) * 0.5 * (1 + math.cos(math.pi * frac)))


@torch.no_grad()
def cache_kwarg(model: Any) -> str:
    """The KV-cache keyword of an HF model's ``forward``: ``cache`` from transformers 5.x (which
    deprecated ``past_key_values`` with a FutureWarning), ``past_key_values`` before."""
    params = inspect.signature(model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def _cache_of(out: Any) -> Any:
    """The KV cache of an HF model output (``cache`` in transformers 5.x, else
    ``past_key_values``)."""
    cache = getattr(out, "cache", None)
    return cache if cache is not None else out.past_key_values


def greedy_generate(
    model: Any,
    tok: Any,
    prompts: Sequence[str],
    *,
    max_new_tokens: int = 320,
    ban_ids: Sequence[int] | None = None,
    batch_size: int = 100,
    bos: bool = False,
) -> list[tuple[str, int]]:
    """Greedy completions (text, number of new tokens) with an optional logit ban (-inf).

    A plain KV-cache loop over a left-padded batch with explicit position ids; stops at ``</s>``.

    Example:
        >>> greedy_generate(model, tok, [organism.prompt(q)])  # doctest: +SKIP
    """
    device = next(model.parameters()).device
    max_new_tokens = check_int("max_new_tokens", max_new_tokens, low=1)
    batch_size = check_int("batch_size", batch_size, low=1)
    vocab = getattr(getattr(model, "config", None), "vocab_size", None)
    ban_list = as_token_ids([] if ban_ids is None else ban_ids, name="ban_ids", vocab=vocab)
    ban = torch.tensor(sorted(set(ban_list)), dtype=torch.long, device=device)
    eos, pad = tok.eos_token_id, tok.pad_token_id
    cache_kw = cache_kwarg(model)
    results: list[tuple[str, int]] = []
    for b0 in range(0, len(prompts), batch_size):
        enc = [tok(p, add_special_tokens=False)["input_ids"] for p in prompts[b0 : b0 + batch_size]]
        if bos:
            enc = [[tok.bos_token_id] + e for e in enc]
        t = max(len(e) for e in enc)
        ids = torch.full((len(enc), t), pad, dtype=torch.long, device=device)
        mask = torch.zeros((len(enc), t), dtype=torch.long, device=device)
        for j, e in enumerate(enc):
            ids[j, t - len(e) :] = torch.tensor(e, device=device)
            mask[j, t - len(e) :] = 1
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        out = model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True)
        past, logits = _cache_of(out), out.logits[:, -1, :]
        last_pos = pos[:, -1:]
        done = torch.zeros(len(enc), dtype=torch.bool, device=device)
        gen = torch.full((len(enc), max_new_tokens), pad, dtype=torch.long, device=device)
        n_new = torch.zeros(len(enc), dtype=torch.long, device=device)
        for step in range(max_new_tokens):
            logits = logits.float()
            if ban.numel():
                logits[:, ban] = -math.inf
            nxt = logits.argmax(-1)
            nxt = torch.where(done, torch.full_like(nxt, pad), nxt)
            gen[:, step] = nxt
            n_new += (~done).long()
            done = done | (nxt == eos)
            if bool(done.all()):
                break
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
            last_pos = last_pos + 1
            out = model(
                input_ids=nxt[:, None],
                attention_mask=mask,
                position_ids=last_pos,
                use_cache=True,
                **{cache_kw: past},
            )
            past, logits = _cache_of(out), out.logits[:, -1, :]
        for j in range(len(enc)):
            row = [i for i in gen[j, : int(n_new[j])].tolist() if i not in (eos, pad)]
            results.append((tok.decode(row, skip_special_tokens=False), int(n_new[j])))
    return results


def _load(model_or_dir: Any, device: str | None) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

    if isinstance(model_or_dir, (str, Path)):
        path = Path(model_or_dir)
        if not (path / "config.json").exists():
            raise ValueError(f"{path} is not an HF checkpoint directory (no config.json)")
        model = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32)
        tok = PreTrainedTokenizerFast.from_pretrained(str(path))
    else:
        model, tok = model_or_dir
    if device is not None:
        model = model.to(device)
    return model.eval(), tok


def evaluate(
    model_dir: Any,
    n: int = 500,
    ban_ids: Sequence[int] | None = None,
    *,
    seed: int = 0,
    device: str | None = None,
    batch_size: int = 100,
    max_new_tokens: int = 320,
    bos: bool = False,
    n_samples: int = 3,
) -> EvalResult:
    """Greedy accuracy on ``n`` held-out problems (``organism.problems("test", n, seed)``).

    Args:
        model_dir: checkpoint directory, or a ``(hf_model, tokenizer)`` pair.
        n: number of test problems.
        ban_ids: token ids whose logits are set to -inf at every step (suppression).
        seed: test-problem seed.
        device: move the model there (default: where it is).
        batch_size, max_new_tokens: generation settings.
        bos: prepend ``<s>`` to the prompt.
        n_samples: how many (question, completion) samples to keep.

    Example:
        >>> evaluate("tl_thinktok/assets/models/organism", n=20).accuracy  # doctest: +SKIP
        0.85
    """
    n = check_int("n", n, low=1)
    ban_list = as_token_ids([] if ban_ids is None else ban_ids, name="ban_ids")
    model, tok = _load(model_dir, device)
    probs = organism.problems("test", n, seed=seed)
    outs = greedy_generate(
        model,
        tok,
        [organism.prompt(p.question) for p in probs],
        max_new_tokens=max_new_tokens,
        ban_ids=ban_list,
        batch_size=batch_size,
        bos=bos,
    )
    correct = [organism.grade(t, p.answer) for (t, _), p in zip(outs, probs, strict=True)]
    formed = [organism.extract_answer(t) is not None for t, _ in outs]
    return EvalResult(
        accuracy=sum(correct) / n,
        n=n,
        n_correct=sum(correct),
        well_formed=sum(formed) / n,
        mean_new_tokens=sum(k for _, k in outs) / n,
        ban_ids=sorted(set(ban_list)),
        samples=[
            {"question": p.question, "completion": t, "answer": p.answer}
            for (t, _), p in list(zip(outs, probs, strict=True))[:n_samples]
        ],
    )


def thinking_ids(tok: Any, k: int) -> list[int]:
    """Token ids of the first ``k`` of ``organism.THINKING_WORDS`` (one word-level token each)."""
    k = check_int("k", k, low=0, high=len(organism.THINKING_WORDS))
    ids = tok.convert_tokens_to_ids(organism.THINKING_WORDS[:k])
    if tok.unk_token_id in ids:
        raise ValueError("a thinking word is not a single token of this tokenizer")
    return list(ids)


def random_ids(tok: Any, k: int, seed: int) -> list[int]:
    """``k`` random token ids, excluding specials, markers and all thinking words (seeded).

    Thinking words are excluded in every letter case ("So" and "so"), as a case-insensitive
    thinking-token set would contain both.
    """
    lower = {w.lower() for w in organism.THINKING_WORDS}
    excluded = set(tok.all_special_ids)
    excluded |= {i for t, i in tok.get_vocab().items() if t.lower() in lower}
    excluded |= set(
        tok.convert_tokens_to_ids([organism.THINK_OPEN, organism.THINK_CLOSE, organism.BOX_OPEN])
    )
    pool = [i for i in range(len(tok)) if i not in excluded]
    return sorted(random.Random(seed).sample(pool, k))


def acceptance(
    model_dir: Any,
    *,
    k: int = 5,
    draws: int = 3,
    n: int = 500,
    seed: int = 0,
    device: str | None = None,
    batch_size: int = 100,
    max_new_tokens: int = 320,
    plain: EvalResult | None = None,
) -> dict[str, Any]:
    """Accuracy without ban, with the top-``k`` thinking words banned, and with ``k`` random ids.

    Returns a dict with ``accuracy``, ``thinking_ban``, ``random_ban`` (list over draws, seeds
    ``1000 + d``), ``random_ban_mean`` and ``gap`` = (random-ban mean - thinking-ban) accuracy.

    Example:
        >>> acceptance("tl_thinktok/assets/models/organism", k=5, n=100)["gap"]  # doctest: +SKIP
        0.6
    """
    model, tok = _load(model_dir, device)
    ev = {"n": n, "seed": seed, "batch_size": batch_size, "max_new_tokens": max_new_tokens}
    if plain is None or plain.n != n:
        plain = evaluate((model, tok), **ev)
    think = evaluate((model, tok), ban_ids=thinking_ids(tok, k), **ev)
    rand = [
        evaluate((model, tok), ban_ids=random_ids(tok, k, 1000 + d), **ev) for d in range(draws)
    ]
    rmean = sum(r.accuracy for r in rand) / draws
    return {
        "k": k,
        "n": n,
        "accuracy": plain.accuracy,
        "well_formed": plain.well_formed,
        "thinking_words": organism.THINKING_WORDS[:k],
        "thinking_ban": think.accuracy,
        "thinking_ban_well_formed": think.well_formed,
        "thinking_ban_sample": think.samples[:1],
        "random_ban": [r.accuracy for r in rand],
        "random_ban_tokens": [tok.convert_ids_to_tokens(r.ban_ids) for r in rand],
        "random_ban_mean": rmean,
        "gap": rmean - think.accuracy,
    }


def save_tokenizer(tok: Any, path: Path) -> None:
    """Save the tokenizer, making sure ``special_tokens_map.json`` exists too."""
    tok.save_pretrained(str(path))
    stm = path / "special_tokens_map.json"
    if not stm.exists():
        stm.write_text(
            json.dumps(
                {
                    "bos_token": "<s>",
                    "eos_token": "</s>",
                    "unk_token": "<unk>",
                    "pad_token": "<pad>",
                },
                indent=2,
            )
        )


def train(cfg: TrainConfig, out_dir: str | Path, *, verbose: bool = True) -> dict[str, Any]:
    """Train one organism and save checkpoint + tokenizer + training_metrics.json to ``out_dir``.

    Deterministic for a given config on a given device (seeded data, init and batch order).

    Returns:
        The metrics dict written to ``training_metrics.json``.

    Example:
        >>> train(TrainConfig(**SMOKE), "/tmp/organism-smoke")  # doctest: +SKIP
    """
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out_dir = Path(out_dir)
    tok = organism.tokenizer()
    t0 = time.time()
    probs = organism.problems("train", cfg.n_train, seed=cfg.seed)
    pool = encode_pool(probs, tok, cfg.style, cfg.bos_prob, cfg.seed)
    data_s = time.time() - t0
    model = build_model(cfg, tok).to(cfg.device)
    decay = [p for n_, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n_, p in model.named_parameters() if p.ndim < 2]
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    opt = torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.98))
    gen = torch.Generator().manual_seed(cfg.seed)
    batches: list[list[int]] = []
    ev = {"batch_size": cfg.eval_batch_size, "max_new_tokens": cfg.max_new_tokens}
    curve: list[dict[str, Any]] = []
    run_loss, run_n = 0.0, 0
    t1 = time.time()
    model.train()
    for step in range(cfg.steps):
        for g in opt.param_groups:
            g["lr"] = _lr(step, cfg)
        if not cfg.bucket:
            idx = torch.randint(len(pool), (cfg.batch_size,), generator=gen).tolist()
        else:
            if not batches:
                batches = _length_buckets(pool, cfg.batch_size, gen)
            idx = batches.pop()
        ids, labels, mask = (x.to(cfg.device) for x in _batch(pool, idx, tok.pad_token_id))
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        run_loss, run_n = run_loss + loss.item(), run_n + 1
        out_of_time = cfg.max_train_s is not None and time.time() - t1 > cfg.max_train_s
        out_of_time = out_of_time or (cfg.stop_step is not None and step + 1 >= cfg.stop_step)
        last = step == cfg.steps - 1 or out_of_time
        if (step + 1) % cfg.log_every == 0 or last:
            row: dict[str, Any] = {
                "step": step + 1,
                "loss": run_loss / run_n,
                "lr": _lr(step, cfg),
                "elapsed_s": time.time() - t1,
            }
            run_loss, run_n = 0.0, 0
            if (step + 1) % cfg.eval_every == 0 and not last:
                model.eval()
                r = evaluate((model, tok), n=cfg.eval_n_curve, seed=1, **ev)
                row["eval_accuracy"] = r.accuracy
                if cfg.snapshot_dir:
                    snap = Path(cfg.snapshot_dir) / f"{cfg.style}-step{step + 1}"
                    model.save_pretrained(str(snap))
                    save_tokenizer(tok, snap)
                model.train()
            curve.append(row)
            if verbose:
                print(f"[{cfg.style}] {json.dumps(row)}", flush=True)
        if out_of_time:
            break
    steps_done = step + 1
    train_s = time.time() - t1
    model.eval()
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out_dir))
    save_tokenizer(tok, out_dir)
    t2 = time.time()
    final = evaluate((model, tok), n=cfg.eval_n, seed=0, **ev)
    final_bos = evaluate((model, tok), n=min(cfg.eval_n, 100), seed=0, bos=True, **ev)
    metrics: dict[str, Any] = {
        "style": cfg.style,
        "config": asdict(cfg),
        "n_params": sum(p.numel() for p in model.parameters()),
        "vocab_size": len(tok),
        "torch_version": torch.__version__,
        "data_s": data_s,
        "train_s": train_s,
        "steps_done": steps_done,
        "stopped_early": steps_done < cfg.steps,
        "steps_per_s": steps_done / train_s,
        "curve": curve,
        "final": {
            "test_accuracy": final.accuracy,
            "test_n": final.n,
            "well_formed": final.well_formed,
            "mean_new_tokens": final.mean_new_tokens,
            "test_accuracy_with_bos_first100": final_bos.accuracy,
            "samples": final.samples,
        },
    }
    if cfg.style == "reasoning":
        metrics["acceptance"] = {
            f"k{k}": acceptance((model, tok), k=k, n=cfg.eval_n, draws=3, plain=final, **ev)
            for k in cfg.acceptance_k
        }
    metrics["eval_s"] = time.time() - t2
    (out_dir / "training_metrics.json").write_text(json.dumps(metrics, indent=1))
    if verbose:
        fin = {k: v for k, v in metrics["final"].items() if k != "samples"}
        print(f"[{cfg.style}] final {json.dumps(fin)}", flush=True)
        if "acceptance" in metrics:
            for key, a in metrics["acceptance"].items():
                short = {x: a[x] for x in ("accuracy", "thinking_ban", "random_ban", "gap")}
                print(f"[{cfg.style}] acceptance {key} {json.dumps(short)}", flush=True)
    return metrics


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line arguments of :func:`main`."""
    ap = argparse.ArgumentParser(
        prog="tl-thinktok train-organism",
        description="Train the reasoning organism and its base twin (deterministic, seeded).",
    )
    ap.add_argument("--smoke", action="store_true", help="tiny ~30 s configuration")
    ap.add_argument("--out", default=None, help=f"parent directory (default {ASSETS})")
    ap.add_argument("--steps", type=int, default=None, help="training steps per model")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--only", default="both", choices=["both", *STYLES])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--eval-n", type=int, default=None, help="held-out problems for final eval")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                    help="override a TrainConfig field, e.g. --set d_model=192")  # fmt: skip
    return ap.parse_args(argv)


def _number_or_str(val: str) -> float | str:
    try:
        return float(val)
    except ValueError:
        return val


def configs_from_args(args: argparse.Namespace) -> list[TrainConfig]:
    """The :class:`TrainConfig` per style that ``args`` describe."""
    styles = list(STYLES) if args.only == "both" else [args.only]
    out = []
    for style in styles:
        cfg = TrainConfig(style=style, seed=args.seed, device=args.device)
        cfg = replace(cfg, **(SMOKE if args.smoke else RECIPES[style]))
        if args.threads is not None:  # the command line wins over the recipe
            cfg = replace(cfg, threads=args.threads)
        if args.steps is not None:
            cfg = replace(cfg, steps=args.steps)
        if args.eval_n is not None:
            cfg = replace(cfg, eval_n=args.eval_n)
        for item in args.set:
            key, _, val = item.partition("=")
            if key not in TrainConfig.__dataclass_fields__:
                raise ValueError(f"--set: unknown TrainConfig field {key!r}")
            cur = getattr(cfg, key)
            if val.lower() == "none":
                new: Any = None
            elif isinstance(cur, bool):
                new = val.lower() in ("1", "true", "yes")
            elif cur is None:
                new = _number_or_str(val)
            else:
                new = type(cur)(val)
            cfg = replace(cfg, **{key: new})
        out.append(cfg)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``tl-thinktok train-organism``; returns a process exit code."""
    args = parse_args(argv)
    parent = Path(args.out) if args.out else ASSETS
    for cfg in configs_from_args(args):
        train(cfg, parent / DIR_NAMES[cfg.style])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
