"""From asyncio: a fallback answers a failing call, and reconfigure() swaps strategies."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import toolvisor as tv
from toolvisor import aio


class DownError(Exception):
    """The service's failure."""


def test_fallback_and_reconfigure_from_asyncio() -> None:
    async def down(args: dict[str, Any]) -> Any:
        raise DownError("503")

    async def main() -> None:
        spec = tv.FunctionToolSpec(id="t-v1", tool_name="t")
        spec.fallback = tv.FallbackPolicy(value="stale")
        async with aio.open_supervisor() as sup:
            await sup.spawn(spec, down)
            assert await sup.execute("t", {}) == "stale"
            [result] = await sup.execute_many([("t", {})])
            assert result.ok and result.fallback
            await sup.reconfigure("t", fallback=None, rate_limit=tv.RateLimit(1, per_s=60.0))
            with pytest.raises(DownError):  # no fallback any more
                await sup.execute("t", {})
            with pytest.raises(tv.RateLimitedError):  # and one call a minute
                await sup.execute("t", {})
            stats = sup.stats("t")
        assert (stats.successes, stats.fallbacks, stats.failures, stats.rate_limited) == (
            2,
            2,
            1,
            1,
        )

    asyncio.run(main())


def test_reconfigure_resizes_the_bulkhead_and_hedges_from_asyncio() -> None:
    async def read(args: dict[str, Any]) -> Any:
        return "ok"

    async def main() -> None:
        spec = tv.FunctionToolSpec(id="r-v1", tool_name="r", read_only=True)
        async with aio.open_supervisor() as sup:
            await sup.spawn(spec, read)
            await sup.reconfigure(
                "r",
                max_concurrency=tv.AdaptiveConcurrency(initial=4, algorithm="aimd"),
                hedging=tv.HedgingPolicy(delay=0.5),
            )
            assert await sup.execute("r", {}) == "ok"
            stats = sup.stats("r")
            await sup.reconfigure("r", max_concurrency=3, hedging=None)
            after = sup.stats("r")
        assert 1 <= stats.concurrency_limit <= 5  # the adaptive limit near its initial 4
        assert after.concurrency_limit == 3

    asyncio.run(main())
