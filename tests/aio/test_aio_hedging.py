"""Hedging an asyncio tool from an asyncio program: the loser's asyncio task is cancelled."""

from __future__ import annotations

import asyncio
from typing import Any

from aio_helpers import run

import toolvisor as tv
import toolvisor.aio as aio


def test_a_hedge_of_an_asyncio_tool_wins_and_the_slow_task_is_cancelled() -> None:
    cancelled: list[int] = []

    async def search(args: dict[str, Any], ctx: tv.ExecutionContext) -> str:
        try:
            await asyncio.sleep(30.0 if ctx.attempt == 1 else 0.01)
        except asyncio.CancelledError:
            cancelled.append(ctx.attempt)
            raise
        return f"attempt {ctx.attempt}"

    spec = tv.FunctionToolSpec(
        id="search-v1", tool_name="search", read_only=True, hedging=tv.HedgingPolicy(delay=0.05)
    )

    async def main() -> tuple[Any, tv.ToolStats]:
        async with aio.open_supervisor() as sup:
            await sup.spawn(spec, search)
            [result] = await sup.execute_many([("search", {})])
            return result, sup.stats("search")

    result, stats = run(main)
    assert (result.value, result.attempts) == ("attempt 2", 2)
    assert cancelled == [1]  # ended before the call's reply: an attempt ends with its task
    assert (stats.successes, stats.failures, stats.hedged) == (1, 0, 1)
