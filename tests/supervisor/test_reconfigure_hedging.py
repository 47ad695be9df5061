"""``reconfigure(hedging=...)`` and the strategy factory's names for hedging and adaptive
concurrency."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing

import toolvisor as tv
from toolvisor.policies import StrategyFactory


def make_spec(**kw: Any) -> tv.FunctionToolSpec:
    return tv.FunctionToolSpec(
        id="s-v1", tool_name="search", parameters=[tv.IntegerParameter(name="x")], **kw
    )


async def test_hedging_is_switched_on_and_off_at_run_time(
    autojump_clock: trio.testing.MockClock,
) -> None:
    started = 0

    async def search(args: dict[str, Any]) -> Any:
        nonlocal started
        started += 1
        await trio.sleep(5 if started == 1 else 0.1)  # the first attempt stalls
        return started

    async with tv.open_supervisor() as sup:
        await sup.spawn(make_spec(read_only=True, timeout_s=30), search)
        await sup.reconfigure("search", hedging=tv.HedgingPolicy(delay=0.5))
        assert sup.spec("search").hedging == tv.HedgingPolicy(delay=0.5)
        assert await sup.execute("search", {"x": 1}) == 2  # the hedge won
        assert sup.stats("search").hedged == 1
        await sup.reconfigure("search", retry_budget=None)  # other fields keep hedging
        assert sup.spec("search").hedging is not None
        await sup.reconfigure("search", hedging=None)
        started = 0
        with trio.move_on_after(1) as scope:
            await sup.execute("search", {"x": 1})  # no hedge: the stalled attempt alone
        assert scope.cancelled_caught
        assert sup.stats("search").hedged == 1


async def test_hedging_a_tool_that_writes_is_refused_and_nothing_changes() -> None:
    async def write(args: dict[str, Any]) -> Any:
        return "written"

    async with tv.open_supervisor() as sup:
        await sup.spawn(make_spec(), write)
        with pytest.raises(ValueError, match="neither read-only nor idempotent"):
            await sup.reconfigure("search", hedging=tv.HedgingPolicy(delay=0.5))
        with pytest.raises(TypeError, match="hedging must be a HedgingPolicy"):
            await sup.reconfigure("search", hedging="fast")  # type: ignore[arg-type]
        assert sup.spec("search").hedging is None
        assert await sup.execute("search", {"x": 1}) == "written"


def test_the_factory_makes_hedging_and_adaptive_concurrency_by_field_name() -> None:
    hedging = StrategyFactory.get_policy("hedging", max_hedged_attempts=2, delay=0.0)
    assert hedging == tv.HedgingPolicy(max_hedged_attempts=2, delay=0.0)
    fields = StrategyFactory.from_config(
        {"max_concurrency": {"initial": 4, "algorithm": "aimd"}, "hedging": {"delay": 1.0}}
    )
    assert isinstance(fields["max_concurrency"], tv.AdaptiveConcurrency)
    spec = make_spec(read_only=True, **fields)
    assert spec.hedging == tv.HedgingPolicy(delay=1.0)
    with pytest.raises(TypeError, match="delya"):
        StrategyFactory.get_policy("hedging", delya=1.0)
