"""The IdempotencyStore contract, run against every store (memory, SQLite, Redis)."""

from __future__ import annotations

import json

import pytest
import trio
from store_helpers import Harness

from toolvisor.supervisor.stores import IdempotencyStore, RecordState

TTL = 60.0


async def test_is_an_idempotency_store(harness: Harness) -> None:
    assert isinstance(harness.store, IdempotencyStore)
    assert harness.store.persistent is (harness.kind != "memory")


async def test_claim_free_key(harness: Harness) -> None:
    before = harness.now()
    outcome = await harness.store.claim("k", "fp1", "owner-a", 10.0)
    assert outcome.claimed
    rec = outcome.record
    assert (rec.key, rec.fingerprint, rec.owner) == ("k", "fp1", "owner-a")
    assert rec.state is RecordState.IN_PROGRESS
    assert rec.result_json is None
    assert rec.not_stored_reason is None
    assert rec.expires_at == pytest.approx(before + 10.0, abs=1.0)
    assert await harness.store.get("k") == rec


async def test_claim_held_key_reports_holder(harness: Harness) -> None:
    first = await harness.store.claim("k", "fp1", "owner-a", 10.0)
    second = await harness.store.claim("k", "fp2", "owner-b", 10.0)
    assert not second.claimed
    # The store does not compare fingerprints: the caller does, with the record.
    assert second.record == first.record


async def test_complete_then_claim_returns_done_record(harness: Harness) -> None:
    store = harness.store
    await store.claim("k", "fp1", "owner-a", 10.0)
    assert await store.complete("k", "owner-a", TTL, '{"ok": true}')
    done = await store.get("k")
    assert done is not None
    assert done.state is RecordState.DONE
    assert (done.fingerprint, done.owner, done.result_json) == ("fp1", "owner-a", '{"ok": true}')
    assert done.expires_at == pytest.approx(harness.now() + TTL, abs=1.0)
    again = await store.claim("k", "fp1", "owner-b", 10.0)
    assert not again.claimed
    assert again.record == done


async def test_complete_needs_the_owner(harness: Harness) -> None:
    store = harness.store
    claim = (await store.claim("k", "fp", "owner-a", 10.0)).record
    assert not await store.complete("k", "owner-b", TTL, "1")
    assert await store.get("k") == claim
    assert not await store.complete("missing", "owner-a", TTL, "1")
    assert await store.complete("k", "owner-a", TTL, "1")
    # A done record is no claim: completing it again changes nothing.
    assert not await store.complete("k", "owner-a", TTL, "2")
    done = await store.get("k")
    assert done is not None
    assert done.result_json == "1"


async def test_release_needs_the_owner(harness: Harness) -> None:
    store = harness.store
    await store.claim("k", "fp", "owner-a", 10.0)
    assert not await store.release("k", "owner-b")
    assert await store.get("k") is not None
    assert await store.release("k", "owner-a")
    assert await store.get("k") is None
    assert not await store.release("k", "owner-a")
    assert (await store.claim("k", "fp", "owner-b", 10.0)).claimed


async def test_release_does_not_drop_a_done_record(harness: Harness) -> None:
    store = harness.store
    await store.claim("k", "fp", "owner-a", 10.0)
    assert await store.complete("k", "owner-a", TTL, "1")
    assert not await store.release("k", "owner-a")
    assert await store.get("k") is not None


async def test_expired_claim_can_be_taken_over(harness: Harness) -> None:
    store = harness.store
    await store.claim("k", "fp", "owner-a", 10.0)
    await harness.advance(9.0)
    assert not (await store.claim("k", "fp", "owner-b", 10.0)).claimed
    await harness.advance(2.0)
    assert await store.get("k") is None
    taken = await store.claim("k", "fp", "owner-b", 10.0)
    assert taken.claimed
    assert taken.record.owner == "owner-b"
    # The crashed holder comes back too late: it no longer holds the key.
    assert not await store.complete("k", "owner-a", TTL, "1")
    assert not await store.release("k", "owner-a")
    assert await store.complete("k", "owner-b", TTL, "2")


async def test_expired_claim_cannot_be_completed(harness: Harness) -> None:
    store = harness.store
    await store.claim("k", "fp", "owner-a", 10.0)
    await harness.advance(11.0)
    assert not await store.complete("k", "owner-a", TTL, "1")
    assert not await store.release("k", "owner-a")
    assert await store.get("k") is None


async def test_done_record_expires_after_its_ttl(harness: Harness) -> None:
    store = harness.store
    await store.claim("k", "fp", "owner-a", 10.0)
    assert await store.complete("k", "owner-a", 5.0, "1")
    await harness.advance(4.0)
    assert (await store.get("k")) is not None
    assert not (await store.claim("k", "fp", "owner-b", 10.0)).claimed
    await harness.advance(2.0)
    assert await store.get("k") is None
    assert (await store.claim("k", "fp", "owner-b", 10.0)).claimed


async def test_complete_with_zero_ttl_drops_the_record(harness: Harness) -> None:
    store = harness.store
    await store.claim("k", "fp", "owner-a", 10.0)
    assert await store.complete("k", "owner-a", 0.0, "1")
    assert await store.get("k") is None
    assert (await store.claim("k", "fp", "owner-b", 10.0)).claimed


async def test_not_stored_reason_round_trip(harness: Harness) -> None:
    store = harness.store
    await store.claim("k", "fp", "owner-a", 10.0)
    reason = "result of type Widget is not JSON serialisable"
    assert await store.complete("k", "owner-a", TTL, None, reason)
    done = await store.get("k")
    assert done is not None
    assert done.state is RecordState.DONE
    assert done.result_json is None
    assert done.not_stored_reason == reason
    assert (await store.claim("k", "fp", "owner-b", 10.0)).record == done


async def test_empty_result_text_is_not_none(harness: Harness) -> None:
    store = harness.store
    await store.claim("k", "fp", "owner-a", 10.0)
    assert await store.complete("k", "owner-a", TTL, "", "")
    done = await store.get("k")
    assert done is not None
    assert (done.result_json, done.not_stored_reason) == ("", "")


async def test_unicode_and_large_json(harness: Harness) -> None:
    store = harness.store
    key = "tenant-é/tool-工具/key-🔑\u2028"
    owner = "owner-Ω"
    fingerprint = "fp-ß"
    value = {
        "text": "héllo wörld 🌍 ܐܒܓ \u0000 nul and \ud7ff",
        "rows": [{"i": i, "s": "x" * 50} for i in range(20_000)],
    }
    result = json.dumps(value, ensure_ascii=False)
    assert len(result.encode()) > 1_000_000
    assert (await store.claim(key, fingerprint, owner, 10.0)).claimed
    assert await store.complete(key, owner, TTL, result)
    done = await store.get(key)
    assert done is not None
    assert (done.key, done.owner, done.fingerprint) == (key, owner, fingerprint)
    assert done.result_json == result
    assert json.loads(done.result_json) == value


async def test_keys_are_independent(harness: Harness) -> None:
    store = harness.store
    await store.claim("a", "fp", "owner-a", 10.0)
    assert (await store.claim("b", "fp", "owner-b", 10.0)).claimed
    assert await store.complete("a", "owner-a", TTL, "1")
    b = await store.get("b")
    assert b is not None
    assert b.state is RecordState.IN_PROGRESS
    assert await store.get("c") is None


async def test_concurrent_claims_have_one_winner(harness: Harness) -> None:
    store = harness.store
    outcomes = []

    async def contender(i: int) -> None:
        outcomes.append(await store.claim("hot", "fp", f"owner-{i}", 10.0))

    async with trio.open_nursery() as nursery:
        for i in range(50):
            nursery.start_soon(contender, i)
    winners = [o for o in outcomes if o.claimed]
    assert len(winners) == 1
    winner = winners[0].record.owner
    assert all(o.record.owner == winner for o in outcomes)


@pytest.mark.parametrize("ttl", [0.0, -1.0, float("nan"), float("inf")])
async def test_bad_claim_ttl_is_refused(harness: Harness, ttl: float) -> None:
    with pytest.raises(ValueError, match="claim_ttl_s"):
        await harness.store.claim("k", "fp", "owner-a", ttl)


async def test_bad_done_ttl_is_refused(harness: Harness) -> None:
    await harness.store.claim("k", "fp", "owner-a", 10.0)
    with pytest.raises(ValueError, match="ttl_s"):
        await harness.store.complete("k", "owner-a", -1.0, "1")
    assert (await harness.store.get("k")) is not None


async def test_aclose_is_idempotent(harness: Harness) -> None:
    await harness.store.claim("k", "fp", "owner-a", 10.0)
    await harness.store.aclose()
    await harness.store.aclose()
