"""``python -m toolvisor``: the ``toolvisor`` command (see :mod:`toolvisor.cli`)."""

import sys

from toolvisor.cli import main

sys.exit(main())
