"""Every Python block of the README and docs/ runs as shown, or says it is a fragment.

A block whose first line starts with ``# fragment`` is a piece of a program (it names
things the reader has, such as a Redis server); every other block is run: plain blocks
as a program in a fresh directory, blocks that define ``test_`` functions with pytest, in
a project set up as docs/testing.md tells (its ``pyproject.toml`` and ``conftest.py``
blocks). The docs must not point outside the repository, and a page that names "the
seed" links to the page that says what it is.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")])
_BLOCK = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)


def blocks(page: Path, language: str = "python") -> list[tuple[int, str]]:
    """The ``language`` blocks of ``page``: (line number, code)."""
    text = page.read_text(encoding="utf-8")
    return [
        (text.count("\n", 0, m.start()) + 1, m.group(2))
        for m in _BLOCK.finditer(text)
        if m.group(1) == language
    ]


def _is_fragment(code: str) -> bool:
    return code.lstrip().startswith("# fragment")


#: Pages whose programs need services started around them; a test of their own runs them
#: as the page says (workers on a real Redis for the remote quick start).
RUN_ELSEWHERE = {"remote.md": "tests/remote/test_docs_remote.py"}


def test_pages_run_elsewhere_are_run_there() -> None:
    for page, test in RUN_ELSEWHERE.items():
        assert page in (ROOT / test).read_text()


def _is_pytest(code: str) -> bool:
    return re.search(r"^(async )?def test_", code, re.MULTILINE) is not None


PROGRAMS = [
    pytest.param(page, line, code, id=f"{page.relative_to(ROOT)}:{line}")
    for page in PAGES
    if page.name not in RUN_ELSEWHERE
    for line, code in blocks(page)
    if not _is_fragment(code) and not _is_pytest(code)
]
TESTS = [
    pytest.param(page, line, code, id=f"{page.relative_to(ROOT)}:{line}")
    for page in PAGES
    for line, code in blocks(page)
    if not _is_fragment(code) and _is_pytest(code)
]


def test_the_pages_have_blocks_to_run() -> None:
    assert len(PROGRAMS) >= 8
    assert TESTS
    assert {p.values[0].name for p in PROGRAMS} >= {"README.md", "guide.md"}


@pytest.mark.parametrize(("page", "line", "code"), PROGRAMS)
def test_a_program_block_runs(
    page: Path, line: int, code: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Run as a program of its own (``__main__``), in a fresh directory for its files."""
    monkeypatch.chdir(tmp_path)
    program = compile(code, f"{page.name}:{line}", "exec")
    exec(program, {"__name__": "__main__"})


@pytest.mark.slow
def test_the_test_blocks_pass_under_pytest(tmp_path: Path) -> None:
    """The pytest examples, in a project set up as docs/testing.md tells."""
    testing = ROOT / "docs" / "testing.md"
    (toml,) = (c for _l, c in blocks(testing, "toml"))
    conftest = next(c for _l, c in blocks(testing) if "conftest.py" in c.splitlines()[0])
    (tmp_path / "pyproject.toml").write_text(toml.replace("# pyproject.toml\n", ""))
    (tmp_path / "conftest.py").write_text(conftest)
    expected = 0
    for i, param in enumerate(TESTS):
        page, line, code = param.values
        (tmp_path / f"test_{Path(str(page)).stem}_{line}_{i}.py").write_text(str(code))
        expected += len(re.findall(r"^(?:async )?def test_", str(code), re.MULTILINE))
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "error"],
        cwd=tmp_path,
        env=dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), *sys.path])),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    assert f"{expected} passed" in done.stdout, done.stdout


def test_a_fragment_says_so_and_why_where_the_reader_sees_it() -> None:
    fragments = {
        (page.name, line): code
        for page in PAGES
        for line, code in blocks(page)
        if _is_fragment(code)
    }
    for where, code in fragments.items():
        first = code.splitlines()[0]
        assert re.match(r"# fragment: \S.{8,}", first), f"{where}: say why it does not run"
    # The pieces that cannot run here: the seed's own imports, and a deployment's Redis.
    readme = dict(blocks(ROOT / "README.md"))
    for needs in ("RedisStore(", "from core."):
        where = {("README.md", n) for n, c in readme.items() if needs in c}
        assert where and where <= set(fragments), needs
    # The docs are programs, not pieces: the seed's imports, a deployment's Redis, a
    # framework not installed here (LangGraph), a collector's set-up and a caller's span.
    # ... and a remote caller's API at a glance.
    assert len(fragments) <= 6, sorted(fragments)


# --------------------------------------------------------------------------- self-contained

_OUTSIDE = re.compile(r"DESIGN\.md|DESIGN section|/work/|shared/seed|execution-policies\.md")


def _repository_files() -> list[Path]:
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return [
        ROOT / name
        for name in listed
        if name.endswith((".py", ".md", ".toml", ".cfg", ".txt", ".json")) or "/" not in name
    ]


def test_nothing_points_outside_the_repository() -> None:
    offenders = []
    for path in _repository_files():
        if not path.is_file() or path == Path(__file__):
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        for number, line in enumerate(text.splitlines(), 1):
            if _OUTSIDE.search(line):
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not offenders, "\n".join(offenders)


def test_the_seed_is_explained_where_the_docs_name_it() -> None:
    """A page that says "the seed" links to the page that says what it is."""
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        if page.name != "origins.md" and re.search(r"\bthe seed\b", text, re.IGNORECASE):
            assert "origins.md" in text, page.name


def test_local_links_resolve() -> None:
    for page in [*PAGES, ROOT / "benchmarks" / "README.md"]:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text(encoding="utf-8")):
            if "://" in target:
                continue
            assert (page.parent / target).exists(), f"{page.name}: broken link {target}"
