"""Answer control: MI against the own gold answer vs other problems' answers.

Thin script over ``tl_thinktok.reproduce.experiments.answer_control``; same as
``tl-thinktok reproduce --only answer_control``.

Example:
    python experiments/answer_control.py --model organism --quick --out /tmp/figs
"""

import sys

from tl_thinktok.reproduce.cli import script_main

if __name__ == "__main__":
    sys.exit(script_main("answer_control", sys.argv[1:]))
