"""Tests for tl_thinktok.datasets: bundled files, parsing, prompts, math-verify grading."""

from __future__ import annotations

import hashlib
import json
import threading
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from pathlib import Path

import pytest

from tl_thinktok.datasets import (
    REFERENCE_PROMPT,
    Item,
    grade,
    load_dataset,
    load_jsonl_items,
    model_family,
    prompt_for,
)

# sha256 of the upstream files (from their provenance notes), computed outside this code.
SHA256 = {
    "gsm8k": "3730d312f6e3440559ace48831e51066acaca737f6eabec99bccb9e4b3c39d14",
    "math500": "35dc41080a3680858b27fa7e0533d2d547825316fc5dafe5d316f4ccc5a06132",
    "aime24": "af2b8bd2aa911b6333ad0df32f3ca05c7ae8ed10f1731f4372c8ae26990bf7ac",
}
SIZES = {"gsm8k": 1319, "math500": 500, "aime24": 30}


@pytest.mark.parametrize("name", sorted(SHA256))
def test_bundled_file_is_verbatim_with_attribution(name):
    folder = Path(str(resources.files("tl_thinktok") / "assets" / "data" / name))
    digest = hashlib.sha256((folder / "test.jsonl").read_bytes()).hexdigest()
    assert digest == SHA256[name]
    text = (folder / "ATTRIBUTION.md").read_text()
    assert "License" in text and "Permission is hereby granted" in text


@pytest.mark.parametrize("name", sorted(SIZES))
def test_sizes_and_unique_ids(name):
    items = load_dataset(name)
    assert len(items) == SIZES[name]
    assert len({it.id for it in items}) == len(items)
    assert all(it.question and it.answer and it.solution for it in items)


def test_gsm8k_answer_split():
    first = load_dataset("gsm8k")[0]
    raw = json.loads(
        (Path(str(resources.files("tl_thinktok"))) / "assets/data/gsm8k/test.jsonl")
        .read_text()
        .splitlines()[0]
    )
    assert first.answer == "18"
    assert raw["answer"] == first.solution + "\n#### 18"
    assert "####" not in first.solution


def test_gsm8k_parser_on_handmade_file(tmp_path):
    p = tmp_path / "g.jsonl"
    p.write_text(
        json.dumps({"question": "q1", "answer": "a\nb <<1+1=2>>2\n#### 1,000"})
        + "\n\n"
        + json.dumps({"question": "q2", "answer": "x #### -3"})
        + "\n"
    )
    items = load_jsonl_items("gsm8k", p)
    assert items == [
        Item("gsm8k-0", "q1", "1,000", "a\nb <<1+1=2>>2"),
        Item("gsm8k-2", "q2", "-3", "x"),
    ]


def test_aime_and_math_fields():
    aime = load_dataset("aime24")
    assert aime[0].id == "aime24-60" and aime[0].answer == "204"
    m = load_dataset("math500")[0]
    assert m.id == "test/precalculus/807.json"
    assert m.answer == "\\left( 3, \\frac{\\pi}{2} \\right)"


@pytest.mark.parametrize(
    "content, lineno",
    [
        ('{"question": "a", "answer": "#### 1"}\n{not json}\n', 2),
        ('{"question": "a", "answer": "#### 1"}\n\n[1, 2]\n', 3),
        ('{"question": "a", "answer": "no marker"}\n', 1),
        ('{"answer": "#### 1"}\n', 1),
    ],
)
def test_malformed_line_names_file_and_line(tmp_path, content, lineno):
    p = tmp_path / "bad.jsonl"
    p.write_text(content)
    with pytest.raises(ValueError) as e:
        load_jsonl_items("gsm8k", p)
    assert str(p) in str(e.value) and f"line {lineno}" in str(e.value)


#: a PNG header then a line of JSON: invalid UTF-8 at byte 1 of line 1
BINARY = b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe\n" + b'{"question": "a", "answer": "1"}\n'


def test_binary_file_is_one_line_error_naming_the_file(tmp_path):
    p = tmp_path / "photo.jsonl"
    p.write_bytes(BINARY)
    for load in (lambda: load_dataset(str(p)), lambda: load_jsonl_items("gsm8k", p)):
        with pytest.raises(ValueError) as e:
            load()
        msg = str(e.value)
        assert str(p) in msg and "line 1" in msg and "not UTF-8" in msg and "0x89" in msg
        assert "\n" not in msg
    later = tmp_path / "later.jsonl"  # the bad line is found where it is
    later.write_bytes(b'{"question": "a", "answer": "1"}\n' + BINARY)
    with pytest.raises(ValueError, match=r"later\.jsonl line 2 is not UTF-8"):
        load_dataset(str(later))
    ok = tmp_path / "ok.jsonl"  # UTF-8 beyond ASCII still reads
    ok.write_text('{"question": "π × 2?", "answer": "2π"}\n', encoding="utf-8")
    assert load_dataset(str(ok))[0].answer == "2π"


def test_subset_is_seeded_and_in_file_order():
    full = [it.id for it in load_dataset("math500")]
    a = [it.id for it in load_dataset("math500", n=20, seed=3)]
    b = [it.id for it in load_dataset("math500", n=20, seed=3)]
    c = [it.id for it in load_dataset("math500", n=20, seed=4)]
    assert a == b and a != c and len(a) == 20
    pos = [full.index(i) for i in a]
    assert pos == sorted(pos)
    assert len(load_dataset("aime24", n=100)) == 30


@pytest.mark.parametrize(
    ("bad", "exc"), [(0, ValueError), (-1, ValueError), (2.5, TypeError), (True, TypeError)]
)
def test_bad_n(bad, exc):
    with pytest.raises(exc, match="n must be"):
        load_dataset("gsm8k", n=bad)


def test_unknown_names():
    with pytest.raises(ValueError, match="unknown dataset"):
        load_dataset("gpqa")
    with pytest.raises(ValueError, match="unknown model family"):
        prompt_for("chatml", "q")
    with pytest.raises(ValueError, match="unknown dataset"):
        grade("gpqa", "x", "1")


def test_prompts():
    q = "What is 2+3?"
    assert prompt_for("raw", q) == q
    assert prompt_for("reference", q) == (
        "User: What is 2+3?\nPlease reason step by step, and put your final answer within "
        "\\boxed{}.\n\nAssistant:"
    )
    assert REFERENCE_PROMPT.format(q=q) == prompt_for("reference", q)
    r1 = prompt_for("r1", q)
    assert r1.startswith("<\uff5cUser\uff5c>What is 2+3?")
    assert r1.endswith("<\uff5cAssistant\uff5c><think>\n")
    with pytest.raises(TypeError):
        prompt_for("raw", 3)


def test_model_family():
    assert model_family("deepseek-ai/DeepSeek-R1-Distill-Llama-8B") == "r1"
    assert model_family("organism-base") == "organism"
    assert model_family("/tmp/random_qwen2") == "reference"


@pytest.mark.parametrize(
    "name, text, answer, expected",
    [
        ("gsm8k", "So she makes 9 * 2 = 18 dollars. \\boxed{18}", "18", True),
        ("gsm8k", "The answer is \\boxed{17}", "18", False),
        ("gsm8k", "Total: \\boxed{1000}", "1,000", True),
        ("math500", "Hence $\\boxed{\\frac{1}{2}}$.", "0.5", True),
        ("math500", "Hence $\\boxed{\\frac{1}{3}}$.", "\\frac{1}{2}", False),
        (
            "math500",
            "so \\boxed{(3, \\frac{\\pi}{2})}",
            "\\left( 3, \\frac{\\pi}{2} \\right)",
            True,
        ),
        ("aime24", "Thus the answer is \\boxed{25}.", "025", True),
        ("aime24", "I could not finish.", "025", False),
        ("aime24", "first \\boxed{7}, no wait, final \\boxed{204}", "204", True),
    ],
)
def test_grade_math_verify(name, text, answer, expected):
    assert grade(name, text, answer) is expected


def test_last_boxed_balanced():
    from tl_thinktok.datasets import last_boxed

    assert last_boxed("a \\boxed{7} b \\boxed{\\frac{1}{2}} c") == "\\frac{1}{2}"
    assert last_boxed("no box") is None
    assert last_boxed("\\boxed{unclosed") is None


def test_organism_items_prompt_and_grade():
    from tl_thinktok import organism

    items = load_dataset("organism", n=5, seed=2)
    probs = organism.problems("test", 5, seed=2)
    assert [it.question for it in items] == [p.question for p in probs]
    assert [it.answer for it in items] == [str(p.answer) for p in probs]
    assert [it.solution for it in items] == [p.solution for p in probs]
    assert len({it.id for it in items}) == 5
    assert load_dataset("organism", n=5, seed=2) == items
    assert prompt_for("organism", items[0].question) == f"Question: {items[0].question}\nAnswer:"
    ans = items[0].answer
    assert grade("organism", "<think> So ... </think> \\boxed{ " + " ".join(ans) + " }", ans)
    assert not grade("organism", "</think> \\boxed{ 1 0 0 }", ans)
    assert not grade("organism", "no box", ans)
    with pytest.raises(ValueError, match="integers"):
        grade("organism", "\\boxed{1}", "x")


# ---------------------------------------------------------------- grading off the main thread


def _on_thread(fn):
    out: list = []
    err: list = []

    def run():
        try:
            out.append(fn())
        except BaseException as e:  # noqa: BLE001 - re-raised on the main thread below
            err.append(e)

    t = threading.Thread(target=run)
    t.start()
    t.join()
    if err:
        raise err[0]
    return out[0]


def test_grade_on_a_thread_as_on_the_main_thread():
    """Issue example: math-verify's signal alarm used to make every thread answer False."""
    assert threading.current_thread() is threading.main_thread()
    assert _on_thread(lambda: grade("gsm8k", r"so \boxed{18}", "18")) is True
    assert _on_thread(lambda: grade("gsm8k", r"so \boxed{17}", "18")) is False
    assert _on_thread(lambda: grade("math500", r"$\boxed{\frac{1}{2}}$", "0.5")) is True


def _answer_cases() -> list[tuple[str, str, str]]:
    """(dataset, generated text, gold): every AIME24 answer and a seeded sample of the others,
    each boxed against its own gold (correct) and against the next item's different gold."""
    cases = []
    for name, n in (("aime24", None), ("math500", 60), ("gsm8k", 60)):
        items = load_dataset(name, n=n, seed=3)
        for i, it in enumerate(items):
            other = next(o for o in items[i + 1 :] + items[:i] if o.answer != it.answer)
            text = f"so the answer is \\boxed{{{it.answer}}}"
            cases += [(name, text, it.answer), (name, text, other.answer)]
    return cases


def test_grade_is_the_same_on_threads_and_pools_over_bundled_answers():
    cases = _answer_cases()
    main = [grade(*c) for c in cases]
    # the bundled golds grade right against themselves and wrong against another problem's gold
    correct, wrong = main[0::2], main[1::2]
    assert sum(correct) >= 0.95 * len(correct)
    assert sum(wrong) <= 0.05 * len(wrong)
    assert _on_thread(lambda: [grade(*c) for c in cases]) == main
    with ThreadPoolExecutor(max_workers=2) as pool:
        assert list(pool.map(lambda c: grade(*c), cases)) == main


def test_smollm2_family_and_prompt():
    from tl_thinktok.datasets import SMOLLM2_PROMPT

    assert model_family("smollm2-135m") == "smollm2"
    assert model_family("/cache/gguf/SmolLM2-135M-Instruct.Q4_1-0123") == "smollm2"
    p = prompt_for("smollm2", "What is 2+3?")
    assert p == SMOLLM2_PROMPT.format(q="What is 2+3?")
    assert p.startswith("<|im_start|>system\n") and p.endswith("<|im_start|>assistant\n")
    assert "What is 2+3?\nPlease reason step by step" in p and "\\boxed{}" in p


def test_trace_prompt_family_raw_except_formatted_models():
    from tl_thinktok.datasets import trace_prompt_family

    assert [trace_prompt_family(f) for f in ("r1", "reference", "organism", "smollm2")] == [
        "raw",
        "raw",
        "organism",
        "smollm2",
    ]
