"""Fig. 3 + Table 2: reasoning model vs its base twin (3 traces each; mean / std / AOM of MI).

Thin script over ``tl_thinktok.reproduce.experiments.fig3_table2``; same as
``tl-thinktok reproduce --only fig3_table2``.

Example:
    python experiments/fig3_table2_base_vs_reasoning.py --model organism --quick --out /tmp/figs
"""

import sys

from tl_thinktok.reproduce.cli import script_main

if __name__ == "__main__":
    sys.exit(script_main("fig3_table2", sys.argv[1:]))
