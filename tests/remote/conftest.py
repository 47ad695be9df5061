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
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from pytest_redis import factories
from remote_support import HERE, WorkerProcess, eventually, launch, serving

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
