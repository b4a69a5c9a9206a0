"""Fig. 2: the MI trajectory of one trace per model, peaks marked.

Thin script over ``tl_thinktok.reproduce.experiments.fig2``; same as
``tl-thinktok reproduce --only fig2``.

Example:
    python experiments/fig2_mi_trajectories.py --model organism --quick --out /tmp/figs
"""

import sys

from tl_thinktok.reproduce.cli import script_main

if __name__ == "__main__":
    sys.exit(script_main("fig2", sys.argv[1:]))
