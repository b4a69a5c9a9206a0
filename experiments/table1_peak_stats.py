"""Table 1: peak statistics averaged over all traces of each model.

Thin script over ``tl_thinktok.reproduce.experiments.table1``; same as
``tl-thinktok reproduce --only table1``.

Example:
    python experiments/table1_peak_stats.py --model organism --quick --out /tmp/figs
"""

import sys

from tl_thinktok.reproduce.cli import script_main

if __name__ == "__main__":
    sys.exit(script_main("table1", sys.argv[1:]))
