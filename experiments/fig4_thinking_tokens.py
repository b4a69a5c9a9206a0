"""Fig. 4 / Fig. 8: the top-15 tokens decoded at MI peaks (peak-token logit lens), per model, and

Thin script over ``tl_thinktok.reproduce.experiments.fig4``; same as
``tl-thinktok reproduce --only fig4``.

Example:
    python experiments/fig4_thinking_tokens.py --model organism --quick --out /tmp/figs
"""

import sys

from tl_thinktok.reproduce.cli import script_main

if __name__ == "__main__":
    sys.exit(script_main("fig4", sys.argv[1:]))
