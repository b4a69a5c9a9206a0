"""Peak robustness: do the paper's peaks survive a scale-controlled estimator, and do they just

Thin script over ``tl_thinktok.reproduce.experiments.peaks_robustness``; same as
``tl-thinktok reproduce --only peaks_robustness``.

Example:
    python experiments/peaks_robustness.py --model organism --quick --out /tmp/figs
"""

import sys

from tl_thinktok.reproduce.cli import script_main

if __name__ == "__main__":
    sys.exit(script_main("peaks_robustness", sys.argv[1:]))
