"""``python -m skbottleneck.cli``: the same as the ``skbottleneck`` command."""

import sys

from . import main

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
