"""Store operations end when the caller's cancel scope does (the call's deadline).

A store that cannot answer (another process holds SQLite's write lock; a Redis server is
paused with SIGSTOP) must not hold a call past its deadline: the cache wraps each store
operation in ``trio.move_on_at``/``fail_at``, which works only if the operation is
cancellable. These tests use real time: the waits are in a worker thread and a socket.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest
import trio

from toolvisor.supervisor.stores import RecordState, SQLiteStore

DEADLINE_S = 0.5
#: How late past the deadline an operation may answer (a loaded CI machine).
SLACK_S = 0.4


async def test_sqlite_operations_end_at_the_deadline_while_the_lock_is_held(
    tmp_path: Path,
) -> None:
    db = tmp_path / "idem.db"
    store = SQLiteStore(db, busy_timeout_s=30.0)
    assert (await store.claim("held", "fp", "a", 60.0)).claimed
    other = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")  # another process's write lock, held 30 s
    try:
        operations: dict[str, Callable[[], Awaitable[object]]] = {
            "claim": lambda: store.claim("k", "fp", "b", 60.0),
            "renew": lambda: store.renew("held", "a", 60.0),
            "complete": lambda: store.complete("held", "a", 60.0, "1"),
            "mark_unknown": lambda: store.mark_unknown("held", "a", 60.0),
            "release": lambda: store.release("held", "a"),
            "forget": lambda: store.forget("held"),
        }
        await all_end_at_their_deadline(operations)
        # Reads do not wait for the writer (WAL), so the caller can still look.
        held = await store.get("held")
        assert held is not None
        assert held.state is RecordState.IN_PROGRESS
    finally:
        other.execute("ROLLBACK")
        other.close()
    # The claim abandoned while it waited for the lock took nothing: the key is free,
    # not held by a caller that is gone.
    assert await store.get("k") is None
    assert (await store.claim("k", "fp", "c", 60.0)).claimed
    await store.aclose()


async def test_sqlite_a_cancelled_caller_does_not_block_the_next_one(tmp_path: Path) -> None:
    db = tmp_path / "idem.db"
    store = SQLiteStore(db, busy_timeout_s=30.0)
    await store.get("k")
    other = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    with trio.move_on_after(0.2):
        await store.claim("k", "fp", "a", 60.0)
    # The abandoned thread still waits for the lock; the next operation queues behind
    # it, and its own deadline holds too.
    start = time.monotonic()
    with trio.move_on_after(0.2) as scope:
        await store.claim("j", "fp", "b", 60.0)
    assert scope.cancelled_caught
    assert time.monotonic() - start < 0.2 + SLACK_S
    other.execute("ROLLBACK")
    other.close()
    assert (await store.claim("j", "fp", "b", 60.0)).claimed
    assert (await store.claim("k", "fp", "c", 60.0)).claimed
    await store.aclose()


async def all_end_at_their_deadline(
    operations: dict[str, Callable[[], Awaitable[object]]],
) -> None:
    """Start every operation at once, each under its own DEADLINE_S; each must end then."""
    ended: dict[str, tuple[bool, float]] = {}

    async def bounded(name: str, operation: Callable[[], Awaitable[object]]) -> None:
        start = time.monotonic()
        with trio.move_on_after(DEADLINE_S) as scope:
            await operation()
        ended[name] = (scope.cancelled_caught, time.monotonic() - start)

    async with trio.open_nursery() as nursery:
        for name, operation in operations.items():
            nursery.start_soon(bounded, name, operation)
    for name, (cancelled, elapsed) in ended.items():
        assert cancelled, f"{name} answered while the store could not"
        assert elapsed < DEADLINE_S + SLACK_S, f"{name} ended after {elapsed:.2f} s"
    assert ended.keys() == operations.keys()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def own_redis() -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A redis-server of this test's own, to pause with SIGSTOP."""
    server = shutil.which("redis-server")
    if server is None:
        pytest.skip("no redis-server: apt-get install redis-server")
    port = _free_port()
    proc = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10.0
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.02)
        yield f"redis://127.0.0.1:{port}/0", proc
    finally:
        os.kill(proc.pid, signal.SIGCONT)
        proc.terminate()
        proc.wait(timeout=10)


@pytest.mark.redis
async def test_redis_operations_end_at_the_deadline_while_the_server_is_paused(
    own_redis: tuple[str, subprocess.Popen[bytes]],
) -> None:
    from toolvisor.supervisor.stores import RedisStore

    url, proc = own_redis
    store = RedisStore(url)
    assert (await store.claim("held", "fp", "a", 60.0)).claimed
    assert await store.complete("held", "a", 60.0, '"first"')
    os.kill(proc.pid, signal.SIGSTOP)
    try:
        operations: dict[str, Callable[[], Awaitable[object]]] = {
            "claim": lambda: store.claim("k", "fp", "b", 60.0),
            "get": lambda: store.get("held"),
            "renew": lambda: store.renew("k", "b", 60.0),
            "complete": lambda: store.complete("k", "b", 60.0, "1"),
            "mark_unknown": lambda: store.mark_unknown("k", "b", 60.0),
            "release": lambda: store.release("k", "b"),
            "forget": lambda: store.forget("nothing"),
        }
        await all_end_at_their_deadline(operations)
    finally:
        os.kill(proc.pid, signal.SIGCONT)
    # After the pause every answer belongs to its own question: a reply to a cancelled
    # command is never read as the reply to a later one.
    for _ in range(3):
        done = await store.get("held")
        assert done is not None
        assert (done.state, done.result_json) == (RecordState.DONE, '"first"')
        assert await store.get("missing") is None
        assert (await store.claim(f"fresh-{_}", "fp", "c", 60.0)).claimed
    # The commands sent during the pause reach the server when it resumes (a cancelled
    # caller cannot take back what it sent): the key is then owner "b"'s, claimed or
    # settled by its own later commands, and nobody else can take it (never a second
    # execution); or nothing landed and the key is free.
    late = await store.get("k")
    again = await store.claim("k", "fp", "d", 60.0)
    if late is None:
        assert again.claimed
    else:
        assert late.owner == "b"
        assert not again.claimed
    await store.aclose()
