"""``python -m tl_thinktok reproduce``: run every figure / table script of ``experiments/``.

The expensive part — one trace-generation pass per model (greedy generation, step residuals at
block ``L``, the MI trajectory against the gold-solution representation, peaks) — is done once per
(model, dataset, size) and cached in a resumable run directory (:mod:`tl_thinktok.runs`); every
trace-based result (fig2, table1, fig3/table2, fig4, figs9_20, theorem_bounds,
peaks_robustness) reads that cache.

Each script in ``experiments/`` defines ``NAME`` and ``run(ctx) -> Summary`` and is runnable
alone (``python experiments/fig2_mi_trajectories.py --model organism --quick``). Every result
writes ``<out>/<name>.png``, its data (``.json`` / ``.csv``) and ``<name>.summary.json``; the
generated ``<out>/README.md`` lists them all with their key numbers.

Example:
    >>> from tl_thinktok.reproduce.core import reproduce_main
    >>> reproduce_main(["--quick", "--out", "/tmp/figs", "--only", "fig2,table1"])  # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import csv
import importlib
import json
import math
import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from tl_thinktok.datasets import Item, grade, load_dataset, model_family, prompt_for
from tl_thinktok.loading import model_fingerprint
from tl_thinktok.runs import RunDir, config_hash, finite

#: Experiment name → script file in ``experiments/`` (run in this order).
EXPERIMENTS: dict[str, str] = {
    "fig2": "fig2_mi_trajectories.py",
    "table1": "table1_peak_stats.py",
    "fig3_table2": "fig3_table2_base_vs_reasoning.py",
    "fig4": "fig4_thinking_tokens.py",
    "fig5": "fig5_suppression.py",
    "fig6": "fig6_recycling.py",
    "fig7": "fig7_ttts.py",
    "figs9_20": "figs9_20_trajectory_grids.py",
    "theorem_bounds": "theorem_bounds.py",
    "peaks_robustness": "peaks_robustness.py",
}
ALIASES = {
    "fig3": "fig3_table2",
    "table2": "fig3_table2",
    "fig8": "fig4",
    "bounds": "theorem_bounds",
}

ORGANISM_NAMES = ("organism", "organism-base")

#: Sizes per (model kind, mode). ``n_*`` = number of problems; budgets in generated tokens.
SIZES: dict[tuple[str, str], dict[str, Any]] = {
    # organism sizes fit `reproduce` in ~15 min (full) / ~3 min (--quick) on 2 CPU cores
    ("organism", "full"): dict(
        n_traces=100,
        max_new_tokens=320,
        n_base_traces=100,
        n_eval=50,
        k_max=12,
        k_values=[0, 1, 2, 3, 4, 6, 8, 12],
        k_random=[1, 3, 6, 12],
        n_random=3,
        n_rr=40,
        budgets=[48, 96, 160],
        n_ttts=15,
        ttts_words=["Wait"],
        n_bounds_steps=10,
        batch_size=50,
    ),
    ("organism", "quick"): dict(
        n_traces=8,
        max_new_tokens=320,
        n_base_traces=4,
        n_eval=6,
        k_max=12,
        k_values=[0, 4, 12],
        k_random=[12],
        n_random=3,
        n_rr=4,
        budgets=[32, 160],
        n_ttts=4,
        ttts_words=["Wait"],
        n_bounds_steps=4,
        batch_size=8,
    ),
    # real models: paper sizes for traces (100 MATH problems, 512 tokens); small accuracy sets
    ("hf", "full"): dict(
        n_traces=100,
        max_new_tokens=512,
        n_base_traces=100,
        n_eval=30,
        k_max=10,
        k_values=None,
        k_random=None,
        n_random=3,
        n_rr=30,
        budgets=None,
        n_ttts=30,
        ttts_words=["Wait", "So", "Hmm"],
        n_bounds_steps=8,
        batch_size=4,
    ),
    ("hf", "quick"): dict(
        n_traces=3,
        max_new_tokens=12,
        n_base_traces=2,
        n_eval=2,
        k_max=3,
        k_values=[0, 1, 3],
        k_random=[3],
        n_random=3,
        n_rr=2,
        budgets=[6, 12],
        n_ttts=2,
        ttts_words=["Wait"],
        n_bounds_steps=3,
        batch_size=4,
    ),
}

#: Paper budgets for TTTS (reference code), per dataset.
PAPER_BUDGETS = {
    "gsm8k": [256, 512, 1024, 1536, 2048, 2560],
    "math500": [512, 1024, 2048, 3072, 4096, 5120],
    "aime24": [1024, 2048, 4096, 8192, 12288],
}


# --------------------------------------------------------------------------------------------
# context


@dataclass
class ExpContext:
    """Everything a script needs: model names, datasets, sizes, output and run directories.

    Attributes:
        model: reasoning model (bundled name, hub id or local HF dir).
        base_model: its base twin (``None`` = fig3/table2 show the reasoning model only).
        dataset: trace dataset (``None`` = ``"organism"`` for the organism, ``"math500"`` else).
        eval_datasets: datasets of the accuracy experiments (fig5 / fig7).
        rr_dataset: dataset of Representation Recycling (fig6).
        quick: small sizes (CI smoke run).
        out: output folder of figures and data.
        run_dir: root of the resumable run directories.
        host: ``"hooked"`` (HookedTransformer) or ``"bridge"`` (TransformerBridge).
        device: torch device (``None`` = CPU).
        layer: block whose output is h_t (paper: last block, -1).
        rr_layer: Representation Recycling layer (``None`` = about 70% of depth).
        seed: global seed (dataset subsets, random controls).
        overrides: size overrides (``--set n_traces=20``).
    """

    model: str = "organism"
    base_model: str | None = None
    dataset: str | None = None
    eval_datasets: list[str] | None = None
    rr_dataset: str | None = None
    quick: bool = False
    out: Path = Path("figures")
    run_dir: Path = Path("runs")
    host: str = "hooked"
    device: str | None = None
    layer: int = -1
    rr_layer: int | None = None
    seed: int = 0
    overrides: dict[str, Any] = field(default_factory=dict)
    progress: bool = True
    _models: dict[str, Any] = field(default_factory=dict, repr=False)
    _traces: dict[str, TraceSet] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        self.run_dir = Path(self.run_dir)
        if self.host not in ("hooked", "bridge"):
            raise ValueError(f"host must be 'hooked' or 'bridge', got {self.host!r}")
        if isinstance(self.base_model, str) and self.base_model.lower() == "none":
            self.base_model = None
            self._no_base = True
        elif self.is_organism and not getattr(self, "_no_base", False):
            if self.base_model is None and self.model == "organism":
                self.base_model = "organism-base"
            elif self.base_model is None and Path(self.model).name == "organism":
                sibling = Path(self.model).parent / "organism-base"
                self.base_model = str(sibling) if sibling.is_dir() else None
        if self.is_organism:
            self.dataset = self.dataset or "organism"
            self.eval_datasets = self.eval_datasets or ["organism"]
            self.rr_dataset = self.rr_dataset or "organism"
        else:
            self.dataset = self.dataset or "math500"
            self.eval_datasets = self.eval_datasets or ["gsm8k", "math500", "aime24"]
            self.rr_dataset = self.rr_dataset or "aime24"

    @property
    def is_organism(self) -> bool:
        """Whether the reasoning model is an organism (bundled, or a dir named like one)."""
        return model_family(self.model) == "organism"

    @property
    def mode(self) -> str:
        """``"quick"`` or ``"full"``."""
        return "quick" if self.quick else "full"

    def size(self, key: str) -> Any:
        """A size parameter (override, else the table entry for this model kind and mode)."""
        if key in self.overrides:
            return self.overrides[key]
        return SIZES[("organism" if self.is_organism else "hf", self.mode)][key]

    def family(self, model_name: str) -> str:
        """Prompt family of a model (``"organism"``, ``"r1"`` or ``"reference"``)."""
        return model_family(model_name)

    def load(self, name: str) -> Any:
        """Load (once) a model by bundled name, hub id or local HF dir."""
        if name not in self._models:
            from tl_thinktok.loading import load_model

            model = load_model(name, host=self.host, device=self.device)
            if hasattr(model, "eval"):
                model.eval()
            self._models[name] = model
        return self._models[name]

    def describe(self, name: str | None = None) -> str:
        """Human-readable 'model on dataset' string for README entries."""
        name = name or self.model
        what = (
            "the bundled model organism (a tiny synthetic reasoning model)"
            if (name in ORGANISM_NAMES)
            else name
        )
        return f"{what}"

    def config(self) -> dict[str, Any]:
        """JSON view of the context (saved next to results)."""
        d = {k: v for k, v in asdict(self).items() if not k.startswith("_")}
        d["out"] = str(self.out)
        d["run_dir"] = str(self.run_dir)
        return d

    def traces(self, which: str = "model") -> TraceSet:
        """The cached trace pass of the reasoning (``"model"``) or base (``"base"``) model."""
        name = self.model if which == "model" else self.base_model
        if name is None:
            raise ValueError("no base model: pass --base-model")
        if which not in self._traces:
            n = self.size("n_traces" if which == "model" else "n_base_traces")
            self._traces[which] = trace_pass(self, name, self.dataset, n)
        return self._traces[which]


def slug(name: str) -> str:
    """File-system-safe short name of a model / dataset id."""
    s = re.sub(r"[^A-Za-z0-9._-]+", "_", str(name).rstrip("/").split("/")[-1])
    return s or "model"


# --------------------------------------------------------------------------------------------
# generation


def eos_id(model: Any) -> int | None:
    """The tokenizer's EOS id (``None`` if it has none)."""
    tok = model.tokenizer
    return getattr(tok, "eos_token_id", None)


def encode(model: Any, text: str, *, bos: bool | None = None) -> list[int]:
    """Token ids of ``text`` via ``hosts.to_tokens`` (no specials; BOS per ``bos``, ``None`` =
    the model's default, i.e. whether its HF tokenizer adds BOS)."""
    from tl_thinktok import hosts

    return hosts.to_tokens(model, text, prepend_bos=bos)[0].tolist()


def _pad_id(model: Any) -> int:
    tok = model.tokenizer
    for cand in (getattr(tok, "pad_token_id", None), eos_id(model), 0):
        if cand is not None:
            return int(cand)
    return 0  # pragma: no cover


@torch.no_grad()
def greedy_batch(
    model: Any,
    prompts: Sequence[Sequence[int]],
    max_new_tokens: int,
    *,
    fwd_hooks: Sequence[tuple[str, Callable]] = (),
    stop_at_eos: bool = True,
) -> list[list[int]]:
    """Greedy decoding of several prompts at once (left padding, KV cache, hooks attached).

    Equal to one-by-one greedy decoding (checked in tests/integration/test_reproduce.py); use it
    only with hooks that treat every sequence the same way (token bans: yes; per-sequence state
    such as Representation Recycling: no).

    Returns:
        One list of new token ids per prompt, cut after the first EOS (EOS included).
    """
    if max_new_tokens <= 0 or not prompts:
        return [[] for _ in prompts]
    from tl_thinktok import hosts

    dev = hosts.model_device(model)
    n = max(len(p) for p in prompts)
    pad = _pad_id(model)
    toks = torch.tensor([[pad] * (n - len(p)) + list(p) for p in prompts], device=dev)
    kwargs: dict[str, Any] = dict(
        max_new_tokens=int(max_new_tokens),
        do_sample=False,
        stop_at_eos=stop_at_eos,
        verbose=False,
        return_type="tokens",
    )
    if len(prompts) > 1 or any(len(p) != n for p in prompts):
        kwargs["padding_side"] = "left"
    eos = eos_id(model)
    if eos is not None:
        kwargs["eos_token_id"] = eos
    with model.hooks(fwd_hooks=list(fwd_hooks)):
        out = model.generate(toks, **kwargs)
    res = []
    for row in out[:, n:].tolist():
        if eos is not None and eos in row:
            row = row[: row.index(eos) + 1]
        res.append(row)
    return res


def greedy(
    model: Any,
    ids: Sequence[int],
    max_new_tokens: int,
    *,
    fwd_hooks: Sequence[tuple[str, Callable]] = (),
    stop_at_eos: bool = True,
) -> list[int]:
    """Greedy decoding of one prompt (the host's ``generate``, KV cache, hooks attached).

    Returns:
        The new token ids (EOS included if produced).
    """
    return greedy_batch(model, [ids], max_new_tokens, fwd_hooks=fwd_hooks, stop_at_eos=stop_at_eos)[
        0
    ]


def decode(model: Any, ids: Sequence[int]) -> str:
    """Decode ids, dropping special tokens."""
    return model.tokenizer.decode(list(ids), skip_special_tokens=True)


def answer_suffix(family: str) -> str:
    """Text that forces a final answer after truncated thinking."""
    if family == "organism":
        return " </think> \\boxed{"
    if family == "r1":
        return "\n</think>\n\nFinal Answer within \\boxed{}: \\boxed{"
    return " Final Answer within \\boxed{}: \\boxed{"


# --------------------------------------------------------------------------------------------
# trace pass


@dataclass
class TraceSet:
    """The cached trace pass of one model on one dataset.

    Attributes:
        model: model name.
        dataset: dataset name.
        records: one dict per trace (id, question, answer, prompt_len, gen_ids, text, correct,
            mi, peaks, resid_norm, n_steps).
        run: the run directory (residual tensors live under ``resid/``).
    """

    model: str
    dataset: str
    records: list[dict[str, Any]]
    run: RunDir

    def residuals(self, rec: dict[str, Any]) -> dict[str, Tensor]:
        """Saved tensors of one trace: ``{"resid": [steps, d], "answer": [d]}`` (float32)."""
        return torch.load(self.run.path / rec["resid_file"], weights_only=True)

    def mi(self) -> list[np.ndarray]:
        """MI trajectories (float64), one per trace."""
        return [np.asarray(r["mi"], dtype=np.float64) for r in self.records]


def compute_mi(
    x: Float[Tensor, "step d"], y: Float[Tensor, " d"], sigma: float = 50.0
) -> np.ndarray:
    """MI trajectory: the paper's NOCCO estimator of every step against ``y`` (float64)."""
    from tl_thinktok.mi import hsic_nocco

    return hsic_nocco(x, y, sigma=sigma).cpu().numpy()


def peak_indices(m: np.ndarray) -> list[int]:
    """Peak steps of one trajectory (paper Def. 2: Q3 + 1.5 IQR)."""
    from tl_thinktok.peaks import find_peaks

    return find_peaks(torch.as_tensor(m, dtype=torch.float64))


def trace_stats_dict(mi_values: Sequence[float]) -> dict[str, Any]:
    """Per-trace statistics (Table 1 + Table 2 columns, ``peaks.STAT_FIELDS``) as a plain dict.

    Undefined values (intervals with fewer than 2 peaks, AOM without peaks) are ``None``.
    """
    from tl_thinktok.peaks import STAT_FIELDS, trace_stats

    st = trace_stats(torch.as_tensor(np.asarray(mi_values, dtype=np.float64))).to_dict()
    return {k: st[k] for k in STAT_FIELDS}


def _trace_batch(
    ctx: ExpContext,
    model: Any,
    name: str,
    dataset: str,
    items: list[Item],
    run: RunDir,
    max_new: int,
) -> list[dict[str, Any]]:
    from tl_thinktok.probe import answer_representation, step_residuals

    fam = ctx.family(name)
    trace_fam = fam if fam == "organism" else "raw"
    prompts = [encode(model, prompt_for(trace_fam, it.question)) for it in items]
    gens = greedy_batch(model, prompts, max_new)
    eos = eos_id(model)
    out = []
    for item, ids, new in zip(items, prompts, gens, strict=True):
        gen = [t for t in new if t != eos] or new[:1]
        if not gen:  # the model produced nothing at all: one step, the EOS prediction
            gen = [eos if eos is not None else _pad_id(model)]
        full = torch.tensor(ids + gen, dtype=torch.long)
        resid = step_residuals(model, full, prompt_len=len(ids), layer=ctx.layer)
        resid = resid.reshape(-1, resid.shape[-1]).detach().float().cpu()
        ans = answer_representation(model, item.solution, layer=ctx.layer)
        ans = ans.reshape(-1).detach().float().cpu()
        m = compute_mi(resid, ans)
        text = decode(model, gen)
        rfile = f"resid/{slug(item.id)}.pt"
        path = run.artifact(rfile)
        tmp = path.with_suffix(".tmp")
        torch.save({"resid": resid.contiguous(), "answer": ans.contiguous()}, tmp)
        tmp.replace(path)
        out.append(
            {
                "id": item.id,
                "question": item.question,
                "answer": item.answer,
                "prompt_len": len(ids),
                "gen_ids": gen,
                "text": text,
                "correct": bool(grade(dataset, text, item.answer)),
                "n_steps": int(len(m)),
                "mi": [float(v) for v in m],
                "peaks": peak_indices(m),
                "resid_norm": [float(v) for v in resid.double().norm(dim=-1).tolist()],
                "resid_file": rfile,
            }
        )
    return out


def trace_pass(ctx: ExpContext, name: str, dataset: str, n: int) -> TraceSet:
    """Generate + step residuals + MI for ``n`` problems, cached and resumable in the run dir."""
    max_new = ctx.size("max_new_tokens")
    cfg = {
        "kind": "traces",
        "model": name,
        "model_fingerprint": model_fingerprint(name),
        "dataset": dataset,
        "n": n,
        "seed": ctx.seed,
        "max_new_tokens": max_new,
        "layer": ctx.layer,
        "sigma": 50.0,
        "host": ctx.host,
        "estimator": "hsic_nocco(float64, sigma=50, eps=1e-5)",
        "peaks": "Q3 + 1.5 IQR",
    }
    run = RunDir.open(ctx.run_dir / slug(name) / f"traces-{slug(dataset)}-{config_hash(cfg)}", cfg)
    items = load_dataset(dataset, n=n, seed=ctx.seed)
    model = ctx.load(name)
    recs = run.map_batched(
        items,
        key=lambda it: it.id,
        fn=lambda batch: _trace_batch(ctx, model, name, dataset, batch, run, max_new),
        batch_size=ctx.size("batch_size"),
        desc=f"traces {slug(name)}",
        progress=ctx.progress,
    )
    return TraceSet(model=name, dataset=dataset, records=recs, run=run)


# --------------------------------------------------------------------------------------------
# accuracy experiments (shared by fig5 / fig6 / fig7)

#: Top words at peaks reported by the paper (R1-Distill-Llama-8B), most frequent first.
PAPER_TOP_WORDS = ["So", "Let", "Hmm", "I", "That", "Okay", "The", "Now", "First", "But",
                   "Wait", "Since", "Then", "Therefore", "Maybe"]  # fmt: skip
#: Reference RR trigger words (first 10 alphabetic words of the reference list).
RR_TRIGGER_WORDS = ["So", "Let", "Hmm", "I", "The", "Okay", "That", "First", "Now", "Wait"]


def thinking_list(ctx: ExpContext, model: Any, words: Sequence[str] | None = None) -> Any:
    """Ranked :class:`~tl_thinktok.vocab.ThinkingTokens` for a model.

    ``words`` given: those (in order). Else, the organism: its ``THINKING_WORDS`` (most frequent
    in its training traces first); other models: the fig4 list of this run
    (``<out>/fig4_thinking_tokens.jsonl``) if present, else the paper's reported list. Words the
    tokenizer cannot produce are dropped.
    """
    from tl_thinktok.vocab import ThinkingTokens, vocab_index

    tok = model.tokenizer
    if words is None:
        jl = ctx.out / "fig4_thinking_tokens.jsonl"
        if ctx.is_organism:
            from tl_thinktok import organism

            words = list(organism.THINKING_WORDS)
        elif jl.exists():
            return ThinkingTokens.load_jsonl(jl, tok)
        else:
            words = PAPER_TOP_WORDS
    index = vocab_index(tok)
    keep = [w for w in words if index.ids_for(w)]
    if not keep:
        raise ValueError(f"none of the thinking words {list(words)} is a token of this tokenizer")
    return ThinkingTokens.from_words(tok, keep)


def special_ids(model: Any) -> set[int]:
    """Ids of the tokenizer's special tokens (never banned by random controls)."""
    tok = model.tokenizer
    ids = set(getattr(tok, "all_special_ids", []) or [])
    for a in ("bos_token_id", "eos_token_id", "pad_token_id", "unk_token_id"):
        v = getattr(tok, a, None)
        if v is not None:
            ids.add(int(v))
    return ids


def eval_prompt_ids(ctx: ExpContext, model: Any, name: str, question: str) -> list[int]:
    """Prompt ids for the accuracy experiments (the model family's prompt)."""
    return encode(model, prompt_for(ctx.family(name), question))


def accuracy_run(ctx: ExpContext, kind: str, extra: dict[str, Any]) -> RunDir:
    """A resumable run directory for an accuracy experiment."""
    cfg = {
        "kind": kind,
        "model": ctx.model,
        "model_fingerprint": model_fingerprint(ctx.model),
        "seed": ctx.seed,
        "host": ctx.host,
        "max_new_tokens": ctx.size("max_new_tokens"),
        **extra,
    }
    return RunDir.open(ctx.run_dir / slug(ctx.model) / f"{kind}-{config_hash(cfg)}", cfg)


def generate_and_grade(
    ctx: ExpContext,
    model: Any,
    dataset: str,
    items: Sequence[Item],
    hooks: Sequence[tuple[str, Callable]] = (),
) -> list[dict[str, Any]]:
    """Greedy answers (batched) for ``items`` with ``hooks`` attached, graded."""
    prompts = [eval_prompt_ids(ctx, model, ctx.model, it.question) for it in items]
    out: list[dict[str, Any]] = []
    bs = ctx.size("batch_size")
    for s in range(0, len(items), bs):
        gens = greedy_batch(model, prompts[s : s + bs], ctx.size("max_new_tokens"), fwd_hooks=hooks)
        for it, g in zip(items[s : s + bs], gens, strict=True):
            text = decode(model, g)
            out.append(
                {"id": it.id, "correct": bool(grade(dataset, text, it.answer)), "n_new": len(g)}
            )
    return out


# --------------------------------------------------------------------------------------------
# outputs


@dataclass
class Summary:
    """What one script produced, for ``README.md``.

    Attributes:
        name: experiment name (``fig2`` ...).
        title: one-line title.
        model: model(s) the numbers come from.
        dataset: dataset(s).
        numbers: key numbers (flat dict).
        paper: the paper's numbers / claims for comparison.
        notes: caveats.
        files: produced files (relative to ``out``).
        seconds: wall time.
    """

    name: str
    title: str
    model: str
    dataset: str
    numbers: dict[str, Any]
    paper: str = ""
    notes: str = ""
    files: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def save(self, out: Path) -> Path:
        """Write ``<out>/<name>.summary.json``."""
        p = Path(out) / f"{self.name}.summary.json"
        p.write_text(json.dumps(asdict(self), indent=1, default=_json_default))
        return p

    @classmethod
    def load(cls, path: str | Path) -> Summary:
        """Read a summary written by :meth:`save`."""
        return cls(**json.loads(Path(path).read_text()))


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Tensor):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON-serialisable: {type(o).__name__}")


def save_json(out: Path, name: str, data: Any) -> str:
    """Write ``<out>/<name>.json`` (NaN/inf refused) and return the file name."""
    out.mkdir(parents=True, exist_ok=True)
    text = json.dumps(data, indent=1, default=_json_default, allow_nan=False)
    (out / f"{name}.json").write_text(text)
    return f"{name}.json"


def save_csv(out: Path, name: str, rows: list[dict[str, Any]]) -> str:
    """Write ``<out>/<name>.csv`` from a list of flat dicts and return the file name."""
    out.mkdir(parents=True, exist_ok=True)
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    with (out / f"{name}.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)
    return f"{name}.csv"


def save_fig(out: Path, name: str, fig: Any) -> str:
    """Save a matplotlib figure as ``<out>/<name>.png`` (closes it) and return the file name."""
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    fig.savefig(out / f"{name}.png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return f"{name}.png"


def mean_ci(values: Sequence[float]) -> tuple[float, float]:
    """Mean and normal-approximation 95% half-width (0 for fewer than 2 values)."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return float("nan"), 0.0
    if v.size < 2:
        return float(v.mean()), 0.0
    return float(v.mean()), float(1.96 * v.std(ddof=1) / math.sqrt(v.size))


def write_readme(out: Path, ctx: ExpContext | None = None) -> Path:
    """(Re)generate ``<out>/README.md`` from every ``*.summary.json`` in ``out``."""
    out = Path(out)
    sums = []
    for name in EXPERIMENTS:
        p = out / f"{name}.summary.json"
        if p.exists():
            sums.append(Summary.load(p))
    lines = [
        "# Figures and tables (generated by `python -m tl_thinktok reproduce`)",
        "",
        "Do not edit: regenerate with `python -m tl_thinktok reproduce --out figures/`.",
        "",
    ]
    tf = out / "timings.json"
    if tf.exists():
        t = json.loads(tf.read_text())
        lines += [
            f"Last `reproduce` run: model `{t.get('model')}`, mode `{t.get('mode')}`, "
            f"{t.get('total_s', 0):.0f} s in total on {t.get('device', 'cpu')} "
            f"({t.get('threads', '?')} torch thread(s)); sizes: "
            f"`{json.dumps(t.get('sizes', {}))}`.",
            "",
        ]
    if any("organism" in s.model for s in sums):
        lines += [
            "**Figures made on the model organism are about the organism**, a tiny Qwen2 "
            "trained here on synthetic arithmetic word problems whose traces think aloud "
            "(`tl_thinktok.organism`), and its base twin trained on terse solutions. They "
            "show the pipeline working end to end on a model where the thinking words have a "
            "known function; they are NOT measurements of DeepSeek-R1 or any real model. "
            "Paper numbers are listed for comparison only.",
            "",
        ]
    for s in sums:
        lines.append(f"## {s.name}: {s.title}")
        lines.append("")
        lines.append(f"- model: {s.model}; data: {s.dataset}; time: {s.seconds:.1f} s")
        for f in s.files:
            if f.endswith(".png"):
                lines.append(f"\n![{s.name}]({f})\n")
        data = [f for f in s.files if not f.endswith(".png")]
        if data:
            lines.append(f"- data: {', '.join(f'`{f}`' for f in data)}")
        if s.numbers:
            lines.append("- key numbers:")
            for k, v in s.numbers.items():
                lines.append(f"  - {k}: {_fmt(v)}")
        if s.paper:
            lines.append(f"- paper: {s.paper}")
        if s.notes:
            lines.append(f"- notes: {s.notes}")
        lines.append("")
    p = out / "README.md"
    p.write_text("\n".join(lines))
    return p


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, dict):
        return ", ".join(f"{k}={_fmt(x)}" for k, x in v.items())
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_fmt(x) for x in v) + "]"
    return str(v)


def check_outputs(out: Path, names: Sequence[str]) -> list[str]:
    """Problems with the outputs of ``names`` (missing files, non-finite numbers); [] if fine."""
    problems = []
    for n in names:
        p = out / f"{n}.summary.json"
        if not p.exists():
            problems.append(f"{n}: no summary")
            continue
        s = Summary.load(p)
        for f in s.files:
            fp = out / f
            if not fp.exists() or fp.stat().st_size == 0:
                problems.append(f"{n}: missing {f}")
            elif f.endswith(".json") and not finite(json.loads(fp.read_text())):
                problems.append(f"{n}: non-finite numbers in {f}")
        if not finite(s.numbers):
            problems.append(f"{n}: non-finite key numbers")
    return problems


# --------------------------------------------------------------------------------------------
# command line


def build_parser(prog: str = "tl_thinktok reproduce") -> argparse.ArgumentParser:
    """Arguments shared by ``reproduce`` and every script."""
    ap = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="organism", help="bundled name, hub id or local HF dir")
    ap.add_argument(
        "--base-model", default=None, help="base twin (default organism-base; 'none' = no base)"
    )
    ap.add_argument("--dataset", default=None, help="trace dataset (gsm8k/math500/aime24/organism)")
    ap.add_argument(
        "--eval-datasets", default=None, help="comma list for fig5/fig7 (default: all three)"
    )
    ap.add_argument("--rr-dataset", default=None, help="dataset of fig6 (default aime24)")
    ap.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
    ap.add_argument("--out", default="figures", help="output folder")
    ap.add_argument("--run-dir", default="runs", help="resumable run directories")
    ap.add_argument("--host", default="hooked", choices=["hooked", "bridge"])
    ap.add_argument("--device", default=None, help="torch device, e.g. cuda")
    ap.add_argument("--layer", type=int, default=-1, help="block of h_t (default last)")
    ap.add_argument("--rr-layer", type=int, default=None, help="Representation Recycling layer")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a size, e.g. --set n_traces=20 (JSON value)",
    )
    ap.add_argument("--no-progress", action="store_true", help="hide progress bars")
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (default 1: tiny models on a shared CPU run fastest so)",
    )
    return ap


def context_from_args(args: argparse.Namespace) -> ExpContext:
    """Build the :class:`ExpContext` of parsed arguments (and set torch's CPU threads)."""
    if args.threads and args.threads > 0:
        torch.set_num_threads(args.threads)
    overrides = {}
    for kv in args.set:
        if "=" not in kv:
            raise ValueError(f"--set expects KEY=VALUE, got {kv!r}")
        k, v = kv.split("=", 1)
        try:
            overrides[k] = json.loads(v)
        except json.JSONDecodeError:
            overrides[k] = v
    bad = set(overrides) - set(SIZES[("organism", "full")])
    if bad:
        raise ValueError(
            f"unknown size keys {sorted(bad)}; known: {sorted(SIZES[('organism', 'full')])}"
        )

    def split(s: str | None) -> list[str] | None:
        return [x.strip() for x in s.split(",") if x.strip()] if s else None

    return ExpContext(
        model=args.model,
        base_model=args.base_model,
        dataset=args.dataset,
        eval_datasets=split(args.eval_datasets),
        rr_dataset=args.rr_dataset,
        quick=args.quick,
        out=Path(args.out),
        run_dir=Path(args.run_dir),
        host=args.host,
        device=args.device,
        layer=args.layer,
        rr_layer=args.rr_layer,
        seed=args.seed,
        overrides=overrides,
        progress=not args.no_progress,
    )


def load_script(name: str) -> ModuleType:
    """The module ``tl_thinktok.reproduce.experiments.<name>`` of experiment ``name``."""
    name = ALIASES.get(name, name)
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; expected one of {list(EXPERIMENTS)}")
    return importlib.import_module(f"tl_thinktok.reproduce.experiments.{name}")


def run_one(ctx: ExpContext, name: str, mod: ModuleType | None = None) -> Summary:
    """Run one experiment, time it, save its summary and refresh the README."""
    import matplotlib

    matplotlib.use("Agg")
    mod = mod or load_script(name)
    ctx.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    summary: Summary = mod.run(ctx)
    summary.seconds = round(time.perf_counter() - t0, 2)
    summary.save(ctx.out)
    write_readme(ctx.out, ctx)
    return summary


def script_main(name: str, argv: Sequence[str] | None = None) -> int:
    """Entry point of a single experiment: parse the shared args and run it."""
    args = build_parser(prog=f"experiments/{EXPERIMENTS[name]}").parse_args(argv)
    ctx = context_from_args(args)
    s = run_one(ctx, name)
    print(
        json.dumps(
            {"name": s.name, "seconds": s.seconds, "numbers": s.numbers},
            default=_json_default,
            indent=1,
        )
    )
    return 0


def reproduce_main(argv: Sequence[str] | None = None) -> int:
    """``python -m tl_thinktok reproduce ...``: run the selected experiments, write the README.

    Returns:
        0 on success, 1 if an experiment failed or produced incomplete outputs.
    """
    ap = build_parser()
    ap.add_argument("--only", default=None, help="comma list, e.g. fig2,table1,fig5")
    ap.add_argument("--skip", default=None, help="comma list of experiments to leave out")
    ap.add_argument("--keep-going", action="store_true", help="continue after a failure")
    args = ap.parse_args(argv)
    ctx = context_from_args(args)
    names = list(EXPERIMENTS)
    if args.only:
        want = [ALIASES.get(x.strip(), x.strip()) for x in args.only.split(",") if x.strip()]
        bad = [w for w in want if w not in EXPERIMENTS]
        if bad:
            ap.error(f"unknown experiment(s) {bad}; expected from {list(EXPERIMENTS)}")
        names = [n for n in names if n in want]
    if args.skip:
        skip = {ALIASES.get(x.strip(), x.strip()) for x in args.skip.split(",")}
        names = [n for n in names if n not in skip]
    timings: dict[str, float] = {}
    failed: list[str] = []
    t0 = time.perf_counter()
    for name in names:
        print(f"[reproduce] {name} ...", flush=True)
        try:
            s = run_one(ctx, name)
        except Exception as e:
            failed.append(name)
            print(f"[reproduce] {name} FAILED: {type(e).__name__}: {e}", file=sys.stderr)
            if not args.keep_going:
                raise
            continue
        timings[name] = s.seconds
        print(f"[reproduce] {name} done in {s.seconds:.1f} s", flush=True)
    total = time.perf_counter() - t0
    sizes = {k: ctx.size(k) for k in SIZES[("organism", "full")]}
    save_json(
        ctx.out,
        "timings",
        {
            "total_s": round(total, 2),
            "per_experiment_s": timings,
            "mode": ctx.mode,
            "model": ctx.model,
            "base_model": ctx.base_model,
            "device": ctx.device or "cpu",
            "threads": torch.get_num_threads(),
            "sizes": sizes,
        },
    )
    write_readme(ctx.out, ctx)
    problems = check_outputs(ctx.out, [n for n in names if n not in failed])
    for p in problems:
        print(f"[reproduce] problem: {p}", file=sys.stderr)
    print(f"[reproduce] total {total:.1f} s; outputs in {ctx.out}", flush=True)
    return 1 if (failed or problems) else 0
