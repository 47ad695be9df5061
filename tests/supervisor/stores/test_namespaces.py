"""Namespaces: applications sharing one SQLite file or one Redis never meet; records
written before namespaces existed are still read."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import coredis
import pytest
from store_helpers import FakeClock

from toolvisor.errors import IdempotencyStoreError
from toolvisor.supervisor.stores import (
    IdempotencyStore,
    MemoryStore,
    RecordState,
    RedisStore,
    SQLiteStore,
)

TTL = 60.0


@pytest.fixture(params=["sqlite", "redis"])
async def two_apps(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock
) -> AsyncIterator[Callable[[str], IdempotencyStore]]:
    """A maker of stores of one shared file or server, one per namespace."""
    made: list[IdempotencyStore] = []

    def make(namespace: str) -> IdempotencyStore:
        store: IdempotencyStore
        if request.param == "sqlite":
            store = SQLiteStore(tmp_path / "shared.db", clock=clock, namespace=namespace)
        else:
            url: str = request.getfixturevalue("redis_url")
            prefix: str = request.getfixturevalue("redis_prefix")
            store = RedisStore(url, prefix=prefix, namespace=namespace)
        made.append(store)
        return store

    yield make
    for store in made:
        await store.aclose()


async def test_two_namespaces_never_see_each_others_keys(
    two_apps: Callable[[str], IdempotencyStore],
) -> None:
    billing, crm, billing_again = two_apps("billing"), two_apps("crm"), two_apps("billing")
    # The same key (same tool name, tenant and arguments) in both applications.
    assert (await billing.claim("k", "fp", "b-1", 10.0)).claimed
    assert (await crm.claim("k", "fp", "c-1", 10.0)).claimed
    assert await billing.complete("k", "b-1", TTL, '"billing result"')
    assert await crm.get("k") is not None
    crm_record = await crm.get("k")
    assert crm_record is not None
    assert (crm_record.state, crm_record.owner) == (RecordState.IN_PROGRESS, "c-1")
    assert await crm.mark_unknown("k", "c-1", TTL)
    # A second store of the same application shares its records.
    shared = await billing_again.claim("k", "fp", "b-2", 10.0)
    assert not shared.claimed
    assert shared.record.result_json == '"billing result"'
    # The holder checks are per namespace too.
    assert (await crm.claim("j", "fp", "c-2", 10.0)).claimed
    assert not await billing.complete("j", "c-2", TTL, "1")
    assert not await billing.renew("j", "c-2", TTL)
    assert not await billing.release("j", "c-2")
    assert not await billing.forget("j")
    # forget drops one application's record only.
    assert await billing.forget("k")
    assert await billing_again.get("k") is None
    unknown = await crm.get("k")
    assert unknown is not None
    assert unknown.state is RecordState.UNKNOWN


async def test_a_namespace_is_not_a_prefix_of_another(
    two_apps: Callable[[str], IdempotencyStore],
) -> None:
    # Were keys joined naively, ('a', 'b:c') and ('a:b', 'c') could meet; ':' is not
    # allowed in a namespace, and '.'-joined names stay apart.
    one, two = two_apps("a"), two_apps("a.b")
    assert (await one.claim("b.c", "fp", "x", 10.0)).claimed
    assert (await one.claim("b:c", "fp", "x", 10.0)).claimed
    assert (await two.claim("c", "fp", "y", 10.0)).claimed
    assert (await two.claim(":c", "fp", "y", 10.0)).claimed


@pytest.mark.parametrize(
    ("namespace", "error", "message"),
    [
        ("", ValueError, "must not be empty"),
        ("x" * 129, ValueError, "at most 128"),
        ("app:one", ValueError, "only letters"),
        ("app one", ValueError, "only letters"),
        ("-app", ValueError, "start with"),
        ("é", ValueError, "only letters"),
        (None, TypeError, "must be a str"),
        (b"app", TypeError, "must be a str"),
    ],
)
def test_bad_namespaces_are_refused_naming_the_problem(
    tmp_path: Path, namespace: object, error: type[Exception], message: str
) -> None:
    for make in (
        lambda: MemoryStore(namespace=namespace),  # type: ignore[arg-type]
        lambda: SQLiteStore(tmp_path / "idem.db", namespace=namespace),  # type: ignore[arg-type]
        lambda: RedisStore(namespace=namespace),  # type: ignore[arg-type]
    ):
        with pytest.raises(error, match=message) as info:
            make()
        assert "namespace" in str(info.value)


def test_good_namespaces_are_kept(tmp_path: Path) -> None:
    for namespace in ("billing", "app-1.prod_eu", "X" * 128, "7"):
        assert MemoryStore(namespace=namespace).namespace == namespace
        assert SQLiteStore(tmp_path / "idem.db", namespace=namespace).namespace == namespace
        assert RedisStore(namespace=namespace).namespace == namespace
    assert MemoryStore().namespace == "default"
    assert SQLiteStore(tmp_path / "idem.db").namespace == "default"
    assert RedisStore().namespace == "default"


# --- records written before namespaces ------------------------------------------------

V1_TABLE = """
CREATE TABLE toolvisor_idempotency (
    key TEXT PRIMARY KEY NOT NULL,
    fingerprint TEXT NOT NULL,
    state TEXT NOT NULL,
    owner TEXT NOT NULL,
    expires_at REAL NOT NULL,
    result_json TEXT,
    not_stored_reason TEXT
) WITHOUT ROWID
"""


def write_v1_file(path: Path, now: float) -> None:
    """A file as toolvisor's schema version 1 left it: a done record, a running claim,
    an expired record."""
    with sqlite3.connect(path) as raw:
        raw.execute("PRAGMA journal_mode = WAL")
        raw.execute(
            "CREATE TABLE toolvisor_schema (component TEXT PRIMARY KEY, version INTEGER NOT NULL)"
        )
        raw.execute("INSERT INTO toolvisor_schema VALUES ('toolvisor_idempotency', 1)")
        raw.execute(V1_TABLE)
        raw.executemany(
            "INSERT INTO toolvisor_idempotency VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                ("idem:pay:t=-:fields:aa", "fp1", "done", "old-1", now + 3600, '{"id": 1}', None),
                ("idem:pay:t=-:fields:bb", "fp2", "in_progress", "old-2", now + 30, None, None),
                ("idem:pay:t=-:fields:cc", "fp3", "done", "old-3", now - 1, '"gone"', None),
            ],
        )


async def test_sqlite_migrates_a_version_1_file_into_the_default_namespace(
    tmp_path: Path, clock: FakeClock
) -> None:
    db = tmp_path / "idem.db"
    write_v1_file(db, clock())
    store = SQLiteStore(db, clock=clock)
    done = await store.get("idem:pay:t=-:fields:aa")
    assert done is not None
    assert (done.state, done.owner, done.result_json) == (RecordState.DONE, "old-1", '{"id": 1}')
    assert done.expires_at == clock() + 3600
    # The claim of a process of the old version still blocks its key, and is still
    # its holder's to settle.
    running = await store.claim("idem:pay:t=-:fields:bb", "fp2", "new-1", 10.0)
    assert not running.claimed
    assert running.record.owner == "old-2"
    assert await store.complete("idem:pay:t=-:fields:bb", "old-2", TTL, "2")
    assert (await store.claim("idem:pay:t=-:fields:cc", "fp3", "new-2", 10.0)).claimed
    await store.aclose()
    with sqlite3.connect(db) as raw:
        assert raw.execute("SELECT version FROM toolvisor_schema").fetchone()[0] == 2
        namespaces = {r[0] for r in raw.execute("SELECT namespace FROM toolvisor_idempotency")}
    assert namespaces == {"default"}
    # Another application on the upgraded file does not see them.
    other = SQLiteStore(db, clock=clock, namespace="crm")
    assert await other.get("idem:pay:t=-:fields:aa") is None
    await other.aclose()
    # Reopening a migrated file migrates nothing again.
    again = SQLiteStore(db, clock=clock)
    assert (await again.get("idem:pay:t=-:fields:aa")) == done
    await again.aclose()


async def test_sqlite_a_failed_migration_leaves_the_file_as_it_was(
    tmp_path: Path, clock: FakeClock
) -> None:
    db = tmp_path / "idem.db"
    write_v1_file(db, clock())
    with sqlite3.connect(db) as raw:
        # A leftover of the migration's own name that cannot be dropped: a view.
        raw.execute("CREATE VIEW toolvisor_idempotency_v2 AS SELECT 1")
    store = SQLiteStore(db, clock=clock)
    with pytest.raises(IdempotencyStoreError):
        await store.get("idem:pay:t=-:fields:aa")
    await store.aclose()
    with sqlite3.connect(db) as raw:
        assert raw.execute("SELECT version FROM toolvisor_schema").fetchone()[0] == 1
        cols = [r[1] for r in raw.execute("PRAGMA table_info(toolvisor_idempotency)")]
        rows = raw.execute("SELECT count(*) FROM toolvisor_idempotency").fetchone()[0]
    assert "namespace" not in cols
    assert rows == 3


async def test_sqlite_version_1_layout_with_a_version_2_row_is_refused(
    tmp_path: Path, clock: FakeClock
) -> None:
    db = tmp_path / "idem.db"
    write_v1_file(db, clock())
    with sqlite3.connect(db) as raw:
        raw.execute("UPDATE toolvisor_schema SET version = 2")
    with pytest.raises(IdempotencyStoreError, match="layout of schema version 2"):
        await SQLiteStore(db, clock=clock).get("k")


async def test_redis_reads_and_forgets_format_1_records(redis_url: str, redis_prefix: str) -> None:
    async with coredis.Redis.from_url(redis_url, decode_responses=True) as raw:
        old = {"v": "1", "fp": "fp1", "st": "done", "ow": "old-1", "exp": "1e10", "res": "1"}
        await raw.hset(redis_prefix + "idem:pay:aa", old)
        await raw.pexpire(redis_prefix + "idem:pay:aa", 60_000)
        claim = {"v": "1", "fp": "fp2", "st": "in_progress", "ow": "old-2", "exp": "1e10"}
        await raw.hset(redis_prefix + "idem:pay:bb", claim)
        store = RedisStore(redis_url, prefix=redis_prefix)
        other = RedisStore(redis_url, prefix=redis_prefix, namespace="crm")
        try:
            done = await store.get("idem:pay:aa")
            assert done is not None
            assert (done.state, done.owner, done.result_json) == (RecordState.DONE, "old-1", "1")
            running = await store.claim("idem:pay:bb", "fp2", "new-1", 10.0)
            assert not running.claimed
            assert running.record.owner == "old-2"
            # Another application does not see them, and claims its own key.
            assert await other.get("idem:pay:aa") is None
            assert (await other.claim("idem:pay:aa", "fp1", "crm-1", 10.0)).claimed
            assert await store.forget("idem:pay:aa")
            assert await raw.exists([redis_prefix + "idem:pay:aa"]) == 0
            assert (await store.claim("idem:pay:aa", "fp1", "new-2", 10.0)).claimed
            crm = await other.get("idem:pay:aa")
            assert crm is not None
            assert crm.owner == "crm-1"
            # New records go under the namespace, never to the old place.
            assert await raw.hget(redis_prefix + "default:idem:pay:aa", "ns") == "default"
        finally:
            await store.aclose()
            await other.aclose()
