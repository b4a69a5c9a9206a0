"""Command line of ``tl-thinktok reproduce`` and of the scripts in ``experiments/``."""

from tl_thinktok.reproduce.core import build_parser, reproduce_main, script_main

__all__ = ["build_parser", "reproduce_main", "script_main"]
