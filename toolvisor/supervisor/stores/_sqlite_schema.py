"""SQLiteStore's schema: creation on first use, checks, and reading rows (private)."""

from __future__ import annotations

import math
import sqlite3

from toolvisor.errors import IdempotencyStoreError
from toolvisor.supervisor.stores.base import Record, RecordState

__all__ = ["COLUMNS", "SCHEMA_VERSION", "TABLE", "ensure_schema", "row_to_record"]

#: Bump when the layout changes, and add the step from the previous version to
#: ``_MIGRATIONS``; a file with a version this code does not know is refused, not
#: guessed at.
#:
#: - 1: one table of records, keyed by ``key``.
#: - 2: a ``namespace`` column (the application's name) in the primary key, so
#:   applications sharing a file never see each other's keys; records of version 1 move
#:   to the namespace ``'default'``. The ``state`` column may hold ``'unknown'``.
SCHEMA_VERSION = 2
TABLE = "toolvisor_idempotency"
VERSION_TABLE = "toolvisor_schema"
#: The columns of a record, in the order ``row_to_record`` reads them.
COLUMNS = (
    "key",
    "fingerprint",
    "state",
    "owner",
    "expires_at",
    "result_json",
    "not_stored_reason",
)
#: The table's layout, column by column.
LAYOUT = ("namespace", *COLUMNS)
_LAYOUT_V1 = COLUMNS

_CREATE_VERSION_TABLE = f"""
CREATE TABLE IF NOT EXISTS {VERSION_TABLE} (
    component TEXT PRIMARY KEY,
    version INTEGER NOT NULL
)
"""
# WITHOUT ROWID: the key is the only lookup, so the rows live in the key's b-tree.
# No DEFAULT on namespace: a process of an older version still writing to an upgraded
# file fails its writes (an IdempotencyStoreError: nothing runs) instead of writing rows
# no namespace owns.
_CREATE_TABLE = """
CREATE TABLE {table} (
    namespace TEXT NOT NULL,
    key TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    state TEXT NOT NULL,
    owner TEXT NOT NULL,
    expires_at REAL NOT NULL,
    result_json TEXT,
    not_stored_reason TEXT,
    PRIMARY KEY (namespace, key)
) WITHOUT ROWID
"""
_STATES = {s.value: s for s in RecordState}


def _migrate_1_to_2(conn: sqlite3.Connection) -> None:
    """Version 1 to 2: the records move to the namespace ``'default'``."""
    staging = f"{TABLE}_v2"
    conn.execute(f"DROP TABLE IF EXISTS {staging}")
    conn.execute(_CREATE_TABLE.format(table=staging))
    conn.execute(
        f"INSERT INTO {staging} ({', '.join(LAYOUT)}) "
        f"SELECT 'default', {', '.join(COLUMNS)} FROM {TABLE}"
    )
    conn.execute(f"DROP TABLE {TABLE}")
    conn.execute(f"ALTER TABLE {staging} RENAME TO {TABLE}")


#: version -> (that version's layout, the step to the next version).
_MIGRATIONS = {1: (_LAYOUT_V1, _migrate_1_to_2)}


def ensure_schema(conn: sqlite3.Connection, name: str) -> None:
    """Create the tables on a new file, or check that an existing file is ours.

    A file of an older schema version is migrated, step by step, to this one. Runs in
    one ``BEGIN IMMEDIATE`` transaction, so processes opening a new (or old) file at once
    create (or migrate) it once, and a failed migration leaves the file as it was.
    Raises ``IdempotencyStoreError`` for a table of that name with another layout, a
    missing version row, or a schema version this code does not know.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        _create_or_check(conn, name)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _create_or_check(conn: sqlite3.Connection, name: str) -> None:
    conn.execute(_CREATE_VERSION_TABLE)
    version_cols = [r[1] for r in conn.execute(f"PRAGMA table_info({VERSION_TABLE})")]
    if version_cols != ["component", "version"]:
        raise IdempotencyStoreError(
            name,
            f"table {VERSION_TABLE!r} has columns {version_cols}, not toolvisor's; "
            "point the store at its own file",
        )
    cols = [r[1] for r in conn.execute(f"PRAGMA table_info({TABLE})")]
    row = conn.execute(
        f"SELECT version FROM {VERSION_TABLE} WHERE component = ?", (TABLE,)
    ).fetchone()
    if not cols:
        conn.execute(_CREATE_TABLE.format(table=TABLE))
        _set_version(conn, SCHEMA_VERSION)
        return
    version = None if row is None else row[0]
    known = {SCHEMA_VERSION: LAYOUT} | {v: layout for v, (layout, _) in _MIGRATIONS.items()}
    if tuple(cols) not in known.values():
        raise IdempotencyStoreError(
            name,
            f"table {TABLE!r} exists with columns {cols}, not toolvisor's layout "
            f"{list(LAYOUT)}; point the store at its own file",
        )
    if version is None:
        raise IdempotencyStoreError(
            name,
            f"table {TABLE!r} was not created by toolvisor (no schema version row in "
            f"{VERSION_TABLE!r}); point the store at its own file",
        )
    if version not in known:
        raise IdempotencyStoreError(
            name,
            f"schema version {version!r}, this toolvisor reads versions up to "
            f"{SCHEMA_VERSION}; use the toolvisor version that wrote the file, or a new file",
        )
    if tuple(cols) != known[version]:
        raise IdempotencyStoreError(
            name,
            f"table {TABLE!r} has columns {cols}, not the layout of schema version "
            f"{version} {list(known[version])}; point the store at its own file",
        )
    while version != SCHEMA_VERSION:
        _MIGRATIONS[version][1](conn)
        version += 1
        _set_version(conn, version)


def _set_version(conn: sqlite3.Connection, version: int) -> None:
    conn.execute(
        f"INSERT OR REPLACE INTO {VERSION_TABLE} (component, version) VALUES (?, ?)",
        (TABLE, version),
    )


def row_to_record(name: str, row: tuple[object, ...]) -> Record:
    """Check one row's types and values and build its Record.

    A row that does not read (written by hand, a bug, a broken disk) raises
    ``IdempotencyStoreError``: guessing could execute a call twice.
    """
    key, fingerprint, state, owner, expires_at, result_json, not_stored_reason = row

    def unreadable(problem: str) -> IdempotencyStoreError:
        return IdempotencyStoreError(
            name, f"unreadable row for key {key!r} in table {TABLE!r}: {problem}"
        )

    if not (isinstance(key, str) and isinstance(fingerprint, str) and isinstance(owner, str)):
        raise unreadable("key, fingerprint and owner must be text")
    if not isinstance(state, str) or state not in _STATES:
        raise unreadable(f"unknown state {state!r}")
    if (
        isinstance(expires_at, bool)
        or not isinstance(expires_at, int | float)
        or not math.isfinite(expires_at)
    ):
        raise unreadable(f"expires_at {expires_at!r} is not a finite number")
    if not (result_json is None or isinstance(result_json, str)):
        raise unreadable("result_json must be text or NULL")
    if not (not_stored_reason is None or isinstance(not_stored_reason, str)):
        raise unreadable("not_stored_reason must be text or NULL")
    return Record(
        key=key,
        fingerprint=fingerprint,
        state=_STATES[state],
        owner=owner,
        expires_at=float(expires_at),
        result_json=result_json,
        not_stored_reason=not_stored_reason,
    )
