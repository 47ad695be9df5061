"""The embedded, durable idempotency store: one SQLite file in WAL mode."""

from __future__ import annotations

import enum
import math
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import trio

from toolvisor.errors import IdempotencyStoreError
from toolvisor.supervisor.stores._common import DEFAULT_NAMESPACE, check_namespace, check_ttl
from toolvisor.supervisor.stores._sqlite_schema import (
    COLUMNS,
    TABLE,
    ensure_schema,
    row_to_record,
)
from toolvisor.supervisor.stores.base import ClaimOutcome, Record, RecordState

__all__ = ["SQLiteStore"]

_T = TypeVar("_T")

# Every statement names the store's namespace first: (namespace, key) is the primary key.
_SELECT = f"SELECT {', '.join(COLUMNS)} FROM {TABLE} WHERE namespace = ? AND key = ?"
_INSERT_CLAIM = (
    f"INSERT OR REPLACE INTO {TABLE} (namespace, {', '.join(COLUMNS)}) "
    "VALUES (?, ?, ?, 'in_progress', ?, ?, NULL, NULL)"
)
# The claim holder's statements: each is one conditional statement on the owner and on
# the claim being live, so it is atomic without a transaction of its own.
_HELD = "WHERE namespace = ? AND key = ? AND owner = ? AND state = 'in_progress' AND expires_at > ?"
_COMPLETE = (
    f"UPDATE {TABLE} SET state = 'done', expires_at = ?, result_json = ?, "
    f"not_stored_reason = ? {_HELD}"
)
_RENEW = f"UPDATE {TABLE} SET expires_at = ? {_HELD}"
_MARK_UNKNOWN = f"UPDATE {TABLE} SET state = 'unknown', expires_at = ? {_HELD}"
_DROP_CLAIM = f"DELETE FROM {TABLE} {_HELD}"
_FORGET = f"DELETE FROM {TABLE} WHERE namespace = ? AND key = ? AND expires_at > ?"
# All namespaces: an expired row is nobody's.
_PURGE = f"DELETE FROM {TABLE} WHERE expires_at <= ?"
#: Expired rows are deleted once every this many claims, so the file does not grow
#: with keys never seen again.
_PURGE_EVERY = 1024


class _NotRead(enum.Enum):
    NOT_READ = enum.auto()


_NOT_READ = _NotRead.NOT_READ


class _Abandoned(Exception):  # noqa: N818 (not an error: nobody waits for it)
    """Ends a worker thread whose caller was cancelled; nobody receives it."""


def _check_not_abandoned(abandoned: threading.Event) -> None:
    if abandoned.is_set():
        raise _Abandoned


class SQLiteStore:
    """Idempotency records in one SQLite file: durable, shared by the processes on it.

    The file is opened and its schema created (or checked) on first use; it is in WAL
    mode, so readers never wait for the writer. ``claim`` is atomic across processes:
    it reads the key, and when the key is free re-reads and writes it inside one
    ``BEGIN IMMEDIATE`` transaction (the file's write lock). ``renew``, ``complete``,
    ``mark_unknown`` and ``release`` are single conditional statements on the owner.

    Rows are keyed by ``(namespace, key)``: applications sharing one file with different
    namespaces never see each other's records. A file written by an earlier version
    (schema version 1, no namespace) is migrated on first use, in one transaction; its
    records belong to the namespace ``"default"``.

    Commits use ``synchronous=NORMAL``: a done record survives a crash of the process,
    but a power loss may drop the last commits (and so let one call execute again).

    Writes block (a checkpoint's fsync, another process holding the write lock for up to
    ``busy_timeout_s``), so they run in a worker thread, one at a time
    (``trio.to_thread.run_sync`` with a ``CapacityLimiter(1)`` and one connection): they
    never stall the trio loop, and a caller's cancel scope (the call's deadline) ends
    the wait at once: the worker thread is abandoned, finishes its statement on its own
    (a claim abandoned while it waited for the lock takes nothing), and the next
    operation waits for it, also cancellably. A thread hop costs about 300 µs on a small VM
    (``benchmarks/bench_stores.py``), far more than a read, so reads (``get``, and the
    first look of ``claim``, which settles repeated keys) run on the trio thread on a
    second, read-only connection with no busy wait: a WAL reader takes no lock that a
    writer holds, and in the rare case it is told busy (another process recovering the
    WAL) the read goes to the worker thread instead.

    A new file is created readable and writable by its owner only (mode 0600, whatever
    the umask), and SQLite gives its ``-wal`` and ``-shm`` files the database file's
    mode: cached results may hold what a tool returned, which is nobody else's to read.
    An existing file keeps the mode it has.

    Times are on ``clock``, the wall clock ``time.time`` by default, because the records
    outlive the process. A row the store cannot read, a table of that name with another
    layout, or a file that is not a database raises ``IdempotencyStoreError`` (never a
    silent re-execution).

    Args:
        path: the database file; its directory must exist.
        clock: seconds on the wall clock; injectable for tests.
        busy_timeout_s: how long to wait for another process's write lock before
            ``IdempotencyStoreError``.
        namespace: the application's name (letters, digits, ``_``, ``-``, ``.``; at
            most 128 characters).
    """

    persistent: bool = True

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        clock: Callable[[], float] | None = None,
        busy_timeout_s: float = 5.0,
        namespace: str = DEFAULT_NAMESPACE,
    ) -> None:
        self.namespace = check_namespace(namespace)
        self.path = Path(path)
        parent = self.path.parent
        if not parent.is_dir():
            what = "does not exist" if not parent.exists() else "is not a directory"
            raise ValueError(f"SQLiteStore path {str(self.path)!r}: directory {what}")
        busy = float(busy_timeout_s)
        if not math.isfinite(busy) or busy < 0.0:
            raise ValueError(f"busy_timeout_s must be a finite number >= 0, got {busy_timeout_s!r}")
        self.busy_timeout_s = busy
        self._clock: Callable[[], float] = clock if clock is not None else time.time
        self._name = f"SQLiteStore({str(self.path)!r})"
        self._limiter = trio.CapacityLimiter(1)
        self._conn: sqlite3.Connection | None = None
        self._reader: sqlite3.Connection | None = None
        self._claims_since_purge = 0

    def __repr__(self) -> str:
        return self._name

    async def claim(
        self, key: str, fingerprint: str, owner: str, claim_ttl_s: float
    ) -> ClaimOutcome:
        """Claim ``key`` for ``owner`` unless a live record stands there (see ``base``)."""
        ttl = check_ttl("claim_ttl_s", claim_ttl_s)
        now = self._clock()
        row = self._read_here(key)
        if row is not None and row is not _NOT_READ:
            found = row_to_record(self._name, row)
            if found.expires_at > now:
                return ClaimOutcome(claimed=False, record=found)
        return await self._run(self._claim_sync, key, fingerprint, owner, now, now + ttl)

    async def renew(self, key: str, owner: str, claim_ttl_s: float) -> bool:
        """Move the end of ``owner``'s live claim on ``key`` to ``claim_ttl_s`` from now."""
        ttl = check_ttl("claim_ttl_s", claim_ttl_s)
        now = self._clock()
        return await self._held(_RENEW, (now + ttl,), key, owner, now)

    async def mark_unknown(self, key: str, owner: str, ttl_s: float) -> bool:
        """Turn ``owner``'s live claim on ``key`` into an unknown record kept ``ttl_s``."""
        ttl = check_ttl("ttl_s", ttl_s, allow_zero=True)
        now = self._clock()
        if ttl == 0.0:
            return await self._held(_DROP_CLAIM, (), key, owner, now)
        return await self._held(_MARK_UNKNOWN, (now + ttl,), key, owner, now)

    async def forget(self, key: str) -> bool:
        """Drop the record of ``key``, whatever it is; True if a live one was there."""
        params = (self.namespace, key, self._clock())
        return await self._run(self._execute_sync, _FORGET, params)

    async def complete(
        self,
        key: str,
        owner: str,
        ttl_s: float,
        result_json: str | None,
        not_stored_reason: str | None = None,
    ) -> bool:
        """Turn ``owner``'s live claim on ``key`` into a done record kept ``ttl_s`` seconds."""
        ttl = check_ttl("ttl_s", ttl_s, allow_zero=True)
        now = self._clock()
        if ttl == 0.0:
            return await self._held(_DROP_CLAIM, (), key, owner, now)
        return await self._held(
            _COMPLETE, (now + ttl, result_json, not_stored_reason), key, owner, now
        )

    async def release(self, key: str, owner: str) -> bool:
        """Drop ``owner``'s live claim on ``key``."""
        return await self._held(_DROP_CLAIM, (), key, owner, self._clock())

    async def get(self, key: str) -> Record | None:
        """The live record of ``key``, or None."""
        now = self._clock()
        row = self._read_here(key)
        if row is _NOT_READ:
            return await self._run(self._get_sync, key, now)
        if row is None:
            return None
        record = row_to_record(self._name, row)
        return record if record.expires_at > now else None

    async def aclose(self) -> None:
        """Close the connection. Idempotent; a later operation opens the file again."""
        async with self._limiter:
            conn, self._conn = self._conn, None
            if conn is not None:
                await trio.to_thread.run_sync(conn.close)
        # After the writer: an operation finishing meanwhile cannot reopen the reader.
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.close()

    # --- reads on the trio thread ---------------------------------------------------

    def _read_here(self, key: str) -> tuple[object, ...] | _NotRead | None:
        """The key's row read on the trio thread, or ``_NOT_READ`` to read in the worker."""
        reader = self._reader
        if reader is None:
            return _NOT_READ
        try:
            row: tuple[object, ...] | None = reader.execute(
                _SELECT, (self.namespace, key)
            ).fetchone()
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                return _NOT_READ
            raise self._failed("read", exc) from exc
        except sqlite3.Error as exc:
            raise self._failed("read", exc) from exc
        return row

    def _open_reader(self) -> None:
        try:
            reader = sqlite3.connect(
                self.path, timeout=0.0, isolation_level=None, check_same_thread=False
            )
            reader.execute("PRAGMA query_only = 1")
        except sqlite3.Error:
            return  # reads keep going through the worker thread
        self._reader = reader

    # --- in the worker thread -------------------------------------------------------

    async def _held(
        self, sql: str, values: tuple[object, ...], key: str, owner: str, now: float
    ) -> bool:
        """Run one of the claim holder's statements: ``values``, then the ``_HELD`` test."""
        params = (*values, self.namespace, key, owner, now)
        return await self._run(self._execute_sync, sql, params)

    async def _run(self, fn: Callable[..., _T], *args: object) -> _T:
        # Abandoned on cancel: a caller past its deadline must not wait out another
        # process's write lock (up to busy_timeout_s). The thread keeps the limiter
        # until it ends, so the connection is never used by two threads at once.
        abandoned = threading.Event()
        try:
            result = await trio.to_thread.run_sync(
                fn, abandoned, *args, limiter=self._limiter, abandon_on_cancel=True
            )
        except trio.Cancelled:
            abandoned.set()
            raise
        if self._reader is None and self._conn is not None:
            # The writer has created or checked the schema: reads may start here.
            self._open_reader()
        return result

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            self._conn = self._open()
        return self._conn

    def _open(self) -> sqlite3.Connection:
        try:
            _create_private(self.path)
        except OSError as exc:
            raise IdempotencyStoreError(
                self._name, f"cannot create {str(self.path)!r}: {exc}"
            ) from exc
        try:
            conn = sqlite3.connect(
                self.path,
                timeout=self.busy_timeout_s,
                isolation_level=None,  # autocommit; transactions are explicit
                check_same_thread=False,  # one thread at a time, under the limiter
            )
        except sqlite3.Error as exc:
            raise IdempotencyStoreError(
                self._name, f"cannot open {str(self.path)!r}: {exc}"
            ) from exc
        # Setting up a file another process is setting up at the same moment (WAL mode,
        # its recovery, the schema) can be told "locked" at once, without SQLite's busy
        # wait: try again, within the same busy_timeout_s as any write.
        deadline = time.monotonic() + self.busy_timeout_s
        pause = 0.005
        while True:
            try:
                self._configure(conn)
            except sqlite3.OperationalError as exc:
                message = str(exc)
                if ("locked" in message or "busy" in message) and time.monotonic() < deadline:
                    time.sleep(min(pause, max(0.0, deadline - time.monotonic())))
                    pause = min(pause * 2, 0.1)
                    continue
                conn.close()
                raise IdempotencyStoreError(
                    self._name, f"cannot use {str(self.path)!r}: {exc}"
                ) from exc
            except BaseException as exc:
                conn.close()
                if isinstance(exc, sqlite3.Error):
                    raise IdempotencyStoreError(
                        self._name, f"cannot use {str(self.path)!r}: {exc}"
                    ) from exc
                raise
            return conn

    def _configure(self, conn: sqlite3.Connection) -> None:
        conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_s * 1000)}")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise IdempotencyStoreError(
                self._name,
                f"{str(self.path)!r} cannot use WAL mode (journal_mode is {mode!r}); "
                "put the file on a local file system",
            )
        conn.execute("PRAGMA synchronous = NORMAL")
        ensure_schema(conn, self._name)

    def _claim_sync(
        self,
        abandoned: threading.Event,
        key: str,
        fingerprint: str,
        owner: str,
        now: float,
        expires_at: float,
    ) -> ClaimOutcome:
        selected = (self.namespace, key)
        try:
            conn = self._connection()
            # A live record is the common answer for a repeated key: read it without
            # taking the write lock (WAL readers do not block and are not blocked).
            row = conn.execute(_SELECT, selected).fetchone()
            if row is not None:
                found = row_to_record(self._name, row)
                if found.expires_at > now:
                    return ClaimOutcome(claimed=False, record=found)
            conn.execute("BEGIN IMMEDIATE")
            try:
                # The caller gave up while this thread waited for the lock: a claim
                # taken now would have no holder and block the key for its TTL.
                _check_not_abandoned(abandoned)
                row = conn.execute(_SELECT, selected).fetchone()
                if row is not None:
                    found = row_to_record(self._name, row)
                    if found.expires_at > now:
                        conn.execute("COMMIT")
                        return ClaimOutcome(claimed=False, record=found)
                conn.execute(_INSERT_CLAIM, (self.namespace, key, fingerprint, owner, expires_at))
                self._claims_since_purge += 1
                if self._claims_since_purge >= _PURGE_EVERY:
                    self._claims_since_purge = 0
                    conn.execute(_PURGE, (now,))
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise self._failed("claim", exc) from exc
        record = Record(
            key=key,
            fingerprint=fingerprint,
            state=RecordState.IN_PROGRESS,
            owner=owner,
            expires_at=expires_at,
        )
        return ClaimOutcome(claimed=True, record=record)

    def _execute_sync(
        self, abandoned: threading.Event, sql: str, params: tuple[object, ...]
    ) -> bool:
        try:
            return self._connection().execute(sql, params).rowcount == 1
        except sqlite3.Error as exc:
            raise self._failed("write", exc) from exc

    def _get_sync(self, abandoned: threading.Event, key: str, now: float) -> Record | None:
        try:
            row = self._connection().execute(_SELECT, (self.namespace, key)).fetchone()
        except sqlite3.Error as exc:
            raise self._failed("get", exc) from exc
        if row is None:
            return None
        record = row_to_record(self._name, row)
        return record if record.expires_at > now else None

    def _failed(self, what: str, exc: sqlite3.Error) -> IdempotencyStoreError:
        hint = ""
        if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
            hint = f" (another process held the write lock past {self.busy_timeout_s} s)"
        return IdempotencyStoreError(self._name, f"{what} on {str(self.path)!r}: {exc}{hint}")


def _create_private(path: Path) -> None:
    """Create ``path`` empty with mode 0600 unless it exists (an empty file is an empty
    database to SQLite, which then creates the WAL and shared-memory files with the
    same mode)."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    os.close(fd)
