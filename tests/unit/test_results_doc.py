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
    ("peaks_robustness", "auroc_token_identity 95% CI low", "{:.2f}"),
    ("peaks_robustness", "auroc_token_identity 95% CI high", "{:.2f}"),
    ("peaks_robustness", "auroc_position 95% CI low", "{:.2f}"),
    ("peaks_robustness", "auroc_resid_norm 95% CI high", "{:.2f}"),
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
    (
        "fig4",
        "reasoning: peak rate in 'step opening (First/Then/Now/Next)' sentences (95% CI; "
        "shuffled null)",
        lambda v: [v.split("; ")[0], v.split("; ")[1], v.split("; ")[2].replace("1819", "1,819")],
    ),
    ("fig4", "reasoning: peak rate per step (peaks / steps)", lambda v: [v.split(" ")[0]]),
    ("theorem_bounds", "CE drop at MI peaks − elsewhere, bits (95% CI)", lambda v: _signed(v)),
    (
        "theorem_bounds",
        "CE drop at MI peaks − same token elsewhere, bits (95% CI)",
        lambda v: _signed(v),
    ),
    (
        "theorem_bounds",
        "Spearman(cumulative MI, −CE(T)) at fixed T, own answer (95% CI)",
        lambda v: _signed(v),
    ),
    (
        "theorem_bounds",
        "same, MI against another problem's answer (null, 95% CI)",
        lambda v: _signed(v),
    ),
    ("theorem_bounds", "Hellman–Raviv bound Ĥ/2, smallest over T", lambda v: [f"{v:.2f}"]),
    ("fig5", "gsm8k: acc k=3 found - matched draws (paired, 95% CI)", lambda v: _paired(v)),
    ("fig5", "gsm8k: new tokens k=1 (hand) - k=0 (paired, 95% CI)", lambda v: _paired(v)),
    *[("table3", f"{d}: peak ratio (95% CI)", lambda v: [_minus(v.split(" (n=")[0])])
      for d in ("gsm8k", "math500", "aime24")],
    *[("table3", f"{d}: AOM 95% CI", lambda v: [v]) for d in ("gsm8k", "math500", "aime24")],
    *[("table3", f"{d}: accuracy (Wilson 95% CI)", lambda v: [v.split(", ")[1].split("]")[0]])
      for d in ("gsm8k", "aime24")],
    *[("table3", f"{d} - gsm8k: {what} (95% CI)", lambda v: [_minus(v.split(" points")[0]
                                                                   .split(" (n=")[0])])
      for d in ("math500", "aime24") for what in ("peak ratio difference", "AOM difference")],
]  # fmt: skip


def _minus(v: str) -> str:
    """A summary's ASCII minus as the text prints it (typographic)."""
    return v.replace("-", "−")


def _paired(v: str) -> list[str]:
    """'-0.020 [-0.040, +0.000] (n=50)' as the text prints it: '−0.020 [−0.040, 0.000]'."""
    return [re.sub(r"[+−](0\.0+)(?!\d)", r"\1", _minus(v.split(" (n=")[0]))]


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
    section = re.sub(r"\s+", " ", _section())  # a quote may wrap
    for part in parts(_summary(name)[key]):
        assert part.strip() in section, f"{name}: {key}: {part!r} not in the section"


def test_float32_numbers_are_quoted_as_in_the_data():
    pr = _summary("peaks_robustness")
    section = _section()
    assert f"{pr['float32 rel. error per step [n]']:,}" in section
    assert pr["traces whose float32 peaks equal float64's"] in section


ORG = ROOT / "figures"


def _organism_section() -> str:
    text = DOC.read_text(encoding="utf-8")
    start = text.index("## Findings on the organism")
    end = text.index("\n## ", start + 10)
    return _plain(text[start:end])


def _org(name: str) -> dict:
    return json.loads((ORG / f"{name}.summary.json").read_text(encoding="utf-8"))["numbers"]


def _ci_parts(v: str) -> list[str]:
    """'+1.014 [-0.554, +2.625]' → the three numbers as the text rounds them (2 decimals)."""
    return _signed(v, 2)


def _signed(v: str, digits: int = 3) -> list[str]:
    """Every number of a string as the text prints it: signed, typographic minus."""
    return [f"{float(x):+.{digits}f}".replace("-", "−") for x in re.findall(r"[-+]?\d+\.\d+", v)]


#: (summary, key, strings that must appear in the organism findings)
ORGANISM = [
    ("fig4", "reasoning: top-5 at peaks", lambda v: ["47, 20, 19, 12, 10"]),
    (
        "fig4",
        "reasoning: peak rate per step (peaks / steps)",
        lambda v: [v.split(" ")[0], v.split("(")[1].split(" / ")[0], v.split(" / ")[1][:-1]],
    ),
    ("fig4", "reasoning: share of peaks on non-alphabetic tokens", lambda v: [f"{100 * v:.1f}%"]),
    (
        "fig4",
        "reasoning: peaks by token class",
        lambda v: (
            [f"({k})" for k in re.findall(r"(?<!alphabetic )\b(\d+)(?=,|$)", v)]
            + [re.search(r"alphabetic (\d+)", v).group(1) + " of the 851 peaks"]
        ),
    ),
    ("peaks_robustness", "auroc_token_identity", lambda v: [f"{v:.2f}"]),
    ("theorem_bounds", "Hellman–Raviv bound Ĥ/2, smallest over T", lambda v: [f"{v:.2f}"]),
    ("theorem_bounds", "CE drop at MI peaks − elsewhere, bits (95% CI)", _ci_parts),
    ("theorem_bounds", "CE drop at MI peaks − same token elsewhere, bits (95% CI)", _ci_parts),
    ("theorem_bounds", "share of CE drops > 0, peaks − elsewhere (95% CI)", _signed),
    ("theorem_bounds", "Spearman(cumulative MI, −CE(T)) at fixed T, own answer (95% CI)", _signed),
    ("theorem_bounds", "same, MI against another problem's answer (null, 95% CI)", _signed),
    ("theorem_bounds", "own − null (95% CI)", _signed),
    (
        "theorem_bounds",
        "steps: peak / non-peak (peaks after the thinking, left out)",
        lambda v: re.findall(r"\d+", v),
    ),
    ("theorem_bounds", "T=159: I(y; h_1:T) ≥ H(y) − Ĥ, bits", lambda v: [f"{v:.2f} bits"]),
    ("table3", "organism: AOM 95% CI", lambda v: [v]),
    *[
        ("fig5", f"organism: acc k={k} hand - matched draws (paired, 95% CI)", _paired)
        for k in (1, 6, 12)
    ],
    ("fig5", "organism: acc k=1 found - matched draws (paired, 95% CI)", _paired),
    *[
        ("fig5", f"organism: new tokens k={k} (hand) - k=0 (paired, 95% CI)", _paired)
        for k in (1, 2, 6, 12)
    ],
    ("table3", "organism: peak ratio (95% CI)", lambda v: [v.split(" (n=")[0]]),
    ("table3", "gsm8k: peak ratio (95% CI)", lambda v: [v.split(" (n=")[0]]),
    (
        "table3",
        "gsm8k - organism: peak ratio difference (95% CI)",
        lambda v: [v.split(" points")[0]],
    ),
    ("table3", "gsm8k - organism: AOM difference (95% CI)", lambda v: [v.split(" (n=")[0]]),
    ("table3", "gsm8k: AOM 95% CI", lambda v: [v]),
    ("table3", "gsm8k: accuracy (Wilson 95% CI)", lambda v: [f"{100 * float(v.split()[0]):.1f}%"]),
    ("table3", "organism: accuracy (Wilson 95% CI)", lambda v: [v.split(" (n=")[0]]),
]


@pytest.mark.parametrize(("name", "key", "parts"), ORGANISM)
def test_organism_findings_quote_the_data(name, key, parts):
    section = _organism_section()
    for part in parts(_org(name)[key]):
        assert part in section, f"{name}: {key}: {part!r} not in the organism findings"


@pytest.mark.parametrize(
    ("kind", "label"), [("Wait", "*Wait* corrections"), ("Therefore", "*Therefore* conclusion"),
                        ("step opening (First/Then/Now/Next)", "step openings")]
)  # fmt: skip
def test_organism_sentence_type_rates_quote_fig4(kind, label):
    v = _org("fig4")[f"reasoning: peak rate in '{kind}' sentences (95% CI; shuffled null)"]
    rate_ci, null, counts = v.split("; ")
    section = re.sub(r"\s+", " ", _organism_section())
    at = section.index(label)
    window = section[at : at + 160]
    assert rate_ci in window, (rate_ci, window)
    assert null.replace("null ", "null ") in window, (null, window)
    assert counts in window, (counts, window)
