"""Which steps matter? MI beside entropy, lens depth and counterfactual importance.

Thin script over ``tl_thinktok.reproduce.experiments.importance``; same as
``tl-thinktok reproduce --only importance``.

Example:
    python experiments/importance.py --model organism --quick --out /tmp/figs
"""

import sys

from tl_thinktok.reproduce.cli import script_main

if __name__ == "__main__":
    sys.exit(script_main("importance", sys.argv[1:]))
