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


# --- leases, unknown outcomes, forget ---------------------------------------------


async def test_renew_keeps_a_claim_past_its_first_ttl(harness: Harness) -> None:
    store = harness.store
    await store.claim("k", "fp", "owner-a", 10.0)
    for _ in range(3):
        await harness.advance(8.0)
        assert await store.renew("k", "owner-a", 10.0)
    # 24 s after a 10 s claim: still held, and nobody else can take it.
    taken = await store.claim("k", "fp", "owner-b", 10.0)
    assert not taken.claimed
    assert taken.record.owner == "owner-a"
    assert taken.record.expires_at == pytest.approx(harness.now() + 10.0, abs=1.0)
    assert await store.complete("k", "owner-a", TTL, "1")


async def test_renew_sets_the_lease_from_now(harness: Harness) -> None:
    store = harness.store
    await store.claim("k", "fp", "owner-a", 10.0)
    assert await store.renew("k", "owner-a", 2.0)
    await harness.advance(3.0)
    # The renewal moved the end to 2 s from then, earlier than the claim's own 10 s.
    assert await store.get("k") is None
    assert (await store.claim("k", "fp", "owner-b", 10.0)).claimed


async def test_renew_needs_the_owner_and_a_live_claim(harness: Harness) -> None:
    store = harness.store
    assert not await store.renew("missing", "owner-a", 10.0)
    claim = (await store.claim("k", "fp", "owner-a", 10.0)).record
    assert not await store.renew("k", "owner-b", 10.0)
    assert await store.get("k") == claim
    await harness.advance(11.0)
    # The holder renews too late: the claim is gone, and renew does not revive it.
    assert not await store.renew("k", "owner-a", 10.0)
    assert await store.get("k") is None


async def test_renew_does_not_touch_done_or_unknown_records(harness: Harness) -> None:
    store = harness.store
    await store.claim("d", "fp", "owner-a", 10.0)
    assert await store.complete("d", "owner-a", 5.0, "1")
    await store.claim("u", "fp", "owner-a", 10.0)
    assert await store.mark_unknown("u", "owner-a", 5.0)
    for key in ("d", "u"):
        assert not await store.renew(key, "owner-a", 100.0)
    await harness.advance(6.0)
    assert await store.get("d") is None
    assert await store.get("u") is None


async def test_unknown_record_blocks_the_key_until_its_ttl(harness: Harness) -> None:
    store = harness.store
    await store.claim("k", "fp1", "owner-a", 10.0)
    assert await store.mark_unknown("k", "owner-a", 30.0)
    unknown = await store.get("k")
    assert unknown is not None
    assert unknown.state is RecordState.UNKNOWN
    assert (unknown.fingerprint, unknown.owner) == ("fp1", "owner-a")
    assert (unknown.result_json, unknown.not_stored_reason) == (None, None)
    assert unknown.expires_at == pytest.approx(harness.now() + 30.0, abs=1.0)
    await harness.advance(20.0)  # past the claim's 10 s: the unknown record's TTL counts
    again = await store.claim("k", "fp1", "owner-b", 10.0)
    assert not again.claimed
    assert again.record == unknown
    await harness.advance(11.0)
    assert await store.get("k") is None
    taken = await store.claim("k", "fp1", "owner-b", 10.0)
    assert taken.claimed
    assert taken.record.owner == "owner-b"


async def test_an_unknown_record_is_no_claim(harness: Harness) -> None:
    store = harness.store
    await store.claim("k", "fp", "owner-a", 10.0)
    assert await store.mark_unknown("k", "owner-a", TTL)
    unknown = await store.get("k")
    assert not await store.complete("k", "owner-a", TTL, "1")
    assert not await store.release("k", "owner-a")
    assert not await store.mark_unknown("k", "owner-a", TTL)
    assert await store.get("k") == unknown


async def test_mark_unknown_needs_the_owner_and_a_live_claim(harness: Harness) -> None:
    store = harness.store
    assert not await store.mark_unknown("missing", "owner-a", TTL)
    claim = (await store.claim("k", "fp", "owner-a", 10.0)).record
    assert not await store.mark_unknown("k", "owner-b", TTL)
    assert await store.get("k") == claim
    await store.complete("k", "owner-a", TTL, "1")
    assert not await store.mark_unknown("k", "owner-a", TTL)  # done stays done
    done = await store.get("k")
    assert done is not None
    assert done.state is RecordState.DONE
    await store.claim("late", "fp", "owner-a", 10.0)
    await harness.advance(11.0)
    assert not await store.mark_unknown("late", "owner-a", TTL)
    assert await store.get("late") is None


async def test_mark_unknown_with_zero_ttl_drops_the_claim(harness: Harness) -> None:
    store = harness.store
    await store.claim("k", "fp", "owner-a", 10.0)
    assert await store.mark_unknown("k", "owner-a", 0.0)
    assert await store.get("k") is None
    assert (await store.claim("k", "fp", "owner-b", 10.0)).claimed


async def test_forget_drops_any_record(harness: Harness) -> None:
    store = harness.store
    await store.claim("claim", "fp", "owner-a", 10.0)
    await store.claim("done", "fp", "owner-a", 10.0)
    await store.complete("done", "owner-a", TTL, "1")
    await store.claim("unknown", "fp", "owner-a", 10.0)
    await store.mark_unknown("unknown", "owner-a", TTL)
    await store.claim("other", "fp", "owner-a", 10.0)
    for key in ("claim", "done", "unknown"):
        assert await store.forget(key)
        assert await store.get(key) is None
        assert not await store.forget(key)
        assert (await store.claim(key, "fp", "owner-b", 10.0)).claimed
    assert not await store.forget("missing")
    other = await store.get("other")
    assert other is not None
    assert other.owner == "owner-a"


async def test_a_forgotten_claim_is_no_longer_its_holders(harness: Harness) -> None:
    store = harness.store
    await store.claim("k", "fp", "owner-a", 10.0)
    assert await store.forget("k")
    assert not await store.renew("k", "owner-a", 10.0)
    assert not await store.complete("k", "owner-a", TTL, "1")
    assert not await store.mark_unknown("k", "owner-a", TTL)
    assert await store.get("k") is None


async def test_forget_of_an_expired_record_reports_none(harness: Harness) -> None:
    store = harness.store
    await store.claim("k", "fp", "owner-a", 10.0)
    await store.complete("k", "owner-a", 5.0, "1")
    await harness.advance(6.0)
    assert not await store.forget("k")
    assert (await store.claim("k", "fp", "owner-b", 10.0)).claimed


@pytest.mark.parametrize("ttl", [0.0, -1.0, float("nan"), float("inf")])
async def test_bad_renew_ttl_is_refused(harness: Harness, ttl: float) -> None:
    await harness.store.claim("k", "fp", "owner-a", 10.0)
    with pytest.raises(ValueError, match="claim_ttl_s"):
        await harness.store.renew("k", "owner-a", ttl)
    held = await harness.store.get("k")
    assert held is not None
    assert held.expires_at == pytest.approx(harness.now() + 10.0, abs=1.0)


@pytest.mark.parametrize("ttl", [-1.0, float("nan"), float("inf")])
async def test_bad_unknown_ttl_is_refused(harness: Harness, ttl: float) -> None:
    await harness.store.claim("k", "fp", "owner-a", 10.0)
    with pytest.raises(ValueError, match="ttl_s"):
        await harness.store.mark_unknown("k", "owner-a", ttl)
    held = await harness.store.get("k")
    assert held is not None
    assert held.state is RecordState.IN_PROGRESS


async def test_concurrent_renewals_and_a_mark_keep_one_answer(harness: Harness) -> None:
    store = harness.store
    await store.claim("k", "fp", "owner-a", 10.0)
    answers: list[bool] = []

    async def renewer() -> None:
        answers.append(await store.renew("k", "owner-a", 10.0))

    async with trio.open_nursery() as nursery:
        for _ in range(20):
            nursery.start_soon(renewer)
        nursery.start_soon(store.mark_unknown, "k", "owner-a", TTL)
    # Each renewal landed before the mark (True) or after it (False); either way the
    # mark won in the end, and no renewal turned the unknown record back into a claim.
    assert len(answers) == 20
    final = await store.get("k")
    assert final is not None
    assert final.state is RecordState.UNKNOWN


async def test_the_store_has_a_namespace(harness: Harness) -> None:
    assert getattr(harness.store, "namespace", None) == "default"
