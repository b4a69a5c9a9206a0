"""Reproduce every figure and table of the paper (``tl-thinktok reproduce``).

Modules, in the order data flows through them:

* :mod:`~tl_thinktok.reproduce.registry` — which experiments exist, in which order;
* :mod:`~tl_thinktok.reproduce.context` — :class:`ExpContext`: models, datasets, sizes;
* :mod:`~tl_thinktok.reproduce.traces` — the cached trace pass (:class:`TraceSet` of
  :class:`~tl_thinktok.trace.MITrace`);
* :mod:`~tl_thinktok.reproduce.accuracy` — generate-and-grade helpers of fig5/fig6/fig7;
* :mod:`~tl_thinktok.reproduce.curves` — :class:`AccuracyCurve` (fig5, fig7);
* :mod:`~tl_thinktok.reproduce.outputs` — :class:`Summary`, data files, the README;
* :mod:`~tl_thinktok.reproduce.cli` — the command line;
* ``tl_thinktok.reproduce.experiments.<name>`` — one module per figure / table.

This package also re-exports the names of the former ``tl_thinktok.experiments_cli``.

Example:
    >>> from tl_thinktok.reproduce import reproduce_main
    >>> reproduce_main(["--quick", "--out", "/tmp/figs", "--only", "fig2,table1"])
    ... # doctest: +SKIP
"""

from tl_thinktok.generation import answer_suffix, decode, encode, eos_id, greedy, greedy_batch
from tl_thinktok.generation import pad_id as _pad_id
from tl_thinktok.reproduce.accuracy import (
    PAPER_TOP_WORDS,
    RR_TRIGGER_WORDS,
    accuracy_run,
    eval_prompt_ids,
    generate_and_grade,
    special_ids,
    thinking_list,
)
from tl_thinktok.reproduce.cli import (
    UsageError,
    build_parser,
    context_from_args,
    load_script,
    reproduce_main,
    run_one,
    script_main,
)
from tl_thinktok.reproduce.context import ORGANISM_NAMES, PAPER_BUDGETS, SIZES, ExpContext
from tl_thinktok.reproduce.curves import AccuracyCurve, Series, plot_curves
from tl_thinktok.reproduce.outputs import (
    Summary,
    check_outputs,
    mean_ci,
    save_csv,
    save_fig,
    save_json,
    write_readme,
)
from tl_thinktok.reproduce.registry import ALIASES, EXPERIMENTS
from tl_thinktok.reproduce.rundirs import slug
from tl_thinktok.reproduce.traces import (
    TraceSet,
    compute_mi,
    peak_indices,
    trace_pass,
    trace_stats_dict,
)

__all__ = [
    "ALIASES", "EXPERIMENTS", "ORGANISM_NAMES", "PAPER_BUDGETS", "PAPER_TOP_WORDS",
    "RR_TRIGGER_WORDS", "SIZES", "AccuracyCurve", "ExpContext", "Series", "Summary",
    "TraceSet", "UsageError", "accuracy_run", "answer_suffix", "build_parser", "check_outputs",
    "compute_mi", "context_from_args", "decode", "encode", "eos_id", "eval_prompt_ids",
    "generate_and_grade", "greedy", "greedy_batch", "load_script", "mean_ci", "peak_indices",
    "plot_curves", "reproduce_main", "run_one", "save_csv", "save_fig", "save_json",
    "script_main", "slug", "special_ids", "thinking_list", "trace_pass", "trace_stats_dict",
    "write_readme", "_pad_id",
]  # fmt: skip
