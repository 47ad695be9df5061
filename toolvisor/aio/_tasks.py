"""Tool functions written for asyncio, run as asyncio tasks by their trio actor.

The actor's attempt (a trio task) creates an asyncio task on the host loop and parks
until that task has ended. When trio cancels the attempt (per-attempt timeout, the call's
deadline, the caller cancelled, the supervisor closing), the task gets ``Task.cancel()``
and the attempt still waits for the task to end: an attempt never ends while its task
runs on, so bulkheads and "the attempt was cut" mean what they say.

The task's first step runs at once, inside the attempt (see :func:`start_task`): a tool
that returns without suspending ends its attempt in the same scheduler pass, as a trio
tool would, instead of one loop iteration and one trio pass later.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any, TypeVar

import sniffio
import trio
from trio._core._run import GLOBAL_RUN_CONTEXT

from ..actors.observer import ATTEMPT_CONTEXT, AttemptContext
from ..actors.pipeline import ends_after_cleanup, make_invoker, takes_context
from ..spec import ExecutionContext

__all__ = ["on_asyncio", "start_task"]

T = TypeVar("T")
TrioTool = Callable[..., Awaitable[Any]]

_NO_CONTEXT = ExecutionContext()


def start_task(
    loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, T], context: contextvars.Context
) -> tuple[asyncio.Task[T], bool]:
    """``loop.create_task(coro, context=context)``, its first step run now if it can be.

    Returns the task, and whether it has ended (in that first step) for its starter to
    read now; if not, its end comes later and the starter waits for it.

    ``context`` must be a fresh one (no other task or callback runs in it). asyncio
    schedules a new task's first step with ``loop.call_soon``; on asyncio's own loops
    that step is the handle just appended to the loop's ready queue, in ``context``
    (which tells it apart from a handle another thread appended meanwhile). It is
    cancelled there and its callback run here instead: the task's own ``__step``, so
    the step is the one asyncio would run (``current_task()`` is the task,
    ``asyncio.timeout`` and cancellation behave as usual), only sooner. This is
    Python 3.12's ``eager_start`` for 3.11 too, written once for both.

    Run from trio code, the step must not see trio: sniffio says "asyncio" in it, and
    trio finds no current trio task (as between trio's scheduler passes, where asyncio
    steps normally run), so code written for trio fails in it as in any asyncio task
    instead of corrupting the cancel scopes of the trio task that started it. Where
    the step cannot run now (another loop implementation, or a task running), the task
    starts in the loop's next iteration, as any task does.

    A ``SystemExit`` or ``KeyboardInterrupt`` out of the step is the loop's to raise, as
    out of any task's step: it is raised from a callback of its own, next, and the task
    (ended with it) counts as not ended here, so that its starter waits, as for a task
    whose first step is still to come, instead of reading it first.
    """
    task = loop.create_task(coro, context=context)
    ready = getattr(loop, "_ready", None)
    if not ready or asyncio.current_task(loop) is not None:
        return task, False
    handle = ready[-1]
    if getattr(handle, "_context", None) is not context:
        return task, False
    step, args = handle._callback, handle._args
    handle.cancel()  # the loop skips it; the deque itself is left alone
    library, sniffio.thread_local.name = sniffio.thread_local.name, None
    trio_task = GLOBAL_RUN_CONTEXT.__dict__.pop("task", None)
    try:
        context.run(step, *args)
    except (SystemExit, KeyboardInterrupt) as exc:
        loop.call_soon(_reraise, exc)
        return task, False
    finally:
        sniffio.thread_local.name = library
        if trio_task is not None:
            GLOBAL_RUN_CONTEXT.task = trio_task
    return task, task.done()


def _reraise(exc: BaseException) -> None:
    raise exc


class _Attempt:
    """One attempt: its asyncio task, and the trio task parked until that task has ended.

    Made before the task (the task's last step wakes it), filled in only once the
    attempt parks: for a task that ends in its first step the class's defaults stand
    (nothing is parked, there is nothing to wake).
    """

    parked: trio.lowlevel.Task | None = None
    task: asyncio.Task[Any] | None = None
    touch: Callable[[], None] | None = None
    woken = False

    def wake(self, _: object = None) -> None:
        """The asyncio task has ended: reschedule the parked trio task, exactly once."""
        # Runs in the loop's thread between trio's scheduler passes: rescheduling is
        # safe, and trio makes sure a pass follows. A task that ends in its first step
        # (run inside the attempt, before it parks) has nothing to wake.
        if self.parked is not None and not self.woken:
            self.woken = True
            assert self.touch is not None  # set as it parked
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
    ``ctx``); the wrapper takes ``ctx`` only if ``fn`` does.
    """
    invoke = make_invoker(fn, tool_name)

    async def body(
        args: Mapping[str, Any],
        ctx: ExecutionContext,
        attempt: _Attempt,
        enter: AttemptContext | None,
    ) -> Any:
        try:
            if enter is None:
                return await invoke(args, ctx)
            with enter():  # the attempt's observer (its span) in this task's context too
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
            attempt.wake()  # a no-op for a task that ends in its first step (not parked)

    async def run_as_asyncio_task(
        args: Mapping[str, Any], ctx: ExecutionContext = _NO_CONTEXT
    ) -> Any:
        attempt = _Attempt()
        enter = ATTEMPT_CONTEXT.get()
        task, ended = start_task(loop, body(args, ctx, attempt, enter), context.copy())
        if not ended:
            attempt.task = task
            attempt.touch = touch
            # A task cancelled before its first step never runs body's finally.
            task.add_done_callback(attempt.wake)
            attempt.parked = trio.lowlevel.current_task()
            # Parked until the task has ended; trio's cancellation cancels the task.
            await trio.lowlevel.wait_task_rescheduled(attempt.abort)
            # Whatever the task returned, an attempt cancelled meanwhile ends with trio's
            # Cancelled: by the abort above, or (when the caller gave up in the same loop
            # pass as the task ended, after its wake-up) now; its call then counts as
            # cancelled only, never also as a success nobody received.
            await trio.lowlevel.checkpoint_if_cancelled()
        # A task that ended in its first step ran inside this trio step and nothing else
        # ran meanwhile (no trio task, no asyncio callback): the attempt's outcome is the
        # task's, as a trio tool's that returns before its first checkpoint.
        if task.cancelled():
            raise RuntimeError(
                f"tool {tool_name!r}: its asyncio task was cancelled from outside "
                "toolvisor (Task.cancel() by other code, or the event loop shutting down)"
            )
        return task.result()

    run_as_asyncio_task.__qualname__ = f"on_asyncio({getattr(fn, '__qualname__', fn)!r})"
    if not takes_context(invoke):
        # The runner builds an attempt's ctx only for a tool that takes one: this one
        # takes ``args`` alone, as ``fn`` does (``ctx`` keeps its default, unread).
        signature = inspect.signature(run_as_asyncio_task)
        run_as_asyncio_task.__signature__ = signature.replace(  # type: ignore[attr-defined]
            parameters=[signature.parameters["args"]]
        )
    # A cut attempt answers its caller once the asyncio task's cleanup ended (docs/asyncio.md).
    ends_after_cleanup(run_as_asyncio_task)
    return run_as_asyncio_task
