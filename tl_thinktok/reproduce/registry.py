"""Which experiments ``reproduce`` runs, in which order, and where each one lives.

Each experiment is a module ``tl_thinktok.reproduce.experiments.<module>`` defining ``NAME`` and
``run(ctx) -> Summary``; ``experiments/<script>`` in a source checkout is a thin runnable copy of
the same entry point.

Example:
    >>> resolve("fig8")
    'fig4'
    >>> load_experiment("fig2").NAME
    'fig2'
"""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["ALIASES", "EXPERIMENTS", "PACKAGE", "SCRIPTS", "UnknownExperimentError",
           "load_experiment", "resolve"]  # fmt: skip

#: Package holding one module per experiment.
PACKAGE = "tl_thinktok.reproduce.experiments"

#: Experiment name → module name in :data:`PACKAGE` (run in this order).
EXPERIMENTS: dict[str, str] = {
    "fig2": "fig2",
    "table1": "table1",
    "fig3_table2": "fig3_table2",
    "fig4": "fig4",
    "fig5": "fig5",
    "fig6": "fig6",
    "fig7": "fig7",
    "figs9_20": "figs9_20",
    "theorem_bounds": "theorem_bounds",
    "peaks_robustness": "peaks_robustness",
    "answer_control": "answer_control",
    "table3": "table3",
    "importance": "importance",
}

#: Experiment name → its thin script in a checkout's ``experiments/`` (for help texts only).
SCRIPTS: dict[str, str] = {
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
    "answer_control": "answer_control.py",
    "table3": "table3_datasets.py",
    "importance": "importance.py",
}

#: Other names of experiments (paper figure / table numbers).
ALIASES: dict[str, str] = {
    "fig3": "fig3_table2",
    "table2": "fig3_table2",
    "fig8": "fig4",
    "bounds": "theorem_bounds",
    "answers": "answer_control",
}


class UnknownExperimentError(ValueError):
    """An experiment name that is neither in :data:`EXPERIMENTS` nor in :data:`ALIASES`."""


def resolve(name: str) -> str:
    """The experiment name of ``name`` (aliases resolved).

    Raises:
        UnknownExperimentError: not an experiment or alias (the message lists the known ones).
    """
    name = ALIASES.get(name, name)
    if name not in EXPERIMENTS:
        raise UnknownExperimentError(
            f"unknown experiment {name!r}; expected one of {', '.join(EXPERIMENTS)} "
            f"(aliases: {', '.join(ALIASES)})"
        )
    return name


def load_experiment(name: str) -> ModuleType:
    """The module of experiment ``name`` (an alias is fine)."""
    return importlib.import_module(f"{PACKAGE}.{EXPERIMENTS[resolve(name)]}")
