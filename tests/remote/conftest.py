"""Fixtures of the remote tests: real worker processes on the session's Redis server.

The server is ``redis_url`` (tests/conftest.py). Each test gets a namespace of its own,
so tests never see each other's streams.
"""

from __future__ import annotations

import signal
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from remote_support import HERE, WorkerProcess, eventually, launch, serving

#: Tests that start worker processes: run by `pytest -m slow` (.ci/run runs both).
_WITH_WORKERS = {"test_remote.py", "test_worker_cli.py", "test_docs_remote.py"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.redis)
            if item.path.name in _WITH_WORKERS:
                item.add_marker(pytest.mark.slow)


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
