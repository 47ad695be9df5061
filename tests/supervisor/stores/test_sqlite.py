"""SQLiteStore specifics: WAL, durability, bad files, bad rows, bad paths."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import trio
import trio.lowlevel
import trio.testing
from store_helpers import FakeClock

from toolvisor.errors import IdempotencyStoreError
from toolvisor.supervisor.stores import RecordState, SQLiteStore
from toolvisor.supervisor.stores import sqlite as sqlite_module

TABLE = "toolvisor_idempotency"


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "idem.db"


async def test_wal_mode_is_on(db: Path, clock: FakeClock) -> None:
    store = SQLiteStore(db, clock=clock)
    await store.get("k")
    with sqlite3.connect(db) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        version = raw.execute("SELECT version FROM toolvisor_schema").fetchone()[0]
    assert version == 2
    await store.aclose()


async def test_records_survive_reopening(db: Path, clock: FakeClock) -> None:
    store = SQLiteStore(db, clock=clock)
    await store.claim("done", "fp", "a", 10.0)
    await store.complete("done", "a", 3600.0, '{"v": "é"}')
    await store.claim("running", "fp", "b", 10.0)
    await store.aclose()

    again = SQLiteStore(db, clock=clock)
    done = await again.get("done")
    assert done is not None
    assert done.state is RecordState.DONE
    assert done.result_json == '{"v": "é"}'
    running = await again.claim("running", "fp", "c", 10.0)
    assert not running.claimed
    assert running.record.owner == "b"
    assert await again.complete("running", "b", 60.0, "2")
    await again.aclose()


async def test_reads_stay_on_the_trio_thread(db: Path, clock: FakeClock) -> None:
    store = SQLiteStore(db, clock=clock)
    await store.claim("k", "fp", "a", 10.0)  # opens the file, through the worker
    with trio.testing.assert_no_checkpoints():
        assert await store.get("k") is not None
        assert await store.get("missing") is None
        assert not (await store.claim("k", "fp", "b", 10.0)).claimed
    await store.aclose()


async def test_store_reopens_after_aclose(db: Path, clock: FakeClock) -> None:
    store = SQLiteStore(db, clock=clock)
    await store.claim("k", "fp", "a", 10.0)
    await store.aclose()
    assert await store.get("k") is not None
    await store.aclose()


@pytest.mark.parametrize(
    ("column", "garbage", "message"),
    [
        ("state", "'exploded'", "unknown state"),
        ("expires_at", "'tomorrow'", "expires_at"),
        ("owner", "x'00ff'", "text"),
        ("result_json", "x'ff00'", "result_json"),
    ],
)
async def test_corrupted_row_raises(
    db: Path, clock: FakeClock, column: str, garbage: str, message: str
) -> None:
    store = SQLiteStore(db, clock=clock)
    await store.claim("k", "fp", "a", 10.0)
    await store.complete("k", "a", 3600.0, "1")
    with sqlite3.connect(db) as raw:
        raw.execute(f"UPDATE {TABLE} SET {column} = {garbage} WHERE key = 'k'")
    with pytest.raises(IdempotencyStoreError, match=message) as info:
        await store.get("k")
    assert "'k'" in info.value.detail
    # Never a silent re-execution: the claim does not overwrite the row either.
    with pytest.raises(IdempotencyStoreError, match=message):
        await store.claim("k", "fp", "b", 10.0)
    await store.aclose()


async def test_foreign_table_raises(db: Path, clock: FakeClock) -> None:
    with sqlite3.connect(db) as raw:
        raw.execute(f"CREATE TABLE {TABLE} (id INTEGER PRIMARY KEY, payload BLOB)")
    store = SQLiteStore(db, clock=clock)
    with pytest.raises(IdempotencyStoreError, match="not toolvisor's layout"):
        await store.claim("k", "fp", "a", 10.0)
    with sqlite3.connect(db) as raw:  # nothing of the foreign table was changed
        assert [r[1] for r in raw.execute(f"PRAGMA table_info({TABLE})")] == ["id", "payload"]
    await store.aclose()


async def test_same_columns_without_version_row_raises(db: Path, clock: FakeClock) -> None:
    store = SQLiteStore(db, clock=clock)
    await store.get("k")
    await store.aclose()
    with sqlite3.connect(db) as raw:
        raw.execute("DELETE FROM toolvisor_schema")
    with pytest.raises(IdempotencyStoreError, match="not created by toolvisor"):
        await SQLiteStore(db, clock=clock).get("k")


async def test_newer_schema_version_raises(db: Path, clock: FakeClock) -> None:
    store = SQLiteStore(db, clock=clock)
    await store.get("k")
    await store.aclose()
    with sqlite3.connect(db) as raw:
        raw.execute("UPDATE toolvisor_schema SET version = 99")
    with pytest.raises(IdempotencyStoreError, match="schema version 99"):
        await SQLiteStore(db, clock=clock).get("k")


@pytest.fixture
def garbage_file(db: Path) -> Path:
    db.write_bytes(b"this is not an SQLite file, just some text" * 100)
    return db


async def test_file_that_is_not_a_database_raises(garbage_file: Path, clock: FakeClock) -> None:
    db = garbage_file
    store = SQLiteStore(db, clock=clock)
    with pytest.raises(IdempotencyStoreError, match="not a database") as info:
        await store.claim("k", "fp", "a", 10.0)
    assert str(db) in info.value.detail


def test_missing_directory_is_refused_at_construction(tmp_path: Path) -> None:
    path = tmp_path / "nope" / "idem.db"
    with pytest.raises(ValueError, match="does not exist") as info:
        SQLiteStore(path)
    assert str(path) in str(info.value)


def test_parent_that_is_a_file_is_refused_at_construction(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="not a directory"):
        SQLiteStore(tmp_path / "file" / "idem.db")


async def test_unopenable_path_raises_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "a-directory"
    path.mkdir()
    store = SQLiteStore(path)
    with pytest.raises(IdempotencyStoreError) as info:
        await store.get("k")
    assert str(path) in str(info.value)
    await store.aclose()


async def test_write_lock_held_too_long_raises(db: Path, clock: FakeClock) -> None:
    store = SQLiteStore(db, clock=clock, busy_timeout_s=0.05)
    await store.get("k")  # creates the schema
    other = sqlite3.connect(db, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(IdempotencyStoreError, match="write lock"):
            await store.claim("k", "fp", "a", 10.0)
        # Readers are not blocked by the writer (WAL).
        assert await store.get("k") is None
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert (await store.claim("k", "fp", "a", 10.0)).claimed
    await store.aclose()


async def test_waiting_for_the_lock_does_not_block_trio(db: Path, clock: FakeClock) -> None:
    store = SQLiteStore(db, clock=clock, busy_timeout_s=5.0)
    await store.get("k")
    other = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await trio.lowlevel.checkpoint()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(ticker)
        results = []

        async def claimer() -> None:
            results.append(await store.claim("k", "fp", "a", 10.0))

        # The claim waits for the lock in its worker thread; the loop keeps running.
        nursery.start_soon(claimer)
        while ticks < 100:
            await trio.lowlevel.checkpoint()
        await trio.to_thread.run_sync(other.execute, "ROLLBACK")
        while not results:
            await trio.lowlevel.checkpoint()
        nursery.cancel_scope.cancel()
    other.close()
    assert results[0].claimed
    await store.aclose()


async def test_expired_rows_are_purged(
    db: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_module, "_PURGE_EVERY", 10)
    store = SQLiteStore(db, clock=clock)
    for i in range(9):
        await store.claim(f"old-{i}", "fp", "a", 1.0)
    clock.advance(2.0)
    await store.claim("new", "fp", "a", 10.0)  # the 10th claim purges
    with sqlite3.connect(db) as raw:
        keys = [r[0] for r in raw.execute(f"SELECT key FROM {TABLE}")]
    assert keys == ["new"]
    await store.aclose()


async def test_unknown_outcome_survives_reopening(db: Path, clock: FakeClock) -> None:
    store = SQLiteStore(db, clock=clock)
    await store.claim("k", "fp", "a", 10.0)
    assert await store.mark_unknown("k", "a", 3600.0)
    await store.aclose()
    # A new process on the file: the key still must not run.
    again = SQLiteStore(db, clock=clock)
    clock.advance(60.0)
    standing = await again.claim("k", "fp", "b", 10.0)
    assert not standing.claimed
    assert (standing.record.state, standing.record.owner) == (RecordState.UNKNOWN, "a")
    assert await again.forget("k")
    assert (await again.claim("k", "fp", "b", 10.0)).claimed
    await again.aclose()
