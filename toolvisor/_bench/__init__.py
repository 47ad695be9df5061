"""toolvisor's benchmark suite (``toolvisor bench``, ``python benchmarks/run.py``).

Compares toolvisor with bare trio and with asyncio + tenacity + aiobreaker, side by side
in one run, contenders alternating round by round, and reports medians and ratios. The
sections: per-call overhead, failure path and open breaker, idempotency, timer lateness,
scale (100,000 calls over 1,000 actors) and idle actors. See benchmarks/README.md.

Needs the ``bench`` extra (tenacity, aiobreaker, psutil, matplotlib, coredis):
``pip install -e '.[bench]'``. Those packages are imported lazily.
"""

from __future__ import annotations

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Run the suite with command-line arguments ``argv`` (default: ``sys.argv[1:]``)."""
    from ._cli import run

    return run(argv)
