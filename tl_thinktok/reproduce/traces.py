"""The trace pass: one :class:`~tl_thinktok.trace.MITrace` per problem, cached in a run directory.

Per model and dataset, done once and read by every trace-based experiment (fig2, table1,
fig3/table2, fig4, figs9_20, theorem_bounds, peaks_robustness): batched greedy generation, then
per trace one teacher-forced pass for the step residuals at block ``layer``, the MI trajectory
against the gold solution's representation, and its peaks. ``results.jsonl`` holds one
``MITrace.to_dict()`` per problem; the residuals go to ``resid/<id>.safetensors``.

Example:
    >>> ts = ctx.traces("model")            # doctest: +SKIP
    >>> tr = ts.traces[0]                   # doctest: +SKIP
    >>> h = ts.residuals(tr)["resid"]       # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from tl_thinktok.datasets import Item, grade, load_dataset, prompt_for, trace_prompt_family
from tl_thinktok.generation import encode
from tl_thinktok.loading import model_fingerprint
from tl_thinktok.mi import hsic_nocco
from tl_thinktok.peaks import STAT_FIELDS, find_peaks, trace_stats
from tl_thinktok.reproduce.rundirs import open_run, slug
from tl_thinktok.runs import RunDir, WithFiles
from tl_thinktok.trace import SIGMA, MITrace, load_residuals

__all__ = ["TraceSet", "TraceSettings", "compute_mi", "peak_indices", "trace_pass",
           "trace_stats_dict"]  # fmt: skip

#: How the step states are obtained (``MITrace.batch_from_model`` route); part of the config.
#: ``"auto"``: an ``MIProbe`` during TL's ``generate`` on the ``tl`` engine, else the chunked
#: teacher-forced pass after the engine generated (``trace.resolve_route``).
TRACE_ROUTE = "auto"

#: Layout of a trace run directory; part of its config, so old layouts are never resumed.
LAYOUT = "MITrace records + resid/<id>.safetensors; EOS step kept"


class TraceSettings(Protocol):
    """What the trace pass needs from its caller (an ``ExpContext`` provides it)."""

    run_dir: Path
    seed: int
    layer: int
    host: str
    engine: str
    progress: bool

    def size(self, key: str) -> Any: ...  # noqa: D102

    def budget(self, name: str) -> int: ...  # noqa: D102

    def load(self, name: str) -> Any: ...  # noqa: D102

    def family(self, model_name: str) -> str: ...  # noqa: D102

    def engine_of(self, model: Any, name: str | None = None) -> Any: ...  # noqa: D102


@dataclass
class TraceSet:
    """The cached trace pass of one model on one dataset.

    Attributes:
        model: model name.
        dataset: dataset name.
        traces: one :class:`~tl_thinktok.trace.MITrace` per problem (with ``id``, ``question``,
            ``answer``, ``text`` and ``correct`` set).
        run: the run directory (residuals under ``resid/``).
    """

    model: str
    dataset: str
    traces: list[MITrace]
    run: RunDir

    @property
    def records(self) -> list[MITrace]:
        """Alias of :attr:`traces`."""
        return self.traces

    def residuals(self, trace: MITrace) -> dict[str, Tensor]:
        """Saved tensors of one trace: ``{"resid": [steps, d], "answer": [d]}`` (float32)."""
        return load_residuals(self.run.path / residual_name(trace.id))

    def mi(self) -> list[np.ndarray]:
        """MI trajectories (float64), one per trace."""
        return [t.mi for t in self.traces]


def residual_name(trace_id: str | None) -> str:
    """Run-directory file of a trace's residuals."""
    return f"resid/{slug(str(trace_id))}.safetensors"


def compute_mi(
    x: Float[Tensor, "step d"], y: Float[Tensor, " d"], sigma: float = SIGMA
) -> np.ndarray:
    """MI trajectory: the paper's NOCCO estimator of every step against ``y`` (float64)."""
    return hsic_nocco(x, y, sigma=sigma).cpu().numpy()


def peak_indices(m: np.ndarray) -> list[int]:
    """Peak steps of one trajectory (paper Def. 2: Q3 + 1.5 IQR)."""
    return find_peaks(torch.as_tensor(m, dtype=torch.float64))


def trace_stats_dict(mi_values: Sequence[float]) -> dict[str, Any]:
    """Per-trace statistics (``peaks.STAT_FIELDS``) as a plain dict; undefined values ``None``."""
    st = trace_stats(torch.as_tensor(np.asarray(mi_values, dtype=np.float64))).to_dict()
    return {k: st[k] for k in STAT_FIELDS}


def _trace_batch(
    cfg: TraceSettings, name: str, dataset: str, max_new: int, items: list[Item]
) -> list[WithFiles]:
    """One batch of the trace pass: records, with the residuals as safetensors bytes.

    Pure (writes nothing): it may run in a Ray worker; the run directory's process writes
    ``resid/<id>.safetensors`` and then the record.
    """
    from safetensors.torch import save

    model = cfg.load(name)
    fam = cfg.family(name)
    trace_fam = trace_prompt_family(fam)
    prompts = [encode(model, prompt_for(trace_fam, it.question)) for it in items]
    # one batched generation; h_t recorded during it (no second pass: the memory is the residuals
    # alone, docs/performance.md); the EOS step is kept, as the reference
    traces = MITrace.batch_from_model(
        model,
        prompts,
        [it.solution for it in items],
        layer=cfg.layer,
        max_new_tokens=max_new,
        keep_residuals=True,
        route=TRACE_ROUTE,
        engine=cfg.engine_of(model),
        meta=[dict(id=it.id, question=it.question, answer=it.answer, model=name) for it in items],
    )
    out = []
    for item, tr in zip(items, traces, strict=True):
        tr.correct = bool(grade(dataset, tr.text, item.answer))
        if tr.residuals is None or tr.answer_rep is None:  # pragma: no cover - kept above
            raise RuntimeError(f"trace {item.id!r} kept no residuals")
        tensors = {"resid": tr.residuals.contiguous(), "answer": tr.answer_rep.contiguous()}
        out.append(WithFiles(tr.to_dict(), {residual_name(item.id): save(tensors)}))
    return out


def expected_trace_cost(item: Item) -> float:
    """Expected length of a problem's trace (characters of its question and gold solution)."""
    return float(len(item.question) + len(item.solution or ""))


def trace_pass(cfg: TraceSettings, name: str, dataset: str, n: int) -> TraceSet:
    """Generate + step residuals + MI for ``n`` problems, cached and resumable in the run dir.

    Args:
        cfg: run settings (an ``ExpContext``).
        name: model name.
        dataset: dataset name.
        n: number of problems.
    """
    max_new = cfg.budget("traces")
    config = {
        "kind": "traces",
        "model": name,
        "model_fingerprint": model_fingerprint(name),
        "dataset": dataset,
        "n": n,
        "seed": cfg.seed,
        "max_new_tokens": max_new,
        "layer": cfg.layer,
        "sigma": SIGMA,
        "host": cfg.host,
        "estimator": "hsic_nocco(float64, sigma=50, eps=1e-5)",
        "peaks": "Q3 + 1.5 IQR",
        "prompt": trace_prompt_family(cfg.family(name)),
        "layout": LAYOUT,
        "route": TRACE_ROUTE,
    }
    if cfg.engine != "tl":  # "tl" runs keep their config (and their cached traces)
        config["engine"] = cfg.engine
    run = open_run(cfg.run_dir, name, f"traces-{slug(dataset)}", config)
    items = load_dataset(dataset, n=n, seed=cfg.seed)
    run.executor = getattr(cfg, "executor", None)
    recs = run.map_batched(
        items,
        key=lambda it: it.id,
        fn=partial(_trace_batch, cfg, name, dataset, max_new),
        batch_size=cfg.size("batch_size"),
        desc=f"traces {slug(name)}",
        progress=cfg.progress,
        cost=expected_trace_cost,
    )
    return TraceSet(
        model=name, dataset=dataset, traces=[MITrace.from_dict(r) for r in recs], run=run
    )
