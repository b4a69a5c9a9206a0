"""Table 3: AOM and peak statistics per dataset (bundled ones and any --dataset path.jsonl).

Thin script over ``tl_thinktok.reproduce.experiments.table3``; same as
``tl-thinktok reproduce --only table3``.

Example:
    python experiments/table3_datasets.py --model organism --quick --out /tmp/figs
"""

import sys

from tl_thinktok.reproduce.cli import script_main

if __name__ == "__main__":
    sys.exit(script_main("table3", sys.argv[1:]))
