"""Supervisor.reconfigure() swaps a running tool's retry budget, rate limit and fallback."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing

import toolvisor as tv


class DownError(Exception):
    """The service's failure."""


def spec_of(name: str = "svc") -> tv.FunctionToolSpec:
    return tv.FunctionToolSpec(
        id=f"{name}-v1", tool_name=name, parameters=[tv.IntegerParameter(name="i")]
    )


async def test_a_rate_limit_is_added_swapped_and_removed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def up(args: dict[str, Any]) -> Any:
        return args["i"]

    async def burst(sup: tv.Supervisor, n: int) -> int:
        results = await sup.execute_many([("svc", {"i": i}) for i in range(n)])
        return sum(r.ok for r in results)

    async with tv.open_supervisor() as sup:
        await sup.spawn(spec_of(), up)
        assert await burst(sup, 10) == 10
        await sup.reconfigure("svc", rate_limit=tv.RateLimit(3, per_s=60.0))
        assert await burst(sup, 10) == 3
        await sup.reconfigure("svc", rate_limit=tv.RateLimit(5, per_s=60.0))  # a new bucket
        assert await burst(sup, 10) == 5
        await sup.reconfigure("svc", retry_budget=None)  # the others are kept
        assert await burst(sup, 10) == 0
        await sup.reconfigure("svc", rate_limit=None)
        assert await burst(sup, 10) == 10
        assert sup.spec("svc").rate_limit is None
        assert sup.stats("svc").rate_limited == 7 + 5 + 10


async def test_a_budget_and_a_fallback_take_effect_for_the_next_calls(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def down(args: dict[str, Any]) -> Any:
        raise DownError("503")

    spec = spec_of()
    spec.retry_policy = tv.FixedRetryPolicy(max_attempts=3, delay_seconds=0.01)
    async with tv.open_supervisor() as sup:
        await sup.spawn(spec, down)
        with pytest.raises(DownError):
            await sup.execute("svc", {"i": 1})
        assert sup.stats("svc").retries == 2
        budget = tv.RetryBudget(ratio=0.0, min_retries_per_s=0.0)
        fallback = tv.FallbackPolicy(value="cached")
        await sup.reconfigure("svc", retry_budget=budget, fallback=fallback)
        assert sup.spec("svc").retry_budget is budget and sup.spec("svc").fallback is fallback
        assert await sup.execute("svc", {"i": 2}) == "cached"
        stats = sup.stats("svc")
        assert (stats.retries, stats.budget_exhausted, stats.fallbacks) == (2, 1, 1)
        await sup.reconfigure("svc", retry_budget=None, fallback=None)
        with pytest.raises(DownError):
            await sup.execute("svc", {"i": 3})
        stats = sup.stats("svc")
    assert (stats.retries, stats.budget_exhausted, stats.fallbacks, stats.failures) == (4, 1, 1, 2)


async def test_a_call_in_flight_keeps_the_fallback_it_took() -> None:
    gate = trio.Event()

    async def waits(args: dict[str, Any]) -> Any:
        await gate.wait()
        raise DownError("503")

    spec = spec_of()
    spec.fallback = tv.FallbackPolicy(value="old")
    async with tv.open_supervisor() as sup:
        await sup.spawn(spec, waits)
        pending = await sup.submit("svc", {"i": 1})
        await trio.testing.wait_all_tasks_blocked()
        await sup.reconfigure("svc", fallback=tv.FallbackPolicy(value="new"))
        gate.set()
        assert await pending.value() == "old"
        assert await sup.execute("svc", {"i": 2}) == "new"


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("retry_budget", 0.2, "retry_budget must be a RetryBudget, or None to remove it"),
        ("rate_limit", {"rate": 1}, "rate_limit must be a RateLimit, or None to remove it"),
        ("fallback", "cached", "fallback must be a FallbackPolicy, or None to remove it"),
    ],
)
async def test_a_wrong_kind_is_refused_and_nothing_changes(
    field: str, value: object, message: str
) -> None:
    async def up(args: dict[str, Any]) -> Any:
        return args["i"]

    async with tv.open_supervisor() as sup:
        await sup.spawn(spec_of(), up)
        before = sup.spec("svc")
        # The good ones beside it are not swapped in either.
        good = {"retry_budget": tv.RetryBudget(), "fallback": tv.FallbackPolicy(value=1)}
        with pytest.raises(TypeError, match=message):
            await sup.reconfigure("svc", **(good | {field: value}))  # type: ignore[arg-type]
        assert sup.spec("svc") is before


async def test_reconfigure_takes_a_config_from_the_factory(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def down(args: dict[str, Any]) -> Any:
        raise DownError("503")

    async with tv.open_supervisor() as sup:
        await sup.spawn(spec_of(), down)
        config = {"fallback": {"value": []}, "rate_limit": {"rate": 1, "per_s": 60.0}}
        await sup.reconfigure("svc", **tv.StrategyFactory.from_config(config))
        assert await sup.execute("svc", {"i": 1}) == []
        assert await sup.execute("svc", {"i": 2}) == []  # rate limited, then replaced
        stats = sup.stats("svc")
    assert (stats.fallbacks, stats.rate_limited) == (2, 1)
