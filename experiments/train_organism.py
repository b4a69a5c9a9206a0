"""Train the bundled model organisms (reasoning + base); thin wrapper of the library trainer.

Same as ``python -m tl_thinktok train-organism``; see ``tl_thinktok.organism.train.main``.

Example:
    python experiments/train_organism.py --smoke --out /tmp/organism-smoke
"""

from __future__ import annotations

import sys

from tl_thinktok.organism.train import main

if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
