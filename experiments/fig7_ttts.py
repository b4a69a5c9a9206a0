"""Fig. 7: accuracy vs thinking-token budget, original vs thinking-token test-time scaling.

Thin script over ``tl_thinktok.reproduce.experiments.fig7``; same as
``tl-thinktok reproduce --only fig7``.

Example:
    python experiments/fig7_ttts.py --model organism --quick --out /tmp/figs
"""

import sys

from tl_thinktok.reproduce.cli import script_main

if __name__ == "__main__":
    sys.exit(script_main("fig7", sys.argv[1:]))
