"""``open_supervisor``: a supervisor's lifetime is an ``async with`` block.

Closing (leaving the block) stops intake, lets queued and in-flight calls finish for
``grace_s`` seconds, then cancels the rest; every call gets a reply.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import sniffio
import trio

from .core import Supervisor
from .stores.base import IdempotencyStore

__all__ = ["open_supervisor"]


@asynccontextmanager
async def open_supervisor(
    *,
    idempotency_store: IdempotencyStore | None = None,
    max_restarts: int = 3,
    within_s: float = 5.0,
    grace_s: float = 10.0,
) -> AsyncIterator[Supervisor]:
    """Open a supervisor; every actor lives inside this ``async with`` block.

    Args:
        idempotency_store: where idempotent results are kept (default: a MemoryStore).
            The store stays yours: close it yourself.
        max_restarts, within_s: restart intensity; a tool whose actor crashes more than
            ``max_restarts`` times within ``within_s`` seconds is marked failed.
        grace_s: on leaving the block, how long queued and running calls may take to
            finish before they are cancelled (each still gets a reply).

    Raises:
        RuntimeError: entered outside trio (use ``toolvisor.aio`` from asyncio code).

    Example::

        async with toolvisor.open_supervisor() as sup:
            await sup.spawn(spec, process_payment)
            value = await sup.execute("process_payment", {"transaction_id": "tx-1"})
    """
    _require_trio()
    if isinstance(max_restarts, bool) or not isinstance(max_restarts, int) or max_restarts < 0:
        raise ValueError(f"max_restarts must be an integer >= 0, got {max_restarts!r}")
    for name, value in (("within_s", within_s), ("grace_s", grace_s)):
        if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
            raise ValueError(f"{name} must be a number >= 0, got {value!r}")
        if not math.isfinite(value):
            raise ValueError(f"{name} must be finite, got {value!r}")
    sup: Supervisor | None = None
    try:
        async with trio.open_nursery() as nursery:
            sup = Supervisor(
                nursery,
                idempotency_store=idempotency_store,
                max_restarts=max_restarts,
                within_s=within_s,
                grace_s=grace_s,
            )
            try:
                yield sup
            except BaseException:
                sup._abort()
                nursery.cancel_scope.cancel()
                raise
            await sup._close(grace_s)
            nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from group.exceptions[0].__cause__
        raise
    finally:
        if sup is not None:
            sup._ended()


def _require_trio() -> None:
    try:
        library = sniffio.current_async_library()
    except sniffio.AsyncLibraryNotFoundError:
        library = None
    if library != "trio":
        raise RuntimeError(
            f"toolvisor.open_supervisor() runs under trio, but this code runs under "
            f"{library or 'no async library'}; from asyncio code (FastAPI, LangGraph, ...) "
            "use toolvisor.aio.open_supervisor(), which runs the supervisor as a trio guest"
        )
