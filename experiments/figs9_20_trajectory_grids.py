"""Figs. 9–20: every MI trajectory of every model, 4-column grids.

Thin script over ``tl_thinktok.reproduce.experiments.figs9_20``; same as
``tl-thinktok reproduce --only figs9_20``.

Example:
    python experiments/figs9_20_trajectory_grids.py --model organism --quick --out /tmp/figs
"""

import sys

from tl_thinktok.reproduce.cli import script_main

if __name__ == "__main__":
    sys.exit(script_main("figs9_20", sys.argv[1:]))
