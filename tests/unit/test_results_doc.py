"""docs/results.md quotes the committed data: each number of the SmolLM2 section, as printed there,
is the value in figures/smollm2/*.summary.json rounded as the text rounds it.

A rerun that changes a number without the text following (or a typo in the text) fails here.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "results.md"
SMOL = ROOT / "figures" / "smollm2"

#: (summary, key, format as quoted in the section)
QUOTED = [
    ("table1", "reasoning: avg interval", "{:.1f}"),
    ("table1", "reasoning: avg interval [n]", "{}"),
    ("fig3_table2", "reasoning: mean MI", "{:.2f}"),
    ("fig3_table2", "reasoning: std MI", "{:.2f}"),
    ("fig3_table2", "reasoning: AOM", "{:.2f}"),
    ("fig3_table2", "reasoning: AOM [n]", "{}"),
    ("answer_control", "mean MI own answer", "{:.3f}"),
    ("answer_control", "mean MI other answers", "{:.3f}"),
    ("answer_control", "mean specificity (own − others)", "{:.3f}"),
    ("answer_control", "mean specificity 95% CI half-width", "{:.3f}"),
    ("answer_control", "trajectory correlation own vs other", "{:.2f}"),
    ("answer_control", "peak-set Jaccard own vs other", "{:.2f}"),
    ("peaks_robustness", "auroc_token_identity", "{:.2f}"),
    ("peaks_robustness", "auroc_position", "{:.2f}"),
    ("peaks_robustness", "auroc_resid_norm", "{:.2f}"),
    ("peaks_robustness", "auroc_scale_controlled", "{:.3f}"),
    ("peaks_robustness", "jaccard_paper_nocco_vs_scale_controlled", "{:.2f}"),
    ("peaks_robustness", "spearman_paper_nocco_vs_scale_controlled", "{:.2f}"),
    ("fig6", "layer", "{}"),
    ("fig6", "RR fired (hand, total)", "{}"),
    ("fig6", "RR fired (found, total)", "{}"),
]
#: (summary, key, format, scale): percentages quoted as "x%"
PERCENT = [
    ("answer_control", "answer-specific fraction of IQR peaks", "{:.1f}%"),
    ("answer_control", "same with another answer swapped in as own (null)", "{:.1f}%"),
    ("answer_control", "answer-specific fraction of all steps", "{:.1f}%"),
]
#: string-valued numbers quoted verbatim
VERBATIM = [
    ("table1", "reasoning: peaks/steps", lambda v: v.replace(" (", " / ").split(" / ")[:2]),
    ("answer_control", "traces with own > others", lambda v: v.split(" / ")),
    ("fig6", "problems where RR fired (hand)", lambda v: [v.split(" / ")[0]]),
]


def _section() -> str:
    text = DOC.read_text(encoding="utf-8")
    start = text.index("## A real pretrained model: SmolLM2-135M-Instruct")
    end = text.index("\n## ", start + 10)
    return text[start:end]


def _summary(name: str) -> dict:
    return json.loads((SMOL / f"{name}.summary.json").read_text(encoding="utf-8"))["numbers"]


def _plain(section: str) -> str:
    """The section with thousands separators removed (3,170 → 3170)."""
    return re.sub(r"(?<=\d),(?=\d{3}\b)", "", section)


@pytest.mark.parametrize(("name", "key", "fmt"), QUOTED)
def test_number_is_quoted_as_in_the_data(name, key, fmt):
    value = _summary(name)[key]
    assert fmt.format(value) in _plain(_section()), f"{name}: {key} = {value} not quoted as {fmt}"


@pytest.mark.parametrize(("name", "key", "fmt"), PERCENT)
def test_percentage_is_quoted_as_in_the_data(name, key, fmt):
    value = 100 * _summary(name)[key]
    assert fmt.format(value) in _section(), f"{name}: {key} = {value} not quoted as {fmt}"


@pytest.mark.parametrize(("name", "key", "parts"), VERBATIM)
def test_counts_are_quoted_as_in_the_data(name, key, parts):
    section = _section()
    for part in parts(_summary(name)[key]):
        assert part.strip() in section, f"{name}: {key}: {part!r} not in the section"


def test_float32_numbers_are_quoted_as_in_the_data():
    pr = _summary("peaks_robustness")
    section = _section()
    assert f"{pr['float32 rel. error per step [n]']:,}" in section
    assert pr["traces whose float32 peaks equal float64's"] in section
