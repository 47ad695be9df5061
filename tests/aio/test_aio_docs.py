"""docs/asyncio.md: every python block runs (as written) unless it says it is a fragment;
the README's asyncio section points there."""

from __future__ import annotations

import asyncio
import contextlib
import io
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "asyncio.md"
FRAGMENT = "# fragment:"


def python_blocks(path: Path) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```$", path.read_text(), flags=re.S | re.M)


BLOCKS = python_blocks(PAGE)
RUNNABLE = [b for b in BLOCKS if not b.startswith(FRAGMENT)]


def test_the_page_has_runnable_blocks_and_marks_its_fragments() -> None:
    assert len(RUNNABLE) >= 5
    for block in BLOCKS:
        if block.startswith(FRAGMENT):
            assert "not run by the tests" in PAGE.read_text()


@pytest.mark.parametrize("block", RUNNABLE, ids=[f"block{i}" for i in range(len(RUNNABLE))])
def test_block_runs(block: str) -> None:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(block, str(PAGE), "exec"), {"__name__": "__main__"})
    assert out.getvalue()  # every runnable block prints what it shows
    with pytest.raises(RuntimeError):
        asyncio.get_running_loop()  # asyncio.run finished: nothing left running


def test_fastapi_block_answers_as_the_page_says() -> None:
    block = next(b for b in RUNNABLE if "fastapi" in b)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(block, str(PAGE), "exec"), {"__name__": "__main__"})
    assert out.getvalue().splitlines() == [
        "{'order_id': 'o-1', 'status': 'shipped'}",
        "404",
        "422",
    ]


def test_readme_links_the_page() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "## From asyncio" in readme and "docs/asyncio.md" in readme
