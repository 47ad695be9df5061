"""Tool functions written for asyncio, run as asyncio tasks by their trio actor.

The actor's attempt (a trio task) creates an asyncio task on the host loop and parks
until that task has ended. When trio cancels the attempt (per-attempt timeout, the call's
deadline, the caller cancelled, the supervisor closing), the task gets ``Task.cancel()``
and the attempt still waits for the task to end: an attempt never ends while its task
runs on, so bulkheads and "the attempt was cut" mean what they say.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import outcome
import trio

from ..actors.pipeline import make_invoker
from ..spec import ExecutionContext

__all__ = ["on_asyncio"]

TrioTool = Callable[[Mapping[str, Any], ExecutionContext], Awaitable[Any]]


class _Waker:
    """Wakes the parked attempt exactly once, when its asyncio task has ended."""

    __slots__ = ("task", "touch", "woken")

    def __init__(self, task: trio.lowlevel.Task, touch: Callable[[], None]) -> None:
        self.task = task
        self.touch = touch
        self.woken = False

    def wake(self, _: object = None) -> None:
        # Runs in the loop's thread between trio's scheduler passes: rescheduling is
        # safe, and trio makes sure a pass follows.
        if not self.woken:
            self.woken = True
            self.touch()
            trio.lowlevel.reschedule(self.task, outcome.Value(None))


def on_asyncio(
    fn: Callable[..., Any],
    tool_name: str,
    loop: asyncio.AbstractEventLoop,
    context: contextvars.Context,
    touch: Callable[[], None],
) -> TrioTool:
    """Wrap the asyncio tool function ``fn`` as a trio one that runs it as an asyncio task.

    Each task runs in a copy of ``context``; ``touch()`` is called as a task ends (it
    tells the guest run's clock a crossing happened). Raises TypeError (as ``spawn()``
    does for any tool) when ``fn`` is not an async function taking ``args`` (and maybe
    ``ctx``).
    """
    invoke = make_invoker(fn, tool_name)

    async def body(args: Mapping[str, Any], ctx: ExecutionContext, waker: _Waker) -> Any:
        try:
            return await invoke(args, ctx)
        except RuntimeError as exc:
            # what trio's functions raise when awaited in an asyncio task
            if "must be called from async context" in str(exc) or "bad yield" in str(exc):
                exc.add_note(
                    f"tool {tool_name!r} runs as an asyncio task; if it is written for "
                    "trio, spawn it with runs_on='trio'"
                )
            raise
        finally:
            # The task's last step: it is done before trio's next pass runs the attempt
            # (one loop iteration sooner than a done callback would wake it).
            waker.wake()

    async def run_as_asyncio_task(args: Mapping[str, Any], ctx: ExecutionContext) -> Any:
        waker = _Waker(trio.lowlevel.current_task(), touch)
        task = loop.create_task(body(args, ctx, waker), context=context.copy())
        # A task cancelled before its first step never runs body's finally.
        task.add_done_callback(waker.wake)
        return await _until_done(task, tool_name)

    run_as_asyncio_task.__qualname__ = f"on_asyncio({getattr(fn, '__qualname__', fn)!r})"
    return run_as_asyncio_task


async def _until_done(task: asyncio.Task[Any], tool_name: str) -> Any:
    """Park this trio task until ``task`` has ended; trio's cancellation cancels it."""

    def abort(_: object) -> trio.lowlevel.Abort:
        task.cancel()
        return trio.lowlevel.Abort.FAILED  # keep waiting: the waker reschedules

    await trio.lowlevel.wait_task_rescheduled(abort)
    # The task has ended. Whatever it returned, an attempt cancelled meanwhile ends with
    # trio's Cancelled: by the abort above, or (when the caller gave up in the same loop
    # pass as the task ended, after its wake-up) now; its call then counts as cancelled
    # only, never also as a success nobody received.
    await trio.lowlevel.checkpoint_if_cancelled()
    if task.cancelled():
        raise RuntimeError(
            f"tool {tool_name!r}: its asyncio task was cancelled from outside toolvisor "
            "(Task.cancel() by other code, or the event loop shutting down)"
        )
    return task.result()
