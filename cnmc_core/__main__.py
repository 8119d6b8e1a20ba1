"""``python -m cnmc_core``: see :mod:`cnmc_core.cli`."""

import sys

from .cli.main import main

if __name__ == "__main__":
    sys.exit(main())
