"""Fixtures of the store tests: fake clocks, and every store behind one harness.

Redis runs only where a server is available: the session's ``redis_url``
(tests/conftest.py), which skips and says how to enable it otherwise.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from store_helpers import FakeClock, Harness

from toolvisor.supervisor.stores import IdempotencyStore, MemoryStore, SQLiteStore


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


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
