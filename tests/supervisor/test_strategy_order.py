"""The order of the strategies on the call path, each neighbour checked by what a user sees:

    fallback( rate limit -> bulkhead -> retry (+ budget) -> breaker -> attempt timeout
              -> chaos -> tool )

with the breaker's fail-fast check before the rate limit (a call it refuses takes no
token). Reordering any two of them makes one of these tests fail.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
import trio
import trio.testing

import toolvisor as tv
from toolvisor.testing.chaos import ChaosFault, ChaosLatency


class DownError(Exception):
    """The service's failure."""


def spec_of(name: str = "svc", **fields: Any) -> tv.FunctionToolSpec:
    spec = tv.FunctionToolSpec(
        id=f"{name}-v1", tool_name=name, parameters=[tv.IntegerParameter(name="i")]
    )
    for field, value in fields.items():
        setattr(spec, field, value)
    return spec


async def up(args: dict[str, Any]) -> Any:
    return args["i"]


async def down(args: dict[str, Any]) -> Any:
    raise DownError("503")


async def test_breaker_fail_fast_comes_before_the_rate_limit(
    autojump_clock: trio.testing.MockClock,
) -> None:
    limit = tv.RateLimit(2, per_s=60.0)
    breaker = tv.StandardCircuitBreakerPolicy(failure_threshold=1, recovery_timeout=30)
    async with tv.open_supervisor() as sup:
        await sup.spawn(spec_of(rate_limit=limit, circuit_breaker_policy=breaker), down)
        with pytest.raises(DownError):
            await sup.execute("svc", {"i": 1})  # takes a token; opens the breaker
        left = limit.available(trio.current_time())
        for i in range(5):
            with pytest.raises(tv.CircuitOpenError):
                await sup.execute("svc", {"i": i})
        assert limit.available(trio.current_time()) == pytest.approx(left)  # no token taken


async def test_the_rate_limit_comes_before_the_bulkhead() -> None:
    gate = trio.Event()

    async def busy(args: dict[str, Any]) -> Any:
        await gate.wait()
        return args["i"]

    spec = spec_of(
        rate_limit=tv.RateLimit(1, per_s=60.0), max_concurrency=1, queue_size=0, overflow="reject"
    )
    async with tv.open_supervisor() as sup:
        await sup.spawn(spec, busy)
        first = await sup.submit("svc", {"i": 1})
        await trio.testing.wait_all_tasks_blocked()
        # The bulkhead is full and the bucket is empty: the rate limit answers first.
        with pytest.raises(tv.RateLimitedError):
            await sup.execute("svc", {"i": 2})
        gate.set()
        assert await first.value() == 1
        stats = sup.stats("svc")
    assert (stats.rate_limited, stats.rejected) == (1, 1)


async def test_the_bulkhead_holds_a_call_through_all_its_retries(
    autojump_clock: trio.testing.MockClock,
) -> None:
    attempts: list[int] = []

    async def flaky(args: dict[str, Any]) -> Any:
        attempts.append(args["i"])
        if attempts.count(args["i"]) < 3:
            raise DownError("503")
        return args["i"]

    spec = spec_of(
        max_concurrency=1,
        queue_size=0,
        overflow="reject",
        retry_policy=tv.FixedRetryPolicy(max_attempts=3, delay_seconds=1.0),
    )
    async with tv.open_supervisor() as sup:
        await sup.spawn(spec, flaky)
        first = await sup.submit("svc", {"i": 1})
        await trio.sleep(1.5)  # between its retries, the call still holds its slot
        with pytest.raises(tv.ToolOverloadedError):
            await sup.execute("svc", {"i": 2})
        assert await first.value() == 1
    assert attempts == [1, 1, 1]


async def test_the_budget_is_outside_the_breaker(autojump_clock: trio.testing.MockClock) -> None:
    # A retry the budget refuses never reaches the breaker: only attempts that ran count.
    breaker = tv.StandardCircuitBreakerPolicy(failure_threshold=3, recovery_timeout=30)
    spec = spec_of(
        circuit_breaker_policy=breaker,
        retry_policy=tv.FixedRetryPolicy(max_attempts=3, delay_seconds=0.1),
        retry_budget=tv.RetryBudget(ratio=0.0, min_retries_per_s=0.0),
    )
    async with tv.open_supervisor() as sup:
        await sup.spawn(spec, down)
        for i in range(2):
            with pytest.raises(DownError):
                await sup.execute("svc", {"i": i})
        assert sup.stats("svc").breaker_state == "closed"  # 2 attempts ran, not 6
        with pytest.raises(DownError):
            await sup.execute("svc", {"i": 3})
        stats = sup.stats("svc")
    # The third failure opened the breaker, which ended that call before the budget
    # was asked: only the first two calls' retries were refused by it.
    assert stats.breaker_state == "open" and stats.budget_exhausted == 2


async def test_the_breaker_records_attempts_cut_by_their_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def hangs(args: dict[str, Any]) -> Any:
        await trio.sleep_forever()

    breaker = tv.StandardCircuitBreakerPolicy(failure_threshold=2, recovery_timeout=30)
    spec = spec_of(
        timeout_s=1.0,
        circuit_breaker_policy=breaker,
        retry_policy=tv.FixedRetryPolicy(max_attempts=3, delay_seconds=0.1),
    )
    async with tv.open_supervisor() as sup:
        await sup.spawn(spec, hangs)
        with pytest.raises(tv.ToolTimeoutError):
            await sup.execute("svc", {"i": 1})
        stats = sup.stats("svc")
    # The second timed-out attempt opened the breaker, which skipped the third.
    assert stats.breaker_state == "open" and stats.retries == 1 and stats.timeouts == 2


async def test_chaos_runs_inside_the_attempt_timeout_and_the_breaker(
    autojump_clock: trio.testing.MockClock,
) -> None:
    ran: list[int] = []

    async def tool(args: dict[str, Any]) -> Any:
        ran.append(args["i"])
        return args["i"]

    slow = spec_of("slow", timeout_s=1.0, chaos=[ChaosLatency(1.0, 5.0, rng=random.Random(1))])
    faulty = spec_of(
        "faulty",
        circuit_breaker_policy=tv.StandardCircuitBreakerPolicy(
            failure_threshold=2, recovery_timeout=30
        ),
        chaos=[ChaosFault(1.0, DownError, rng=random.Random(1))],
    )
    async with tv.open_supervisor() as sup:
        await sup.spawn(slow, tool)
        await sup.spawn(faulty, tool)
        with pytest.raises(tv.ToolTimeoutError) as caught:  # injected latency is cut
            await sup.execute("slow", {"i": 1})
        assert caught.value.scope == "attempt"
        for i in range(2):
            with pytest.raises(DownError):  # injected faults are the attempt's failure
                await sup.execute("faulty", {"i": i})
        assert sup.stats("faulty").breaker_state == "open"
    assert ran == []


async def test_the_fallback_is_outermost(autojump_clock: trio.testing.MockClock) -> None:
    seen: list[tuple[str, int]] = []

    def fallback(error: Exception) -> str:
        seen.append((type(error).__name__, len(getattr(error, "__notes__", []))))
        return "fallback"

    breaker = tv.StandardCircuitBreakerPolicy(failure_threshold=3, recovery_timeout=30)
    spec = spec_of(
        circuit_breaker_policy=breaker,
        retry_policy=tv.FixedRetryPolicy(max_attempts=3, delay_seconds=0.1),
        fallback=tv.FallbackPolicy(fn=fallback),
    )
    async with tv.open_supervisor() as sup:
        await sup.spawn(spec, down)
        # It sees the call's last error, after the retries (the breaker opened on the
        # third attempt: its note and the attempts' note are on the error)...
        assert await sup.execute("svc", {"i": 1}) == "fallback"
        # ...the breaker recorded the failures it replaced (a fallback is no success to it)
        assert sup.stats("svc").breaker_state == "open"
        # ...and it replaces the breaker's refusal too.
        assert await sup.execute("svc", {"i": 2}) == "fallback"
        stats = sup.stats("svc")
    assert seen == [("DownError", 2), ("CircuitOpenError", 0)]
    assert (stats.retries, stats.fallbacks, stats.successes, stats.failures) == (2, 2, 2, 0)
