"""An idempotent call answered by its fallback: the caller gets the fallback's value, the
key follows what the tool really did (released after a clean failure or a refusal,
recorded unknown after a cut attempt), never stored as done with the fallback's value."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing

import toolvisor as tv
from toolvisor.supervisor.idempotency import storage_key
from toolvisor.supervisor.stores.base import RecordState


class DeclinedError(Exception):
    """The gateway's own failure."""


class Gateway:
    """Fails its first ``failures`` charges (or hangs on them), then charges."""

    def __init__(self, failures: int, *, hang: bool = False) -> None:
        self.failures = failures
        self.hang = hang
        self.charged: list[str] = []

    async def __call__(self, args: dict[str, Any]) -> str:
        self.charged.append(args["tx"])
        if len(self.charged) <= self.failures:
            if self.hang:
                await trio.sleep_forever()
            await trio.sleep(0.1)
            raise DeclinedError("try later")
        return f"charged {args['tx']}"


def pay_spec(fallback: tv.FallbackPolicy, **idem: Any) -> tv.FunctionToolSpec:
    spec = tv.FunctionToolSpec(
        id="pay-v1", tool_name="pay", parameters=[tv.StringParameter(name="tx", required=True)]
    )
    spec.idempotency.enabled = True
    spec.idempotency.persist_result = True
    for field, value in idem.items():
        setattr(spec.idempotency, field, value)
    spec.fallback = fallback
    return spec


async def record(sup: tv.Supervisor, store: tv.MemoryStore, tool: str, key: str) -> Any:
    return await store.get(storage_key(sup.spec(tool), None, key))


async def test_a_clean_failure_releases_the_key(autojump_clock: trio.testing.MockClock) -> None:
    gateway = Gateway(failures=1)
    store = tv.MemoryStore()
    ctx = tv.ExecutionContext(idempotency_key="order-1")
    async with tv.open_supervisor(idempotency_store=store) as sup:
        await sup.spawn(pay_spec(tv.FallbackPolicy(value="queued for later")), gateway)
        assert await sup.execute("pay", {"tx": "t1"}, ctx) == "queued for later"
        assert await record(sup, store, "pay", "order-1") is None  # released, not done
        # The key was not stored with the fallback's value: the next call runs the tool.
        assert await sup.execute("pay", {"tx": "t1"}, ctx) == "charged t1"
        done = await record(sup, store, "pay", "order-1")
        assert done is not None and done.state is RecordState.DONE
        [cached] = await sup.execute_many([("pay", {"tx": "t1"}, ctx)])
        stats = sup.stats("pay")
    assert gateway.charged == ["t1", "t1"]
    assert cached.ok and cached.cached and cached.value == "charged t1" and not cached.fallback
    assert (stats.successes, stats.fallbacks, stats.cache_hits, stats.failures) == (3, 1, 1, 0)


async def test_a_cut_attempt_records_the_key_unknown(
    autojump_clock: trio.testing.MockClock,
) -> None:
    gateway = Gateway(failures=1, hang=True)
    store = tv.MemoryStore()
    ctx = tv.ExecutionContext(idempotency_key="order-2")
    fallback = tv.FallbackPolicy(value="pending", on=(tv.ToolTimeoutError,))
    async with tv.open_supervisor(idempotency_store=store) as sup:
        await sup.spawn(pay_spec(fallback), gateway)
        [result] = await sup.execute_many([("pay", {"tx": "t2"}, ctx)], timeout=1.0)
        assert result.ok and result.fallback and result.value == "pending"
        unknown = await record(sup, store, "pay", "order-2")
        assert unknown is not None and unknown.state is RecordState.UNKNOWN
        # The charge may have happened: the key does not run again (and this error is
        # not one the fallback replaces).
        with pytest.raises(tv.IdempotencyOutcomeUnknownError):
            await sup.execute("pay", {"tx": "t2"}, ctx)
    assert gateway.charged == ["t2"]


async def test_a_refused_call_leaves_the_key_free(autojump_clock: trio.testing.MockClock) -> None:
    gateway = Gateway(failures=2)
    store = tv.MemoryStore()
    spec = pay_spec(tv.FallbackPolicy(value="later", on=(tv.CircuitOpenError,)))
    spec.circuit_breaker_policy = tv.StandardCircuitBreakerPolicy(
        failure_threshold=2, recovery_timeout=10
    )
    ctx = tv.ExecutionContext(idempotency_key="order-3")
    async with tv.open_supervisor(idempotency_store=store) as sup:
        await sup.spawn(spec, gateway)
        for tx in ("a", "b"):
            with pytest.raises(DeclinedError):
                await sup.execute("pay", {"tx": tx})
        assert await sup.execute("pay", {"tx": "t3"}, ctx) == "later"  # the breaker is open
        assert await record(sup, store, "pay", "order-3") is None
        await trio.sleep(10)
        assert await sup.execute("pay", {"tx": "t3"}, ctx) == "charged t3"
    assert gateway.charged == ["a", "b", "t3"]


async def test_duplicates_in_flight_each_get_the_fallback_from_one_execution(
    autojump_clock: trio.testing.MockClock,
) -> None:
    gateway = Gateway(failures=1)
    seen: list[str] = []

    def note(error: Exception) -> str:
        seen.append(type(error).__name__)
        return "later"

    ctx = tv.ExecutionContext(idempotency_key="order-4")
    async with tv.open_supervisor() as sup:
        await sup.spawn(pay_spec(tv.FallbackPolicy(fn=note)), gateway)
        results = await sup.execute_many([("pay", {"tx": "t4"}, ctx)] * 3)
        stats = sup.stats("pay")
    assert gateway.charged == ["t4"]  # one execution for the three calls
    assert all(r.ok and r.fallback and r.value == "later" for r in results)
    assert seen == ["DeclinedError"] * 3
    assert (stats.calls, stats.successes, stats.fallbacks, stats.cache_hits) == (3, 3, 3, 0)


async def test_the_executor_settles_the_key_the_same_way() -> None:
    gateway = Gateway(failures=1)
    store = tv.MemoryStore()
    executor = tv.FunctionToolExecutor(
        pay_spec(tv.FallbackPolicy(value="later")), gateway, idempotency_store=store
    )
    ctx = tv.ExecutionContext(idempotency_key="order-5")
    assert await executor.execute({"tx": "t5"}, ctx) == "later"
    assert await store.get(storage_key(executor.spec, None, "order-5")) is None
    assert await executor.execute({"tx": "t5"}, ctx) == "charged t5"
    assert gateway.charged == ["t5", "t5"]
