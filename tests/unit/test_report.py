"""The HTML report's parts (token strings, page structure, no external resources) and the
`trace` command's bad input: one line on stderr, exit status 2."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tl_thinktok.report import PeakReadout, render_report, token_strings
from tl_thinktok.report.cli import load_item, main
from tl_thinktok.trace import MITrace


class _Tok:
    WORDS = ["<s>", " So", " x", "<b>&", " Wait", " 7", "</script>"]

    def decode(self, ids):
        return "".join(self.WORDS[i] for i in ids)


def _trace(peaks=(1, 4), **meta) -> MITrace:
    gen = [1, 3, 2, 6, 4, 5]
    mi = np.array([0.1, 0.9, 0.2, 0.1, 0.8, 0.1])
    return MITrace(
        tokens=[0, 2] + gen,
        prompt_len=2,
        layer=-1,
        mi=mi,
        peaks=list(peaks),
        resid_norm=np.ones(6),
        **meta,
    )


def _readout(tr: MITrace) -> PeakReadout:
    n = len(tr.peaks)
    gen = tr.gen_ids
    return PeakReadout(
        steps=list(tr.peaks),
        token_ids=[gen[s] for s in tr.peaks],
        tokens=[_Tok.WORDS[gen[s]] for s in tr.peaks],
        mi=[float(tr.mi[s]) for s in tr.peaks],
        topk_ids=[[gen[s], 5] for s in tr.peaks],
        topk_tokens=[[_Tok.WORDS[gen[s]], " 7"] for s in tr.peaks],
        topk_probs=[[0.6, 0.4]] * n,
        rank=[0] * n,
        logprob=[float(np.log(0.6))] * n,
    )


class _Collect(HTMLParser):
    """Tags, ids and the text of the page; raises on mismatched end tags of common elements."""

    VOID = {"meta", "br", "input", "img", "link", "hr", "path", "use", "stop", "rect", "circle",
            "line", "polyline", "ellipse", "polygon"}  # fmt: skip

    def __init__(self):
        super().__init__()
        self.stack, self.ids, self.text, self.attrs = [], set(), [], []

    def handle_starttag(self, tag, attrs):
        d = dict(attrs)
        self.attrs.append((tag, d))
        if "id" in d:
            self.ids.add(d["id"])
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        self.attrs.append((tag, dict(attrs)))

    def handle_endtag(self, tag):
        if tag in self.VOID:
            return
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes <{self.stack[-1:]}>"
        self.stack.pop()

    def handle_data(self, data):
        self.text.append(data)


def _parse(page: str) -> _Collect:
    p = _Collect()
    p.feed(page)
    p.close()
    assert p.stack == [], f"unclosed elements {p.stack}"
    return p


def test_report_structure_and_content():
    tr = _trace(id="q1", question="What is 3 + 4?", answer="7", correct=True, model="m")
    page = render_report(tr, _readout(tr), _Tok(), dataset="toy", solution="3 + 4 = 7")
    doc = _parse(page)
    assert {"question", "gold", "peaks", "stats", "plot", "status"} <= doc.ids
    spans = [a for t, a in doc.attrs if t == "span" and a.get("id", "").startswith("tok-")]
    assert len(spans) == tr.n_steps
    assert [int(a["data-step"]) for a in spans if "peak" in a["class"].split()] == tr.peaks
    rows = [a for t, a in doc.attrs if t == "tr" and a.get("class") == "peakrow"]
    assert [int(a["data-step"]) for a in rows] == tr.peaks
    text = "".join(doc.text)
    assert "Gold answer: 7" in text and "correct" in text and "What is 3 + 4?" in text
    # the token pieces concatenate to the decoded generation, markup shown as text
    tokens_div = page[page.index('<div class="tokens">') :]
    pieces = re.findall(r'<span id="tok-\d+"[^>]*>(.*?)</span>', tokens_div)
    assert "".join(pieces) == "".join(
        s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        for s in (_Tok.WORDS[i] for i in tr.gen_ids)
    )
    assert "<svg" in page and "</script>" not in page.split("<script>")[-1][:-30]


def test_report_is_self_contained():
    tr = _trace(answer="7")
    page = render_report(tr, _readout(tr), _Tok())
    doc = _parse(page)
    for tag, attrs in doc.attrs:
        for key in ("src", "href", "xlink:href"):
            v = attrs.get(key)
            assert v is None or v.startswith("#"), f"<{tag} {key}={v!r}> loads something"
    assert "<link" not in page and "@import" not in page
    assert all(u.startswith("#") for u in re.findall(r"url\(([^)]*)\)", page))  # in-page refs


def test_report_undefined_statistics_and_no_peaks():
    tr = _trace(peaks=(), answer=None)
    page = render_report(tr, _readout(tr), _Tok())
    assert "No MI peaks in this trace" in page
    assert "undefined (NaN)" in page  # intervals and AOM are undefined without peaks
    assert "Gold answer: unknown" in page
    with pytest.raises(TypeError, match="MITrace"):
        render_report("x", _readout(tr), _Tok())
    with pytest.raises(TypeError, match="PeakReadout"):
        render_report(tr, {}, _Tok())


def test_gold_answer_in_top_k_is_marked():
    tr = _trace(answer="7")
    page = render_report(tr, _readout(tr), _Tok())
    assert page.count('<span class="hit"> 7') == len(tr.peaks)
    assert page.count("<td>yes</td>") == len(tr.peaks)


@pytest.fixture(scope="module")
def organism_tokenizer():
    from tl_thinktok import organism

    return organism.tokenizer()


@given(
    st.lists(st.integers(0, 717), min_size=1, max_size=30),
    st.lists(st.integers(0, 717), max_size=5),
)
def test_token_strings_concatenate_to_the_decoded_text(organism_tokenizer, ids, context):
    tok = organism_tokenizer
    pieces = token_strings(tok, ids, context=context)
    assert len(pieces) == len(ids)
    before = tok.decode(context) if context else ""
    assert before + "".join(pieces) == tok.decode(list(context) + ids)


def test_token_strings_keep_spaces_and_survive_partial_utf8(tmp_path):
    from tl_thinktok.testing.models import make_tokenizer

    tok = make_tokenizer(tmp_path / "tok")
    text = " So, let me check: 7 is right. Wait \u2014 caf\u00e9 \U0001f600"
    ids = tok.encode(text, add_special_tokens=False)
    pieces = token_strings(tok, ids)
    assert len(pieces) == len(ids)
    # bytes of one character split over tokens: the pieces still add up (or fall back per token)
    assert "".join(pieces).startswith(" So, let me check: 7 is right.")


# ---------------------------------------------------------------------------- bad input (CLI)


def _one_line_error(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("tl-thinktok trace: error: ")
    return err


def test_index_outside_the_dataset(capsys, tmp_path):
    err = _one_line_error(
        capsys,
        [
            "--model",
            "organism",
            "--dataset",
            "aime24",
            "--index",
            "30",
            "--out",
            str(tmp_path / "r.html"),
        ],  # fmt: skip
    )
    assert "index 30 is outside dataset aime24 (30 items: 0..29)" in err
    err = _one_line_error(
        capsys,
        [
            "--model",
            "organism",
            "--dataset",
            "aime24",
            "--index",
            "-1",
            "--out",
            str(tmp_path / "r.html"),
        ],  # fmt: skip
    )
    assert "index -1 is outside" in err
    assert not (tmp_path / "r.html").exists()


def test_dataset_without_answers(capsys, tmp_path):
    data = tmp_path / "noanswers.jsonl"
    data.write_text(json.dumps({"question": "What is 2 + 2?"}) + "\n", encoding="utf-8")
    err = _one_line_error(
        capsys,
        [
            "--model",
            "organism",
            "--dataset",
            str(data),
            "--index",
            "0",
            "--out",
            str(tmp_path / "r.html"),
        ],  # fmt: skip
    )
    assert "has no answers" in err and "line 1" in err


def test_unknown_dataset_and_missing_file(capsys, tmp_path):
    err = _one_line_error(
        capsys,
        [
            "--model",
            "organism",
            "--dataset",
            "gsm9k",
            "--index",
            "0",
            "--out",
            str(tmp_path / "r.html"),
        ],  # fmt: skip
    )
    assert "unknown dataset 'gsm9k'" in err
    err = _one_line_error(
        capsys,
        [
            "--model",
            "organism",
            "--dataset",
            str(tmp_path / "nope.jsonl"),
            "--index",
            "0",
            "--out",
            str(tmp_path / "r.html"),
        ],  # fmt: skip
    )
    assert "not found" in err


def test_unknown_model(capsys, tmp_path):
    err = _one_line_error(
        capsys,
        [
            "--model",
            "no-such-model",
            "--dataset",
            "aime24",
            "--index",
            "0",
            "--out",
            str(tmp_path / "r.html"),
        ],  # fmt: skip
    )
    assert "unknown model 'no-such-model'" in err


def test_bad_options(capsys, tmp_path):
    err = _one_line_error(
        capsys,
        [
            "--model",
            "organism",
            "--dataset",
            "aime24",
            "--index",
            "0",
            "--k",
            "0",
            "--out",
            str(tmp_path / "r.html"),
        ],  # fmt: skip
    )
    assert "--k must be >= 1" in err
    with pytest.raises(SystemExit) as exc:
        main(["--model", "organism", "--dataset", "aime24", "--out", "r.html"])
    assert exc.value.code == 2
    assert "--index" in capsys.readouterr().err


def test_load_item_from_a_file(tmp_path):
    data = tmp_path / "mine.jsonl"
    rows = [{"question": "2 + 2?", "answer": 4}, {"question": "3 + 3?", "answer": "6",
                                                   "solution": "3 + 3 = 6", "id": "b"}]  # fmt: skip
    data.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    first, second = load_item(str(data), 0), load_item(str(data), 1)
    assert (first.answer, first.solution, first.id) == ("4", "4", "mine-0")
    assert (second.answer, second.solution, second.id) == ("6", "3 + 3 = 6", "b")


def test_binary_dataset_file_is_one_line_naming_it(capsys, tmp_path):
    data = tmp_path / "binary.jsonl"
    data.write_bytes(b"\x89PNG\r\n\x1a\n\xff\x00")
    err = _one_line_error(
        capsys,
        ["--model", "organism", "--dataset", str(data), "--index", "0", "--out",
         str(tmp_path / "r.html")],
    )  # fmt: skip
    assert str(data) in err and "not UTF-8" in err


def test_question_and_answer_fields_as_in_reproduce(capsys, tmp_path):
    data = tmp_path / "mine.jsonl"
    data.write_text(json.dumps({"problem": "What is 2 + 3?", "final": "5"}) + "\n")
    item = load_item(str(data), 0, question_field="problem", answer_field="final")
    assert (item.question, item.answer) == ("What is 2 + 3?", "5")
    base = ["--model", "organism", "--dataset", str(data), "--out", str(tmp_path / "r.html")]
    err = _one_line_error(capsys, [*base, "--index", "0"])  # default field names: no 'question'
    assert "has no 'question'" in err
    err = _one_line_error(capsys, [*base, "--index", "0", "--question-field", "problem"])
    assert "lacks a non-empty 'answer'" in err
    err = _one_line_error(
        capsys, ["--model", "organism", "--dataset", "aime24", "--index", "0",
                 "--question-field", "problem", "--out", str(tmp_path / "r.html")]
    )  # fmt: skip
    assert "need --dataset <file>.jsonl" in err
    argv = [*base, "--index", "0", "--question-field", "problem", "--answer-field", "final",
            "--max-new-tokens", "4"]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("tl-thinktok: TransformerLens ") and ", host " in out[0]
    assert out[-1].startswith(f"wrote {tmp_path / 'r.html'}")
    assert "What is 2 + 3?" in (tmp_path / "r.html").read_text()


def test_trace_is_a_tl_thinktok_subcommand(tmp_path):
    import subprocess
    import sys

    out = tmp_path / "r.html"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tl_thinktok",
            "trace",
            "--model",
            "organism",
            "--dataset",
            "aime24",
            "--index",
            "99",
            "--out",
            str(out),
        ],  # fmt: skip
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "tl-thinktok trace: error: index 99 is outside dataset aime24 (30 items: 0..29)"
    )
    assert not out.exists()
    helped = subprocess.run(
        [sys.executable, "-m", "tl_thinktok", "trace", "--help"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert helped.returncode == 0 and "--dataset" in helped.stdout
