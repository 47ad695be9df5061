"""A rate limit on the call path: calls wait for a token or are refused without running."""

from __future__ import annotations

from typing import Any

import pytest
import trio

import toolvisor as tv


def make_spec(limit: tv.RateLimit | None, name: str = "partner") -> tv.FunctionToolSpec:
    spec = tv.FunctionToolSpec(
        id=f"{name}-v1", tool_name=name, parameters=[tv.IntegerParameter(name="i")]
    )
    spec.rate_limit = limit
    return spec


def invariant(stats: tv.ToolStats) -> bool:
    return stats.calls == stats.successes + stats.failures + stats.rejected + stats.cancelled


async def test_calls_beyond_the_burst_are_refused_unrun(
    autojump_clock: trio.testing.MockClock,
) -> None:
    ran: list[int] = []

    async def partner(args: dict[str, Any]) -> Any:
        ran.append(args["i"])
        return args["i"]

    async with tv.open_supervisor() as sup:
        await sup.spawn(make_spec(tv.RateLimit(2, per_s=1.0)), partner)
        assert await sup.execute("partner", {"i": 1}) == 1
        assert await sup.execute("partner", {"i": 2}) == 2
        with pytest.raises(tv.RateLimitedError) as caught:
            await sup.execute("partner", {"i": 3})
        assert caught.value.tool == "partner"
        assert caught.value.retry_after == pytest.approx(0.5)
        result = (await sup.execute_many([("partner", {"i": 4})]))[0]
        assert not result.ok and result.attempts == 0
        await trio.sleep(0.5)
        assert await sup.execute("partner", {"i": 5}) == 5
        stats = sup.stats("partner")
    assert ran == [1, 2, 5]
    assert stats.rate_limited == 2 and stats.rejected == 2 and invariant(stats)


async def test_a_call_waits_for_its_token_up_to_max_wait_s(
    autojump_clock: trio.testing.MockClock,
) -> None:
    started: list[float] = []

    async def partner(args: dict[str, Any]) -> Any:
        started.append(trio.current_time())
        return args["i"]

    limit = tv.RateLimit(10, burst=1, max_wait_s=0.35)
    async with tv.open_supervisor() as sup:
        await sup.spawn(make_spec(limit), partner)
        t0 = trio.current_time()
        results = await sup.execute_many([("partner", {"i": i}) for i in range(5)])
        stats = sup.stats("partner")
    assert sum(r.ok for r in results) == 4  # tokens at 0, 0.1, 0.2, 0.3 s; 0.4 s is too late
    assert [type(r.error) for r in results if not r.ok] == [tv.RateLimitedError]
    assert [round(t - t0, 6) for t in sorted(started)] == [0.0, 0.1, 0.2, 0.3]
    assert stats.rate_limited == 1 and stats.successes == 4 and invariant(stats)


async def test_a_rate_limited_call_never_exceeds_its_deadline(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def partner(args: dict[str, Any]) -> Any:
        return args["i"]

    limit = tv.RateLimit(1, burst=1, max_wait_s=60.0)
    async with tv.open_supervisor() as sup:
        await sup.spawn(make_spec(limit), partner)
        ends: list[tuple[float, float, bool]] = []

        async def caller(i: int) -> None:
            start = trio.current_time()
            try:
                await sup.execute("partner", {"i": i}, timeout=2.5)
                ok = True
            except tv.RateLimitedError:
                ok = False
            ends.append((start, trio.current_time(), ok))

        async with trio.open_nursery() as nursery:
            for i in range(8):
                nursery.start_soon(caller, i)
        stats = sup.stats("partner")
    assert all(end - start <= 2.5 for start, end, _ in ends)
    assert sum(ok for *_, ok in ends) == 3  # tokens at 0, 1 and 2 s: the rest refused at once
    refused_at = [end - start for start, end, ok in ends if not ok]
    assert refused_at == [0.0] * 5
    assert stats.rate_limited == 5 and stats.timeouts == 0 and invariant(stats)


async def test_a_caller_cancelled_while_waiting_for_its_token_is_cancelled(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def partner(args: dict[str, Any]) -> Any:
        return args["i"]

    limit = tv.RateLimit(1, burst=1, max_wait_s=10.0)
    async with tv.open_supervisor() as sup:
        await sup.spawn(make_spec(limit), partner)
        await sup.execute("partner", {"i": 0})
        with trio.move_on_after(0.5):
            await sup.execute("partner", {"i": 1})
        stats = sup.stats("partner")
    assert stats.cancelled == 1 and stats.successes == 1 and invariant(stats)


def test_spec_refuses_a_rate_limit_that_is_not_one() -> None:
    with pytest.raises(ValueError, match="rate_limit"):
        make_spec(None).rate_limit = 10  # type: ignore[assignment]


def test_rate_limited_error_pickles_with_its_fields() -> None:
    import pickle

    err = pickle.loads(pickle.dumps(tv.RateLimitedError("partner", 1.5)))
    assert (err.tool, err.retry_after) == ("partner", 1.5)
    assert "rate limited" in str(err)
