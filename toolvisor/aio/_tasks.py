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

import trio

from ..actors.pipeline import ends_after_cleanup, make_invoker
from ..spec import ExecutionContext

__all__ = ["on_asyncio"]

TrioTool = Callable[[Mapping[str, Any], ExecutionContext], Awaitable[Any]]


class _Attempt:
    """One attempt: its asyncio task, and the trio task parked until that task has ended."""

    __slots__ = ("parked", "task", "touch", "woken")

    def __init__(self, parked: trio.lowlevel.Task, touch: Callable[[], None]) -> None:
        self.parked = parked
        self.touch = touch
        self.woken = False
        self.task: asyncio.Task[Any] | None = None

    def wake(self, _: object = None) -> None:
        """The asyncio task has ended: reschedule the parked trio task, exactly once."""
        # Runs in the loop's thread between trio's scheduler passes: rescheduling is
        # safe, and trio makes sure a pass follows.
        if not self.woken:
            self.woken = True
            self.touch()
            trio.lowlevel.reschedule(self.parked)

    def abort(self, _: object) -> trio.lowlevel.Abort:
        """trio cancels the attempt: cancel the asyncio task, and keep waiting for it."""
        assert self.task is not None
        self.task.cancel()
        return trio.lowlevel.Abort.FAILED  # wake() reschedules once the task has ended


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

    async def body(args: Mapping[str, Any], ctx: ExecutionContext, attempt: _Attempt) -> Any:
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
            attempt.wake()

    async def run_as_asyncio_task(args: Mapping[str, Any], ctx: ExecutionContext) -> Any:
        attempt = _Attempt(trio.lowlevel.current_task(), touch)
        task = attempt.task = loop.create_task(body(args, ctx, attempt), context=context.copy())
        # A task cancelled before its first step never runs body's finally.
        task.add_done_callback(attempt.wake)
        # Parked until the task has ended; trio's cancellation cancels the task.
        await trio.lowlevel.wait_task_rescheduled(attempt.abort)
        # Whatever the task returned, an attempt cancelled meanwhile ends with trio's
        # Cancelled: by the abort above, or (when the caller gave up in the same loop
        # pass as the task ended, after its wake-up) now; its call then counts as
        # cancelled only, never also as a success nobody received.
        await trio.lowlevel.checkpoint_if_cancelled()
        if task.cancelled():
            raise RuntimeError(
                f"tool {tool_name!r}: its asyncio task was cancelled from outside "
                "toolvisor (Task.cancel() by other code, or the event loop shutting down)"
            )
        return task.result()

    run_as_asyncio_task.__qualname__ = f"on_asyncio({getattr(fn, '__qualname__', fn)!r})"
    # A cut attempt answers its caller once the asyncio task's cleanup ended (docs/asyncio.md).
    ends_after_cleanup(run_as_asyncio_task)
    return run_as_asyncio_task
