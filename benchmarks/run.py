"""Run toolvisor's benchmark suite: ``python benchmarks/run.py [--quick] [--json P] [--plot P]``.

The same as ``toolvisor bench``; see benchmarks/README.md for what is measured and how.
Needs the ``bench`` extra: ``pip install -e '.[bench]'``.
"""

from __future__ import annotations

import sys

from toolvisor._bench import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
