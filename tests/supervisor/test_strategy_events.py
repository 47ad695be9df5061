"""The strategies' events: one per occurrence, only while someone subscribes."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing

import toolvisor as tv


class DownError(Exception):
    """The service's failure."""


STRATEGY_EVENTS = (tv.BudgetExhausted, tv.RateLimited, tv.FallbackUsed)


def spec_of(name: str) -> tv.FunctionToolSpec:
    return tv.FunctionToolSpec(
        id=f"{name}-v1", tool_name=name, parameters=[tv.IntegerParameter(name="i")]
    )


async def test_each_strategy_publishes_one_event_per_occurrence(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def down(args: dict[str, Any]) -> Any:
        raise DownError("503")

    async def up(args: dict[str, Any]) -> Any:
        return args["i"]

    budgeted = spec_of("budgeted")
    budgeted.retry_policy = tv.FixedRetryPolicy(max_attempts=3, delay_seconds=0.01)
    # No floor and one call's deposit (0.5) is less than a retry: every retry is refused.
    budgeted.retry_budget = tv.RetryBudget(ratio=0.5, min_retries_per_s=0.0, ttl_s=10.0)
    limited = spec_of("limited")
    limited.rate_limit = tv.RateLimit(1, per_s=4.0)
    fallback = spec_of("fallback")
    fallback.fallback = tv.FallbackPolicy(value=0)
    events: list[tv.Event] = []
    async with tv.open_supervisor() as sup:
        for spec, fn in ((budgeted, down), (limited, up), (fallback, down)):
            await sup.spawn(spec, fn)
        sup.subscribe(lambda e: events.append(e) if isinstance(e, STRATEGY_EVENTS) else None)
        with pytest.raises(DownError):
            await sup.execute("budgeted", {"i": 1})
        assert await sup.execute("limited", {"i": 1}) == 1
        with pytest.raises(tv.RateLimitedError):
            await sup.execute("limited", {"i": 2})
        assert await sup.execute("fallback", {"i": 1}) == 0
        at = trio.current_time()
        stats = {name: sup.stats(name) for name in ("budgeted", "limited", "fallback")}
    assert [type(e) for e in events] == [tv.BudgetExhausted, tv.RateLimited, tv.FallbackUsed]
    exhausted, limit, used = events
    assert exhausted == tv.BudgetExhausted(tool="budgeted", at=at)
    assert isinstance(limit, tv.RateLimited)
    assert (limit.tool, limit.retry_after, limit.at) == ("limited", pytest.approx(4.0), at)
    assert used == tv.FallbackUsed(tool="fallback", error=repr(DownError("503")), at=at)
    assert stats["budgeted"].budget_exhausted == 1 and stats["budgeted"].retries == 0
    assert stats["limited"].rate_limited == 1 and stats["fallback"].fallbacks == 1


async def test_an_unsubscribed_callback_gets_no_more_events(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def up(args: dict[str, Any]) -> Any:
        return args["i"]

    async def down(args: dict[str, Any]) -> Any:
        raise DownError("503")

    limited = spec_of("limited")
    limited.rate_limit = tv.RateLimit(1, per_s=1.0)
    budgeted = spec_of("budgeted")
    budgeted.retry_policy = tv.FixedRetryPolicy(max_attempts=2, delay_seconds=0.01)
    budgeted.retry_budget = tv.RetryBudget(ratio=0.0, min_retries_per_s=0.0)
    events: list[tv.Event] = []
    async with tv.open_supervisor() as sup:
        await sup.spawn(limited, up)
        await sup.spawn(budgeted, down)
        for listening in (True, False):
            unsubscribe = (
                sup.subscribe(
                    lambda e: events.append(e) if isinstance(e, STRATEGY_EVENTS) else None
                )
                if listening
                else None
            )
            assert await sup.execute("limited", {"i": 1}) == 1
            with pytest.raises(tv.RateLimitedError):
                await sup.execute("limited", {"i": 2})
            with pytest.raises(DownError):
                await sup.execute("budgeted", {"i": 1})
            if unsubscribe is not None:
                unsubscribe()
            await trio.sleep(1)
        stats = sup.stats("limited"), sup.stats("budgeted")
    assert [type(e) for e in events] == [tv.RateLimited, tv.BudgetExhausted]
    assert stats[0].rate_limited == 2 and stats[1].budget_exhausted == 2
