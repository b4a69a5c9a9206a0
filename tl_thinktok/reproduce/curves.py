"""``AccuracyCurve``: accuracy against a swept knob, one line per condition (fig5, fig7).

fig5 sweeps ``k`` (thinking words suppressed) with a random-token control (mean ± std band);
fig7 sweeps the thinking-token budget, original vs TTTS. One curve per dataset, one panel each.

Example:
    >>> c = AccuracyCurve(dataset="organism", n_items=50, x_label="k (words suppressed)",
    ...                   series=[Series("thinking", [0, 1, 2], [0.8, 0.5, 0.1])])
    >>> c.series[0].accuracy[-1]
    0.1
    >>> fig = plot_curves([c], "Suppressing thinking tokens")   # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tl_thinktok._io import JsonIO, to_jsonable

__all__ = ["AccuracyCurve", "Series", "plot_curves"]


@dataclass
class Series:
    """One line of an accuracy curve.

    Attributes:
        label: legend label.
        x: knob values.
        accuracy: accuracy at each ``x``.
        std: optional spread at each ``x`` (drawn as a ± band).
        style: matplotlib format string.
        color: line colour (``None`` = the next colour of the cycle).
    """

    label: str
    x: list[float]
    accuracy: list[float]
    std: list[float] | None = None
    style: str = "o-"
    color: str | None = None

    def __post_init__(self) -> None:
        if len(self.x) != len(self.accuracy):
            raise ValueError(
                f"series {self.label!r}: {len(self.x)} x values but {len(self.accuracy)} accuracies"
            )
        if self.std is not None and len(self.std) != len(self.x):
            raise ValueError(
                f"series {self.label!r}: {len(self.std)} std values for {len(self.x)} x values"
            )


@dataclass
class AccuracyCurve(JsonIO):
    """Accuracy against a swept knob on one dataset, one :class:`Series` per condition.

    Attributes:
        dataset: dataset name.
        n_items: problems per point.
        x_label: what the knob is.
        series: the lines.
        x_ticks: tick positions (``None`` = matplotlib's).
    """

    dataset: str
    n_items: int
    x_label: str
    series: list[Series] = field(default_factory=list)
    x_ticks: list[float] | None = None

    def __post_init__(self) -> None:
        self.series = [s if isinstance(s, Series) else Series(**s) for s in self.series]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (series as dicts)."""
        d = {k: getattr(self, k) for k in ("dataset", "n_items", "x_label", "x_ticks")}
        d["series"] = [dict(vars(s)) for s in self.series]
        return to_jsonable(d)

    def plot(self, ax: Any = None, legend: bool = True) -> Any:
        """Draw the curve on ``ax`` (``None`` = a new figure); returns the axes.

        Args:
            legend: draw the legend, beside the axes (never over a line or a band).
        """
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(4.5, 3.4))
        for s in self.series:
            ax.plot(s.x, s.accuracy, s.style, color=s.color, label=s.label)
            if s.std is not None:
                m, sd = np.asarray(s.accuracy, float), np.asarray(s.std, float)
                ax.fill_between(s.x, m - sd, m + sd, color=s.color, alpha=0.2)
        if self.x_ticks is not None:
            ax.set_xticks(self.x_ticks)
        ax.set_xlabel(self.x_label)
        ax.set_ylabel("accuracy")
        ax.set_ylim(-0.02, 1.02)
        ax.set_title(f"{self.dataset} (n={self.n_items})", fontsize=9)
        if legend:
            ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
        return ax


def plot_curves(curves: Sequence[AccuracyCurve], title: str, panel_width: float = 4.5) -> Any:
    """One panel per curve side by side, under ``title``, and one legend below them (outside
    every panel, so no line or band is hidden); returns the figure."""
    import matplotlib.pyplot as plt

    if not curves:
        raise ValueError("plot_curves needs at least one curve")
    fig, axes = plt.subplots(
        1, len(curves), figsize=(panel_width * len(curves), 3.4), squeeze=False
    )
    entries: dict[str, Any] = {}
    for ax, c in zip(axes[0], curves, strict=True):
        c.plot(ax, legend=False)
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            entries.setdefault(label, handle)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    ncol = max(1, min(len(entries), 2 * len(curves)))
    fig.legend(list(entries.values()), list(entries), loc="upper center", ncol=ncol, fontsize=7,
               bbox_to_anchor=(0.5, 0.0), frameon=False)  # fmt: skip
    return fig
