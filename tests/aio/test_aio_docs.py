"""docs/asyncio.md: what its FastAPI service answers (tests/test_docs.py runs every
block of the page); the README's asyncio section points to the page."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "asyncio.md"


def python_blocks(path: Path) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```$", path.read_text(), flags=re.S | re.M)


def test_the_fastapi_service_answers_as_the_page_says() -> None:
    block = next(b for b in python_blocks(PAGE) if "fastapi" in b)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(block, str(PAGE), "exec"), {"__name__": "__main__"})
    assert out.getvalue().splitlines() == [
        "{'order_id': 'o-1', 'status': 'shipped'}",
        "404",
        "422",
    ]


def test_the_page_runs_its_examples_and_says_why_a_fragment_does_not() -> None:
    blocks = python_blocks(PAGE)
    fragments = [b for b in blocks if b.startswith("# fragment")]
    assert len(blocks) - len(fragments) >= 5
    assert [b.splitlines()[0] for b in fragments] == [
        "# fragment: needs langgraph and langchain-core, which this project does not install"
    ]


def test_readme_links_the_page() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "## From asyncio" in readme and "(docs/asyncio.md)" in readme
