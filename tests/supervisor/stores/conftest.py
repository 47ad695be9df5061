"""Fixtures of the store tests: fake clocks, and every store behind one harness.

Redis runs only where a server is available: a throwaway ``redis-server`` on a free
port (pytest-redis) when the executable is installed, or the server at
``TOOLVISOR_REDIS_URL``. Otherwise the Redis cases skip and say how to enable them.
"""

from __future__ import annotations

import gc
import os
import shutil
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from pytest_redis import factories
from store_helpers import FakeClock, Harness

from toolvisor.supervisor.stores import IdempotencyStore, MemoryStore, SQLiteStore

REDIS_SKIP_REASON = (
    "no Redis: install redis-server (apt-get install redis-server) or set TOOLVISOR_REDIS_URL"
)
REDIS_SERVER = shutil.which("redis-server")
REDIS_URL_ENV = os.environ.get("TOOLVISOR_REDIS_URL")

HERE = Path(__file__).parent
#: coredis 6.9 leaves a failed connection's anyio memory streams unclosed (a store
#: pointed at a server that is down): they warn when garbage-collected, in whichever
#: test is running then. Ignore exactly those warnings in this folder, and collect
#: after each test, so they surface (and are ignored) in the test that made them.
COREDIS_LEAK = (
    "ignore:Exception ignored in. <function MemoryObject(Send|Receive)Stream.__del__"
    ":pytest.PytestUnraisableExceptionWarning"
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.filterwarnings(COREDIS_LEAK))


@pytest.fixture(autouse=True, scope="module")
def _collect_coredis_garbage() -> Iterator[None]:
    yield
    # Once per module, in the teardown of its last test (which carries the filter above):
    # a full collection costs ~0.15-0.3 s with Hypothesis loaded, too much per test.
    if "coredis" in sys.modules:
        gc.collect()


# A throwaway redis-server on a free port, started on first use (session scope).
toolvisor_redis_proc = factories.redis_proc(executable=REDIS_SERVER)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(scope="session")
def redis_url(request: pytest.FixtureRequest) -> str:
    """The URL of a Redis server for the tests, or skip."""
    if REDIS_URL_ENV:
        return REDIS_URL_ENV
    if REDIS_SERVER is None:
        pytest.skip(REDIS_SKIP_REASON)
    proc = request.getfixturevalue("toolvisor_redis_proc")
    return f"redis://{proc.host}:{proc.port}/0"


@pytest.fixture
def redis_prefix() -> str:
    """A fresh key prefix per test, so tests never see each other's keys."""
    return f"toolvisor-test:{uuid.uuid4().hex}:"


def redis_time_machine(url: str, prefix: str) -> Callable[[float], Awaitable[None]]:
    """Make ``seconds`` pass for the keys under ``prefix`` by shortening their PX."""
    import coredis

    async def advance(seconds: float) -> None:
        async with coredis.Redis.from_url(url, decode_responses=True) as raw:
            async for key in raw.scan_iter(match=f"{prefix}*"):
                left = await raw.pttl(key)
                if left < 0:
                    continue
                rest = left - int(seconds * 1000)
                if rest <= 0:
                    await raw.delete([key])
                else:
                    await raw.pexpire(key, rest)

    return advance


@pytest.fixture(params=["memory", "sqlite", "redis"])
async def harness(
    request: pytest.FixtureRequest, clock: FakeClock, tmp_path: Path
) -> AsyncIterator[Harness]:
    """Each store in turn, behind the same harness."""
    kind: str = request.param

    async def advance_clock(seconds: float) -> None:
        clock.advance(seconds)

    store: IdempotencyStore
    if kind == "memory":
        store = MemoryStore(clock=clock)
        h = Harness(kind, store, clock, advance_clock)
    elif kind == "sqlite":
        store = SQLiteStore(tmp_path / "idem.db", clock=clock)
        h = Harness(kind, store, clock, advance_clock)
    else:
        import time

        from toolvisor.supervisor.stores import RedisStore

        url: str = request.getfixturevalue("redis_url")
        prefix: str = request.getfixturevalue("redis_prefix")
        store = RedisStore(url, prefix=prefix)
        h = Harness(kind, store, time.time, redis_time_machine(url, prefix))
    try:
        yield h
    finally:
        await store.aclose()
