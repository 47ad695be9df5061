"""Helpers of the remote tests (a module of its own: every test folder has a conftest)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import trio

HERE = Path(__file__).parent
ROOT = HERE.parent.parent


def read_trace(path: Path) -> list[tuple[str, str, str, int]]:
    """The trace lines the test tools wrote: (event, tool, key, pid)."""
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        event, tool, key, pid = line.split()
        rows.append((event, tool, key, int(pid)))
    return rows


class WorkerProcess:
    """A ``toolvisor worker`` OS process serving ``remote_tools:TOOLS``."""

    def __init__(self, proc: subprocess.Popen[str], stderr_path: Path) -> None:
        self.proc = proc
        self.stderr_path = stderr_path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stderr(self) -> str:
        return self.stderr_path.read_text()

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    async def wait(self, timeout: float = 15.0) -> int:
        with trio.fail_after(timeout):
            while self.proc.poll() is None:  # noqa: ASYNC110 (another process: no Event)
                await trio.sleep(0.02)
        return self.proc.returncode


def launch(
    redis_url: str,
    namespace: str,
    trace_log: Path,
    workdir: Path,
    *options: str,
    target: str = "remote_tools:TOOLS",
) -> WorkerProcess:
    """Start a worker process (not waiting for it to serve)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(HERE), env.get("PYTHONPATH", "")])
    env["TV_TEST_LOG"] = str(trace_log)
    stderr_path = workdir / f"worker-{uuid.uuid4().hex[:8]}.err"
    with stderr_path.open("w") as err:
        proc = subprocess.Popen(
            [
                sys.executable, "-m", "toolvisor", "worker", target,
                "--redis", redis_url, "--namespace", namespace, *options,
            ],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
            env=env, text=True, cwd=workdir,
        )  # fmt: skip
    return WorkerProcess(proc, stderr_path)


def serving(worker: WorkerProcess) -> bool:
    if worker.proc.poll() is not None:
        raise AssertionError(f"worker exited {worker.proc.returncode}: {worker.stderr()}")
    return ": serving " in worker.stderr()


async def eventually(predicate: Callable[[], object], timeout: float = 10.0) -> None:
    """Wait until ``predicate()`` is true (checked every 20 ms), or fail the test."""
    with trio.fail_after(timeout):
        while not predicate():  # noqa: ASYNC110 (state of other processes: no Event)
            await trio.sleep(0.02)


async def settled(count: Callable[[str], Awaitable[int]], key: str, timeout: float = 5.0) -> None:
    """Wait until ``await count(key)`` is 0 (a stream emptied by another process)."""
    with trio.fail_after(timeout):
        while await count(key):  # noqa: ASYNC110 (state of other processes: no Event)
            await trio.sleep(0.02)
