"""The experiment context: model names, datasets, sizes, output and run directories.

Every experiment gets one :class:`ExpContext`; it loads each model once and runs the trace pass
once per model (:mod:`tl_thinktok.reproduce.traces`).

Example:
    >>> ctx = ExpContext(model="organism", quick=True, out="/tmp/figs")
    >>> ctx.base_model, ctx.dataset, ctx.size("n_traces")
    ('organism-base', 'organism', 8)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tl_thinktok.datasets import model_family
from tl_thinktok.hosts import default_host
from tl_thinktok.loading import load_model
from tl_thinktok.reproduce.traces import TraceSet, trace_pass

__all__ = ["ORGANISM_NAMES", "PAPER_BUDGETS", "SIZES", "ExpContext"]

ORGANISM_NAMES = ("organism", "organism-base")

#: Sizes per (model kind, mode). ``n_*`` = number of problems; budgets in generated tokens.
SIZES: dict[tuple[str, str], dict[str, Any]] = {
    # organism sizes: the full run takes minutes on 2 CPU cores, --quick about a minute
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
        device: torch device (``None`` = CPU).
        layer: block whose output is h_t (paper: last block, -1).
        rr_layer: Representation Recycling layer (``None`` = about 70% of depth).
        seed: global seed (dataset subsets, random controls).
        overrides: size overrides (``--set n_traces=20``).
        progress: show progress bars.
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
        self.host = self.host or default_host()
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
