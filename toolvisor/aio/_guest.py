"""One trio guest run on one asyncio loop, and the bridge that calls into it.

trio's guest mode (``trio.lowlevel.start_guest_run``) runs trio's scheduler in callbacks
of the running asyncio loop, in the same thread. Every ``toolvisor.aio`` supervisor open
on a loop shares that loop's guest run: the run starts with the first supervisor and ends
(always before the supervisor's ``async with`` block returns) with the last one.

Crossing between the two needs no thread: both run in the loop's thread and never at the
same time (a trio scheduler pass is one asyncio callback), so

- asyncio code spawns, reschedules and cancels trio tasks directly (``start_soon``,
  ``trio.lowlevel.reschedule``, ``CancelScope.cancel``), and reads trio's clock; in guest
  mode trio then makes sure a scheduler pass follows (waking its I/O wait if it was
  parked there);
- trio code sets asyncio futures and creates asyncio tasks directly.

:class:`Reply` is a tool call's path (``toolvisor.aio.Supervisor.execute``): the asyncio
caller makes its :class:`~toolvisor.actors.call.Call` and puts it into the tool's inbox
itself (the one send path, ``supervisor.calls.post``), and the call's end
(``Call.on_end``) resolves the caller's asyncio future: no trio task of the caller's, no
crossing but the actor's own scheduler pass. Only a call that must wait (for a
rate-limit token, or for room in a full inbox) waits in a trio task.

:meth:`Guest.call` runs any other trio coroutine function for an asyncio caller with
*exactly one* outcome: the function's value or exception, or the caller's own
``CancelledError``. An asyncio caller cancelled while its trio side runs cancels that
side (a trio cancel scope) and waits until it has ended, so whatever the trio side counts
(a cancelled call) is counted before the caller sees its ``CancelledError``.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import outcome
import trio

from ..actors.call import Call
from ..errors import SupervisorClosedError

__all__ = ["Guest", "Reply", "wait_through_cancellation"]

T = TypeVar("T")

#: Crossings between asyncio and trio closer than this on average (seconds) keep the guest
#: run polling the host loop after each one, instead of parking in its I/O thread.
SPIN_S = 0.0005

#: How many idle scheduler passes the guest run polls for after such a crossing.
SPIN_PASSES = 64


class HostClock(trio.abc.Clock):
    """trio's clock for the guest run: ``perf_counter``, with short spins after crossings.

    An idle trio guest parks in a worker thread (its I/O wait), and waking it from the
    host loop then costs two thread hand-offs (about 100 us here, more on a busy
    machine): more than the rest of a call. When crossings between asyncio and trio come
    in quick succession (their average gap below ``SPIN_S``), this clock tells trio, for
    the next ``SPIN_PASSES`` idle scheduler passes after each crossing, that it has no
    time to sleep: trio polls from the host loop's callbacks instead of parking, and the
    next crossing costs no hand-off. The spin is counted in passes, not seconds, so a
    process that is preempted mid-spin does not find it expired on return, and what a
    spin costs is bounded (one guest tick per pass, whatever the time between them).
    When crossings are rarer (tools that wait on the network), it never spins: polling
    would then cost more CPU than the hand-offs.
    """

    def __init__(self, now: Callable[[], float] = time.perf_counter) -> None:
        self.now = now
        # trio reads the clock several times per call: ``now`` itself answers, without
        # the frame of the method below (which says what it is).
        self.current_time = now  # type: ignore[method-assign]
        self.spins = 0  # idle passes left to poll for
        self._last = 0.0
        self._gap = 1.0  # moving average of the seconds between crossings

    def touch(self) -> None:
        """A crossing happened."""
        now = self.now()
        # one long pause (a preempted process) weighs no more than a few short gaps
        self._gap = 0.8 * self._gap + 0.2 * min(now - self._last, 4 * SPIN_S)
        self._last = now
        if self._gap < SPIN_S:
            self.spins = SPIN_PASSES

    def start_clock(self) -> None:
        """Nothing to start: the clock is ``time.perf_counter``."""

    def current_time(self) -> float:
        """Seconds on ``time.perf_counter``."""
        return self.now()

    def deadline_to_sleep_time(self, deadline: float) -> float:
        """How long trio may sleep until ``deadline``: 0 while spinning.

        trio asks this once per scheduler pass that finds no task runnable.
        """
        if self.spins > 0:
            self.spins -= 1
            return 0.0
        return deadline - self.now()


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

    __slots__ = ("abandoned", "ended", "future", "result", "scope", "waiter")

    def __init__(self, future: asyncio.Future[outcome.Outcome[Any]]) -> None:
        self.future = future
        self.scope: trio.CancelScope | None = None
        self.abandoned = False  # the asyncio caller was cancelled
        self.ended = False  # the trio side has finished
        #: How it finished (kept also when the future was cancelled meanwhile).
        self.result: outcome.Outcome[Any] | None = None
        self.waiter: asyncio.Future[None] | None = None  # a cancelled caller waits on it

    def cancel(self) -> None:
        """The caller was cancelled: cancel the trio side."""
        self.abandoned = True
        if self.scope is not None:
            self.scope.cancel()

    def finish(self, result: outcome.Outcome[Any]) -> None:
        """The trio side ended with ``result``: hand it over exactly once."""
        if self.ended:
            return
        self.ended = True
        self.result = result
        if not self.future.done():
            self.future.set_result(result)
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)


class Reply:
    """An asyncio caller's wait for the end of the Call it sent (see ``Supervisor.execute``).

    Chained to the call's end (``Call.on_end``, after an observer's hook if the call has
    one) and held by the guest run from the moment it is made: the end resolves
    ``future`` with None (the reply is the call's own outcome), or the guest run ending
    under the call resolves it with ``SupervisorClosedError``. Every way a call ends
    (its value, its error, a refusal in ``post()``, its caller's cancellation, its
    ``timer``) passes through ``Call.on_end`` once, so the end is where the reply lets
    go of the guest run and of the call's timer.
    """

    __slots__ = ("calls", "chained", "future", "timer")

    def __init__(self, guest: Guest, call: Call) -> None:
        guest.clock.touch()  # a crossing: the caller's call goes to trio
        self.future: asyncio.Future[outcome.Outcome[Any] | None] = guest.loop.create_future()
        self.timer: asyncio.TimerHandle | None = None  # the call's deadline, if it has one
        self.calls = guest._calls
        self.chained = call.on_end
        call.on_end = self.ended
        self.calls.add(self)

    def ended(self, call: Call) -> None:
        self.calls.discard(self)
        if self.timer is not None:
            self.timer.cancel()
        chained = self.chained
        if chained is not None:
            self.chained = None
            chained(call)
        # done already when its caller was cancelled (the task cancels what it awaits)
        if not self.future.done():
            self.future.set_result(None)

    def finish(self, result: outcome.Outcome[Any]) -> None:
        """The guest run ended before the call did."""
        if self.timer is not None:
            self.timer.cancel()
        if not self.future.done():
            self.future.set_result(result)


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
        self._calls: set[_Call | Reply] = set()
        self.clock = HostClock()
        try:
            trio.lowlevel.start_guest_run(
                self._main,
                run_sync_soon_threadsafe=loop.call_soon_threadsafe,
                run_sync_soon_not_threadsafe=loop.call_soon,
                done_callback=self._done,
                # asyncio's loop sets the wakeup fd when signal handlers are added
                # (uvicorn does): trio must leave it alone.
                host_uses_signal_set_wakeup_fd=True,
                clock=self.clock,
            )
        except RuntimeError as exc:
            raise RuntimeError(
                "toolvisor.aio could not start trio on this thread: a trio run is active "
                f"here already ({exc}); from trio code, use toolvisor.open_supervisor"
            ) from exc

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
        if not self.ended.done() and self._stop is not None:
            self._stop.set()
        result, cancelled = await wait_through_cancellation(self.ended)
        if cancelled is not None:
            raise cancelled
        result.unwrap()

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

    def start_soon(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> None:
        """Start ``fn(*args)`` as a task of the run's own nursery."""
        assert self._nursery is not None  # ready is set only once the nursery is open
        self._nursery.start_soon(fn, *args)

    def check_running(self) -> None:
        """Raise SupervisorClosedError once the guest run has ended, and RuntimeError
        for a caller on another event loop (another thread): the trio run it drives is
        this loop's guest, reachable from this loop only."""
        if self.ended.done():
            raise SupervisorClosedError()
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is not self.loop:
            raise RuntimeError(
                "this toolvisor.aio supervisor runs on the event loop that opened it; call "
                "it from that loop's thread (from another thread, hand the coroutine to "
                "that loop: asyncio.run_coroutine_threadsafe(coro, loop))"
            )

    async def call(
        self,
        fn: Callable[..., Awaitable[T]],
        *args: Any,
        nursery: trio.Nursery | None = None,
        undo: Callable[[T], object] | None = None,
    ) -> T:
        """Run the trio coroutine function ``fn(*args)`` for this asyncio task.

        Returns its value or raises its exception. Cancelling the asyncio caller cancels
        the trio task, and the caller's ``CancelledError`` comes out once it has ended.
        A caller cancelled after the trio task returned never sees its value: ``undo``
        (if given) is called with it then (a sent call nobody will hold is cancelled).
        """
        self.check_running()
        call = _Call(self.loop.create_future())
        self._calls.add(call)
        self.clock.touch()
        self._start_call(nursery, call, fn, args)
        try:
            result: outcome.Outcome[T] = await call.future
        except asyncio.CancelledError:
            if not call.ended:
                call.waiter = self.loop.create_future()
                call.cancel()
                await wait_through_cancellation(call.waiter)
            if undo is not None and isinstance(call.result, outcome.Value):
                undo(call.result.value)
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

    async def _run_call(self, call: _Call, fn: Callable[..., Awaitable[Any]], args: Any) -> None:
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
            self.clock.touch()  # the caller's next call is likely to follow at once
