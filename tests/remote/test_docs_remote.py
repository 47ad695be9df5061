"""docs/remote.md: its quick start runs as written (two real workers, a real caller)."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest
import trio
from remote_support import ROOT, eventually, launch, serving

DOC = ROOT / "docs" / "remote.md"
#: The quick start uses the default namespace; a database of its own keeps it apart.
DB = 7


def python_blocks() -> list[str]:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    return [b for b in blocks if not b.startswith("# fragment")]


def test_every_python_block_is_the_quick_start_or_a_marked_fragment() -> None:
    blocks = python_blocks()
    assert [b.splitlines()[0] for b in blocks] == [
        "# payments.py",
        "# caller.py",
        "# in the module of a worker's tools (every process builds the same policies);",
    ]


def test_the_fleet_wide_policies_block_runs_as_written() -> None:
    """It only builds policies: nothing connects to Redis until a call uses them."""
    fleet = python_blocks()[2]
    namespace: dict[str, object] = {}
    exec(compile(fleet, "docs/remote.md (fleet-wide protection)", "exec"), namespace)
    assert namespace["spec"].retry_budget.shared is not None  # type: ignore[attr-defined]


@pytest.mark.slow
async def test_the_quick_start_runs_as_written(redis_url: str, tmp_path: Path) -> None:
    payments, caller, *_ = python_blocks()
    (tmp_path / "payments.py").write_text(payments)
    (tmp_path / "caller.py").write_text(caller)
    url = re.sub(r"/\d+$", f"/{DB}", redis_url)
    import coredis

    async with coredis.Redis.from_url(url, decode_responses=True) as db:
        async for key in db.scan_iter(match="toolvisor:*"):
            await db.delete([key])
    workers = [
        launch(url, "toolvisor", tmp_path / "trace.log", tmp_path, target="payments:TOOLS")
        for _ in range(2)
    ]
    try:
        for worker in workers:
            await eventually(lambda w=worker: serving(w), 30)
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        }
        done = await trio.run_process(
            [sys.executable, "caller.py", url],
            cwd=tmp_path,
            env=env,
            capture_stdout=True,
            check=False,
        )
    finally:
        for worker in workers:
            worker.proc.kill()
            worker.proc.wait()
    lines = done.stdout.decode().splitlines()
    assert done.returncode == 0, lines
    assert lines[0] == "['process_payment']"
    assert lines[1] == "paid"
    assert re.fullmatch(r"100 paid by [12]", lines[2])
    assert lines[3:] == ["True", "/amount"]
