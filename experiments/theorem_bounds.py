"""Theorems 1–2 checked numerically: (a) an exact discrete reasoning process

Thin script over ``tl_thinktok.reproduce.experiments.theorem_bounds``; same as
``tl-thinktok reproduce --only theorem_bounds``.

Example:
    python experiments/theorem_bounds.py --model organism --quick --out /tmp/figs
"""

import sys

from tl_thinktok.reproduce.cli import script_main

if __name__ == "__main__":
    sys.exit(script_main("theorem_bounds", sys.argv[1:]))
