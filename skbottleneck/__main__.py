"""``python -m skbottleneck``: the same as the ``skbottleneck`` command."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
