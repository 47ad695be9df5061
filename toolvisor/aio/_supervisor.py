"""The asyncio face of the supervisor: ``toolvisor.aio.open_supervisor``.

The trio :class:`toolvisor.Supervisor` runs unchanged, as a task of the loop's trio guest
run (see ``_guest``). ``execute`` makes its call in the asyncio caller's task and sends
it through the trio supervisor's own send path (``supervisor.calls.post``; its reply is a
``_guest.Reply``, resolved at the call's end); this class
forwards each other coroutine of its API into that run and hands the outcome back to
the asyncio caller; its plain methods (``stats``, ``tools``,
``function_schemas``, ``subscribe``) read the trio supervisor directly, which is safe
because both sides run in the same thread and never at the same time.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from typing import Any, Literal, TypeVar

import attrs
import trio

from ..actors.call import Call, CallState
from ..actors.stats import ToolStats
from ..events import Event
from ..policies.budget import RetryBudget
from ..policies.circuit_breaker import ICircuitBreakerPolicy
from ..policies.concurrency import AdaptiveConcurrency
from ..policies.fallback import FallbackPolicy
from ..policies.hedging import HedgingPolicy
from ..policies.rate_limit import RateLimit
from ..policies.retry import IRetryPolicy
from ..spec import ExecutionContext, ToolSpec, Unchanged
from ..supervisor.calls import CallSpec, _wait_for_room, post
from ..supervisor.core import Supervisor as TrioSupervisor
from ..supervisor.open import open_supervisor as open_trio_supervisor
from ..supervisor.results import PendingCall as TrioPendingCall
from ..supervisor.results import ToolResult
from ..supervisor.stores.base import IdempotencyStore
from ._guest import Guest, Reply, wait_through_cancellation
from ._tasks import on_asyncio

__all__ = ["EventStream", "PendingCall", "Supervisor", "ToolRef", "open_supervisor", "run_trio"]

T = TypeVar("T")
RunsOn = Literal["asyncio", "trio"]


def _cancel_sent(pending: TrioPendingCall) -> None:
    """A call ``submit()`` sent for a caller cancelled before it got the call: nobody
    will hold it, so it ends as cancelled (its running attempt cut)."""
    pending._call.cancel()


class Supervisor:
    """The Supervisor API for asyncio code; made by :func:`open_supervisor`.

    Coroutines (``spawn``, ``execute``, ``submit``, ``execute_many``, ``reconfigure``,
    ``stop``, ``kill``) run in the trio supervisor and behave exactly as its own; an
    asyncio caller cancelled (``task.cancel()``, ``asyncio.timeout``) cancels its call
    as a trio cancel scope would.
    """

    def __init__(self, guest: Guest, options: dict[str, Any]) -> None:
        self._guest = guest
        self._options = options
        self._context = contextvars.copy_context()
        self._trio: TrioSupervisor | None = None
        self._calls: trio.Nursery | None = None
        self._abort_scope: trio.CancelScope | None = None
        self._leave = trio.Event()
        self._abort = False
        loop = guest.loop
        self._opened: asyncio.Future[None] = loop.create_future()
        self._closed: asyncio.Future[BaseException | None] = loop.create_future()
        self._streams: list[EventStream] = []

    # ------------------------------------------------------------------ tools

    async def spawn(
        self, spec: ToolSpec, fn: Callable[..., Any], *, runs_on: RunsOn = "asyncio"
    ) -> ToolRef:
        """Start an actor for ``spec`` running ``fn``; return its :class:`ToolRef`.

        ``fn`` is written for asyncio (the default, ``runs_on="asyncio"``: each attempt
        runs as an asyncio task on this loop, cancelled with ``Task.cancel()`` when its
        attempt is cancelled) or for trio (``runs_on="trio"``: it runs in the trio guest).

        Raises:
            ValueError: ``runs_on`` is neither ``"asyncio"`` nor ``"trio"``.
            TypeError, DuplicateToolError, SupervisorClosedError: as
                :meth:`toolvisor.Supervisor.spawn`.
        """
        if runs_on == "asyncio":
            if isinstance(spec, ToolSpec):
                guest = self._guest
                fn = on_asyncio(fn, spec.tool_name, guest.loop, self._context, guest.clock.touch)
        elif runs_on != "trio":
            raise ValueError(f"runs_on must be 'asyncio' or 'trio', got {runs_on!r}")
        ref = await self._call(self._sup.spawn, spec, fn)
        return ToolRef(ref.name, self)

    def tools(self) -> list[str]:
        """Names of the tools spawned here."""
        return self._sup.tools()

    def function_schemas(self) -> dict[str, Mapping[str, Any]]:
        """Each tool's function-calling schema, by name (for an LLM's tool list)."""
        return self._sup.function_schemas()

    def stats(self, tool: str) -> ToolStats:
        """A snapshot of ``tool``'s counters (see :class:`toolvisor.ToolStats`)."""
        return self._sup.stats(tool)

    async def reconfigure(
        self,
        tool: str,
        *,
        retry_policy: IRetryPolicy | None = None,
        circuit_breaker_policy: ICircuitBreakerPolicy | None = None,
        retry_budget: RetryBudget | Unchanged | None = Unchanged.UNCHANGED,
        rate_limit: RateLimit | Unchanged | None = Unchanged.UNCHANGED,
        fallback: FallbackPolicy | Unchanged | None = Unchanged.UNCHANGED,
        max_concurrency: int | AdaptiveConcurrency | None = None,
        hedging: HedgingPolicy | Unchanged | None = Unchanged.UNCHANGED,
    ) -> None:
        """Swap ``tool``'s policies between calls (see :meth:`toolvisor.Supervisor.reconfigure`)."""
        await self._call(
            functools.partial(
                self._sup.reconfigure,
                tool,
                retry_policy=retry_policy,
                circuit_breaker_policy=circuit_breaker_policy,
                retry_budget=retry_budget,
                rate_limit=rate_limit,
                fallback=fallback,
                max_concurrency=max_concurrency,
                hedging=hedging,
            )
        )

    async def stop(self, tool: str, *, grace_s: float | None = None) -> None:
        """Stop ``tool`` gracefully (see :meth:`toolvisor.Supervisor.stop`)."""
        await self._call(functools.partial(self._sup.stop, tool, grace_s=grace_s))

    async def kill(self, tool: str) -> None:
        """Crash ``tool``'s actor on purpose, exactly as a real crash (for fault tests)."""
        await self._call(self._sup.kill, tool)

    # ------------------------------------------------------------------ calls

    async def execute(
        self,
        tool: str,
        args: Mapping[str, Any],
        ctx: ExecutionContext | None = None,
        *,
        timeout: float | None = None,
    ) -> Any:
        """Run ``tool`` with ``args``; return its value or raise (as the trio ``execute``)."""
        # The trio Supervisor.execute, made in this asyncio task: the same route, Call and
        # send path, the reply from the call's end (no trio task of the caller's).
        guest = self._guest
        guest.check_running()
        sup = self._sup
        route = sup._route(tool)
        if route.spec.idempotent:  # the idempotency cache's claims wait in trio
            return await self._call(
                functools.partial(sup.execute, tool, args, ctx, timeout=timeout)
            )
        call = Call.new(route.spec, route.counters, args, ctx, timeout, sup._observer)
        # Chained to the call's end before the send, which may end it (a refusal).
        reply = Reply(guest, call)
        if not post(route, call):  # raises what post() raises, the call ended with it
            # a rate-limit token or room in the inbox to wait for, in a trio task
            try:
                await guest.call(_wait_for_room, route, call, nursery=self._calls)
            except asyncio.CancelledError:
                # Cancelled as the call got its room (the wait already over): the call
                # is in the inbox or running now, and is cancelled as below. A no-op
                # if the wait itself ended it.
                call.cancel()
                raise
        if call.deadline != math.inf and call.state != CallState.DONE:
            loop = guest.loop
            delay = call.deadline - trio.current_time()
            reply.timer = loop.call_at(loop.time() + delay, call.time_out)
        try:
            result = await reply.future
        except asyncio.CancelledError:
            # Ends the call as cancelled (its running attempt cut), counted before the
            # caller's CancelledError comes out; a no-op if it ended already.
            call.cancel()
            raise
        if result is not None:
            return result.unwrap()  # the guest run ended under the call
        return call.result()

    async def submit(
        self,
        tool: str,
        args: Mapping[str, Any],
        ctx: ExecutionContext | None = None,
        *,
        timeout: float | None = None,
    ) -> PendingCall:
        """Send a call now, await its result later (``await pending.result()``)."""
        pending = await self._guest.call(
            functools.partial(self._sup.submit, tool, args, ctx, timeout=timeout),
            nursery=self._calls,
            undo=_cancel_sent,
        )
        return PendingCall(pending, self)

    async def execute_many(
        self, calls: Iterable[CallSpec], *, timeout: float | None = None
    ) -> list[ToolResult]:
        """Run calls concurrently; one :class:`toolvisor.ToolResult` per call, in order."""
        return await self._call(
            functools.partial(self._sup.execute_many, list(calls), timeout=timeout)
        )

    async def forget(self, tool: str, key: str, ctx: ExecutionContext | None = None) -> bool:
        """Let ``key`` of ``tool`` run again (see :meth:`toolvisor.Supervisor.forget`)."""
        return await self._call(self._sup.forget, tool, key, ctx)

    # ------------------------------------------------------------------ events

    def subscribe(self, callback: Callable[[Event], None]) -> Callable[[], None]:
        """Call ``callback(event)`` for every event; returns a function that unsubscribes.

        The callback runs in the loop's thread, inside trio's scheduler: keep it quick,
        never block, and use only asyncio's non-blocking calls there
        (``loop.call_soon``, ``queue.put_nowait``).
        """
        return self._sup.subscribe(callback)

    @asynccontextmanager
    async def events(self, buffer: int = 1024) -> AsyncIterator[EventStream]:
        """An async iterator of events, until this block or the supervisor ends.

        When ``buffer`` events wait unread, new ones are dropped and counted
        (``stream.dropped``).
        """
        if isinstance(buffer, bool) or not isinstance(buffer, int) or buffer < 1:
            raise ValueError(f"buffer must be an integer >= 1, got {buffer!r}")
        stream = EventStream(buffer)
        unsubscribe = self._sup.subscribe(stream._push)
        self._streams.append(stream)
        try:
            yield stream
        finally:
            unsubscribe()
            self._streams.remove(stream)
            stream._end()

    @property
    def events_dropped(self) -> int:
        """Events dropped because a subscriber's buffer was full."""
        return self._sup.events_dropped + sum(s.dropped for s in self._streams)

    # ------------------------------------------------------------------ internals

    @property
    def _sup(self) -> TrioSupervisor:
        if self._trio is None:
            raise RuntimeError(
                "use the supervisor inside `async with toolvisor.aio.open_supervisor()`"
            )
        return self._trio

    async def _call(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        return await self._guest.call(fn, *args, nursery=self._calls)

    async def _host(self) -> None:
        """The trio side: the trio supervisor's life, a task of the guest run."""
        error: BaseException | None = None
        try:
            async with trio.open_nursery() as calls:
                self._calls = calls
                with trio.CancelScope() as abort_scope:
                    self._abort_scope = abort_scope
                    if self._abort:
                        abort_scope.cancel()
                    async with open_trio_supervisor(**self._options) as sup:
                        self._trio = sup
                        self._opened.set_result(None)
                        await self._leave.wait()
                # Calls still running got their replies while the supervisor closed;
                # calls started from now on get SupervisorClosedError from it.
        except Exception as exc:
            error = _single(exc)
        finally:
            for stream in self._streams:
                stream._end()
            if not self._opened.done():
                self._opened.set_exception(error or RuntimeError("the trio guest run ended"))
            if not self._closed.done():
                self._closed.set_result(error)

    def _leave_now(self, *, abort: bool) -> None:
        """Close the trio supervisor: gracefully, or at once if ``abort``."""
        if abort:
            self._abort = True
            if self._abort_scope is not None:
                self._abort_scope.cancel()
        self._leave.set()

    async def _open(self) -> None:
        self._guest.start_soon(self._host)
        try:
            await asyncio.shield(self._opened)
        except asyncio.CancelledError:
            await self._close(abort=True)
            if not self._opened.cancelled():
                self._opened.exception()  # read: an error of a cancelled opening is moot
            raise

    async def _close(self, *, abort: bool) -> BaseException | None:
        """Close the trio supervisor and wait until it has; returns its error, if any.

        A cancellation during the wait turns a graceful close into an abort (the rest
        is cancelled at once); the ``CancelledError`` is raised once the close ended.
        """
        self._leave_now(abort=abort)
        try:
            return await asyncio.shield(self._closed)
        except asyncio.CancelledError:
            self._leave_now(abort=True)
            await wait_through_cancellation(self._closed)
            raise


@attrs.frozen
class ToolRef:
    """A handle on a spawned tool, as :meth:`Supervisor.spawn` returns it."""

    name: str
    supervisor: Supervisor = attrs.field(repr=False)

    async def execute(
        self,
        args: Mapping[str, Any],
        ctx: ExecutionContext | None = None,
        *,
        timeout: float | None = None,
    ) -> Any:
        """``supervisor.execute(name, ...)``."""
        return await self.supervisor.execute(self.name, args, ctx, timeout=timeout)

    async def submit(
        self,
        args: Mapping[str, Any],
        ctx: ExecutionContext | None = None,
        *,
        timeout: float | None = None,
    ) -> PendingCall:
        """``supervisor.submit(name, ...)``."""
        return await self.supervisor.submit(self.name, args, ctx, timeout=timeout)

    def stats(self) -> ToolStats:
        """``supervisor.stats(name)``."""
        return self.supervisor.stats(self.name)

    @property
    def function_schema(self) -> Mapping[str, Any]:
        """The tool's function-calling schema."""
        return self.supervisor.function_schemas()[self.name]


class PendingCall:
    """A call sent with :meth:`Supervisor.submit`, whose result is awaited later.

    The call runs whether or not anyone awaits it. Cancelling an asyncio task that
    awaits ``value()`` or ``result()`` cancels the call, as in trio.
    """

    __slots__ = ("_pending", "_supervisor")

    def __init__(self, pending: TrioPendingCall, supervisor: Supervisor) -> None:
        self._pending = pending
        self._supervisor = supervisor

    @property
    def tool(self) -> str:
        """The tool called."""
        return self._pending.tool

    @property
    def done(self) -> bool:
        """True once the call has its reply."""
        return self._pending.done

    async def value(self) -> Any:
        """The tool's value, or raise the call's error (like ``execute()``)."""
        return await self._supervisor._call(self._pending.value)

    async def result(self) -> ToolResult:
        """A :class:`toolvisor.ToolResult`; never raises for the call's own failure."""
        return await self._supervisor._call(self._pending.result)


_END = object()


def _single(exc: Exception) -> Exception:
    """The one error inside nested single-error exception groups, else ``exc``."""
    while isinstance(exc, ExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


class EventStream:
    """The events of :meth:`Supervisor.events`: ``async for event in stream``.

    Iteration ends when the ``events()`` block or the supervisor ends.
    """

    def __init__(self, buffer: int) -> None:
        self._queue: asyncio.Queue[object] = asyncio.Queue()
        self._buffer = buffer
        self._ended = False
        self.dropped = 0

    def _push(self, event: Event) -> None:
        if self._ended:
            return
        if self._queue.qsize() >= self._buffer:
            self.dropped += 1
            return
        self._queue.put_nowait(event)

    def _end(self) -> None:
        if not self._ended:
            self._ended = True
            self._queue.put_nowait(_END)

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> Event:
        if self._ended and self._queue.empty():
            raise StopAsyncIteration
        item = await self._queue.get()
        if item is _END:
            self._queue.put_nowait(_END)  # every later __anext__ ends too
            raise StopAsyncIteration
        return item  # type: ignore[return-value]


@asynccontextmanager
async def open_supervisor(
    *,
    idempotency_store: IdempotencyStore | None = None,
    max_restarts: int = 3,
    within_s: float = 5.0,
    grace_s: float = 10.0,
) -> AsyncIterator[Supervisor]:
    """Open a supervisor from asyncio code; every actor lives inside this block.

    The options are :func:`toolvisor.open_supervisor`'s. The trio supervisor runs as a
    trio guest on the running asyncio loop, in this thread. Leaving the block drains
    queued and running calls for ``grace_s`` seconds, then cancels the rest, as the trio
    one does; an exception raised in the block comes out unchanged (the supervisor is
    closed at once first).

    Example::

        async with toolvisor.aio.open_supervisor() as sup:
            await sup.spawn(spec, fetch_weather)          # an asyncio tool function
            value = await sup.execute("fetch_weather", {"city": "Oslo"})

    Raises:
        RuntimeError: no asyncio loop runs in this thread, or trio already runs here.
    """
    options: dict[str, Any] = {
        "idempotency_store": idempotency_store,
        "max_restarts": max_restarts,
        "within_s": within_s,
        "grace_s": grace_s,
    }
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        raise RuntimeError(
            "toolvisor.aio.open_supervisor() must be entered from asyncio code (inside "
            "asyncio.run); from trio, use toolvisor.open_supervisor()"
        ) from None
    guest = await Guest.acquire()
    try:
        sup = Supervisor(guest, options)
        await sup._open()
        try:
            yield sup
        except BaseException:
            await sup._close(abort=True)
            raise
        error = await sup._close(abort=False)
        if error is not None:
            raise error
    finally:
        await guest.release()


async def run_trio(async_fn: Callable[..., Awaitable[T]], *args: Any) -> T:
    """Run the trio coroutine function ``async_fn(*args)`` from asyncio; return its value.

    It runs as a task of this loop's trio guest run (the one the open supervisors share,
    or one started for it), with the cancellation rules of the supervisor's calls. For
    trio-side objects used from asyncio code, such as closing a store once its
    supervisor's block has ended::

        store = toolvisor.SQLiteStore("tv.db")
        async with toolvisor.aio.open_supervisor(idempotency_store=store) as sup:
            ...
        await toolvisor.aio.run_trio(store.aclose)
    """
    guest = await Guest.acquire()
    try:
        return await guest.call(async_fn, *args)
    finally:
        await guest.release()
