"""circuitsvis views: offline (inline bundle, no network probe), escaped tokens, props that match
the trace (MI per token, peaks marked, lens top-k per peak)."""

from __future__ import annotations

import json
import math
import re
import urllib.request

import numpy as np
import pytest

pytest.importorskip("circuitsvis", reason="circuitsvis is the [viz] extra (in dev)")

from tl_thinktok import viz  # noqa: E402
from tl_thinktok.report.readout import PeakReadout  # noqa: E402
from tl_thinktok.trace import MITrace  # noqa: E402

_RENDER = re.compile(
    r"CircuitsVis\.render\((\"[^\"]+\"), CircuitsVis\.(\w+), (.*)\);\n</script>$", re.S
)


class _Tok:
    """A tokenizer stub: id i decodes to WORDS[i]."""

    WORDS = ["<s>", " So", " x", "<b>&", " Wait", " 7", "</script>"]

    def decode(self, ids):
        return "".join(self.WORDS[i] for i in ids)


def _trace(mi=(0.1, 0.9, 0.2, 0.1, 0.8, 0.1), peaks=(1, 4)) -> MITrace:
    gen = [1, 3, 2, 6, 4, 5]
    return MITrace(
        tokens=[0, 2] + gen,
        prompt_len=2,
        layer=-1,
        mi=np.array(mi, dtype=np.float64),
        peaks=list(peaks),
        resid_norm=np.arange(len(gen), dtype=np.float64) + 1.0,
        id="t0",
    )


def _props(view: viz.OfflineHTML) -> tuple[str, dict]:
    m = _RENDER.search(view.html)
    assert m, "fragment does not end with a CircuitsVis.render call"
    return m.group(2), json.loads(m.group(3))


@pytest.fixture
def no_network(monkeypatch):
    calls = []

    def refuse(*args, **kwargs):
        calls.append(args)
        raise AssertionError("a view tried to reach the network")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    return calls


def test_bundle_is_inline_and_script_safe():
    js = viz.circuitsvis_js()
    assert "var CircuitsVis" in js
    assert "</script>" not in js


def test_mi_tokens_props_match_the_trace(no_network):
    tr = _trace()
    view = viz.mi_tokens(tr, _Tok())
    element, props = _props(view)
    assert element == "ColoredTokensMulti"
    assert props["labels"] == ["MI(h_t, h_y)", "peak", "|h_t|"]
    assert [row[0] for row in props["values"]] == pytest.approx(list(tr.mi))
    assert [row[1] for row in props["values"]] == [float(t in tr.peaks) for t in range(6)]
    marked = [t for t, s in enumerate(props["tokens"]) if s.startswith(viz.PEAK_MARK)]
    assert marked == tr.peaks
    # circuitsvis writes tokens as innerHTML: they are escaped, and nothing closes the script
    assert props["tokens"][1] == viz.PEAK_MARK + "&lt;b&gt;&amp;"
    assert props["tokens"][3] == "&lt;/script&gt;"
    assert "</script>" not in view.html[: view.html.rindex("</script>")]
    assert view._repr_html_() == view.html and not no_network


def test_mi_tokens_unmarked_and_nan():
    tr = _trace(mi=(0.1, float("nan"), 0.2, 0.1, 0.8, 0.1), peaks=(4,))
    _, props = _props(viz.mi_tokens(tr, _Tok(), mark_peaks=False))
    assert not any(s.startswith(viz.PEAK_MARK) for s in props["tokens"])
    assert props["values"][1][0] == 0.0  # undefined MI shows uncoloured, JSON stays valid


def test_views_never_reference_a_cdn(tmp_path, no_network):
    view = viz.mi_tokens(_trace(), _Tok())
    page = view.save(tmp_path / "v.html").read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    assert "unpkg.com" not in page and not re.search(r"<script[^>]*\bsrc=", page)
    assert not no_network


def test_peak_lens_topk_props():
    tr = _trace()
    ro = PeakReadout(
        steps=[1, 4],
        token_ids=[3, 4],
        tokens=["<b>&", " Wait"],
        mi=[0.9, 0.8],
        topk_ids=[[3, 1], [4, 5]],
        topk_tokens=[["<b>&", " So"], [" Wait", " 7"]],
        topk_probs=[[0.75, 0.25], [0.5, 0.0]],
        rank=[0, 0],
        logprob=[math.log(0.75), math.log(0.5)],
    )
    element, props = _props(viz.peak_lens_topk(tr, readout=ro))
    assert element == "TokenLogProbs"
    assert props["prompt"] == ["(peaks)", "[1]&lt;b&gt;&amp;", "[4] Wait"]
    assert props["topKLogProbs"][0] == pytest.approx([math.log(0.75), math.log(0.25)])
    assert props["topKLogProbs"][1][1] == -1e9  # log 0 shown as the bottom of the scale
    assert props["correctTokenRank"] == [0, 0]
    assert props["topKTokens"][0][0] == "&lt;b&gt;&amp;"


def test_peak_lens_topk_without_peaks_and_bad_args():
    empty = PeakReadout([], [], [], [], [], [], [], [], [])
    view = viz.peak_lens_topk(_trace(), readout=empty)
    assert "no MI peaks" in view.html
    with pytest.raises(ValueError, match="model"):
        viz.peak_lens_topk(_trace())
    with pytest.raises(TypeError, match="MITrace"):
        viz.mi_tokens("not a trace", _Tok())
    with pytest.raises(ValueError, match="component name"):
        viz.render_offline("ColoredTokens); alert(1", tokens=[])
    with pytest.raises(ValueError):
        viz.render_offline("ColoredTokens", values=[float("nan")])


def test_readout_rows_must_agree():
    with pytest.raises(ValueError, match="rank has 1 rows"):
        PeakReadout([1, 2], [3, 4], ["a", "b"], [0.1, 0.2], [[1], [2]], [["a"], ["b"]],
                    [[1.0], [1.0]], [0], [0.0, 0.0])  # fmt: skip
