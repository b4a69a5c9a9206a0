"""Unit tests of the organism task: grading, problems, traces, tokenizer, trainer helpers.

References are independent of the code under test: answers are recomputed by parsing the question
text with regular expressions written here, trace arithmetic is checked with Python's own
arithmetic, and greedy decoding is compared with ``transformers``' ``generate``.
"""

from __future__ import annotations

import dataclasses
import json
import re

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tl_thinktok import organism
from tl_thinktok.organism import train as ot

# ---------------------------------------------------------------- grading (hand-made cases)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("\\boxed{42}", 42),
        ("</think> \\boxed{ 4 2 }", 42),
        ("\\boxed{7}", 7),
        ("\\boxed{0}", 0),
        ("\\boxed{ 1 0 0 }", 100),
        ("first \\boxed{3} then \\boxed{9}", 9),
        ("no box here, the answer is 42", None),
        ("\\boxed{}", None),
        ("\\boxed{4a}", None),
        ("\\boxed{4.5}", None),
        ("\\boxed{\\frac{1}{2}}", None),
        ("\\boxed{42", None),
        ("boxed{42}", None),
        ("\\boxed{3} and then \\boxed{x}", None),
    ],
)
def test_extract_answer_hand_cases(text, expected):
    assert organism.extract_answer(text) == expected


def test_grade_hand_cases():
    assert organism.grade("So 2 + 3 = 5. </think> \\boxed{5}", 5)
    assert not organism.grade("\\boxed{6}", 5)
    assert not organism.grade("the answer is 5", 5)
    assert not organism.grade("\\boxed{5x}", 5)
    assert organism.grade("\\boxed{ 9 7 }", 97)
    assert not organism.grade("\\boxed{ 9 7 }", 9)


def test_grade_rejects_bad_types():
    with pytest.raises(TypeError, match="answer"):
        organism.grade("\\boxed{5}", "5")
    with pytest.raises(TypeError, match="answer"):
        organism.grade("\\boxed{1}", True)
    with pytest.raises(TypeError, match="text"):
        organism.extract_answer(None)


@given(st.integers(0, 10**6), st.text(alphabet="ab .,", max_size=20))
def test_extract_answer_roundtrip(n, prefix):
    spaced = " ".join(str(n))
    assert organism.extract_answer(f"{prefix}\\boxed{{{n}}}") == n
    assert organism.extract_answer(f"{prefix}\\boxed{{ {spaced} }}") == n


# ---------------------------------------------------------------- problems

_PATTERNS = [
    (re.compile(r"^(?:She|He) (?:buys|picks) (\d+) more \w+$"), "+"),
    (re.compile(r"^(?:She|He) finds (\d+) \w+$"), "+"),
    (re.compile(r"^(?:She|He) gets (\d+) more \w+ from \w+$"), "+"),
    (re.compile(r"^(?:She|He) gives (\d+) \w+ to \w+$"), "-"),
    (re.compile(r"^(?:She|He) (?:loses|sells) (\d+) \w+$"), "-"),
    (re.compile(r"^(?:She|He) shares (\d+) \w+ with \w+$"), "-"),
    (re.compile(r"^(?:She|He) doubles the number of (?:her|his) \w+$"), "*2"),
    (re.compile(r"^(?:She|He) gives half of (?:her|his) \w+ to \w+$"), "/2"),
]


def _solve_by_parsing(question: str) -> tuple[list[int], list[tuple[str, int]]]:
    """Independent reference: run the question's sentences (running values and the ops)."""
    sentences = [s.strip() for s in re.split(r"(?<=[.?])\s+", question)]
    m = re.fullmatch(r"(\w+) has (\d+) (\w+)\.", sentences[0])
    assert m, sentences[0]
    values, ops = [int(m.group(2))], []
    for s in sentences[1:]:
        body = s.rstrip(".?")
        for pat, kind in _PATTERNS:
            mm = pat.match(body)
            if mm:
                n = int(mm.group(1)) if mm.groups() else 2
                v = values[-1]
                new = {"+": v + n, "-": v - n, "*2": v * 2, "/2": v / 2}[kind]
                assert new == int(new), f"non-integer halving in {question}"
                values.append(int(new))
                ops.append((kind, n))
                break
    return values, ops


def test_problems_deterministic_and_seed_dependent():
    a = organism.problems("train", 40, seed=3)
    b = organism.problems("train", 40, seed=3)
    c = organism.problems("train", 40, seed=4)
    assert a == b
    assert [p.question for p in a] != [p.question for p in c]


def test_train_test_disjoint():
    train = {p.question for s in range(3) for p in organism.problems("train", 400, seed=s)}
    test = {p.question for s in range(3) for p in organism.problems("test", 200, seed=s)}
    assert train.isdisjoint(test)
    assert len({p.question for p in organism.problems("test", 200, seed=0)}) == 200


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000), st.sampled_from(["train", "test"]))
def test_answers_match_parsed_questions(seed, split):
    for p in organism.problems(split, 5, seed=seed):
        values, ops = _solve_by_parsing(p.question)
        assert organism.MIN_OPS <= len(ops) <= organism.MAX_OPS
        assert values[-1] == p.answer
        assert list(p.values) == values
        assert all(v in range(0, 100) for v in values)
        assert p.answer in organism.ANSWER_RANGE
        assert p.question.endswith(f"How many {p.obj} does {p.name} have now?")


def test_problems_bad_args():
    with pytest.raises(ValueError, match="split"):
        organism.problems("dev", 3)
    with pytest.raises(ValueError, match="n must be"):
        organism.problems("train", -1)
    with pytest.raises(TypeError, match="question"):
        organism.prompt(3)


def test_answer_distribution_covers_range():
    answers = [p.answer for p in organism.problems("train", 3000, seed=0)]
    assert len(set(answers)) >= 90
    most = max(answers.count(a) for a in set(answers))
    assert most / len(answers) < 0.05


# ---------------------------------------------------------------- traces

_EQ = re.compile(r"(\d+) ([-+*/]) (\d+) = (\d+)\.")


def _true(a: int, op: str, b: int, c: int) -> bool:
    return {"+": a + b, "-": a - b, "*": a * b, "/": a / b}[op] == c


def test_base_trace_is_correct_terse_arithmetic():
    for p in organism.problems("train", 200, seed=1):
        t = organism.base_trace(p)
        assert p.solution == t
        eqs = _EQ.findall(t)
        assert len(eqs) == len(p.ops)
        assert all(_true(int(a), op, int(b), int(c)) for a, op, b, c in eqs)
        assert organism.grade(t, p.answer)
        words = set(re.findall(r"[A-Za-z]+", t))
        assert not words & set(organism.THINKING_WORDS)


def test_reasoning_trace_structure_and_corrections():
    n_fix = n_steps = 0
    for p in organism.problems("train", 200, seed=2):
        t = organism.reasoning_trace(p)
        assert t.startswith("<think> Okay,")
        assert t.endswith(f"</think> \\boxed{{{p.answer}}}")
        assert organism.grade(t, p.answer)
        values, ops = _solve_by_parsing(p.question)
        # carries / borrows recomputed here from the parsed question
        fixes = 0
        for v, (kind, n) in zip(values, ops, strict=False):
            fixes += (kind == "+" and v % 10 + n % 10 >= 10) or (kind == "-" and v % 10 < n % 10)
        assert t.count("Wait,") == fixes
        n_fix, n_steps = n_fix + fixes, n_steps + len(ops)
        # every equation followed by "Wait" is wrong, every other one is right
        for m in _EQ.finditer(t):
            a, op, b, c = m.groups()
            followed_by_wait = t[m.end() :].lstrip().startswith("Wait")
            assert _true(int(a), op, int(b), int(c)) != followed_by_wait, t
        # every step opens with a thinking word, every result follows "So" (or the correction)
        assert len(re.findall(r"(?:Then|Now|Next) (?:she|he) \w+\. So ", t)) == len(ops)
    assert 0.15 < n_fix / n_steps < 0.45


def test_thinking_words_ordered_by_frequency():
    tok = organism.tokenizer()
    counts = dict.fromkeys(organism.THINKING_WORDS, 0)
    for p in organism.problems("train", 300, seed=5):
        for t in tok.convert_ids_to_tokens(tok(organism.reasoning_trace(p))["input_ids"]):
            if t in counts:
                counts[t] += 1
    seq = [counts[w] for w in organism.THINKING_WORDS]
    # "Now" / "Then" / "Next" are drawn uniformly as step openers: near-ties (10% slack) allowed
    assert all(a >= 0.9 * b for a, b in zip(seq, seq[1:], strict=False)), counts
    assert seq[0] > 2 * seq[1] and seq[-1] == 0, counts
    assert seq[0] > 0 and counts["Wait"] > 0


def test_training_text_styles():
    p = organism.problems("train", 1, seed=0)[0]
    pr, comp = organism.training_text(p, "reasoning")
    assert pr == organism.prompt(p.question) and "<think>" in comp
    assert "<think>" not in organism.training_text(p, "base")[1]
    with pytest.raises(ValueError, match="style"):
        organism.training_text(p, "chat")


# ---------------------------------------------------------------- tokenizer


@pytest.fixture(scope="module")
def tok():
    return organism.tokenizer()


def test_tokenizer_vocab_and_single_tokens(tok, tmp_path):
    assert len(tok) >= 500
    for w in organism.THINKING_WORDS + [str(d) for d in range(10)]:
        ids = tok(w, add_special_tokens=False)["input_ids"]
        assert len(ids) == 1 and ids[0] != tok.unk_token_id, w
    assert tok.convert_ids_to_tokens(tok("\\boxed{73}")["input_ids"]) == ["\\boxed{", "7", "3", "}"]
    for marker in ("<think>", "</think>"):
        assert tok.convert_ids_to_tokens(tok(marker)["input_ids"]) == [marker]
    assert {tok.pad_token, tok.bos_token, tok.eos_token, tok.unk_token} == {
        "<pad>",
        "<s>",
        "</s>",
        "<unk>",
    }
    from transformers import PreTrainedTokenizerFast

    tok.save_pretrained(str(tmp_path))
    again = PreTrainedTokenizerFast.from_pretrained(str(tmp_path))
    text = organism.reasoning_trace(organism.problems("test", 1, seed=0)[0])
    assert again(text)["input_ids"] == tok(text)["input_ids"]


def test_tokenizer_covers_all_text_and_decodes_answers(tok):
    for p in organism.problems("train", 150, seed=7):
        for style in ("reasoning", "base"):
            text = "".join(organism.training_text(p, style))
            ids = tok(text)["input_ids"]
            assert tok.unk_token_id not in ids, text
            assert organism.extract_answer(tok.decode(ids)) == p.answer


# ---------------------------------------------------------------- trainer helpers


def test_train_config_validation():
    with pytest.raises(ValueError, match="style"):
        ot.TrainConfig(style="chat")
    with pytest.raises(ValueError, match="divisible"):
        ot.TrainConfig(d_model=30, n_heads=4)
    with pytest.raises(ValueError, match="steps"):
        ot.TrainConfig(steps=0)


def test_configs_from_args_overrides():
    args = ot.parse_args(["--smoke", "--only", "base", "--set", "d_model=48", "--steps", "7"])
    (cfg,) = ot.configs_from_args(args)
    assert (cfg.style, cfg.d_model, cfg.steps, cfg.n_layers) == ("base", 48, 7, 1)
    with pytest.raises(ValueError, match="unknown TrainConfig field"):
        ot.configs_from_args(ot.parse_args(["--set", "nope=1"]))


def test_configs_from_args_threads_beat_the_recipe():
    (recipe,) = ot.configs_from_args(ot.parse_args(["--only", "reasoning"]))
    assert recipe.threads == ot.RECIPES["reasoning"].get("threads", ot.TrainConfig().threads)
    (cfg,) = ot.configs_from_args(ot.parse_args(["--only", "reasoning", "--threads", "3"]))
    assert cfg.threads == 3


def test_ban_id_sets(tok):
    think = ot.thinking_ids(tok, 5)
    assert tok.convert_ids_to_tokens(think) == organism.THINKING_WORDS[:5]
    lower = {w.lower() for w in organism.THINKING_WORDS}
    for seed in range(5):
        r = ot.random_ids(tok, 10, seed)
        assert len(set(r)) == 10
        toks = tok.convert_ids_to_tokens(r)
        assert not {t.lower() for t in toks} & lower
        assert not set(r) & set(tok.all_special_ids)
    assert ot.random_ids(tok, 10, 1) == ot.random_ids(tok, 10, 1)
    with pytest.raises(ValueError, match="k must be"):
        ot.thinking_ids(tok, 99)


@pytest.fixture(scope="module")
def tiny_model(tok):
    torch.set_num_threads(1)
    cfg = ot.TrainConfig(d_model=32, n_layers=1, d_mlp=64, seed=1)
    model = ot.build_model(cfg, tok).eval()
    with torch.no_grad():  # larger random weights so greedy output is not one repeated token
        for p in model.parameters():
            p.normal_(0, 0.3)
    return model


def test_greedy_generate_matches_hf_generate(tiny_model, tok):
    prompts = [organism.prompt(p.question) for p in organism.problems("test", 4, seed=3)]
    ban = ot.thinking_ids(tok, 5)
    for banned in (None, ban):
        mine = ot.greedy_generate(tiny_model, tok, prompts, max_new_tokens=12, ban_ids=banned)
        for pr, (text, n_new) in zip(prompts, mine, strict=True):
            ids = tok(pr, return_tensors="pt", add_special_tokens=False)
            ref = tiny_model.generate(
                **ids,
                max_new_tokens=12,
                do_sample=False,
                pad_token_id=tok.pad_token_id,
                suppress_tokens=banned,
            )[0, ids["input_ids"].shape[1] :].tolist()
            ref = [i for i in ref if i not in (tok.eos_token_id, tok.pad_token_id)]
            assert text == tok.decode(ref)
            assert n_new <= 12
            if banned:
                assert not set(ref) & set(banned)


def test_greedy_generate_passes_the_cache_keyword_the_model_wants(tiny_model, tok):
    """No transformers ``past_key_values`` rename FutureWarning from our own decoding loop."""
    import inspect
    import warnings

    params = inspect.signature(tiny_model.forward).parameters
    assert ot.cache_kwarg(tiny_model) == ("cache" if "cache" in params else "past_key_values")
    prompts = [organism.prompt(p.question) for p in organism.problems("test", 2, seed=3)]
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        out = ot.greedy_generate(tiny_model, tok, prompts, max_new_tokens=4)
    assert len(out) == 2 and all(n >= 1 for _, n in out)
    assert not [w for w in seen if "past_key_values" in str(w.message)]


def test_eval_result_roundtrip(tmp_path, tiny_model, tok):
    r = ot.evaluate((tiny_model, tok), n=3, max_new_tokens=5, ban_ids=[5, 6])
    assert r.n == 3 and 0.0 <= r.accuracy <= 1.0 and r.ban_ids == [5, 6]
    path = r.save(tmp_path / "sub" / "r.json")  # folders created, the path returned
    assert path == tmp_path / "sub" / "r.json"
    assert ot.EvalResult.load(path) == r
    # a file written by the previous save (json.dumps(asdict(...), indent=1)) still loads
    (tmp_path / "old.json").write_text(json.dumps(dataclasses.asdict(r), indent=1))
    assert ot.EvalResult.load(tmp_path / "old.json") == r
    t = ot.evaluate((tiny_model, tok), n=3, max_new_tokens=5, ban_ids=torch.tensor([6, 5]))
    assert t.ban_ids == [5, 6] and t.samples == r.samples  # same ban, given as a tensor
    with pytest.raises(ValueError, match="n must be"):
        ot.evaluate((tiny_model, tok), n=0)
    with pytest.raises(ValueError, match="ban_ids must be non-negative"):
        ot.evaluate((tiny_model, tok), n=1, ban_ids=[-1])
    with pytest.raises(ValueError, match=r"ban_ids out of range \[0, \d+\)"):
        ot.evaluate((tiny_model, tok), n=1, ban_ids=[10**6])
    with pytest.raises(ValueError, match="config.json"):
        ot.evaluate(tmp_path, n=1)


def test_thinking_tokens_contain_each_exact_word(tok):
    tt = organism.thinking_tokens(tok, organism.THINKING_WORDS[:5])
    assert list(tt.words) == organism.THINKING_WORDS[:5]
    for word, ids in zip(tt.words, tt.ids, strict=True):
        assert tok.convert_tokens_to_ids(word) in ids
