"""The experiment context: model names, datasets, sizes, output and run directories.

Every experiment gets one :class:`ExpContext`; it loads each model once and runs the trace pass
once per model (:mod:`tl_thinktok.reproduce.traces`).

Generation budgets are per experiment (:data:`BUDGETS`): the trace pass of Table 1 / figs 2–4,
suppression (fig5), Representation Recycling (fig6, the paper's 16,000 greedy tokens), the TTTS
base call (4,096) and its forced answer (fig7); :meth:`ExpContext.budget` reads them.

Example:
    >>> ctx = ExpContext(model="organism", quick=True, out="/tmp/figs")
    >>> ctx.base_model, ctx.dataset, ctx.size("n_traces")
    ('organism-base', 'organism', 8)
    >>> ctx.budget("rr"), ctx.budget("fig6"), ctx.budget("ttts_answer")
    (320, 320, 8)
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from tl_thinktok.datasets import Item, load_dataset, model_family
from tl_thinktok.engines import ENGINES, Engine, get_engine
from tl_thinktok.hosts import default_host
from tl_thinktok.loading import load_model
from tl_thinktok.reproduce.traces import TraceSet, trace_pass

__all__ = ["BUDGETS", "EXPERIMENT_BUDGET", "ORGANISM_NAMES", "PAPER_BUDGETS", "SIZES", "ExpContext"]

ORGANISM_NAMES = ("organism", "organism-base")

#: Generation budgets (tokens) and the size key of each: traces (Table 1, figs 2-4, every
#: trace-based experiment), suppression (fig5), Representation Recycling (fig6), the TTTS base
#: call and its forced answer (fig7).
BUDGETS: dict[str, str] = {
    "traces": "budget_traces",
    "suppression": "budget_suppression",
    "rr": "budget_rr",
    "ttts_base": "budget_ttts_base",
    "ttts_answer": "budget_ttts_answer",
}

#: Experiment name → the budget its generations use (others: ``"traces"``).
EXPERIMENT_BUDGET: dict[str, str] = {"fig5": "suppression", "fig6": "rr", "fig7": "ttts_base"}

#: Quick sizes of real (HF) models: a few short traces, enough to exercise every experiment.
_QUICK_REAL: dict[str, Any] = dict(
    n_traces=3,
    max_new_tokens=12,
    n_base_traces=2,
    n_extra=3,
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
    budget_traces=12,
    budget_suppression=12,
    budget_rr=12,
    budget_ttts_base=12,
    budget_ttts_answer=16,
    batch_size=4,
)

#: Sizes per (model kind, mode). ``n_*`` = number of problems; ``budget_*`` in generated tokens
#: (:data:`BUDGETS`); ``max_new_tokens`` is the legacy single budget: ``--set max_new_tokens=N``
#: still sets every budget but the TTTS answer, and ``size("max_new_tokens")`` inside an
#: experiment is that experiment's budget (:meth:`ExpContext.budget`).
SIZES: dict[tuple[str, str], dict[str, Any]] = {
    # organism sizes: the full run takes minutes on 2 CPU cores, --quick about a minute
    ("organism", "full"): dict(
        n_traces=100,
        max_new_tokens=320,
        n_base_traces=100,
        n_extra=30,
        n_eval=50,
        k_max=12,
        k_values=[0, 1, 2, 3, 4, 6, 8, 12],
        # random controls (uniform and frequency-matched, 3 draws each) at 3 of the k values:
        # the full run stays ~15 min on 2 cores
        k_random=[1, 6, 12],
        n_random=3,
        n_rr=40,
        budgets=[48, 96, 160],
        n_ttts=50,  # review: fig7 needs ≥ 50 problems (15 left intervals of ±0.3)
        ttts_words=["Wait"],
        n_bounds_steps=10,
        budget_traces=320,
        budget_suppression=320,
        budget_rr=320,
        budget_ttts_base=320,
        budget_ttts_answer=8,
        batch_size=50,
    ),
    ("organism", "quick"): dict(
        n_traces=8,
        max_new_tokens=320,
        n_base_traces=4,
        n_extra=3,
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
        budget_traces=320,
        budget_suppression=320,
        budget_rr=320,
        budget_ttts_base=320,
        budget_ttts_answer=8,
        batch_size=8,
    ),
    # real models: paper sizes for traces (100 MATH problems, 512 tokens); small accuracy sets
    ("hf", "full"): dict(
        n_traces=100,
        max_new_tokens=512,
        n_base_traces=100,
        n_extra=30,
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
        budget_traces=512,
        budget_suppression=4096,
        budget_rr=16000,
        budget_ttts_base=4096,
        budget_ttts_answer=16,
        batch_size=4,
    ),
    # SmolLM2-135M-Instruct (the bundled real model): GSM8K only, budgets sized so the full run
    # fits 2 CPU cores in 30 minutes (the paper's budgets are for 1.5B-70B models on GPUs)
    ("smollm2", "full"): dict(
        n_traces=40,
        max_new_tokens=256,
        n_base_traces=0,
        n_extra=10,
        n_eval=10,
        k_max=3,
        k_values=[0, 1, 3],
        k_random=[3],
        n_random=3,
        n_rr=10,
        budgets=[80],  # TTTS: one budget on 4 problems (each condition generates per problem)
        n_ttts=4,
        ttts_words=["Wait", "So"],
        n_bounds_steps=8,
        budget_traces=256,
        budget_suppression=160,
        budget_rr=160,
        budget_ttts_base=160,
        budget_ttts_answer=16,
        batch_size=16,
    ),
    ("hf", "quick"): _QUICK_REAL,
    # the same small sizes without a base model and with 2 random draws
    ("smollm2", "quick"): {**_QUICK_REAL, "n_base_traces": 0, "n_random": 2},
}

#: Paper budgets for TTTS (reference code), per dataset.
PAPER_BUDGETS = {
    "gsm8k": [256, 512, 1024, 1536, 2048, 2560],
    "math500": [512, 1024, 2048, 3072, 4096, 5120],
    "aime24": [1024, 2048, 4096, 8192, 12288],
}


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
        host: ``"hooked"`` (HookedTransformer) or ``"bridge"`` (TransformerBridge); ``None`` =
            the installed TransformerLens's default (hooked on 3.x, bridge on 4.x).
        engine: generation engine of the trace pass, token bans and TTTS (``"tl"``, ``"hf"``,
            ``"vllm"``; :mod:`tl_thinktok.engines`); Representation Recycling needs
            TransformerLens hooks while generating: it runs on ``"tl"`` and says so
            (:meth:`engine_for`).
        tensor_parallel_size: GPUs per vLLM engine (models larger than one GPU; ``vllm`` only).
        device: torch device (``None`` = CPU).
        layer: block whose output is h_t (paper: last block, -1).
        rr_layer: Representation Recycling layer (``None`` = about 70% of depth).
        seed: global seed (dataset subsets, random controls).
        overrides: size overrides (``--set n_traces=20``).
        progress: show progress bars.
        device_map: models too big for one GPU: HF ``device_map`` (``"auto"``, ``"balanced"``)
            passed to :func:`~tl_thinktok.loading.load_model`.
        n_devices: split each model over this many GPUs (passed to ``load_model``).
        experiment: the experiment now running (set by ``reproduce``; picks the budget that
            ``size("max_new_tokens")`` returns).
        workers: Ray actors evaluating pending work items (0 = in this process).
        ray_address: an existing Ray cluster (``None`` = a local one started on demand).
        gpus_per_worker: GPUs reserved per Ray actor.
        shard: ``(i, n)``: compute only shard ``i`` of ``n`` of every work list (job arrays).
        executor: where pending work items are evaluated (``None`` = serially in this process;
            set by ``reproduce`` from ``workers`` / ``shard``, see
            :mod:`tl_thinktok.reproduce.distributed`).
    """

    model: str = "organism"
    base_model: str | None = None
    dataset: str | None = None
    eval_datasets: list[str] | None = None
    rr_dataset: str | None = None
    quick: bool = False
    out: Path = Path("figures")
    run_dir: Path = Path("runs")
    host: str | None = None
    engine: str = "tl"
    tensor_parallel_size: int = 1
    device: str | None = None
    layer: int = -1
    rr_layer: int | None = None
    seed: int = 0
    overrides: dict[str, Any] = field(default_factory=dict)
    progress: bool = True
    device_map: str | None = None
    n_devices: int | None = None
    experiment: str | None = None
    workers: int = 0
    ray_address: str | None = None
    gpus_per_worker: float = 0.0
    shard: tuple[int, int] | None = None
    executor: Any = field(default=None, repr=False, compare=False)
    _models: dict[str, Any] = field(default_factory=dict, repr=False)
    _traces: dict[str, TraceSet] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        self.run_dir = Path(self.run_dir)
        self.host = self.host or default_host()
        if self.host not in ("hooked", "bridge"):
            raise ValueError(f"host must be 'hooked' or 'bridge', got {self.host!r}")
        if self.engine not in ENGINES:
            raise ValueError(f"engine must be one of {ENGINES}, got {self.engine!r}")
        if self.tensor_parallel_size != 1 and self.engine != "vllm":
            raise ValueError("tensor_parallel_size applies to the vllm engine only")
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
        elif self.kind == "smollm2":  # a 135M model: grade-school problems are its level
            self.dataset = self.dataset or "gsm8k"
            self.eval_datasets = self.eval_datasets or ["gsm8k"]
            self.rr_dataset = self.rr_dataset or "gsm8k"
        else:
            self.dataset = self.dataset or "math500"
            self.eval_datasets = self.eval_datasets or ["gsm8k", "math500", "aime24"]
            self.rr_dataset = self.rr_dataset or "aime24"

    @property
    def is_organism(self) -> bool:
        """Whether the reasoning model is an organism (bundled, or a dir named like one)."""
        return model_family(self.model) == "organism"

    @property
    def kind(self) -> str:
        """Size-table kind of the reasoning model: ``"organism"``, ``"smollm2"`` or ``"hf"``."""
        fam = model_family(self.model)
        return fam if fam in ("organism", "smollm2") else "hf"

    @property
    def mode(self) -> str:
        """``"quick"`` or ``"full"``."""
        return "quick" if self.quick else "full"

    def size(self, key: str) -> Any:
        """A size parameter (override, else the table entry for this model kind and mode).

        ``"max_new_tokens"`` is the budget of the running experiment (:meth:`budget`).
        """
        if key == "max_new_tokens":
            return self.budget(EXPERIMENT_BUDGET.get(self.experiment or "", "traces"))
        if key in self.overrides:
            return self.overrides[key]
        return SIZES[(self.kind, self.mode)][key]

    def budget(self, name: str) -> int:
        """Generation budget (tokens) of a budget name (:data:`BUDGETS`) or an experiment.

        Order: ``--set budget_<name>=N``, else ``--set max_new_tokens=N`` (every budget but
        ``ttts_answer``), else the size table.

        Example:
            >>> ExpContext(model="organism").budget("fig5")
            320

        Raises:
            ValueError: neither a budget name nor an experiment.
        """
        if name not in BUDGETS:
            from tl_thinktok.reproduce.registry import resolve

            name = EXPERIMENT_BUDGET.get(resolve(name), "traces")
        key = BUDGETS[name]
        if key in self.overrides:
            return int(self.overrides[key])
        if "max_new_tokens" in self.overrides and name != "ttts_answer":
            return int(self.overrides["max_new_tokens"])
        return int(SIZES[(self.kind, self.mode)][key])

    def engine_options(self, engine: str) -> dict[str, Any]:
        """Keyword options of :func:`tl_thinktok.engines.get_engine` for ``engine``."""
        if engine == "vllm" and self.tensor_parallel_size != 1:
            return {"tensor_parallel_size": int(self.tensor_parallel_size)}
        return {}

    def engine_of(self, model: Any, name: str | None = None) -> Engine:
        """The engine ``name`` (``None`` = :attr:`engine`) for ``model``, with this run's options
        (built once per model: :func:`tl_thinktok.engines.get_engine`; call it where the work
        runs, so that each Ray worker builds its own)."""
        name = name or self.engine
        return get_engine(model, name, **self.engine_options(name))

    def engine_for(self, what: str, why: str | None) -> str:
        """The engine a part of an experiment runs on: :attr:`engine`, or ``"tl"`` when ``why``
        (the reason it needs TransformerLens) is given; the switch is printed once per part.

        Example:
            >>> ExpContext(engine="vllm").engine_for("fig6", "RR hooks a block")  # doctest: +SKIP
            'tl'
        """
        if why is None or self.engine == "tl":
            return self.engine
        said = self.__dict__.setdefault("_engine_notes", set())
        if what not in said:
            said.add(what)
            print(f"{what} runs on the tl engine, not {self.engine}: {why}", flush=True)
        return "tl"

    def family(self, model_name: str) -> str:
        """Prompt family of a model (``"organism"``, ``"r1"`` or ``"reference"``)."""
        return model_family(model_name)

    def load(self, name: str) -> Any:
        """Load (once) a model by bundled name, hub id or local HF dir."""
        if name not in self._models:
            kw: dict[str, Any] = {}
            if self.device_map is not None:
                kw["device_map"] = self.device_map
            if self.n_devices is not None:
                kw["n_devices"] = self.n_devices
            model = load_model(name, host=self.host, device=self.device, **kw)
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
        skip = ("executor", "experiment")
        d = {
            f.name: copy.deepcopy(getattr(self, f.name))
            for f in fields(self)
            if not f.name.startswith("_") and f.name not in skip
        }
        d["shard"] = list(self.shard) if self.shard else None
        d["out"] = str(self.out)
        d["run_dir"] = str(self.run_dir)
        return d

    def discovery_items(self, dataset: str) -> list[Item]:
        """The problems of the reasoning model's trace pass when ``dataset`` is the trace dataset
        (the MI peaks, and so the words found there, come from them), else none."""
        if dataset != self.dataset:
            return []
        return load_dataset(self.dataset, n=self.size("n_traces"), seed=self.seed)

    def eval_items(self, dataset: str, n: int) -> list[Item]:
        """``n`` evaluation problems of ``dataset``, disjoint from :meth:`discovery_items` (by id
        and by question text), so that words found at MI peaks are never evaluated on the problems
        they were found on.

        The organism: the next ``n`` generated problems after the discovery ones; a file dataset:
        a seeded sample of the remaining problems, in file order (fewer when too few remain).

        Example:
            >>> ctx = ExpContext(model="organism", quick=True)
            >>> disc = {i.id for i in ctx.discovery_items("organism")}
            >>> any(i.id in disc for i in ctx.eval_items("organism", 5))
            False
        """
        import random

        disc = self.discovery_items(dataset)
        ids, questions = {i.id for i in disc}, {i.question for i in disc}
        pool = (
            load_dataset(dataset, n=len(disc) + n, seed=self.seed)
            if dataset == "organism"
            else load_dataset(dataset, seed=self.seed)
        )
        rest = [i for i in pool if i.id not in ids and i.question not in questions]
        if n >= len(rest):
            return rest
        keep = sorted(random.Random(self.seed + 1).sample(range(len(rest)), n))
        return [rest[i] for i in keep]

    def traces(self, which: str = "model") -> TraceSet:
        """The cached trace pass of the reasoning (``"model"``) or base (``"base"``) model."""
        name = self.model if which == "model" else self.base_model
        if name is None:
            raise ValueError("no base model: pass --base-model")
        if which not in self._traces:
            n = self.size("n_traces" if which == "model" else "n_base_traces")
            self._traces[which] = trace_pass(self, name, self.dataset, n)
        return self._traces[which]
