"""Idempotency end to end: the key reaches the tool, callers bring their own keys, cut
attempts never charge twice, claims live as long as their calls, stores are bounded by
the call's deadline and namespaced per application (spec id)."""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

import pytest
import trio
import trio.testing

import toolvisor as tv


def payment_spec(spec_id: str = "pay-v1", **idem: Any) -> tv.FunctionToolSpec:
    spec = tv.FunctionToolSpec(
        id=spec_id,
        tool_name="pay",
        parameters=[
            tv.StringParameter(name="transaction_id", required=True),
            tv.NumericParameter(name="amount"),
        ],
        timeout_s=30,
    )
    spec.idempotency.enabled = True
    spec.idempotency.key_fields = ["transaction_id"]
    for field, value in idem.items():
        setattr(spec.idempotency, field, value)
    return spec


class Gateway:
    """A payment gateway that records every charge (and may hang on some)."""

    def __init__(self, hang_first: int = 0, duration: float = 0.0) -> None:
        self.charged: list[str] = []
        self.seen: list[tv.ExecutionContext] = []
        self.hang_first = hang_first
        self.duration = duration

    async def __call__(self, args: dict[str, Any], ctx: tv.ExecutionContext) -> str:
        self.seen.append(ctx)
        self.charged.append(args["transaction_id"])  # charged as soon as it starts
        if len(self.charged) <= self.hang_first:
            await trio.sleep_forever()
        await trio.sleep(self.duration)
        return f"charged {args['transaction_id']}"


async def test_the_tool_sees_the_key_and_the_attempt(
    autojump_clock: trio.testing.MockClock,
) -> None:
    seen: list[tuple[str | None, int]] = []

    async def flaky(args: dict[str, Any], ctx: tv.ExecutionContext) -> str:
        seen.append((ctx.idempotency_key, ctx.attempt))
        if ctx.attempt < 3:
            raise ConnectionError("try again")
        return "ok"

    spec = payment_spec()
    spec.retry_policy = tv.FixedRetryPolicy(max_attempts=3, delay_seconds=1)
    async with tv.open_supervisor() as sup:
        await sup.spawn(spec, flaky)
        assert await sup.execute("pay", {"transaction_id": "p-1"}) == "ok"
        ctx = tv.ExecutionContext(tenant_id="acme", idempotency_key="order-77")
        assert await sup.execute("pay", {"transaction_id": "p-2"}, ctx) == "ok"
    keys = {key for key, _ in seen}
    assert [n for _, n in seen] == [1, 2, 3, 1, 2, 3]
    assert len(keys) == 2 and "order-77" in keys  # the caller's own key, as given
    generated = next(k for k in keys if k != "order-77")
    assert generated is not None and generated.startswith("idem:pay:")


async def test_a_callers_key_replaces_the_generated_one() -> None:
    gateway = Gateway()
    async with tv.open_supervisor() as sup:
        await sup.spawn(payment_spec(), gateway)
        ctx = tv.ExecutionContext(idempotency_key="client-req-1")
        first = await sup.execute("pay", {"transaction_id": "p-1"}, ctx)
        # Same caller key, same arguments: answered from the cache.
        assert await sup.execute("pay", {"transaction_id": "p-1"}, ctx) == first
        # Same caller key, other arguments: a conflict, nothing runs.
        with pytest.raises(tv.IdempotencyConflictError) as info:
            await sup.execute("pay", {"transaction_id": "p-2"}, ctx)
        assert info.value.key == "client-req-1"
        # Another tenant's same key is its own.
        other = tv.ExecutionContext(tenant_id="t2", idempotency_key="client-req-1")
        await sup.execute("pay", {"transaction_id": "p-2"}, other)
    assert gateway.charged == ["p-1", "p-2"]


async def test_key_generators_with_and_without_ctx() -> None:
    class Old:
        def generate(
            self, tool_name: str, args: Any, *, key_fields: Any = (), tenant_id: Any = None
        ) -> str:
            return f"old:{args['transaction_id']}"

    class New:
        def generate(self, tool_name: str, args: Any, *, ctx: tv.ExecutionContext, **_: Any) -> str:
            return f"new:{ctx.request_id}"

    gateway = Gateway()
    async with tv.open_supervisor() as sup:
        old, new = payment_spec(), payment_spec()
        new.tool_name = "pay_new"
        old.idempotency_key_generator = Old()
        new.idempotency_key_generator = New()
        await sup.spawn(old, gateway)
        await sup.spawn(new, gateway)
        await sup.execute("pay", {"transaction_id": "a"})
        await sup.execute("pay_new", {"transaction_id": "b"}, tv.ExecutionContext(request_id="r9"))
    assert [c.idempotency_key for c in gateway.seen] == ["old:a", "new:r9"]


async def test_a_timed_out_attempt_is_never_run_again(
    autojump_clock: trio.testing.MockClock,
) -> None:
    gateway = Gateway(hang_first=1)  # charges, then never answers
    spec = payment_spec()
    spec.retry_policy = tv.FixedRetryPolicy(max_attempts=3, delay_seconds=0.1)
    async with tv.open_supervisor() as sup:
        await sup.spawn(spec, gateway)
        with pytest.raises(tv.IdempotencyOutcomeUnknownError) as info:
            await sup.execute("pay", {"transaction_id": "p-1"})
        assert isinstance(info.value.__cause__, tv.ToolTimeoutError)  # no retry of it
        # The client retries with the same transaction id: nothing runs.
        with pytest.raises(tv.IdempotencyOutcomeUnknownError) as again:
            await sup.execute("pay", {"transaction_id": "p-1"})
        assert gateway.charged == ["p-1"]
        # Checked downstream: forget the key, and it may run again.
        assert await sup.forget("pay", again.value.key)
        assert await sup.execute("pay", {"transaction_id": "p-1"}) == "charged p-1"
        stats = sup.stats("pay")
    assert gateway.charged == ["p-1", "p-1"]
    assert stats.calls == stats.successes + stats.failures + stats.rejected + stats.cancelled


@pytest.mark.parametrize("cut", ["deadline", "cancel"])
async def test_a_call_cut_mid_attempt_leaves_the_key_unknown(
    autojump_clock: trio.testing.MockClock, cut: str
) -> None:
    gateway = Gateway(duration=10)
    async with tv.open_supervisor() as sup:
        await sup.spawn(payment_spec(), gateway)
        if cut == "deadline":
            with pytest.raises(tv.ToolTimeoutError) as info:
                await sup.execute("pay", {"transaction_id": "p-1"}, timeout=1)
            assert "unknown" in info.value.__notes__[-1]
        else:
            with trio.move_on_after(1):
                await sup.execute("pay", {"transaction_id": "p-1"})
        with pytest.raises(tv.IdempotencyOutcomeUnknownError):
            await sup.execute("pay", {"transaction_id": "p-1"})
    assert gateway.charged == ["p-1"]


async def test_retry_mode_lets_a_cut_attempt_run_again(
    autojump_clock: trio.testing.MockClock,
) -> None:
    gateway = Gateway(hang_first=1)
    spec = payment_spec(on_unknown_outcome="retry")
    spec.retry_policy = tv.FixedRetryPolicy(max_attempts=2, delay_seconds=0.1)
    async with tv.open_supervisor() as sup:
        await sup.spawn(spec, gateway)
        assert await sup.execute("pay", {"transaction_id": "p-1"}) == "charged p-1"
    # Both attempts carried the same key: a gateway deduplicating on it charges once.
    assert gateway.charged == ["p-1", "p-1"]
    assert len({ctx.idempotency_key for ctx in gateway.seen}) == 1


async def test_a_call_that_was_queued_and_never_started_releases_its_key(
    autojump_clock: trio.testing.MockClock,
) -> None:
    gateway = Gateway(duration=10)
    spec = payment_spec()
    spec.max_concurrency = 1
    async with tv.open_supervisor() as sup:
        await sup.spawn(spec, gateway)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sup.execute, "pay", {"transaction_id": "busy"})
            await trio.sleep(0.1)
            with pytest.raises(tv.ToolTimeoutError):  # queued behind "busy" the whole time
                await sup.execute("pay", {"transaction_id": "p-1"}, timeout=1)
        assert await sup.execute("pay", {"transaction_id": "p-1"}) == "charged p-1"
    assert Counter(gateway.charged) == {"busy": 1, "p-1": 1}


async def test_a_thousand_payments_sent_at_once_then_retried_are_charged_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    gateway = Gateway(duration=1.0)  # one second each, 16 at a time: 63 s for all
    async with tv.open_supervisor() as sup:
        await sup.spawn(payment_spec(), gateway)
        for _ in range(2):  # the batch, then the client retrying every payment
            async with trio.open_nursery() as nursery:
                for i in range(1000):
                    nursery.start_soon(sup.execute, "pay", {"transaction_id": f"p-{i}"})
        stats = sup.stats("pay")
    assert len(gateway.charged) == 1000 and len(set(gateway.charged)) == 1000
    assert stats.cache_hits == 1000


async def test_a_lease_outlives_its_length_while_the_holder_lives(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store = tv.MemoryStore()  # shared by two supervisors, as two processes share Redis
    gateway = Gateway(duration=10)  # ten times the lease
    spec = payment_spec(claim_ttl_s=1.0)
    async with (
        tv.open_supervisor(idempotency_store=store) as a,
        tv.open_supervisor(idempotency_store=store) as b,
    ):
        await a.spawn(spec, gateway)
        await b.spawn(spec, gateway)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(a.execute, "pay", {"transaction_id": "p-1"})
            await trio.sleep(5)  # a's lease was renewed: b must wait, not run
            assert await b.execute("pay", {"transaction_id": "p-1"}) == "charged p-1"
    assert gateway.charged == ["p-1"]


async def test_applications_sharing_a_store_never_answer_each_other() -> None:
    store = tv.MemoryStore()
    app_a, app_b = Gateway(), Gateway()
    async with (
        tv.open_supervisor(idempotency_store=store) as a,
        tv.open_supervisor(idempotency_store=store) as b,
    ):
        await a.spawn(payment_spec("billing-v1", persist_result=True), app_a)
        await b.spawn(payment_spec("refunds-v1", persist_result=True), app_b)
        await a.execute("pay", {"transaction_id": "p-1"})
        await b.execute("pay", {"transaction_id": "p-1"})  # same tool name and arguments
    assert (app_a.charged, app_b.charged) == (["p-1"], ["p-1"])


class _HangingStore(tv.MemoryStore):
    async def claim(self, key: str, fingerprint: str, owner: str, claim_ttl_s: float) -> Any:
        await trio.sleep_forever()


class _CompleteFails(tv.MemoryStore):
    async def complete(self, key: str, owner: str, ttl_s: float, *rest: Any) -> bool:
        raise ConnectionError("store went away")


async def test_a_store_that_cannot_answer_in_time_times_the_call_out(
    autojump_clock: trio.testing.MockClock,
) -> None:
    gateway = Gateway()
    async with tv.open_supervisor(idempotency_store=_HangingStore()) as sup:
        await sup.spawn(payment_spec(), gateway)
        start = trio.current_time()
        with pytest.raises(tv.ToolTimeoutError) as info:
            await sup.execute("pay", {"transaction_id": "p-1"}, timeout=0.5)
        assert trio.current_time() - start == pytest.approx(0.5)
        assert "did not run" in info.value.__notes__[-1]
        stats = sup.stats("pay")
    assert gateway.charged == []
    assert (stats.calls, stats.failures, stats.timeouts) == (1, 1, 1)


async def test_a_success_that_cannot_be_stored_is_never_silent_nor_run_twice(
    caplog: pytest.LogCaptureFixture,
) -> None:
    gateway = Gateway()
    events: list[tv.Event] = []
    async with tv.open_supervisor(idempotency_store=_CompleteFails()) as sup:
        sup.subscribe(events.append)
        await sup.spawn(payment_spec(), gateway)
        with caplog.at_level(logging.ERROR, logger="toolvisor"):
            assert await sup.execute("pay", {"transaction_id": "p-1"}) == "charged p-1"
        with pytest.raises(tv.IdempotencyOutcomeUnknownError):
            await sup.execute("pay", {"transaction_id": "p-1"})
    assert gateway.charged == ["p-1"]
    assert any(isinstance(e, tv.ResultNotStored) for e in events)
    assert any("store went away" in r.getMessage() for r in caplog.records)


async def test_the_executor_forgets_too(autojump_clock: trio.testing.MockClock) -> None:
    gateway = Gateway(hang_first=1)
    executor = tv.FunctionToolExecutor(payment_spec(), gateway)
    with pytest.raises(tv.IdempotencyOutcomeUnknownError) as info:
        await executor.execute({"transaction_id": "p-1"})
    assert await executor.forget(info.value.key)
    assert await executor.execute({"transaction_id": "p-1"}) == "charged p-1"
    assert gateway.charged == ["p-1", "p-1"]


async def test_a_short_lease_taken_while_long_ones_are_held_is_renewed_in_time(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store = tv.MemoryStore()
    gateway = Gateway(duration=10)
    long_lease, short_lease = payment_spec(claim_ttl_s=60.0), payment_spec(claim_ttl_s=1.0)
    short_lease.tool_name = "pay_fast"
    async with (
        tv.open_supervisor(idempotency_store=store) as a,
        tv.open_supervisor(idempotency_store=store) as b,
    ):
        for spec in (long_lease, short_lease):
            await a.spawn(spec, gateway)
        await b.spawn(short_lease, gateway)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(a.execute, "pay", {"transaction_id": "slow"})  # renewer: 20 s
            await trio.sleep(0.1)
            nursery.start_soon(a.execute, "pay_fast", {"transaction_id": "p-1"})
            await trio.sleep(5)  # the 1 s lease must have been renewed meanwhile
            assert await b.execute("pay_fast", {"transaction_id": "p-1"}) == "charged p-1"
    assert Counter(gateway.charged) == {"slow": 1, "p-1": 1}
