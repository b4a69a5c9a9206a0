"""A synthetic reasoning task and its word-level tokenizer: the data of the "model organism".

No real reasoning model can be downloaded here, so ``tl_thinktok`` ships a tiny *model organism*
of one: a small Qwen2 trained (``tl_thinktok.organism.train``) on multi-step integer word problems
whose worked solutions *think aloud*, plus a *base* twin trained on terse solutions of the same
problems. This module holds everything about the data:

* :class:`Problem` and :func:`problems` -- seeded word problems ("Mia has 23 apples. She buys 7
  more apples. ...") with 3-6 operations, every intermediate value and the final answer in
  ``ANSWER_RANGE`` (0..99), and disjoint train / test splits (split by a hash of the question).
* :func:`reasoning_trace` / :func:`base_trace` -- the two completion styles. The reasoning trace
  opens every step with a thinking word ("Then", "Now", "Next"), states every result after "So",
  checks some results ("Let me check: ..."), and on every step that needs a carry or a borrow it
  first writes the wrong value (the carry / borrow forgotten), then "Wait," and a correction.
  Thinking words therefore carry real function: without "Wait" the first, wrong, value stays.
* :func:`prompt`, :func:`extract_answer`, :func:`grade` -- prompt format and grading.
* :func:`tokenizer` -- a word-level HF tokenizer (digits are single tokens, thinking words are
  single tokens, ``<think>`` / ``</think>`` / ``\\boxed{`` markers, a vocabulary padded with real
  filler words that the question templates use).
* ``THINKING_WORDS`` and :func:`thinking_tokens`.

Example:
    >>> from tl_thinktok import organism
    >>> p = organism.problems("test", 1, seed=0)[0]
    >>> organism.grade(organism.base_trace(p), p.answer)
    True
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tl_thinktok._validate import check_int

if TYPE_CHECKING:  # pragma: no cover
    from transformers import PreTrainedTokenizerFast

ANSWER_RANGE: range = range(0, 100)
"""Every intermediate value and every final answer lies in this range (|Y| = 100)."""

MIN_OPS, MAX_OPS = 3, 6
THINK_OPEN, THINK_CLOSE, BOX_OPEN = "<think>", "</think>", "\\boxed{"
__all__ = [
    "SPECIAL_TOKENS",
    "TEST_FRACTION",
    "NAMES",
    "FEMALE",
    "OBJECTS",
    "Operation",
    "Problem",
    "split_of",
    "problems",
    "prompt",
    "reasoning_trace",
    "base_trace",
    "extract_answer",
    "grade",
    "vocabulary",
    "tokenizer",
    "thinking_tokens",
    "training_text",
    "THINKING_WORDS",
    "THINK_OPEN",
    "ANSWER_RANGE",
    "MIN_OPS",
    "MAX_OPS",
    "THINK_CLOSE",
    "BOX_OPEN",
]

SPECIAL_TOKENS = ["<pad>", "<s>", "</s>", "<unk>"]
TEST_FRACTION = 0.1
"""Fraction of all problems (by hash of the question) that belong to the test split."""

THINKING_WORDS: list[str] = [
    "So",
    "Wait",
    "Since",
    "Now",
    "Then",
    "Next",
    "Yes",
    "Okay",
    "First",
    "Therefore",
    "Let",
    "Hmm",
    "Actually",
    "But",
    "Maybe",
    "Alternatively",
]
"""Thinking words of the reasoning organism, most frequent first (in its training traces).

"So" states every result; "Wait" / "Since" make every carry / borrow correction; "Now" / "Then" /
"Next" open steps; "Let" / "Hmm" open checks and "Yes" closes them; "Okay" / "First" /
"Therefore" open and close the trace. The last four are in the vocabulary but unused by traces.
"""

NAMES = (
    "Mia Tom Anna Ben Lily Sam Emma Jack Nora Leo Ava Max Ella Noah Zoe Liam Ruby Owen Ivy Luke "
    "Grace Adam Chloe Ryan Maya Eli Rosa Finn Lucy Omar Sara Hugo Alice Kai Nina Paul Iris Dan "
    "Clara Theo Julia Alex Hanna Ivan Olga Marco Lena Raj Priya Yuki Kenji Ali Fatima Jonas Eva "
    "Pablo Sofia Felix Mila"
).split()
FEMALE = set(
    "Mia Anna Lily Emma Nora Ava Ella Zoe Ruby Ivy Grace Chloe Maya Rosa Lucy Sara Alice Nina "
    "Iris Clara Julia Hanna Olga Lena Priya Yuki Fatima Eva Sofia Mila".split()
)
OBJECTS = (
    "apples pears oranges plums lemons cherries grapes peaches melons berries cookies cakes "
    "muffins candies marbles stickers pencils crayons books cards coins stamps shells stones "
    "buttons beads balloons toys blocks puzzles kites ribbons flowers roses tulips eggs nuts "
    "carrots potatoes tomatoes cupcakes donuts pies bottles cups plates spoons bags boxes hats "
    "socks gloves"
).split()
_ADJECTIVES = (
    "sunny rainy windy cloudy quiet noisy busy calm bright dark warm cold cool hot green blue "
    "red yellow purple brown white black grey pink golden silver small big tiny huge long short "
    "tall old new young fresh clean dirty soft hard smooth rough heavy light happy sad lazy "
    "brave clever kind gentle proud shy funny silly strange lovely pretty ugly friendly lucky "
    "busy empty full round square sweet sour bitter salty spicy early late slow fast wide narrow "
    "deep shallow wild tame loud famous simple fancy plain rich poor cheap expensive modern "
    "ancient wooden metal plastic glass paper soft sleepy hungry thirsty tired careful careless "
    "curious eager excited nervous patient polite quick rapid steady gentle grand little giant "
    "mighty magic secret hidden open closed crowded lonely peaceful pleasant rare usual"
).split()
_NOUNS = (
    "garden park school market library kitchen forest river lake beach mountain village city "
    "street road bridge tower castle farm barn field meadow hill valley island harbor station "
    "museum theater church hospital office shop bakery cafe restaurant hotel house room hall "
    "yard fence gate door window roof floor wall table chair desk bed lamp clock mirror carpet "
    "curtain shelf drawer basket bucket jar kettle oven stove fridge sink tap bench swing slide "
    "tree bush grass leaf branch root seed cloud rain snow wind storm sun moon star sky sea wave "
    "sand rock dog cat bird fish horse cow sheep goat pig duck goose hen rabbit mouse fox wolf "
    "bear deer frog owl bee ant spider snail turtle lion tiger monkey zebra camel panda whale "
    "dolphin shark teacher doctor farmer baker driver pilot sailor painter singer dancer artist "
    "writer student neighbor friend cousin uncle aunt grandma grandpa brother sister family "
    "team class club band crowd king queen prince princess knight dragon giant wizard robot "
    "train bus car bike boat ship plane truck rocket wagon ticket letter song story picture "
    "game party concert festival holiday morning evening night week weekend summer winter "
    "spring autumn birthday lesson trip journey adventure picnic parade music bell drum piano "
    "guitar violin flute"
).split()
_VERBS = (
    "likes loves enjoys visits watches sees hears walks runs sings dances reads writes paints "
    "draws plays cooks bakes cleans waits smiles laughs sleeps dreams thinks wonders remembers "
    "hopes wants"
).split()
_FILLER = (
    "the a an is are was were it its there this that these those very quite rather really "
    "today yesterday tomorrow always often sometimes never near far inside outside behind "
    "above below under over between beside around through at in on of to from with without "
    "for about after before during and or but because while when where who what which how "
    "many much more less most some any every each all both half now then again also too "
    "just only still already here not no yes he she they him her them his their my your our "
    "we you i me us have has had does did do say says said go goes went come comes came make "
    "makes made take takes took give gives gave get gets got find finds found buy buys bought "
    "lose loses lost sell sells sold eat eats ate pick picks picked keep keeps share shares "
    "double doubles triple triples number total left right check let step by solve work "
    "through starts start answer day question so need must carry borrow less than greater than "
    "is more times plus minus equals good seems correct wrong mistake careful okay"
).split()

_WORD_RE = re.compile(r"\\boxed\{([^{}]*)\}")


@dataclass(frozen=True)
class Operation:
    """One operation on the tracked count: ``kind`` in add / sub / double / half, operand ``n``.

    ``phrase`` is the question sentence body (after the pronoun); ``other`` is a second person.
    """

    kind: str
    n: int
    phrase: str

    def apply(self, value: int) -> int:
        """Return ``value`` after this operation (raises ``ValueError`` if out of range)."""
        if self.kind == "add":
            out = value + self.n
        elif self.kind == "sub":
            out = value - self.n
        elif self.kind == "double":
            out = value * 2
        elif self.kind == "half":
            if value % 2:
                raise ValueError(f"cannot halve odd value {value}")
            out = value // 2
        else:
            raise ValueError(f"unknown operation kind {self.kind!r}")
        if out not in ANSWER_RANGE:
            raise ValueError(f"operation {self.kind} {self.n} on {value} leaves ANSWER_RANGE")
        return out


@dataclass(frozen=True)
class Problem:
    """A word problem with its answer and gold worked solution.

    Attributes:
        question: the question text.
        answer: the integer answer, in ``ANSWER_RANGE``.
        solution: the gold terse worked solution ending in ``\\boxed{answer}`` (what the paper
            feeds through the model for the answer representation).
        name: the tracked person; obj: the counted objects; start: the initial count.
        ops: the operations, in order.
        values: the running values (``values[0] == start``, ``values[-1] == answer``).

    Example:
        >>> p = problems("train", 1, seed=3)[0]
        >>> p.values[-1] == p.answer
        True
    """

    question: str
    answer: int
    solution: str
    name: str
    obj: str
    start: int
    ops: tuple[Operation, ...]
    values: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict (``ops`` as dicts)."""
        d = asdict(self)
        d["ops"] = [asdict(o) for o in self.ops]
        d["values"] = list(self.values)
        return d


def _pronoun(name: str) -> str:
    return "She" if name in FEMALE else "He"


def _op_phrase(kind: str, n: int, obj: str, other: str, pron: str) -> str:
    poss = "her" if pron == "She" else "his"
    if kind == "add":
        return random.Random(f"{n}{other}{obj}").choice(
            [
                f"buys {n} more {obj}",
                f"finds {n} {obj}",
                f"gets {n} more {obj} from {other}",
                f"picks {n} more {obj}",
            ]
        )
    if kind == "sub":
        return random.Random(f"{n}{other}{obj}").choice(
            [
                f"gives {n} {obj} to {other}",
                f"loses {n} {obj}",
                f"sells {n} {obj}",
                f"shares {n} {obj} with {other}",
            ]
        )
    if kind == "double":
        return f"doubles the number of {poss} {obj}"
    if kind == "half":
        return f"gives half of {poss} {obj} to {other}"
    raise ValueError(f"unknown operation kind {kind!r}")


def _filler(rng: random.Random) -> str:
    a, b = rng.sample(_ADJECTIVES, 2)
    n1, n2 = rng.sample(_NOUNS, 2)
    v = rng.choice(_VERBS)
    return rng.choice(
        [
            f"The {a} {n1} is near the {b} {n2}.",
            f"It is a {a} day at the {n1}.",
            f"The {n1} {v} the {a} {n2}.",
            f"There is a {a} {n1} behind the {n2}.",
        ]
    )


def _sample_problem(rng: random.Random) -> Problem:
    name = rng.choice(NAMES)
    pron = _pronoun(name)
    obj = rng.choice(OBJECTS)
    n_ops = rng.randint(MIN_OPS, MAX_OPS)
    value = rng.randint(5, 60)
    start = value
    values = [value]
    ops: list[Operation] = []
    for _ in range(n_ops):
        kinds, weights = [], []
        if value <= 89:
            kinds.append("add"), weights.append(0.38)
        if value >= 2:
            kinds.append("sub"), weights.append(0.38)
        if 1 <= value <= 49:
            kinds.append("double"), weights.append(0.12)
        if value >= 2 and value % 2 == 0:
            kinds.append("half"), weights.append(0.12)
        kind = rng.choices(kinds, weights)[0]
        if kind == "add":
            n = rng.randint(1, min(30, ANSWER_RANGE[-1] - value))
        elif kind == "sub":
            n = rng.randint(1, min(30, value))
        else:
            n = 2
        other = rng.choice([x for x in NAMES if x != name])
        op = Operation(kind, n, _op_phrase(kind, n, obj, other, pron))
        value = op.apply(value)
        ops.append(op)
        values.append(value)
    sentences = [f"{name} has {start} {obj}."] + [f"{pron} {op.phrase}." for op in ops]
    sentences.insert(rng.randint(1, len(sentences)), _filler(rng))
    sentences.append(f"How many {obj} does {name} have now?")
    question = " ".join(sentences)
    p = Problem(question, value, "", name, obj, start, tuple(ops), tuple(values))
    return Problem(question, value, base_trace(p), name, obj, start, tuple(ops), tuple(values))


def split_of(question: str) -> str:
    """Return ``"test"`` or ``"train"`` for a question, by a stable hash of its text."""
    h = int.from_bytes(hashlib.sha256(question.encode()).digest()[:8], "big")
    return "test" if (h % 1000) < TEST_FRACTION * 1000 else "train"


def problems(split: str, n: int, seed: int = 0) -> list[Problem]:
    """Return ``n`` seeded problems of one split (train and test are disjoint by construction).

    Args:
        split: ``"train"`` or ``"test"``.
        n: number of problems (>= 0).
        seed: random seed; same ``(split, n, seed)`` gives the same list.

    Example:
        >>> len(problems("test", 3, seed=0))
        3
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    n = check_int("n", n, low=0)
    rng = random.Random(f"organism-{seed}")
    out: list[Problem] = []
    seen: set[str] = set()
    while len(out) < n:
        p = _sample_problem(rng)
        if split_of(p.question) != split or (split == "test" and p.question in seen):
            continue
        seen.add(p.question)
        out.append(p)
    return out


def prompt(question: str) -> str:
    """The organism's prompt: ``"Question: <question>\\nAnswer:"``.

    Example:
        >>> prompt("Mia has 3 apples. How many apples does Mia have now?")[:9]
        'Question:'
    """
    if not isinstance(question, str):
        raise TypeError(f"question must be a str, got {type(question).__name__}")
    return f"Question: {question}\nAnswer:"


def _needs_fix(op: Operation, value: int) -> bool:
    if op.kind == "add":
        return value % 10 + op.n % 10 >= 10
    if op.kind == "sub":
        return value % 10 < op.n % 10
    return False


def _sym(op: Operation) -> str:
    return {"add": f"+ {op.n}", "sub": f"- {op.n}", "double": "* 2", "half": "/ 2"}[op.kind]


def reasoning_trace(p: Problem, seed: int | None = None) -> str:
    """The reasoning organism's completion for ``p``: ``<think> ... </think> \\boxed{N}``.

    Every step starts with a thinking word and states its result after "So". Steps that need a
    carry or a borrow first forget it (wrong value), then "Wait," looks at the ones digits and
    "Since ..." states the corrected value. About 30% of add / sub steps are checked with the
    inverse operation ("Let me check: ...").

    Args:
        p: the problem.
        seed: chooses the optional phrasings (openers, checks); default: derived from the question.

    Example:
        >>> p = problems("train", 1, seed=0)[0]
        >>> reasoning_trace(p).startswith("<think> Okay")
        True
    """
    rng = random.Random(p.question if seed is None else f"{seed}-{p.question}")
    pron = _pronoun(p.name).lower()
    parts = [f"{THINK_OPEN} Okay, let me solve this step by step."]
    parts.append(f"First, {p.name} has {p.start}.")
    for i, op in enumerate(p.ops):
        v, r = p.values[i], p.values[i + 1]
        opener = rng.choice(["Then", "Now", "Next"])
        verb = op.phrase.split(" ")[0]
        expr = f"{v} {_sym(op)}"
        if _needs_fix(op, v):
            wrong = r - 10 if op.kind == "add" else r + 10
            a, b = v % 10, op.n % 10
            parts.append(f"{opener} {pron} {verb}. So {expr} = {wrong}.")
            if op.kind == "add":
                parts.append(f"Wait, {a} + {b} = {a + b}. Since it is more than 9, I carry.")
            else:
                parts.append(f"Wait, {a} is less than {b}. Since I must borrow,")
            parts.append(f"{expr} = {r}.")
        else:
            parts.append(f"{opener} {pron} {verb}. So {expr} = {r}.")
        if op.kind in ("add", "sub") and rng.random() < 0.3:
            inv = f"{r} - {op.n}" if op.kind == "add" else f"{r} + {op.n}"
            lead = "Hmm, let me check:" if rng.random() < 0.3 else "Let me check:"
            parts.append(f"{lead} {inv} = {v}. Yes.")
    parts.append(f"Therefore, the answer is {p.answer}. {THINK_CLOSE} {BOX_OPEN}{p.answer}}}")
    return " ".join(parts)


def base_trace(p: Problem) -> str:
    """The base organism's terse completion: ``"7 + 5 = 12. 12 - 3 = 9. \\boxed{9}"``.

    This is also ``Problem.solution`` (the gold solution used for the answer representation).

    Example:
        >>> p = problems("train", 1, seed=0)[0]
        >>> base_trace(p).endswith(f"\\\\boxed{{{p.answer}}}")
        True
    """
    steps = [f"{p.values[i]} {_sym(op)} = {p.values[i + 1]}." for i, op in enumerate(p.ops)]
    return " ".join(steps + [f"{BOX_OPEN}{p.answer}}}"])


def extract_answer(text: str) -> int | None:
    """The integer in the last ``\\boxed{...}`` of ``text`` (spaces between digits allowed).

    Returns ``None`` if there is no box or the last box does not hold a plain integer.

    Example:
        >>> extract_answer("so \\\\boxed{ 4 2 }")
        42
        >>> extract_answer("no box") is None
        True
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    boxes = _WORD_RE.findall(text)
    if not boxes:
        return None
    content = re.sub(r"\s+", "", boxes[-1])
    if not re.fullmatch(r"-?[0-9]+", content):
        return None
    return int(content)


def grade(text: str, answer: int) -> bool:
    """True iff the last boxed integer in ``text`` equals ``answer``.

    Example:
        >>> grade("</think> \\\\boxed{1 2}", 12)
        True
    """
    answer = check_int("answer", answer)
    return extract_answer(text) == answer


def vocabulary() -> list[str]:
    """The word-level vocabulary (specials first, then markers, digits, punctuation, words)."""
    words: list[str] = list(SPECIAL_TOKENS) + [THINK_OPEN, THINK_CLOSE, BOX_OPEN]
    words += [str(d) for d in range(10)]
    words += list(".,:;?!+-*/=(){}'\"")
    words += ["Question", "Answer", "How", "The", "It", "There", "She", "He", "I"]
    words += THINKING_WORDS + NAMES + OBJECTS + _ADJECTIVES + _NOUNS + _VERBS + _FILLER
    seen: set[str] = set()
    out = []
    for w in words:
        if w not in seen:
            seen.add(w)
            out.append(w)
    return out


def tokenizer(path: str | Path | None = None) -> PreTrainedTokenizerFast:
    """Build the organism's word-level ``PreTrainedTokenizerFast`` (optionally save it to ``path``).

    Words and punctuation are single tokens, every digit is its own token, ``<think>``,
    ``</think>`` and ``\\boxed{`` are single tokens; ``<s>`` is *not* added automatically.
    ``decode`` joins tokens with spaces (so ``\\boxed{42}`` decodes as ``\\boxed{ 4 2 }``, which
    :func:`extract_answer` reads as 42).

    Example:
        >>> tok = tokenizer()
        >>> tok.convert_ids_to_tokens(tok("So 42")["input_ids"])
        ['So', '4', '2']
    """
    from tokenizers import AddedToken, Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(vocabulary())}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.WhitespaceSplit(),
            pre_tokenizers.Punctuation(behavior="isolated"),
            pre_tokenizers.Digits(individual_digits=True),
        ]
    )
    tok.add_special_tokens([AddedToken(t, special=True) for t in SPECIAL_TOKENS])
    tok.add_tokens([AddedToken(t, normalized=False) for t in (THINK_OPEN, THINK_CLOSE, BOX_OPEN)])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        clean_up_tokenization_spaces=False,
    )
    if path is not None:
        Path(path).mkdir(parents=True, exist_ok=True)
        fast.save_pretrained(str(path))
    return fast


def thinking_tokens(tokenizer: Any, words: Sequence[str] | None = None) -> Any:
    """``tl_thinktok.vocab.ThinkingTokens`` for the organism's thinking words.

    Args:
        tokenizer: the organism tokenizer (or any HF tokenizer).
        words: words to use (default ``THINKING_WORDS``, most frequent first).

    Example:
        >>> tt = thinking_tokens(tokenizer())  # doctest: +SKIP
    """
    from tl_thinktok.vocab import ThinkingTokens

    return ThinkingTokens.from_words(tokenizer, list(THINKING_WORDS if words is None else words))


def training_text(p: Problem, style: str) -> tuple[str, str]:
    """``(prompt, completion)`` for training: style ``"reasoning"`` or ``"base"``."""
    if style == "reasoning":
        return prompt(p.question), " " + reasoning_trace(p)
    if style == "base":
        return prompt(p.question), " " + base_trace(p)
    raise ValueError(f"style must be 'reasoning' or 'base', got {style!r}")
