"""Fixtures of the remote tests: a real redis-server and real worker processes.

Redis is a throwaway ``redis-server`` on a free port (pytest-redis) when the executable
is installed, or the server at ``TOOLVISOR_REDIS_URL``; otherwise the tests skip. Each
test gets a namespace of its own, so tests never see each other's streams.
"""

from __future__ import annotations

import gc
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest
import trio
from pytest_redis import factories

HERE = Path(__file__).parent
ROOT = HERE.parent.parent
REDIS_SERVER = shutil.which("redis-server")
REDIS_URL_ENV = os.environ.get("TOOLVISOR_REDIS_URL")

#: coredis 6.9 leaves a failed connection's anyio memory streams unclosed; they warn when
#: garbage-collected (see tests/supervisor/stores/conftest.py).
COREDIS_LEAK = (
    "ignore:Exception ignored in. <function MemoryObject(Send|Receive)Stream.__del__"
    ":pytest.PytestUnraisableExceptionWarning"
)

remote_redis_proc = factories.redis_proc(executable=REDIS_SERVER)


#: Tests that start worker processes: run by `pytest -m slow` (.ci/run runs both).
_WITH_WORKERS = {"test_remote.py", "test_worker_cli.py", "test_docs_remote.py"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.filterwarnings(COREDIS_LEAK))
            item.add_marker(pytest.mark.redis)
            if item.path.name in _WITH_WORKERS:
                item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True, scope="module")
def _collect_coredis_garbage() -> Iterator[None]:
    # Surface (and ignore, above) the leak in this folder's tests, not at exit: once per
    # module (a full collection costs ~0.3 s with the whole suite loaded).
    yield
    gc.collect()


@pytest.fixture(scope="session")
def redis_url(request: pytest.FixtureRequest) -> str:
    if REDIS_URL_ENV:
        return REDIS_URL_ENV
    if REDIS_SERVER is None:
        pytest.skip("no Redis: install redis-server or set TOOLVISOR_REDIS_URL")
    proc = request.getfixturevalue("remote_redis_proc")
    return f"redis://{proc.host}:{proc.port}/0"


@pytest.fixture
def namespace() -> str:
    return f"tvtest-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def trace_log(tmp_path: Path) -> Path:
    return tmp_path / "trace.log"


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


@pytest.fixture
async def start_worker(
    redis_url: str, namespace: str, trace_log: Path, tmp_path: Path
) -> AsyncIterator[Callable[..., object]]:
    """``await start_worker(*options)``: a worker process, returned once it serves."""
    started: list[WorkerProcess] = []

    async def start(*options: str) -> WorkerProcess:
        worker = launch(redis_url, namespace, trace_log, tmp_path, *options)
        started.append(worker)
        await eventually(lambda: serving(worker), 30)
        return worker

    yield start
    for worker in started:
        if worker.proc.poll() is None:
            worker.proc.send_signal(signal.SIGKILL)
            worker.proc.wait()


@pytest.fixture(scope="module")
def shared_fleet(
    redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, WorkerProcess, Path]]:
    """One worker for a module's tests that only call (namespace, worker, trace log)."""
    workdir = tmp_path_factory.mktemp("fleet")
    namespace = f"tvtest-{uuid.uuid4().hex[:12]}"
    trace_log = workdir / "trace.log"
    worker = launch(redis_url, namespace, trace_log, workdir)
    try:
        deadline = time.monotonic() + 30
        while not serving(worker):
            if time.monotonic() > deadline:
                raise AssertionError(f"worker did not start: {worker.stderr()}")
            time.sleep(0.02)
        yield namespace, worker, trace_log
    finally:
        worker.proc.send_signal(signal.SIGKILL)
        worker.proc.wait()


@pytest.fixture
async def raw_redis(redis_url: str) -> AsyncIterator[object]:
    """A plain coredis client, to look at the streams the way an operator would."""
    import coredis

    async with coredis.Redis.from_url(redis_url, decode_responses=True) as client:
        yield client


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
