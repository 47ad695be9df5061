"""Opening a SQLite file that another process is setting up at the same moment.

SQLite can answer "database is locked" at once, without its busy wait, while another
connection switches a new file to WAL mode, recovers its WAL or creates the schema (seen
with two worker processes starting on one new file). The store tries again within its
``busy_timeout_s``, as for any write, and only then gives up with a store error.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

import toolvisor as tv
from toolvisor.supervisor.stores.sqlite import SQLiteStore


def _locked_at_first(monkeypatch: pytest.MonkeyPatch, times: int) -> list[int]:
    """Make the first ``times`` set-ups of a connection fail as a racing process would."""
    calls = [0]
    configure = SQLiteStore._configure

    def racing(self: SQLiteStore, conn: sqlite3.Connection) -> None:
        calls[0] += 1
        if calls[0] <= times:
            raise sqlite3.OperationalError("database is locked")
        configure(self, conn)

    monkeypatch.setattr(SQLiteStore, "_configure", racing)
    return calls


async def test_a_file_locked_while_it_is_set_up_is_tried_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _locked_at_first(monkeypatch, 3)
    store = SQLiteStore(tmp_path / "idem.db", busy_timeout_s=5.0)
    try:
        outcome = await store.claim("k", "fp", "me", 30.0)
        assert outcome.claimed
        assert calls[0] == 4  # three refusals, then the set-up that held
        again = await store.claim("k", "fp", "other", 30.0)
        assert not again.claimed and again.record is not None and again.record.owner == "me"
    finally:
        await store.aclose()


async def test_a_file_still_locked_after_busy_timeout_is_a_store_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _locked_at_first(monkeypatch, 10**9)
    store = SQLiteStore(tmp_path / "idem.db", busy_timeout_s=0.05)
    try:
        with pytest.raises(tv.IdempotencyStoreError, match=r"cannot use .*database is locked"):
            await store.claim("k", "fp", "me", 30.0)
        assert calls[0] > 1  # tried again before giving up
    finally:
        await store.aclose()


async def test_another_setup_error_is_not_tried_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = [0]

    def broken(self: SQLiteStore, conn: sqlite3.Connection) -> None:
        calls[0] += 1
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(SQLiteStore, "_configure", broken)
    store = SQLiteStore(tmp_path / "idem.db", busy_timeout_s=5.0)
    try:
        with pytest.raises(tv.IdempotencyStoreError, match="disk I/O error"):
            await store.claim("k", "fp", "me", 30.0)
        assert calls[0] == 1
    finally:
        await store.aclose()
