"""A self-contained HTML report of one :class:`~tl_thinktok.trace.MITrace`.

One file, nothing loaded from anywhere (styles, the MI plot as inline SVG and a few lines of
script are all inside it), so it opens offline and can be mailed or attached to an issue:

* the question, the gold answer and solution, the generated text and its grade;
* the generated tokens coloured by ``MI(h_t, h_y)``, peaks marked ``▲`` and outlined (hover a token
  for its step and MI; click a peak row to jump to its token); a selector recolours them by any
  other per-step measure: the residual norm, and the ones given (``write_report`` adds next-token
  entropy and lens depth, :mod:`tl_thinktok.importance`; ``measures=`` any others, e.g. a
  counterfactual importance);
* the MI trajectory with its peaks labelled by their tokens;
* a peaks table: step, token, MI, the peak-token lens's top-``k`` with probabilities, the rank the
  lens gives the generated token, and whether the gold answer is among the top-``k``;
* the trace statistics (Table 1 / Table 2 fields).

Example:
    >>> from tl_thinktok.report import write_report
    >>> write_report(trace, model, "report.html", k=5, dataset="organism")   # doctest: +SKIP
"""

from __future__ import annotations

import html
import io
import json
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tl_thinktok._io import atomic_write_text
from tl_thinktok._validate import check_int
from tl_thinktok.peaks import STAT_FIELDS
from tl_thinktok.report.readout import PeakReadout, peak_readout
from tl_thinktok.report.text import token_strings
from tl_thinktok.trace import MITrace

__all__ = ["MI_LABEL", "NORM_LABEL", "mi_plot_svg", "render_report", "write_report"]

#: Selector names of the two colourings every report has.
MI_LABEL, NORM_LABEL = "MI(h_t, h_y)", "residual norm |h_t|"

_STAT_LABELS = {
    "n_peaks": "peaks",
    "n_steps": "steps (generated tokens)",
    "ratio": "peak ratio",
    "max_interval": "max interval between peaks",
    "min_interval": "min interval between peaks",
    "avg_interval": "mean interval between peaks",
    "mean": "mean MI",
    "std": "std of MI",
    "aom": "AOM (peak outlier magnitude)",
}

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 24px auto;
       max-width: 1100px; color: #1d1d1f; line-height: 1.45; padding: 0 16px; }
h1 { font-size: 1.5em; margin-bottom: 0.2em; } h2 { font-size: 1.15em; margin-top: 1.6em; }
.meta { color: #555; font-size: 0.9em; }
.box { background: #f6f7f9; border: 1px solid #e2e4e8; border-radius: 6px; padding: 10px 14px;
       white-space: pre-wrap; font-family: ui-monospace, Menlo, Consolas, monospace;
       font-size: 0.88em; }
.tokens { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 0.92em;
          line-height: 2.0; border: 1px solid #e2e4e8; border-radius: 6px; padding: 10px 14px; }
.tok { white-space: pre-wrap; border-radius: 3px; padding: 1px 0; cursor: default; }
.tok.peak { outline: 2px solid #d62728; font-weight: bold; }
.tok.peak::before { content: "\\25B2"; color: #d62728; font-size: 0.7em; vertical-align: super; }
.tok.flash { outline: 3px solid #ff9f1c; }
.legend { display: inline-block; width: 180px; height: 12px; vertical-align: middle;
          background: linear-gradient(to right, rgb(255,255,255), rgb(31,119,180));
          border: 1px solid #ccc; }
#status { min-height: 1.4em; color: #333; font-size: 0.9em; margin-top: 6px; }
table { border-collapse: collapse; font-size: 0.9em; }
th, td { border: 1px solid #d9dce1; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #eef0f3; }
tr.peakrow { cursor: pointer; } tr.peakrow:hover { background: #fff4e0; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.topk span { display: inline-block; margin: 0 6px 2px 0; padding: 0 4px; background: #eef3fb;
             border-radius: 3px; white-space: pre; }
.topk span.hit { background: #d8f0d8; }
.ok { color: #1a7f37; font-weight: bold; } .bad { color: #cf222e; font-weight: bold; }
svg { max-width: 100%; height: auto; }
"""

_JS = """
(function () {
  var status = document.getElementById('status');
  var data = JSON.parse(document.getElementById('measures').textContent);
  var select = document.getElementById('colour-by');
  var fmt = function (v) { return v === null ? 'undefined' : Number(v.toPrecision(4)); };
  var extra = function (el) {
    var name = select.value;
    return name === data.names[0] ? '' :
      '   ' + name + ' = ' + fmt(data.values[name][Number(el.dataset.step)]);
  };
  document.querySelectorAll('.tok').forEach(function (el) {
    el.addEventListener('mouseenter', function () {
      status.textContent = 'step ' + el.dataset.step + '   MI = ' + el.dataset.mi + extra(el) +
        (el.classList.contains('peak') ? '   (peak)' : '');
    });
  });
  select.addEventListener('change', function () {
    var vals = data.values[select.value];
    var ok = vals.filter(function (v) { return v !== null; });
    var lo = ok.length ? Math.min.apply(null, ok) : 0;
    var hi = ok.length ? Math.max.apply(null, ok) : 1;
    document.querySelectorAll('.tok').forEach(function (el) {
      var v = vals[Number(el.dataset.step)];
      var f = (v === null || hi <= lo) ? 0 : Math.min(Math.max((v - lo) / (hi - lo), 0), 1);
      var rgb = [31, 119, 180].map(function (c) { return Math.round(255 + f * (c - 255)); });
      el.style.background = v === null ? 'rgb(220,220,220)' : 'rgb(' + rgb.join(',') + ')';
      el.style.color = f > 0.6 ? '#fff' : '#111';
    });
    document.getElementById('legend-name').textContent = select.value;
    document.getElementById('legend-lo').textContent = ok.length ? fmt(lo) : 'undefined';
    document.getElementById('legend-hi').textContent = ok.length ? fmt(hi) : 'undefined';
  });
  document.querySelectorAll('tr.peakrow').forEach(function (row) {
    row.addEventListener('click', function () {
      var el = document.getElementById('tok-' + row.dataset.step);
      if (!el) { return; }
      el.scrollIntoView({block: 'center'});
      el.classList.add('flash');
      setTimeout(function () { el.classList.remove('flash'); }, 1200);
    });
  });
})();
"""


def _esc(s: Any) -> str:
    return html.escape(str(s), quote=True)


def _fmt(v: Any, digits: int = 4) -> str:
    if v is None:
        return "undefined"
    if isinstance(v, float):
        if math.isnan(v):
            return "undefined (NaN)"
        return f"{v:.{digits}g}"
    return str(v)


def _pct(p: float) -> str:
    """A probability as a short percentage (``<0.1%`` below one in a thousand)."""
    if not math.isfinite(p):
        return "undefined"
    if p >= 0.01:
        return f"{100 * p:.0f}%"
    return f"{100 * p:.1f}%" if p >= 0.001 else "<0.1%"


def _mi_colour(v: float, lo: float, hi: float) -> str:
    """White at ``lo`` to blue at ``hi``; NaN (undefined) is grey."""
    if not math.isfinite(v):
        return "rgb(220,220,220)"
    f = 0.0 if hi <= lo else min(max((v - lo) / (hi - lo), 0.0), 1.0)
    r, g, b = (round(255 + f * (c - 255)) for c in (31, 119, 180))
    return f"rgb({r},{g},{b})"


def mi_plot_svg(trace: MITrace, tokenizer: Any = None) -> str:
    """The MI trajectory with its peaks (``MITrace.plot``) as an inline ``<svg>`` element."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "tl-thinktok"}):
        fig, ax = plt.subplots(figsize=(10, 3.2))
        try:
            trace.plot(ax, tokenizer=tokenizer, title=f"MI(h_t, h_y), layer {trace.layer}")
            fig.tight_layout()
            buf = io.StringIO()
            fig.savefig(buf, format="svg", metadata={"Date": None})
        finally:
            plt.close(fig)
    svg = buf.getvalue()
    svg = svg[svg.index("<svg") :]
    return re.sub(r"<metadata>.*?</metadata>\s*", "", svg, flags=re.S)  # RDF credits, not needed


def _measures_json(trace: MITrace, measures: Mapping[str, Sequence[float]] | None) -> str:
    """The colourings of the token selector as JSON safe inside a ``<script>`` (NaN → null)."""
    cols: dict[str, list[float | None]] = {
        MI_LABEL: list(trace.mi),
        NORM_LABEL: list(trace.resid_norm),
    }
    for name, values in (measures or {}).items():
        v = np.asarray(values, dtype=np.float64).reshape(-1)
        if v.size != trace.n_steps:
            raise ValueError(
                f"measure {name!r} has {v.size} values, the trace {trace.n_steps} steps"
            )
        if name in cols:
            raise ValueError(f"measure name {name!r} is taken")
        cols[str(name)] = list(v)
    clean = {k: [None if not math.isfinite(x) else float(x) for x in v] for k, v in cols.items()}
    text = json.dumps({"names": list(clean), "values": clean}, allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _tokens_html(
    trace: MITrace, pieces: list[str], measures: Mapping[str, Sequence[float]] | None = None
) -> str:
    data = _measures_json(trace, measures)
    names = json.loads(data)["names"]
    mi = trace.mi
    finite = mi[np.isfinite(mi)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    peaks = set(trace.peaks)
    spans = []
    for t, piece in enumerate(pieces):
        v = float(mi[t])
        cls = "tok peak" if t in peaks else "tok"
        colour = _mi_colour(v, lo, hi)
        frac = 0.0 if hi <= lo or not math.isfinite(v) else (v - lo) / (hi - lo)
        fg = "#fff" if frac > 0.6 else "#111"
        spans.append(
            f'<span id="tok-{t}" class="{cls}" data-step="{t}" data-mi="{_fmt(v)}" '
            f'style="background:{colour};color:{fg}" title="step {t}, MI {_fmt(v)}">'
            f"{_esc(piece)}</span>"
        )
    options = "".join(f'<option value="{_esc(n)}">{_esc(n)}</option>' for n in names)
    legend = (
        f'<p class="meta"><label>colour tokens by <select id="colour-by">{options}</select>'
        f'</label>: <span id="legend-name">{_esc(MI_LABEL)}</span> from '
        f'<span id="legend-lo">{_fmt(lo)}</span> (white) <span class="legend"></span> to '
        f'<span id="legend-hi">{_fmt(hi)}</span> (blue), grey = undefined; ▲ outlined = peak '
        "(Q3 + 1.5 IQR)</p>"
    )
    return (
        legend
        + '<div class="tokens">'
        + "".join(spans)
        + f'</div><div id="status"></div><script type="application/json" id="measures">{data}'
        + "</script>"
    )


def _peaks_table(readout: PeakReadout, gold: str | None) -> str:
    gold_s = None if gold is None else str(gold).strip()
    cap = f"Gold answer: <b>{_esc(gold_s)}</b>" if gold_s is not None else "Gold answer: unknown"
    if not len(readout):
        return f"<p>{cap}</p><p>No MI peaks in this trace: nothing for the lens to read.</p>"
    k = len(readout.topk_tokens[0])
    rows = []
    for i, step in enumerate(readout.steps):
        tops = []
        hit = False
        for t, p in zip(readout.topk_tokens[i], readout.topk_probs[i], strict=True):
            is_gold = gold_s is not None and t.strip() == gold_s
            hit = hit or is_gold
            cls = ' class="hit"' if is_gold else ""
            tops.append(f"<span{cls}>{_esc(t)} {_pct(p)}</span>")
        rank = readout.rank[i]
        rows.append(
            f'<tr class="peakrow" data-step="{step}"><td class="num">{step}</td>'
            f"<td><code>{_esc(readout.tokens[i])}</code></td>"
            f'<td class="num">{_fmt(readout.mi[i])}</td><td class="topk">{"".join(tops)}</td>'
            f'<td class="num">{rank + 1}</td><td>{"yes" if hit else "no"}</td></tr>'
        )
    head = (
        f"<tr><th>step</th><th>token</th><th>MI</th><th>lens top-{k} (layer {readout.layer})</th>"
        "<th>lens rank of the token</th><th>gold answer in top-k</th></tr>"
    )
    return (
        f'<table id="peaks"><caption style="text-align:left;padding:4px 0">{cap}</caption>'
        f"<thead>{head}</thead><tbody>{''.join(rows)}</tbody></table>"
    )


def _stats_table(trace: MITrace) -> str:
    st = trace.stats()
    rows = "".join(
        f'<tr><th>{_esc(_STAT_LABELS.get(name, name))}</th><td class="num">'
        f"{_fmt(getattr(st, name))}</td></tr>"
        for name in STAT_FIELDS
    )
    return f'<table id="stats"><tbody>{rows}</tbody></table>'


def render_report(
    trace: MITrace,
    readout: PeakReadout,
    tokenizer: Any,
    *,
    dataset: str | None = None,
    solution: str | None = None,
    title: str | None = None,
    measures: Mapping[str, Sequence[float]] | None = None,
) -> str:
    """The report of one trace as a complete HTML document (a string).

    Args:
        trace: the trace (its ``question``, ``answer``, ``text``, ``correct`` and ``model`` are
            shown when set).
        readout: the lens at its peaks (:func:`~tl_thinktok.report.readout.peak_readout`).
        tokenizer: HF tokenizer or a model that has one (token strings, plot labels).
        dataset: dataset name shown in the header.
        solution: the gold solution text (``h_y``'s source) to show.
        title: page title.
        measures: more per-step colourings for the token selector, name → ``[step]`` values
            (NaN = undefined, grey); MI and the residual norm are always there.

    Raises:
        ValueError: a measure whose length is not the trace's number of steps.
    """
    if not isinstance(trace, MITrace):
        raise TypeError(f"trace must be an MITrace, got {type(trace).__name__}")
    if not isinstance(readout, PeakReadout):
        raise TypeError(f"readout must be a PeakReadout, got {type(readout).__name__}")
    pieces = token_strings(tokenizer, trace.gen_ids, context=trace.tokens[: trace.prompt_len])
    title = title or f"MI trace {trace.id or ''}".strip()
    grade = (
        ""
        if trace.correct is None
        else (
            ' — <span class="ok">correct</span>'
            if trace.correct
            else ' — <span class="bad">incorrect</span>'
        )  # fmt: skip
    )
    meta = " · ".join(
        _esc(x)
        for x in (
            f"model {trace.model}" if trace.model else None,
            f"dataset {dataset}" if dataset else None,
            f"item {trace.id}" if trace.id else None,
            f"layer {trace.layer}",
            f"{trace.n_steps} generated tokens",
            f"{len(trace.peaks)} peaks",
            f"σ = {trace.sigma:g}",
        )
        if x
    )
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_esc(title)}</title><style>{_CSS}</style></head><body>",
        f'<h1>{_esc(title)}</h1><p class="meta">{meta}</p>',
    ]
    if trace.question is not None:
        parts.append(
            f'<h2>Question</h2><div class="box" id="question">{_esc(trace.question)}</div>'
        )
    gold = "unknown" if trace.answer is None else _esc(trace.answer)
    parts.append(f'<h2>Gold answer</h2><p id="gold"><b>{gold}</b>{grade}</p>')
    if solution:
        parts.append(
            f"<details><summary>gold solution (the text h_y is read from)</summary>"
            f'<div class="box">{_esc(solution)}</div></details>'
        )
    parts += [
        "<h2>Generated tokens, coloured by MI(h_t, h_y) or another measure</h2>",
        _tokens_html(trace, pieces, measures),
        "<h2>MI trajectory</h2>",
        f'<div id="plot">{mi_plot_svg(trace, tokenizer)}</div>',
        "<h2>Peaks and the peak-token lens</h2>",
        _peaks_table(readout, trace.answer),
        "<h2>Statistics</h2>",
        _stats_table(trace),
        '<p class="meta">Made by tl-thinktok (MITrace, PeakTokenLens). MI: the paper\'s NOCCO '
        "proxy in float64; peaks: m_t &gt; Q3 + 1.5·IQR.</p>",
        f"<script>{_JS}</script></body></html>\n",
    ]
    return "\n".join(parts)


def write_report(
    trace: MITrace,
    model: Any,
    path: str | Path,
    *,
    k: int = 5,
    dataset: str | None = None,
    solution: str | None = None,
    title: str | None = None,
    measures: Mapping[str, Sequence[float]] | None = None,
    step_measures: bool = True,
) -> Path:
    """Run the lens at the trace's peaks and write the report to ``path`` (atomic).

    Args:
        trace: the trace.
        model: the model that made it (lens and tokenizer).
        path: output ``.html`` file (folders created).
        k: lens top-``k`` per peak.
        dataset, solution, title: shown in the report.
        measures: more colourings for the token selector (name → ``[step]``).
        step_measures: add next-token entropy and lens depth to the selector (one teacher-forced
            pass, :func:`tl_thinktok.importance.step_measures`).

    Returns:
        ``path``.
    """
    k = check_int("k", k, low=1)
    readout = peak_readout(trace, model, k=k)
    extra: dict[str, Sequence[float]] = {}
    if step_measures:
        from tl_thinktok.importance import step_measures as _step_measures

        sm = _step_measures(model, [trace])[0]
        extra = {"next-token entropy": sm.entropy, "lens depth": sm.lens_depth}
    extra.update(measures or {})
    text = render_report(trace, readout, model, dataset=dataset, solution=solution, title=title,
                         measures=extra)  # fmt: skip
    return atomic_write_text(path, text)
