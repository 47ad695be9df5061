"""Helpers of the toolvisor.aio tests: asyncio programs, as users write them."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import toolvisor as tv

T = TypeVar("T")


def run(main: Callable[[], Coroutine[Any, Any, T]], *, limit_s: float = 20.0) -> T:
    """``asyncio.run(main())``, failing (instead of hanging) past ``limit_s``."""

    async def guarded() -> T:
        return await asyncio.wait_for(main(), limit_s)

    return asyncio.run(guarded())


def make_spec(name: str = "t", **kw: Any) -> tv.FunctionToolSpec:
    params = kw.pop("parameters", [tv.IntegerParameter(name="x")])
    return tv.FunctionToolSpec(id=f"{name}-v1", tool_name=name, parameters=params, **kw)


async def settled(sup: Any, tool: str, limit_s: float = 5.0) -> None:
    """Wait until no attempt of ``tool`` runs (a cut attempt ends once its task has)."""
    async with asyncio.timeout(limit_s):
        while sup.stats(tool).in_flight:  # noqa: ASYNC110 - no event to wait on
            await asyncio.sleep(0.001)


def add_up(stats: tv.ToolStats) -> bool:
    """``calls == successes + failures + rejected + cancelled`` (nothing in flight)."""
    return stats.calls == stats.successes + stats.failures + stats.rejected + stats.cancelled
