"""The HTML report's and the circuitsvis view's selector: tokens coloured by each measure."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser

import numpy as np
import pytest

from tl_thinktok.report import PeakReadout, render_report
from tl_thinktok.report.html import MI_LABEL, NORM_LABEL
from tl_thinktok.trace import MITrace


class _Tok:
    WORDS = ["<s>", " So", " x", "<b>&", " Wait", " 7", "</script>"]

    def decode(self, ids):
        return "".join(self.WORDS[i] for i in ids)


def _trace() -> MITrace:
    gen = [1, 3, 2, 6, 4, 5]
    return MITrace(tokens=[0, 2] + gen, prompt_len=2, layer=-1,
                   mi=np.array([0.1, 0.9, 0.2, 0.1, 0.8, 0.1]), peaks=[1, 4],
                   resid_norm=np.arange(6.0) + 1, id="t0")  # fmt: skip


def _readout(tr):
    return PeakReadout(steps=[], token_ids=[], tokens=[], mi=[], topk_ids=[], topk_tokens=[],
                       topk_probs=[], rank=[], logprob=[])  # fmt: skip


class _Options(HTMLParser):
    def __init__(self):
        super().__init__()
        self.options, self.json, self._in = [], None, False

    def handle_starttag(self, tag, attrs):
        d = dict(attrs)
        if tag == "option":
            self.options.append(d["value"])
        self._in = tag == "script" and d.get("id") == "measures"

    def handle_data(self, data):
        if self._in:
            self.json = json.loads(data)
            self._in = False


def test_report_selector_offers_every_measure():
    tr = _trace()
    cf = np.array([np.nan, 1.0, 0.0, np.nan, 0.5, 0.0])
    measures = {"entropy": np.arange(6.0), "counterfactual <i>": cf}
    page = render_report(tr, _readout(tr), _Tok(), measures=measures)
    p = _Options()
    p.feed(page)
    assert p.options == [MI_LABEL, NORM_LABEL, "entropy", "counterfactual <i>"]
    assert p.json["names"] == p.options
    assert p.json["values"][MI_LABEL] == pytest.approx(list(tr.mi))
    assert p.json["values"]["counterfactual <i>"] == [None, 1.0, 0.0, None, 0.5, 0.0]  # NaN: null
    block = page[page.index('id="measures">') :]
    assert "<i>" not in block[: block.index("</script>")]  # the JSON cannot close the script
    assert len(re.findall(r'<span id="tok-\d+"', page)) == tr.n_steps
    assert "colour-by" in page and "legend-name" in page
    plain = _Options()
    plain.feed(render_report(tr, _readout(tr), _Tok()))
    assert plain.options == [MI_LABEL, NORM_LABEL]


def test_report_refuses_misfit_measures():
    tr = _trace()
    with pytest.raises(ValueError, match="has 3 values"):
        render_report(tr, _readout(tr), _Tok(), measures={"x": [1.0, 2.0, 3.0]})
    with pytest.raises(ValueError, match="taken"):
        render_report(tr, _readout(tr), _Tok(), measures={MI_LABEL: np.zeros(6)})


def test_write_report_adds_entropy_and_lens_depth(tmp_path):
    from tl_thinktok.importance import step_measures
    from tl_thinktok.loading import load_model
    from tl_thinktok.report import write_report

    model = load_model("organism")
    tr = MITrace.from_model(model, "Q: 2 + 3 = ?", "2 + 3 = 5.", max_new_tokens=12)
    path = write_report(tr, model, tmp_path / "r.html", measures={"cf": np.ones(tr.n_steps)})
    p = _Options()
    p.feed(path.read_text())
    assert p.options == [MI_LABEL, NORM_LABEL, "next-token entropy", "lens depth", "cf"]
    sm = step_measures(model, [tr])[0]
    assert p.json["values"]["lens depth"] == sm.lens_depth.tolist()
    none = write_report(tr, model, tmp_path / "s.html", step_measures=False)
    q = _Options()
    q.feed(none.read_text())
    assert q.options == [MI_LABEL, NORM_LABEL]


def test_circuitsvis_view_gains_the_measures():
    pytest.importorskip("circuitsvis", reason="circuitsvis is the [viz] extra (in dev)")
    from tl_thinktok import viz

    tr = _trace()
    view = viz.mi_tokens(tr, _Tok(), measures={"entropy": np.arange(6.0),
                                               "cf": [np.nan, 1, 0, 0, 1, 0]})  # fmt: skip
    m = re.search(r"CircuitsVis\.ColoredTokensMulti, (.*)\);\n</script>$", view.html, re.S)
    props = json.loads(m.group(1))
    assert props["labels"] == ["MI(h_t, h_y)", "peak", "|h_t|", "entropy", "cf"]
    assert [row[3] for row in props["values"]] == list(range(6))
    assert [row[4] for row in props["values"]] == [0.0, 1, 0, 0, 1, 0]  # NaN shows uncoloured
    with pytest.raises(ValueError, match="has 2 values"):
        viz.mi_tokens(tr, _Tok(), measures={"x": [1, 2]})
