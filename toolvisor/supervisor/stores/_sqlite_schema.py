"""SQLiteStore's schema: creation on first use, checks, and reading rows (private)."""

from __future__ import annotations

import math
import sqlite3

from toolvisor.errors import IdempotencyStoreError
from toolvisor.supervisor.stores.base import Record, RecordState

__all__ = ["COLUMNS", "SCHEMA_VERSION", "TABLE", "ensure_schema", "row_to_record"]

#: Bump when the layout changes; a file with another version is refused, not guessed at.
SCHEMA_VERSION = 1
TABLE = "toolvisor_idempotency"
VERSION_TABLE = "toolvisor_schema"
COLUMNS = (
    "key",
    "fingerprint",
    "state",
    "owner",
    "expires_at",
    "result_json",
    "not_stored_reason",
)

_CREATE_VERSION_TABLE = f"""
CREATE TABLE IF NOT EXISTS {VERSION_TABLE} (
    component TEXT PRIMARY KEY,
    version INTEGER NOT NULL
)
"""
# WITHOUT ROWID: the key is the only lookup, so the rows live in the key's b-tree.
_CREATE_TABLE = f"""
CREATE TABLE {TABLE} (
    key TEXT PRIMARY KEY NOT NULL,
    fingerprint TEXT NOT NULL,
    state TEXT NOT NULL,
    owner TEXT NOT NULL,
    expires_at REAL NOT NULL,
    result_json TEXT,
    not_stored_reason TEXT
) WITHOUT ROWID
"""
_STATES = {s.value: s for s in RecordState}


def ensure_schema(conn: sqlite3.Connection, name: str) -> None:
    """Create the tables on a new file, or check that an existing file is ours.

    Runs in one ``BEGIN IMMEDIATE`` transaction, so processes opening a new file at once
    create it once. Raises ``IdempotencyStoreError`` for a table of that name with
    another layout, a missing version row, or another schema version.
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
        conn.execute(_CREATE_TABLE)
        conn.execute(
            f"INSERT OR REPLACE INTO {VERSION_TABLE} (component, version) VALUES (?, ?)",
            (TABLE, SCHEMA_VERSION),
        )
    elif tuple(cols) != COLUMNS:
        raise IdempotencyStoreError(
            name,
            f"table {TABLE!r} exists with columns {cols}, not toolvisor's layout "
            f"{list(COLUMNS)}; point the store at its own file",
        )
    elif row is None:
        raise IdempotencyStoreError(
            name,
            f"table {TABLE!r} was not created by toolvisor (no schema version row in "
            f"{VERSION_TABLE!r}); point the store at its own file",
        )
    elif row[0] != SCHEMA_VERSION:
        raise IdempotencyStoreError(
            name,
            f"schema version {row[0]!r}, this toolvisor reads version {SCHEMA_VERSION}; "
            "use the toolvisor version that wrote the file, or a new file",
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
