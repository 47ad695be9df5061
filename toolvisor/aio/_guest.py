"""One trio guest run on one asyncio loop, and the bridge that calls into it.

trio's guest mode (``trio.lowlevel.start_guest_run``) runs trio's scheduler in callbacks
of the running asyncio loop, in the same thread. Every ``toolvisor.aio`` supervisor open
on a loop shares that loop's guest run: the run starts with the first supervisor and ends
(always before the supervisor's ``async with`` block returns) with the last one.

Crossing between the two:

- asyncio -> trio goes through trio's entry queue (``TrioToken.run_sync_soon``), the one
  way to wake a guest run from outside it;
- trio -> asyncio needs no hop: trio's code runs inside an asyncio callback, so it sets
  asyncio futures (and creates asyncio tasks) directly.

:meth:`Guest.call` runs a trio coroutine function for an asyncio caller with *exactly one*
outcome: the function's value or exception, or the caller's own ``CancelledError``. An
asyncio caller cancelled while its trio side runs cancels that side (a trio cancel scope)
and waits until it has ended, so whatever the trio side counts (a cancelled call) is
counted before the caller sees its ``CancelledError``.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import outcome
import trio

from ..errors import SupervisorClosedError

__all__ = ["Guest", "wait_through_cancellation"]

T = TypeVar("T")


async def wait_through_cancellation(fut: asyncio.Future[T]) -> tuple[T, BaseException | None]:
    """Wait for ``fut`` even if the waiting task is cancelled meanwhile.

    Returns ``fut``'s result and the first ``CancelledError`` the wait absorbed (None if
    none), for the caller to re-raise once it has cleaned up. ``fut`` must be one that
    always completes (toolvisor's own futures, set by the trio side).
    """
    cancelled: BaseException | None = None
    while True:
        try:
            return await asyncio.shield(fut), cancelled
        except asyncio.CancelledError as exc:
            if fut.cancelled():  # shield() cancels nothing: fut itself was cancelled
                raise
            if cancelled is None:
                cancelled = exc


class _Call:
    """One asyncio caller's call into trio: its future and its trio cancel scope."""

    __slots__ = ("abandoned", "ended", "future", "scope", "waiter")

    def __init__(self, future: asyncio.Future[outcome.Outcome[Any]]) -> None:
        self.future = future
        self.scope: trio.CancelScope | None = None
        self.abandoned = False  # the asyncio caller was cancelled
        self.ended = False  # the trio side has finished
        self.waiter: asyncio.Future[None] | None = None  # a cancelled caller waits on it

    def cancel(self) -> None:
        """The caller was cancelled: cancel the trio side (runs in trio's entry queue)."""
        self.abandoned = True
        if self.scope is not None:
            self.scope.cancel()

    def finish(self, result: outcome.Outcome[Any]) -> None:
        """The trio side ended with ``result``: hand it over exactly once."""
        if self.ended:
            return
        self.ended = True
        if not self.future.done():
            self.future.set_result(result)
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)


class Guest:
    """The trio guest run hosted by one asyncio loop (see the module docstring)."""

    _by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Guest] = (
        weakref.WeakKeyDictionary()
    )

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.users = 0
        self.closing = False
        self.ready: asyncio.Future[None] = loop.create_future()
        self.ended: asyncio.Future[outcome.Outcome[None]] = loop.create_future()
        self._nursery: trio.Nursery | None = None
        self._stop: trio.Event | None = None
        self._calls: set[_Call] = set()
        try:
            trio.lowlevel.start_guest_run(
                self._main,
                run_sync_soon_threadsafe=loop.call_soon_threadsafe,
                run_sync_soon_not_threadsafe=loop.call_soon,
                done_callback=self._done,
                # asyncio's loop sets the wakeup fd when signal handlers are added
                # (uvicorn does): trio must leave it alone.
                host_uses_signal_set_wakeup_fd=True,
            )
        except RuntimeError as exc:
            raise RuntimeError(
                "toolvisor.aio could not start trio on this thread: a trio run is active "
                f"here already ({exc}); from trio code, use toolvisor.open_supervisor"
            ) from exc
        self.token = trio.lowlevel.current_trio_token()

    # ------------------------------------------------------------------ lifetime

    @classmethod
    async def acquire(cls) -> Guest:
        """The running loop's guest run (started if needed), counted as one more user."""
        loop = asyncio.get_running_loop()
        while True:
            guest = cls._by_loop.get(loop)
            if guest is None:
                guest = cls(loop)
                cls._by_loop[loop] = guest
            if guest.closing:  # the last user is leaving: let that run end, start anew
                _, cancelled = await wait_through_cancellation(guest.ended)
                if cancelled is not None:
                    raise cancelled
                continue
            guest.users += 1
            try:
                _, cancelled = await wait_through_cancellation(guest.ready)
            except BaseException:
                await guest.release()
                raise
            if cancelled is not None:
                await guest.release()
                raise cancelled
            return guest

    async def release(self) -> None:
        """One user less; the last one ends the guest run and waits until it has ended."""
        self.users -= 1
        if self.users > 0:
            return
        self.closing = True
        if not self.ended.done():
            self.token.run_sync_soon(self._stop_soon)
        result, cancelled = await wait_through_cancellation(self.ended)
        if cancelled is not None:
            raise cancelled
        result.unwrap()

    def _stop_soon(self) -> None:
        if self._stop is not None:
            self._stop.set()

    async def _main(self) -> None:
        self._stop = trio.Event()
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            if not self.ready.done():
                self.ready.set_result(None)
            await self._stop.wait()
            nursery.cancel_scope.cancel()

    def _done(self, result: outcome.Outcome[None]) -> None:
        """trio's done_callback: the run has ended (runs in the loop's thread)."""
        if self._by_loop.get(self.loop) is self:
            del self._by_loop[self.loop]
        error = RuntimeError(f"the trio guest run of toolvisor.aio ended: {result!r}")
        if not self.ready.done():
            self.ready.set_exception(error)
        for call in list(self._calls):
            call.finish(outcome.Error(SupervisorClosedError()))
        self.ended.set_result(result)

    # ------------------------------------------------------------------ calls

    def start_soon(
        self, fn: Callable[..., Awaitable[Any]], *args: Any, nursery: trio.Nursery | None = None
    ) -> None:
        """Start ``fn(*args)`` as a trio task (in ``nursery``, default the run's own)."""
        self.token.run_sync_soon(self._spawn, nursery, fn, args)

    def _spawn(
        self, nursery: trio.Nursery | None, fn: Callable[..., Awaitable[Any]], args: Any
    ) -> None:
        target = nursery or self._nursery
        assert target is not None  # ready is set only once the run's nursery is open
        target.start_soon(fn, *args)

    async def call(
        self, fn: Callable[..., Awaitable[T]], *args: Any, nursery: trio.Nursery | None = None
    ) -> T:
        """Run the trio coroutine function ``fn(*args)`` for this asyncio task.

        Returns its value or raises its exception. Cancelling the asyncio caller cancels
        the trio task, and the caller's ``CancelledError`` comes out once it has ended.
        """
        call = _Call(self.loop.create_future())
        self._calls.add(call)
        try:
            self.token.run_sync_soon(self._start_call, nursery, call, fn, args)
        except trio.RunFinishedError:
            self._calls.discard(call)
            raise SupervisorClosedError() from None
        try:
            result: outcome.Outcome[T] = await call.future
        except asyncio.CancelledError:
            if not call.ended:
                call.waiter = self.loop.create_future()
                self.token.run_sync_soon(call.cancel)
                await wait_through_cancellation(call.waiter)
            raise
        finally:
            self._calls.discard(call)
        return result.unwrap()

    def _start_call(
        self,
        nursery: trio.Nursery | None,
        call: _Call,
        fn: Callable[..., Awaitable[Any]],
        args: Any,
    ) -> None:
        target = nursery or self._nursery
        try:
            if target is None:
                raise RuntimeError("the guest run has no nursery yet")  # noqa: TRY301
            target.start_soon(self._run_call, call, fn, args)
        except RuntimeError:  # the nursery closed: its supervisor is gone
            call.finish(outcome.Error(SupervisorClosedError()))

    @staticmethod
    async def _run_call(call: _Call, fn: Callable[..., Awaitable[Any]], args: Any) -> None:
        result: outcome.Outcome[Any] = outcome.Error(SupervisorClosedError())
        try:
            with trio.CancelScope() as scope:
                call.scope = scope
                if call.abandoned:
                    scope.cancel()
                try:
                    result = outcome.Value(await fn(*args))
                except Exception as exc:
                    result = outcome.Error(exc)
        finally:
            # Cancelled by the caller: the caller raises its own CancelledError and never
            # reads this; cancelled by the run ending: the supervisor is gone.
            call.finish(result)
