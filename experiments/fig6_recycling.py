"""Fig. 6: accuracy of the original model vs Representation Recycling (RR).

Thin script over ``tl_thinktok.reproduce.experiments.fig6``; same as
``tl-thinktok reproduce --only fig6``.

Example:
    python experiments/fig6_recycling.py --model organism --quick --out /tmp/figs
"""

import sys

from tl_thinktok.reproduce.cli import script_main

if __name__ == "__main__":
    sys.exit(script_main("fig6", sys.argv[1:]))
