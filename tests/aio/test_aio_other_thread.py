"""A toolvisor.aio supervisor called from a thread that is not its loop's gets a clear
error naming the problem, and the supervisor keeps serving its own loop."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aio_helpers import make_spec, run

import toolvisor as tv
from toolvisor import aio


async def tool(args: dict[str, Any]) -> int:
    return 1


def _from_another_thread(coro_fn: Callable[[], Awaitable[Any]]) -> BaseException | None:
    box: list[BaseException | None] = [None]

    def other() -> None:
        async def main() -> None:
            await coro_fn()

        try:
            asyncio.run(main())
        except BaseException as exc:
            box[0] = exc

    thread = threading.Thread(target=other)
    thread.start()
    thread.join()
    return box[0]


@pytest.mark.parametrize("idempotent", [False, True])
def test_a_call_from_another_thread_is_refused_clearly(idempotent: bool) -> None:
    async def main() -> None:
        async with aio.open_supervisor() as sup:
            spec = make_spec(idempotency=tv.IdempotencyConfig(enabled=idempotent))
            await sup.spawn(spec, tool)
            ctx = tv.ExecutionContext(idempotency_key="k") if idempotent else None
            error = await asyncio.to_thread(
                _from_another_thread, lambda: sup.execute("t", {"x": 1}, ctx)
            )
            assert isinstance(error, RuntimeError)
            assert "event loop that opened it" in str(error)
            assert await sup.execute("t", {"x": 2}, ctx) == 1  # still serving its loop

    run(main)
