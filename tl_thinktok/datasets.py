"""Evaluation datasets, prompts per model family, and answer grading.

Bundled data (``tl_thinktok/assets/data/<name>/test.jsonl``, each with an ``ATTRIBUTION.md``):
GSM8K test (1319), MATH-500 (500), AIME 2024 (30). The synthetic ``"organism"`` task comes from
:mod:`tl_thinktok.organism`. Data files are read from the installed package
(``importlib.resources``), never from outside it.

A user JSONL file (any ``{question, answer}`` records, field names chosen with
:func:`user_dataset`) is a dataset too: its name is its path.

Grading: real datasets (and user files) use math-verify (``math_verify.parse`` / ``verify``) on
the generated text against the gold answer; the organism uses ``tl_thinktok.organism.grade``.
Grading works on any thread: math-verify's wall-clock timeout is a ``signal.alarm``, which only
the main thread may set, so off the main thread (thread pools, Ray workers, some notebook kernels)
it is switched off rather than failing every answer.

Example:
    >>> from tl_thinktok.datasets import load_dataset, prompt_for, grade
    >>> items = load_dataset("gsm8k", n=2)
    >>> prompt = prompt_for("reference", items[0].question)
    >>> grade("gsm8k", "... so the answer is \\\\boxed{18}", "18")
    True
"""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from tl_thinktok._validate import check_int

DATASETS: tuple[str, ...] = ("gsm8k", "math500", "aime24", "organism")
FILE_DATASETS: tuple[str, ...] = ("gsm8k", "math500", "aime24")
FAMILIES: tuple[str, ...] = ("r1", "reference", "raw", "organism", "smollm2")
#: Number of organism test problems returned by ``load_dataset("organism")`` without ``n``.
ORGANISM_DEFAULT_N = 500

#: The reference code's prompt (MI-Peaks applications: RR / TTTS).
REFERENCE_PROMPT = (
    "User: {q}\nPlease reason step by step, and put your final answer within "
    "\\boxed{{}}.\n\nAssistant:"
)
#: DeepSeek-R1-Distill chat template (the tokenizer adds BOS), opening the thinking block.
R1_PROMPT = (
    "<\uff5cUser\uff5c>{q}\nPlease reason step by step, and put your final answer within "
    "\\boxed{{}}.<\uff5cAssistant\uff5c><think>\n"
)

#: SmolLM2-Instruct's own chat template (ChatML with its default system message), rendered for one
#: user turn and opened for the assistant (its tokenizer adds no BOS); the test checks it against
#: the tokenizer's ``apply_chat_template``.
SMOLLM2_PROMPT = (
    "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face"
    "<|im_end|>\n<|im_start|>user\n{q}\nPlease reason step by step, and put your final answer "
    "within \\boxed{{}}.<|im_end|>\n<|im_start|>assistant\n"
)


@dataclass(frozen=True)
class Item:
    """One evaluation problem.

    Attributes:
        id: stable identifier (unique within the dataset).
        question: the problem text.
        answer: the gold final answer (string, as in the source data).
        solution: the worked gold solution (used as the answer representation h_y).
    """

    id: str
    question: str
    answer: str
    solution: str

    def to_dict(self) -> dict[str, str]:
        """Return the item as a plain dict (JSON-serialisable)."""
        return asdict(self)


def _data_path(name: str) -> Path:
    root = resources.files("tl_thinktok") / "assets" / "data" / name / "test.jsonl"
    return Path(str(root))


def _item_from_record(name: str, rec: dict[str, Any], lineno: int) -> Item:
    if name == "gsm8k":
        full = rec["answer"]
        if "####" not in full:
            raise KeyError("'#### ' final-answer marker in field 'answer'")
        solution, _, final = full.rpartition("####")
        return Item(
            id=f"gsm8k-{lineno - 1}",
            question=str(rec["question"]),
            answer=final.strip(),
            solution=solution.strip(),
        )
    if name == "math500":
        return Item(
            id=str(rec["unique_id"]),
            question=str(rec["problem"]),
            answer=str(rec["answer"]),
            solution=str(rec["solution"]),
        )
    if name == "aime24":
        return Item(
            id=f"aime24-{rec['id']}",
            question=str(rec["problem"]),
            answer=str(rec["answer"]),
            solution=str(rec["solution"]),
        )
    raise ValueError(f"no file parser for dataset {name!r}; expected one of {FILE_DATASETS}")


def load_jsonl_items(name: str, path: str | Path) -> list[Item]:
    """Parse a dataset file in the source format of ``name``.

    Args:
        name: one of ``"gsm8k"``, ``"math500"``, ``"aime24"`` (selects the field layout).
        path: a JSONL file, one record per line.

    Returns:
        The items in file order.

    Raises:
        ValueError: a line is not valid JSON, not an object, or lacks a required field; the message
            names the file and the 1-based line number.

    Example:
        >>> items = load_jsonl_items("aime24", "tl_thinktok/assets/data/aime24/test.jsonl")
    """
    if name not in FILE_DATASETS:
        raise ValueError(f"unknown file dataset {name!r}; expected one of {FILE_DATASETS}")
    path = Path(path)
    items: list[Item] = []
    for lineno, line in jsonl_lines(path):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            if not isinstance(rec, dict):
                raise TypeError(f"expected a JSON object, got {type(rec).__name__}")
            items.append(_item_from_record(name, rec, lineno))
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise ValueError(f"malformed {name} record in {path} line {lineno}: {e}") from e
    return items


def jsonl_lines(path: str | Path) -> Iterator[tuple[int, str]]:
    """``(1-based line number, text)`` of each line of a UTF-8 file.

    Raises:
        ValueError: a line is not UTF-8 (e.g. a binary file); the one-line message names the file
            and the line.

    Example:
        >>> next(jsonl_lines("tl_thinktok/assets/data/aime24/test.jsonl"))[0]
        1
    """
    with Path(path).open("rb") as f:
        for lineno, raw in enumerate(f, start=1):
            try:
                yield lineno, raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise ValueError(
                    f"{path} line {lineno} is not UTF-8 text (byte 0x{raw[e.start]:02x} at "
                    f"column {e.start + 1}): a dataset must be a UTF-8 JSONL file"
                ) from None


#: Separates a user JSONL path from its field names in a dataset spec (:func:`user_dataset`).
SPEC_SEP = "#"


def user_dataset(
    path: str | Path, question_field: str = "question", answer_field: str = "answer"
) -> str:
    """Dataset name (spec) of a user JSONL file, for :func:`load_dataset` and :func:`grade`.

    The spec is the absolute path, plus ``#question=<field>&answer=<field>`` when the fields are
    not the defaults; a different field choice is a different dataset (and run directory).

    Example:
        >>> user_dataset("/data/qa.jsonl", "problem", "final")
        '/data/qa.jsonl#question=problem&answer=final'
    """
    for what, f in (("question_field", question_field), ("answer_field", answer_field)):
        if not isinstance(f, str) or not f or any(c in f for c in "#&="):
            raise ValueError(f"{what} must be a non-empty field name without '#&=', got {f!r}")
    p = str(Path(path).expanduser().resolve())
    if (question_field, answer_field) == ("question", "answer"):
        return p
    return f"{p}{SPEC_SEP}question={question_field}&answer={answer_field}"


def is_user_dataset(name: str) -> bool:
    """Whether ``name`` is a user JSONL dataset (a path ending in ``.jsonl``, maybe with fields).

    Example:
        >>> is_user_dataset("my/qa.jsonl"), is_user_dataset("gsm8k")
        (True, False)
    """
    return isinstance(name, str) and name.split(SPEC_SEP, 1)[0].endswith(".jsonl")


def _parse_spec(name: str) -> tuple[Path, str, str]:
    path, _, fields = name.partition(SPEC_SEP)
    kv = dict(x.split("=", 1) for x in fields.split("&") if "=" in x) if fields else {}
    return Path(path), kv.get("question", "question"), kv.get("answer", "answer")


def load_user_jsonl(
    path: str | Path, question_field: str = "question", answer_field: str = "answer"
) -> list[Item]:
    """Read a user JSONL file: one JSON object per line with a question and an answer field.

    The answer text is also the gold "solution" whose representation is ``h_y``. An ``"id"``
    field is used as the item id if present (else ``<file stem>-<line>``).

    Raises:
        FileNotFoundError: no such file.
        ValueError: a line that is not a JSON object, lacks a field or has an empty / non-text
            value, a duplicate id, or no record at all; the message names the file and line.

    Example:
        >>> items = load_user_jsonl("qa.jsonl", "problem", "final")   # doctest: +SKIP
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no dataset file at {path}")
    items: list[Item] = []
    seen: set[str] = set()
    for lineno, line in jsonl_lines(path):
        if not line.strip():
            continue
        where = f"{path} line {lineno}"
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"malformed record in {where}: not valid JSON ({e.msg})") from e
        if not isinstance(rec, dict):
            raise ValueError(f"malformed record in {where}: expected a JSON object, got "
                             f"{type(rec).__name__}")  # fmt: skip
        vals = []
        for field_name in (question_field, answer_field):
            v = rec.get(field_name)
            ok = isinstance(v, (str, int, float)) and not isinstance(v, bool)
            if not ok or not str(v).strip():
                have = ", ".join(sorted(map(str, rec))) or "none"
                raise ValueError(
                    f"malformed record in {where}: field {field_name!r} must be non-empty "
                    f"text or a number, got {v!r} (fields: {have})"
                )
            vals.append(str(v).strip())
        rid = str(rec["id"]) if "id" in rec else f"{path.stem}-{lineno}"
        if rid in seen:
            raise ValueError(f"malformed record in {where}: duplicate id {rid!r}")
        seen.add(rid)
        items.append(Item(id=rid, question=vals[0], answer=vals[1], solution=vals[1]))
    if not items:
        raise ValueError(f"no records in {path}")
    return items


def _organism_items(n: int | None, seed: int) -> list[Item]:
    from tl_thinktok import organism

    probs = organism.problems("test", n if n is not None else ORGANISM_DEFAULT_N, seed=seed)
    return [
        Item(
            id=f"organism-s{seed}-{i}",
            question=p.question,
            answer=str(p.answer),
            solution=p.solution,
        )
        for i, p in enumerate(probs)
    ]


def load_dataset(name: str, n: int | None = None, seed: int = 0) -> list[Item]:
    """Load a bundled evaluation dataset.

    Args:
        name: ``"gsm8k"``, ``"math500"``, ``"aime24"``, ``"organism"``, or a user JSONL file
            (a path ending in ``.jsonl``; fields via :func:`user_dataset`).
        n: number of items; ``None`` = all. A subset is a seeded random sample kept in file order.
        seed: seed of the subset sample (and of the organism's problem generator).

    Returns:
        A list of :class:`Item`.

    Raises:
        ValueError: unknown name, or ``n`` not positive.

    Example:
        >>> len(load_dataset("aime24"))
        30
    """
    user = is_user_dataset(name)
    if name not in DATASETS and not user:
        raise ValueError(
            f"unknown dataset {name!r}; expected one of {DATASETS} or a path to a .jsonl file"
        )
    if n is not None:
        n = check_int("n", n, low=1)
    if name == "organism":
        return _organism_items(n, seed)
    if user:
        items = load_user_jsonl(*_parse_spec(name))
    else:
        items = load_jsonl_items(name, _data_path(name))
    if n is None or n >= len(items):
        return items
    keep = sorted(random.Random(seed).sample(range(len(items)), n))
    return [items[i] for i in keep]


def model_family(name_or_path: str) -> str:
    """Guess the prompt family of a model from its name or path.

    Returns ``"organism"`` for the bundled organism pair, ``"r1"`` for DeepSeek-R1 distills,
    ``"smollm2"`` for SmolLM2 (its chat template) and ``"reference"`` (the reference code's plain
    User/Assistant prompt) otherwise.

    Example:
        >>> model_family("deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B")
        'r1'
    """
    low = str(name_or_path).lower()
    if "organism" in low:
        return "organism"
    if "r1-distill" in low or "deepseek-r1" in low:
        return "r1"
    if "smollm2" in low:
        return "smollm2"
    return "reference"


def prompt_for(model_family: str, question: str) -> str:
    """Build the prompt text for a question (the tokenizer adds BOS where it does).

    Args:
        model_family: ``"r1"`` (DeepSeek-R1 chat template, opens ``<think>``), ``"reference"``
            (``"User: {q}\\nPlease reason step by step, ... \\boxed{}.\\n\\nAssistant:"``),
            ``"raw"`` (the problem text alone, as the paper's MI traces), ``"organism"`` or
            ``"smollm2"`` (SmolLM2-Instruct's chat template with the same instruction).
        question: the problem text.

    Example:
        >>> prompt_for("raw", "1+1?")
        '1+1?'
    """
    if not isinstance(question, str):
        raise TypeError(f"question must be str, got {type(question).__name__}")
    if model_family == "r1":
        return R1_PROMPT.format(q=question)
    if model_family == "reference":
        return REFERENCE_PROMPT.format(q=question)
    if model_family == "raw":
        return question
    if model_family == "smollm2":
        return SMOLLM2_PROMPT.format(q=question)
    if model_family == "organism":
        from tl_thinktok import organism

        return organism.prompt(question)
    raise ValueError(f"unknown model family {model_family!r}; expected one of {FAMILIES}")


def trace_prompt_family(model_family: str) -> str:
    """Prompt family of MI traces for a model family.

    The raw question, as the paper's traces of R1-distills (which continue a bare question into
    reasoning), except for models that need their own format: the organism, and chat-tuned
    SmolLM2, which answers a bare question with its end token at once (most GSM8K traces were one
    step long) and reasons under its chat template.

    Example:
        >>> trace_prompt_family("r1"), trace_prompt_family("smollm2")
        ('raw', 'smollm2')
    """
    return model_family if model_family in ("organism", "smollm2") else "raw"


def _boxed(answer: str) -> str:
    return "\\boxed{" + answer + "}"


def last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` in ``text`` (balanced braces), or ``None``.

    Example:
        >>> last_boxed("a \\boxed{7} b \\boxed{\\frac{1}{2}}")
        '\\frac{1}{2}'
    """
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    i = start + len("\\boxed{")
    depth = 1
    for j in range(i, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return text[i:j]
    return None


#: math-verify's per-call wall-clock limit (seconds) on the main thread (its default).
GRADE_TIMEOUT_S = 5


def _grade_timeout() -> int | None:
    """math-verify timeout for this thread: its signal alarm on the main thread, none elsewhere."""
    return GRADE_TIMEOUT_S if threading.current_thread() is threading.main_thread() else None


def grade(name: str, text: str, answer: str) -> bool:
    """Whether generated ``text`` contains the gold ``answer``.

    Real datasets: math-verify parses the last ``\\boxed{}`` of the generated text (else the
    whole text) and the gold answer (wrapped in ``\\boxed{}``) and checks equivalence. The
    organism uses ``tl_thinktok.organism.grade``. Parse failures count as wrong.

    Any thread gives the same result: math-verify's timeout (``GRADE_TIMEOUT_S`` per parse or
    comparison) uses ``signal.alarm``, which only the main thread can set, so other threads run
    it without a time limit. Only an input whose grading takes longer than the limit — a
    pathological expression, counted wrong on the main thread — can grade differently.

    Example:
        >>> grade("math500", "so \\\\boxed{\\\\frac{1}{2}}", "0.5")
        True
    """
    if name == "organism":
        from tl_thinktok import organism

        try:
            gold = int(str(answer).strip())
        except ValueError as e:
            raise ValueError(f"organism answers are integers, got {answer!r}") from e
        return bool(organism.grade(text, gold))
    if name not in FILE_DATASETS and not is_user_dataset(name):
        raise ValueError(f"unknown dataset {name!r}; expected one of {DATASETS} or a .jsonl path")
    from math_verify import parse, verify

    limit = _grade_timeout()
    try:
        gold = parse(_boxed(str(answer)), parsing_timeout=limit)
        boxed = last_boxed(text)
        pred = parse(_boxed(boxed) if boxed is not None else text, parsing_timeout=limit)
        if not gold or not pred:
            return False
        return bool(verify(gold, pred, timeout_seconds=limit))
    except Exception:  # math-verify raises on exotic LaTeX / timeouts: count as wrong
        return False
