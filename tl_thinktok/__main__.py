"""``python -m tl_thinktok``: see :mod:`tl_thinktok.cli`."""

import sys

from tl_thinktok.cli import main

if __name__ == "__main__":
    sys.exit(main())
