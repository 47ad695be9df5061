"""Stores under attack: private files, tampered rows, and passwords kept out of text.

- A new SQLite file (and its WAL and SHM files) is readable by its owner only.
- A tampered row holding ``NaN`` or JSON nested 100,000 levels is an
  ``IdempotencyStoreError`` for the caller, never a float NaN or a ``RecursionError``.
- A Redis password in the URL (userinfo or ``?password=``) appears in no repr, error,
  traceback or log line.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import sqlite3
import stat
import subprocess
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import toolvisor as tv
from toolvisor._json import load_stored, loads

SECRET = "hunter2-s3cret"


def payment_spec(name: str = "pay") -> tv.FunctionToolSpec:
    spec = tv.FunctionToolSpec(
        id=f"{name}-v1", tool_name=name, parameters=[tv.StringParameter(name="transaction_id")]
    )
    spec.idempotency.enabled = True
    spec.idempotency.persist_result = True
    spec.idempotency.key_fields = ["transaction_id"]
    return spec


async def charge(args: dict[str, Any]) -> dict[str, Any]:
    return {"charged": args["transaction_id"], "amount": 1.5}


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --------------------------------------------------------------------------- SQLite files


async def test_a_new_sqlite_file_and_its_wal_and_shm_are_private(tmp_path: Path) -> None:
    old = os.umask(0o022)  # the usual umask, under which files are made world-readable
    try:
        store = tv.SQLiteStore(tmp_path / "idem.db")
        async with tv.open_supervisor(idempotency_store=store) as sup:
            await sup.spawn(payment_spec(), charge)
            await sup.execute("pay", {"transaction_id": "tx-1"})
            files = {p.name: mode(p) for p in tmp_path.iterdir()}  # noqa: ASYNC240
        await store.aclose()
    finally:
        os.umask(old)
    assert files == {"idem.db": 0o600, "idem.db-wal": 0o600, "idem.db-shm": 0o600}


async def test_an_existing_sqlite_file_keeps_its_mode(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    path.touch()
    path.chmod(0o640)
    store = tv.SQLiteStore(path)
    await store.claim("k", "fp", "owner", 10.0)
    await store.aclose()
    assert mode(path) == 0o640


async def test_an_unopenable_sqlite_file_is_a_store_error(tmp_path: Path) -> None:
    taken = tmp_path / "idem.db"
    taken.mkdir()  # a directory where the database file should be: no user can open it
    store = tv.SQLiteStore(taken)
    with pytest.raises(tv.IdempotencyStoreError, match="cannot open") as info:
        await store.claim("k", "fp", "owner", 10.0)
    assert info.value.tool_ran is False


# --------------------------------------------------------------------------- tampered rows


@pytest.mark.parametrize(
    ("tampered", "problem"),
    [
        ('{"charged": "tx-1", "amount": NaN}', "NaN is not allowed"),
        ('{"amount": Infinity}', "Infinity is not allowed"),
        ('{"amount": 1e999}', "is not allowed: numbers must be finite"),
        ("[" * 100_000 + "]" * 100_000, "nests too deeply"),
        ("{not json", "Expecting property name"),
    ],
)
async def test_a_tampered_stored_result_is_a_store_error(
    tmp_path: Path, tampered: str, problem: str
) -> None:
    path = tmp_path / "idem.db"
    store = tv.SQLiteStore(path)
    async with tv.open_supervisor(idempotency_store=store) as sup:
        await sup.spawn(payment_spec(), charge)
        assert await sup.execute("pay", {"transaction_id": "tx-1"}) == {
            "charged": "tx-1",
            "amount": 1.5,
        }
        with sqlite3.connect(path) as db:
            db.execute("UPDATE toolvisor_idempotency SET result_json = ?", (tampered,))
        with pytest.raises(tv.IdempotencyStoreError, match=problem) as info:
            await sup.execute("pay", {"transaction_id": "tx-1"})
    await store.aclose()
    assert info.value.tool_ran is False
    assert len(str(info.value)) < 1000


def test_strict_loads_reads_what_compact_dumps_writes_and_refuses_the_rest() -> None:
    assert loads('{"a": [1, 2.5, "x", null, true]}') == {"a": [1, 2.5, "x", None, True]}
    for text in ("NaN", "[-Infinity]", "1e400", "[" * 5000):
        with pytest.raises(ValueError, match=r"not allowed|nests too deeply|Expecting"):
            loads(text)
    with pytest.raises(TypeError, match="must be a str"):
        loads(b"{}")  # type: ignore[arg-type]
    with pytest.raises(tv.IdempotencyStoreError, match="stored result of key 'k'"):
        load_stored("NaN", store="SQLiteStore('x')", key="k")


# --------------------------------------------------------------------------- Redis secrets


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def no_secret_in(err: BaseException) -> None:
    text = "".join(traceback.format_exception(err))
    assert SECRET not in text, text


@pytest.mark.parametrize(
    "url",
    [
        f"redis://:{SECRET}@127.0.0.1:{{port}}/0",
        f"redis://default:{SECRET}@127.0.0.1:{{port}}/0",
        f"redis://127.0.0.1:{{port}}/0?password={SECRET}",
    ],
)
async def test_a_redis_password_is_in_no_repr_error_or_log(
    url: str, caplog: pytest.LogCaptureFixture
) -> None:
    store = tv.RedisStore(url.format(port=closed_port()), prefix="hostile:")
    assert SECRET not in repr(store)
    assert SECRET not in store.url
    assert "***" in repr(store)
    caplog.set_level(logging.DEBUG)
    async with tv.open_supervisor(idempotency_store=store) as sup:
        await sup.spawn(payment_spec(), charge)
        with pytest.raises(tv.IdempotencyStoreError) as info:
            await sup.execute("pay", {"transaction_id": "tx-1"})
    await store.aclose()
    no_secret_in(info.value)
    assert "***" in info.value.store
    assert all(SECRET not in r.getMessage() for r in caplog.records)
    assert all(SECRET not in (r.exc_text or "") for r in caplog.records)


@pytest.fixture
def password_server() -> Iterator[int]:
    """A redis-server of this test's own that wants a password (not SECRET)."""
    server = shutil.which("redis-server")
    if server is None:
        pytest.skip("no redis-server")
    port = closed_port()
    options = ["--requirepass", "the-right-one", "--save", "", "--appendonly", "no"]
    proc = subprocess.Popen([server, "--port", str(port), *options], stdout=subprocess.DEVNULL)
    try:
        for _ in range(200):
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.01)
        yield port
    finally:
        proc.terminate()
        proc.wait(5)


async def test_a_wrong_redis_password_on_a_live_server_stays_secret(
    password_server: int, caplog: pytest.LogCaptureFixture
) -> None:
    """The server answers and refuses the password: its error must not carry it."""
    store = tv.RedisStore(f"redis://default:{SECRET}@127.0.0.1:{password_server}/0")
    caplog.set_level(logging.DEBUG)
    with pytest.raises(tv.IdempotencyStoreError) as info:
        await store.claim("k", "fp", "owner", 5.0)
    await store.aclose()
    no_secret_in(info.value)
    assert "***" in str(info.value)
    assert all(SECRET not in r.getMessage() for r in caplog.records)


# --------------------------------------------------------------------------- results


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
async def test_a_result_holding_a_lone_surrogate_is_not_stored_and_never_runs_again(
    tmp_path: Path, kind: str
) -> None:
    runs: list[str] = []

    async def odd(args: dict[str, Any]) -> str:
        runs.append(args["transaction_id"])
        return "caf\udce9"  # a str Python allows, UTF-8 (and so every store) does not

    store = tv.MemoryStore() if kind == "memory" else tv.SQLiteStore(tmp_path / "idem.db")
    async with tv.open_supervisor(idempotency_store=store) as sup:
        await sup.spawn(payment_spec("odd"), odd)
        assert await sup.execute("odd", {"transaction_id": "tx-1"}) == "caf\udce9"
        with pytest.raises(tv.IdempotencyStoreError, match="not stored") as info:
            await sup.execute("odd", {"transaction_id": "tx-1"})
    await store.aclose()
    assert runs == ["tx-1"]
    assert "lone surrogate" in str(info.value)
