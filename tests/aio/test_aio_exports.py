"""toolvisor.aio's public names: sorted, unique, real, and importable without warnings."""

from __future__ import annotations

import subprocess
import sys

import toolvisor.aio as aio


def test_all_is_sorted_unique_and_exists() -> None:
    assert aio.__all__ == sorted(set(aio.__all__))
    for name in aio.__all__:
        obj = getattr(aio, name)
        if name != "RunsOn":  # a Literal alias: typing's object
            assert obj.__module__.startswith("toolvisor.aio"), name
            assert obj.__name__ == name


def test_star_import_gives_exactly_all() -> None:
    namespace: dict[str, object] = {}
    exec("from toolvisor.aio import *", namespace)
    namespace.pop("__builtins__")
    assert set(namespace) == set(aio.__all__)


def test_imports_in_a_fresh_interpreter_without_warnings() -> None:
    result = subprocess.run(
        [sys.executable, "-W", "error", "-c", "import toolvisor.aio"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
