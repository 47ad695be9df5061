"""RedisStore specifics: TTL held by Redis, foreign data, connection failures."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator

import coredis
import pytest
import trio

from toolvisor.errors import IdempotencyStoreError
from toolvisor.supervisor.stores import RecordState, RedisStore


@pytest.fixture
async def raw(redis_url: str) -> AsyncIterator[coredis.Redis[str]]:
    async with coredis.Redis.from_url(redis_url, decode_responses=True) as client:
        yield client


@pytest.fixture
async def store(redis_url: str, redis_prefix: str) -> AsyncIterator[RedisStore]:
    s = RedisStore(redis_url, prefix=redis_prefix)
    yield s
    await s.aclose()


async def test_ttl_is_held_by_redis(
    store: RedisStore, raw: coredis.Redis[str], redis_prefix: str
) -> None:
    await store.claim("k", "fp", "a", 10.0)
    assert 9_000 < await raw.pttl(redis_prefix + "default:k") <= 10_000
    await store.complete("k", "a", 3600.0, "1")
    assert 3_599_000 < await raw.pttl(redis_prefix + "default:k") <= 3_600_000
    fields = await raw.hgetall(redis_prefix + "default:k")
    assert fields["st"] == "done"
    assert fields["res"] == "1"
    assert "nsr" not in fields


async def test_records_are_shared_between_stores(redis_url: str, redis_prefix: str) -> None:
    one = RedisStore(redis_url, prefix=redis_prefix)
    two = RedisStore(redis_url, prefix=redis_prefix)
    other_app = RedisStore(redis_url, prefix=redis_prefix + "other:")
    assert (await one.claim("k", "fp", "a", 10.0)).claimed
    assert not (await two.claim("k", "fp", "b", 10.0)).claimed
    assert (await other_app.claim("k", "fp", "c", 10.0)).claimed
    assert await one.complete("k", "a", 60.0, "1")
    rec = await two.get("k")
    assert rec is not None
    assert rec.state is RecordState.DONE
    for s in (one, two, other_app):
        await s.aclose()


async def test_foreign_value_raises(
    store: RedisStore, raw: coredis.Redis[str], redis_prefix: str
) -> None:
    await raw.set(redis_prefix + "default:k", "someone else's string")
    with pytest.raises(IdempotencyStoreError, match="not a toolvisor record"):
        await store.claim("k", "fp", "a", 10.0)
    with pytest.raises(IdempotencyStoreError, match="not a toolvisor record"):
        await store.get("k")
    with pytest.raises(IdempotencyStoreError):
        await store.complete("k", "a", 10.0, "1")
    with pytest.raises(IdempotencyStoreError, match="not a toolvisor record"):
        await store.forget("k")
    assert await raw.get(redis_prefix + "default:k") == "someone else's string"


async def test_foreign_value_at_the_legacy_key_is_left_alone(
    store: RedisStore, raw: coredis.Redis[str], redis_prefix: str
) -> None:
    await raw.set(redis_prefix + "k", "someone else's string")
    await raw.hset(redis_prefix + "h", {"field": "someone else's hash"})
    for key in ("k", "h"):
        assert await store.get(key) is None
        assert (await store.claim(key, "fp", "a", 10.0)).claimed
        assert await store.forget(key)
    assert await raw.get(redis_prefix + "k") == "someone else's string"
    assert await raw.hgetall(redis_prefix + "h") == {"field": "someone else's hash"}


async def test_unreadable_hash_raises(
    store: RedisStore, raw: coredis.Redis[str], redis_prefix: str
) -> None:
    await raw.hset(redis_prefix + "k", {"v": "1", "st": "exploded", "fp": "f", "ow": "o"})
    with pytest.raises(IdempotencyStoreError, match="unknown state"):
        await store.claim("k", "fp", "a", 10.0)
    await raw.hset(redis_prefix + "default:j", {"v": "7", "st": "done"})
    with pytest.raises(IdempotencyStoreError, match="format version"):
        await store.get("j")
    ours = {"v": "2", "ns": "default", "st": "done", "fp": "f", "ow": "o"}
    await raw.hset(redis_prefix + "default:e", ours)
    with pytest.raises(IdempotencyStoreError, match="expires_at"):
        await store.get("e")
    await raw.hset(redis_prefix + "default:n", {**ours, "ns": "other", "exp": "1.0"})
    with pytest.raises(IdempotencyStoreError, match="namespace 'other'"):
        await store.get("n")


async def _errors_from_unreachable_server() -> list[IdempotencyStoreError]:
    with trio.socket.socket() as sock:
        await sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    store = RedisStore(f"redis://:secret@127.0.0.1:{port}/0")
    errors = []
    for op in (store.claim("k", "fp", "a", 10.0), store.get("k")):
        with pytest.raises(IdempotencyStoreError) as info:
            await op
        assert f"127.0.0.1:{port}" in str(info.value)
        errors.append(info.value)
    await store.aclose()
    return errors


# coredis 6.9 leaks the failed connections' memory streams: see COREDIS_LEAK in conftest.
async def test_unreachable_server_raises() -> None:
    errors = await _errors_from_unreachable_server()
    messages = [str(e) for e in errors]
    stores = {e.store for e in errors}
    assert all("secret" not in m for m in messages)
    assert all("***" in s for s in stores)


async def test_reconnects_after_aclose(store: RedisStore) -> None:
    await store.claim("k", "fp", "a", 10.0)
    await store.aclose()
    await store.aclose()
    assert await store.get("k") is not None


async def test_passed_client_is_used_and_left_open(
    raw: coredis.Redis[str], redis_prefix: str
) -> None:
    store = RedisStore(prefix=redis_prefix, client=raw)
    assert (await store.claim("k", "fp", "a", 10.0)).claimed
    await store.aclose()
    assert await raw.exists([redis_prefix + "default:k"]) == 1


async def test_bytes_client_works(redis_url: str, redis_prefix: str) -> None:
    async with coredis.Redis.from_url(redis_url) as client:
        store = RedisStore(prefix=redis_prefix, client=client)
        await store.claim("k", "fp", "a", 10.0)
        await store.complete("k", "a", 60.0, '"é"')
        rec = await store.get("k")
        assert rec is not None
        assert rec.result_json == '"é"'
        again = await store.claim("k", "fp", "b", 10.0)
        assert again.record == rec


def test_missing_coredis_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "coredis", None)
    with pytest.raises(ImportError, match=r"pip install 'toolvisor\[redis\]'"):
        RedisStore()


def test_store_module_imports_without_coredis(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    monkeypatch.setitem(sys.modules, "coredis", None)
    monkeypatch.delitem(sys.modules, "toolvisor.supervisor.stores.redis")
    module = importlib.import_module("toolvisor.supervisor.stores.redis")
    assert module.RedisStore.persistent is True


async def test_unknown_outcome_is_kept_by_redis(
    redis_url: str, redis_prefix: str, raw: coredis.Redis[str]
) -> None:
    first = RedisStore(redis_url, prefix=redis_prefix)
    await first.claim("k", "fp", "a", 10.0)
    assert await first.mark_unknown("k", "a", 3600.0)
    await first.aclose()
    assert 3_599_000 < await raw.pttl(redis_prefix + "default:k") <= 3_600_000
    # Another process (a new store, new connections) sees it and does not run the key.
    second = RedisStore(redis_url, prefix=redis_prefix)
    standing = await second.claim("k", "fp", "b", 10.0)
    assert not standing.claimed
    assert (standing.record.state, standing.record.owner) == (RecordState.UNKNOWN, "a")
    assert await second.forget("k")
    assert (await second.claim("k", "fp", "b", 10.0)).claimed
    await second.aclose()
