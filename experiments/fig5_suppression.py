"""Fig. 5: accuracy vs number of suppressed thinking words, against a random-token control.

Thin script over ``tl_thinktok.reproduce.experiments.fig5``; same as
``tl-thinktok reproduce --only fig5``.

Example:
    python experiments/fig5_suppression.py --model organism --quick --out /tmp/figs
"""

import sys

from tl_thinktok.reproduce.cli import script_main

if __name__ == "__main__":
    sys.exit(script_main("fig5", sys.argv[1:]))
