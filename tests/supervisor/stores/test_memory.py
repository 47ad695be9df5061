"""MemoryStore specifics: the LRU bound, claims never evicted, trio's clock."""

from __future__ import annotations

import sys
import tracemalloc

import pytest
import trio
import trio.testing
from store_helpers import FakeClock

from toolvisor.errors import IdempotencyStoreError
from toolvisor.supervisor.stores import MemoryStore, RecordState


async def test_default_clock_is_trios(autojump_clock: trio.testing.MockClock) -> None:
    store = MemoryStore()
    claim = await store.claim("k", "fp", "a", 10.0)
    assert claim.record.expires_at == trio.current_time() + 10.0
    await trio.sleep(10.0)
    assert await store.get("k") is None


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "10"])
def test_max_entries_is_checked(bad: object) -> None:
    with pytest.raises(ValueError, match="max_entries"):
        MemoryStore(max_entries=bad)  # type: ignore[arg-type]


async def test_bound_holds_under_many_distinct_keys(clock: FakeClock) -> None:
    store = MemoryStore(max_entries=1000, clock=clock)

    async def fill(start: int, stop: int) -> None:
        for i in range(start, stop):
            key = f"key-{i}"
            assert (await store.claim(key, "fp", "owner", 30.0)).claimed
            assert await store.complete(key, "owner", 3600.0, '{"n": 1}')
            assert len(store) <= 1000

    await fill(0, 100_000)
    # Memory held: the bytes allocated for the records alive and the size of the store's
    # tables stop growing at the bound (counted, not timed or sampled, so other tests
    # cannot disturb it). Traced from a full store, so every record held was traced.
    sizes = (sys.getsizeof(store._done), sys.getsizeof(store._claims))
    tracemalloc.start()
    try:
        await fill(100_000, 110_000)
        held = tracemalloc.get_traced_memory()[0]
        await fill(110_000, 120_000)
        assert tracemalloc.get_traced_memory()[0] <= held + held // 10
    finally:
        tracemalloc.stop()
    assert held >= 1000 * 100  # the count sees the store's records (keys alone take that)
    assert sys.getsizeof(store._done) <= 2 * sizes[0]
    assert sys.getsizeof(store._claims) <= 2 * sizes[1]
    assert len(store) == 1000
    assert await store.get("key-118999") is None
    assert await store.get("key-119000") is not None


async def test_least_recently_used_done_record_goes_first(clock: FakeClock) -> None:
    store = MemoryStore(max_entries=3, clock=clock)
    for key in "abc":
        await store.claim(key, "fp", "o", 10.0)
        await store.complete(key, "o", 60.0, "1")
    assert await store.get("a") is not None  # a is now the most recently used
    await store.claim("d", "fp", "o", 10.0)
    assert await store.get("b") is None
    assert [await store.get(k) is not None for k in "acd"] == [True, True, True]
    # A claim that finds a done record also counts as a use.
    assert not (await store.claim("c", "fp", "x", 10.0)).claimed
    await store.claim("e", "fp", "o", 10.0)
    assert await store.get("a") is None
    assert await store.get("c") is not None


async def test_claims_are_never_evicted(clock: FakeClock) -> None:
    store = MemoryStore(max_entries=4, clock=clock)
    for key in "ab":
        await store.claim(key, "fp", "o", 10.0)
    for key in "cd":
        await store.claim(key, "fp", "o", 10.0)
        await store.complete(key, "o", 60.0, "1")
    await store.claim("e", "fp", "o", 10.0)
    await store.claim("f", "fp", "o", 10.0)
    assert await store.get("c") is None
    assert await store.get("d") is None
    for key in "abef":
        rec = await store.get(key)
        assert rec is not None
        assert rec.state is RecordState.IN_PROGRESS


async def test_full_of_claims_raises(clock: FakeClock) -> None:
    store = MemoryStore(max_entries=2, clock=clock)
    await store.claim("a", "fp", "o", 10.0)
    await store.claim("b", "fp", "o", 10.0)
    with pytest.raises(IdempotencyStoreError, match="full") as info:
        await store.claim("c", "fp", "o", 10.0)
    assert info.value.store == "MemoryStore"
    # The failed claim changed nothing; a held key still answers.
    assert not (await store.claim("a", "fp", "x", 10.0)).claimed
    # Once claims expire, they make room.
    clock.advance(11.0)
    assert (await store.claim("c", "fp", "o", 10.0)).claimed
    assert len(store) == 1


async def test_operations_do_not_yield(clock: FakeClock) -> None:
    # On the hot path: no checkpoint, so no other task can run in between.
    store = MemoryStore(clock=clock)
    with trio.testing.assert_no_checkpoints():
        await store.claim("k", "fp", "o", 10.0)
        await store.get("k")
        await store.complete("k", "o", 10.0, "1")
        await store.release("k", "o")
        await store.claim("j", "fp", "o", 10.0)
        await store.renew("j", "o", 10.0)
        await store.mark_unknown("j", "o", 10.0)
        await store.forget("j")
        await store.aclose()


async def test_aclose_keeps_records(clock: FakeClock) -> None:
    store = MemoryStore(clock=clock)
    await store.claim("k", "fp", "o", 10.0)
    await store.aclose()
    assert await store.get("k") is not None
    assert "claims=1" in repr(store)


async def test_unknown_records_are_never_evicted(clock: FakeClock) -> None:
    # Evicting an unknown record would let its key run a second time.
    store = MemoryStore(max_entries=3, clock=clock)
    await store.claim("done", "fp", "o", 10.0)
    await store.complete("done", "o", 3600.0, "1")
    await store.claim("unknown", "fp", "o", 10.0)
    await store.mark_unknown("unknown", "o", 3600.0)
    await store.claim("running", "fp", "o", 10.0)
    # Full: the done record makes room, the unknown one and the claim stay.
    assert (await store.claim("new", "fp", "o", 10.0)).claimed
    assert await store.get("done") is None
    with pytest.raises(IdempotencyStoreError, match="unknown outcome") as info:
        await store.claim("newer", "fp", "o", 10.0)
    assert "forget" in info.value.detail
    unknown = await store.get("unknown")
    assert unknown is not None
    assert unknown.state is RecordState.UNKNOWN
    # forget frees the slot; so does the record's own TTL.
    assert await store.forget("unknown")
    assert (await store.claim("newer", "fp", "o", 10.0)).claimed
    await store.mark_unknown("newer", "o", 5.0)
    clock.advance(11.0)  # the claims expire; the unknown record too (5 s)
    for key in ("a", "b", "c"):
        assert (await store.claim(key, "fp", "o", 10.0)).claimed
    assert len(store) == 3
    assert "unknown=0" in repr(store)
    assert "namespace='default'" in repr(store)
