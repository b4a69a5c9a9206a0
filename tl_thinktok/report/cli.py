"""``tl-thinktok trace``: one problem → greedy trace → self-contained HTML report.

Usage::

    tl-thinktok trace --model organism --dataset organism --index 0 --out report.html
    tl-thinktok trace --model /models/R1-Distill-Qwen-1.5B --dataset math500 --index 3 \\
        --max-new-tokens 1024 --out r.html
    tl-thinktok trace --model organism --dataset my_problems.jsonl --index 2 --out r.html

``--dataset`` is a bundled dataset (gsm8k, math500, aime24, organism) or a JSONL file with one
object per line holding ``question`` and ``answer`` (other field names with ``--question-field`` /
``--answer-field``, as in ``reproduce``; optionally ``solution``, the text ``h_y`` is read from; the
answer alone otherwise). The first line printed names TransformerLens, the host, transformers and
torch. Bad input — an index outside the dataset, an unknown
model, a dataset without answers — is one line on stderr and exit status 2.

Example:
    >>> from tl_thinktok.report.cli import main
    >>> main(["--model", "organism", "--dataset", "organism", "--index", "0",
    ...       "--out", "report.html"])                                  # doctest: +SKIP
    0
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from tl_thinktok.datasets import (
    DATASETS,
    FAMILIES,
    Item,
    grade,
    jsonl_lines,
    load_dataset,
    model_family,
    trace_prompt_family,
)
from tl_thinktok.datasets import prompt_for as _prompt_for
from tl_thinktok.hosts.versions import runtime_line

__all__ = ["TraceInputError", "build_parser", "load_item", "main"]

PROG = "tl-thinktok trace"


class TraceInputError(ValueError):
    """Bad input to ``tl-thinktok trace`` (reported as one line, exit status 2)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The ``trace`` subcommand's parser."""
    p = _Parser(prog=PROG, description="Trace one problem and write a self-contained HTML report.")
    p.add_argument("--model", required=True, help="bundled name (organism, ...), HF dir or hub id")
    p.add_argument(
        "--dataset", required=True, help=f"one of {', '.join(DATASETS)}, or a .jsonl file"
    )
    p.add_argument(
        "--question-field", default=None, help="question field of a --dataset .jsonl (question)"
    )
    p.add_argument(
        "--answer-field", default=None, help="answer field of a --dataset .jsonl (answer)"
    )
    p.add_argument("--index", required=True, type=int, help="0-based problem index")
    p.add_argument("--out", required=True, type=Path, help="output .html file")
    p.add_argument("--layer", type=int, default=-1, help="block of h_t and h_y (default -1)")
    p.add_argument("--max-new-tokens", type=int, default=256, help="generation budget")
    p.add_argument("--k", type=int, default=5, help="lens top-k per peak (default 5)")
    p.add_argument(
        "--prompt",
        choices=["auto", *FAMILIES],
        default="auto",
        help="prompt family; auto = the organism's own prompt for the organism, else the raw "
        "question (as the trace pass of `reproduce`)",
    )
    p.add_argument(
        "--host",
        choices=["hooked", "bridge"],
        default=None,
        help="default: hooked on TransformerLens 3.x, bridge on 4.x",
    )
    p.add_argument("--dtype", default="float32")
    p.add_argument("--device", default=None, help="torch device (default: cpu)")
    p.add_argument("--seed", type=int, default=0, help="seed of the organism's problem set")
    return p


def _jsonl_items(
    path: Path, question_field: str = "question", answer_field: str = "answer"
) -> list[Item]:
    """The items of a JSONL file (``solution`` optional: the answer stands in)."""
    items = []
    for lineno, line in jsonl_lines(path):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise TraceInputError(f"{path} line {lineno} is not valid JSON: {e}") from None
        if not isinstance(rec, dict) or not str(rec.get(question_field) or "").strip():
            raise TraceInputError(f"{path} line {lineno} has no {question_field!r}")
        answer = rec.get(answer_field)
        if answer is None or not str(answer).strip():
            raise TraceInputError(
                f"dataset {path} has no answers (line {lineno} lacks a non-empty "
                f"{answer_field!r}): the report needs the gold answer to compute MI against"
            )
        solution = str(rec.get("solution") or answer)
        ident = str(rec.get("id", f"{path.stem}-{len(items)}"))
        items.append(Item(ident, str(rec[question_field]), str(answer), solution))
    if not items:
        raise TraceInputError(f"dataset {path} is empty")
    return items


def load_item(
    dataset: str,
    index: int,
    seed: int = 0,
    question_field: str | None = None,
    answer_field: str | None = None,
) -> Item:
    """Problem ``index`` of a bundled dataset or a JSONL file.

    Args:
        question_field: question field of a JSONL file (default ``question``).
        answer_field: answer field of a JSONL file (default ``answer``).

    Raises:
        TraceInputError: unknown dataset, missing file, no answers, index outside the dataset,
            field names given for a bundled dataset.
        ValueError: a file that is not UTF-8 text (the message names it).
    """
    path = Path(dataset)
    fields_given = question_field is not None or answer_field is not None
    if dataset in DATASETS:
        if fields_given:
            raise TraceInputError("--question-field / --answer-field need --dataset <file>.jsonl")
        items = load_dataset(dataset, seed=seed)
    elif path.suffix == ".jsonl" or path.exists():
        if not path.is_file():
            raise TraceInputError(f"dataset file not found: {path}")
        items = _jsonl_items(path, question_field or "question", answer_field or "answer")
    else:
        raise TraceInputError(
            f"unknown dataset {dataset!r}: not one of {', '.join(DATASETS)} and not a .jsonl file"
        )
    if isinstance(index, bool) or not 0 <= index < len(items):
        raise TraceInputError(
            f"index {index} is outside dataset {dataset} ({len(items)} items: 0..{len(items) - 1})"
        )
    item = items[index]
    if not item.answer.strip():
        raise TraceInputError(f"item {index} of dataset {dataset} has no gold answer")
    return item


def _fail(message: str) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``tl-thinktok trace``; returns the exit status."""
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    print(runtime_line(args.host), flush=True)
    for name, low in (("max_new_tokens", 1), ("k", 1)):
        if getattr(args, name) < low:
            return _fail(f"--{name.replace('_', '-')} must be >= {low}, got {getattr(args, name)}")
    if args.out.exists() and args.out.is_dir():
        return _fail(f"--out {args.out} is a directory; give a file name such as report.html")
    try:
        item = load_item(
            args.dataset,
            args.index,
            seed=args.seed,
            question_field=args.question_field,
            answer_field=args.answer_field,
        )
    except (TraceInputError, ValueError, OSError) as err:
        return _fail(str(err))

    from transformers.utils import logging as hf_logging

    from tl_thinktok.generation import encode
    from tl_thinktok.loading import load_model
    from tl_thinktok.report.html import write_report
    from tl_thinktok.trace import MITrace

    hf_logging.disable_progress_bar()  # the "Loading weights" bars: the report is the output
    try:
        model = load_model(args.model, host=args.host, dtype=args.dtype, device=args.device)
    except (ValueError, OSError) as err:
        return _fail(str(err))
    fam = model_family(args.model)
    if args.prompt != "auto":
        fam = args.prompt
    else:
        fam = trace_prompt_family(fam)
    grade_as = args.dataset if args.dataset in DATASETS else "math500"
    try:
        ids = encode(model, _prompt_for(fam, item.question))
        trace = MITrace.from_model(
            model,
            ids,
            item.solution,
            layer=args.layer,
            max_new_tokens=args.max_new_tokens,
            keep_residuals=True,
            id=item.id,
            question=item.question,
            answer=item.answer,
            model=args.model,
        )
        trace.correct = bool(grade(grade_as, trace.text or "", item.answer))
        out = write_report(
            trace, model, args.out, k=args.k, dataset=args.dataset, solution=item.solution
        )
    except ValueError as err:  # a layer out of range, a prompt longer than the context, ...
        return _fail(str(err))
    print(f"wrote {out} ({trace.n_steps} steps, {len(trace.peaks)} peaks)")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
