"""Lazy imports of the benchmark-only packages, with a message that says what to install."""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["BenchDependencyError", "require"]

_HINT = "pip install -e '.[bench]'"


class BenchDependencyError(ImportError):
    """A package of the ``bench`` extra is missing (the user's environment's fault)."""


def require(module: str) -> ModuleType:
    """Import ``module`` or raise :class:`BenchDependencyError` naming the fix."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.split(".", 1)[0]
        raise BenchDependencyError(
            f"the benchmarks need {top!r}, which is not installed: run {_HINT} "
            f"(from the repository root)"
        ) from exc
