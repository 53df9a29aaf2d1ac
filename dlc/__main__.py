"""``python -m dlc``: the ``dlc`` command line."""

import sys

from runtime.cli import main

sys.exit(main())
