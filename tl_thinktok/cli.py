"""Command line interface: ``python -m tl_thinktok`` / ``tl-thinktok``.

Subcommands:
    info MODEL [--host hooked|bridge] [--dtype float32] [--device cpu]
        Load MODEL with :func:`tl_thinktok.loading.load_model` and print its shape and provenance.
    reproduce ...
        Run the paper's experiments (:func:`tl_thinktok.reproduce.cli.reproduce_main`).
    train-organism ...
        Train the bundled model organism pair (``tl_thinktok.organism.train.main``).
    trace --model M --dataset D --index I --out report.html
        One problem, traced, as a self-contained HTML report (``tl_thinktok.report.cli.main``).

Bad input (an unknown model, a bad option) is one line on stderr and exit status 2.

Example:
    $ python -m tl_thinktok info stories260k
    $ tl-thinktok info stories260k --host bridge
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

_DISPATCH = {
    "reproduce": ("tl_thinktok.reproduce.cli", "reproduce_main"),
    "train-organism": ("tl_thinktok.organism.train", "main"),
    "trace": ("tl_thinktok.report.cli", "main"),
}


def model_summary(model: Any) -> dict[str, Any]:
    """The fields ``info`` prints, as a dict.

    Args:
        model: a model returned by :func:`tl_thinktok.loading.load_model`.

    Example:
        >>> from tl_thinktok.loading import load_model
        >>> model_summary(load_model("stories260k"))["n_layers"]
        5
    """
    info = getattr(model, "thinktok_info", None)
    cfg = model.cfg
    return {
        "name": getattr(info, "name", None),
        "architecture": getattr(info, "architecture", None),
        "host": getattr(info, "host", None),
        "dtype": getattr(info, "dtype", str(getattr(cfg, "dtype", ""))),
        "n_layers": cfg.n_layers,
        "d_model": cfg.d_model,
        "n_heads": cfg.n_heads,
        "n_key_value_heads": getattr(cfg, "n_key_value_heads", None) or cfg.n_heads,
        "d_vocab": cfg.d_vocab,
        "default_prepend_bos": getattr(cfg, "default_prepend_bos", None),
        "processing": getattr(info, "processing", None),
        "path": getattr(info, "path", None),
    }


def _cmd_info(args: argparse.Namespace) -> int:
    from tl_thinktok.loading import load_model

    try:
        model = load_model(args.model, host=args.host, dtype=args.dtype, device=args.device)
    except (ValueError, OSError) as err:
        print(f"tl-thinktok info: error: {err}", file=sys.stderr)
        return 2
    for key, value in model_summary(model).items():
        if isinstance(value, dict):
            value = ", ".join(f"{k}={v}" for k, v in value.items())
        print(f"{key}: {value}")
    return 0


def _dispatch(command: str, argv: list[str]) -> int:
    module_name, func_name = _DISPATCH[command]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name != module_name:
            raise
        print(
            f"error: `{command}` is not available: module {module_name} is missing", file=sys.stderr
        )
        return 2
    result = getattr(module, func_name)(argv)
    return int(result or 0)


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (exit 2), not the usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser (``info``, ``reproduce``, ``train-organism``, ``trace``)."""
    parser = _Parser(
        prog="tl-thinktok",
        description="Thinking tokens as information peaks, on TransformerLens models.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    info = sub.add_parser("info", help="load a model and print its shape and provenance")
    info.add_argument("model", help="bundled name (stories260k, organism, ...), path, or hub id")
    info.add_argument(
        "--host",
        choices=["hooked", "bridge"],
        default=None,
        help="default: hooked on TransformerLens 3.x, bridge on 4.x",
    )
    info.add_argument(
        "--dtype", default="float32", help="float32 (default), bfloat16, float16, ..."
    )
    info.add_argument("--device", default=None, help="torch device (default: cpu)")
    info.set_defaults(handler=_cmd_info)
    sub.add_parser(
        "reproduce",
        help="reproduce the paper's figures/tables (see `reproduce --help`)",
        add_help=False,
    )
    sub.add_parser("train-organism", help="train the bundled model organism pair", add_help=False)
    sub.add_parser(
        "trace", help="trace one problem into a self-contained HTML report", add_help=False
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``tl-thinktok`` / ``python -m tl_thinktok``.

    Args:
        argv: arguments without the program name (default: ``sys.argv[1:]``).

    Returns:
        The process exit code.

    Example:
        >>> main(["info", "stories260k"])  # doctest: +SKIP
        n_layers: 5
        ...
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in _DISPATCH:
        return _dispatch(argv[0], argv[1:])
    args = build_parser().parse_args(argv)
    return int(args.handler(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
