"""The supervisor: spawns tool actors, routes calls to them, restarts them when they crash.

Routing happens in the caller's task: ``execute()`` validates the arguments, looks the
tool up in the routing table and sends the call straight into the tool actor's inbox
(one hop), then waits on the call's reply slot. The supervisor's own tasks only run the
restart loops (OTP one_for_one): a crashed actor's held calls get ``ActorCrashedError``,
its queued calls survive in the inbox, and a fresh incarnation (with fresh breaker state)
serves them. Past ``max_restarts`` crashes within ``within_s`` seconds the tool is marked
failed and its calls get ``ToolUnavailableError``; other tools run on.

Closing (leaving ``open_supervisor``) stops intake, lets queued and in-flight calls
finish for ``grace_s`` seconds, then cancels the rest; every call gets a reply.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import outcome
import trio

from ..actors.actor import ActorKilled, ToolActor
from ..actors.messages import Execute, ReplySlot
from ..actors.pipeline import ToolRunner, make_invoker, state_name
from ..actors.stats import Counters, ToolStats
from ..errors import (
    ActorCrashedError,
    CircuitOpenError,
    DuplicateToolError,
    SupervisorClosedError,
    ToolOverloadedError,
    ToolTimeoutError,
    ToolUnavailableError,
    UnknownToolError,
)
from ..events import ActorRestarted, Event, ToolFailed
from ..policies.circuit_breaker import ICircuitBreakerPolicy
from ..policies.retry import IRetryPolicy
from ..spec import CompiledSpec, ExecutionContext, ToolSpec
from .idempotency import Deferred, Flight, IdempotencyCache
from .results import PendingCall, ToolRef, ToolResult
from .stores.base import IdempotencyStore

__all__ = ["Supervisor", "open_supervisor"]

log = logging.getLogger("toolvisor")

_NO_CONTEXT = ExecutionContext()
_INF = math.inf

CallSpec = tuple[str, Mapping[str, Any]] | tuple[str, Mapping[str, Any], ExecutionContext | None]


class _Route:
    """One routing-table entry: a tool's inbox, counters and current actor."""

    __slots__ = (
        "_done_event",
        "actor",
        "counters",
        "done",
        "finished",
        "inbox_receive",
        "inbox_send",
        "invoke",
        "name",
        "reason",
        "restart_times",
        "restarted",
        "runner",
        "spec",
        "status",
    )

    def __init__(self, spec: CompiledSpec, fn: Callable[..., Any]) -> None:
        self.name = spec.tool_name
        self.spec = spec
        self.invoke = make_invoker(fn, spec.tool_name)
        self.counters = Counters()
        self.runner = ToolRunner(spec, self.invoke, self.counters)
        self.inbox_send, self.inbox_receive = trio.open_memory_channel[Execute](spec.queue_size)
        self.actor: ToolActor | None = None
        self.status = "running"  # running | stopping | failed | closed
        self.reason = ""
        # Idle tools are the common case: keep their footprint small (an empty deque
        # takes 760 bytes; this list never holds more than max_restarts + 1 times).
        self.restart_times: list[float] = []
        self.restarted: trio.Event | None = None  # made by kill(), set on the restart
        self.finished = False
        self._done_event: trio.Event | None = None

    def mark_finished(self) -> None:
        """The actor loop ended: wake whoever waits for it."""
        self.finished = True
        if self._done_event is not None:
            self._done_event.set()
        if self.restarted is not None:
            self.restarted.set()

    async def wait_finished(self) -> None:
        """Wait until the actor loop ended."""
        if self.finished:
            await trio.lowlevel.checkpoint()
            return
        if self._done_event is None:
            self._done_event = trio.Event()
        await self._done_event.wait()

    def unavailable(self) -> Exception:
        if self.status == "closed":
            return SupervisorClosedError(f"the supervisor closed before tool {self.name!r} ran")
        return ToolUnavailableError(self.name, self.reason or self.status)


class Supervisor:
    """Owns the tool actors; made by :func:`open_supervisor` (do not construct it)."""

    def __init__(
        self,
        nursery: trio.Nursery,
        *,
        idempotency_store: IdempotencyStore | None,
        max_restarts: int,
        within_s: float,
        grace_s: float,
    ) -> None:
        self._nursery = nursery
        self._routes: dict[str, _Route] = {}
        self._closing = False
        self._max_restarts = max_restarts
        self._within_s = within_s
        self._grace_s = grace_s
        self._callbacks: list[Callable[[Event], None]] = []
        self._channels: list[trio.MemorySendChannel[Event]] = []
        self.events_dropped = 0
        self._idem = IdempotencyCache(idempotency_store, publish=self._publish)
        # trio.current_time() without its lookups (the run's clock is fixed for the run).
        self._clock = trio.lowlevel.current_clock().current_time

    # ------------------------------------------------------------------ tools

    async def spawn(self, spec: ToolSpec, fn: Callable[..., Any]) -> ToolRef:
        """Start an actor for ``spec`` running ``fn``; return its :class:`ToolRef`.

        Takes a snapshot of ``spec``: later edits change nothing (use ``reconfigure``).

        Raises:
            DuplicateToolError: a tool of that name runs here already.
            TypeError: ``spec`` is not a ToolSpec or ``fn`` is not an async function.
            SupervisorClosedError: the supervisor is closing.
        """
        self._check_open()
        if not isinstance(spec, ToolSpec):
            raise TypeError(f"spawn() takes a ToolSpec, got {type(spec).__name__}")
        if spec.tool_name in self._routes:
            raise DuplicateToolError(spec.tool_name)
        route = _Route(spec.compile(), fn)
        if self._callbacks or self._channels:
            route.runner.publish = self._publish
        self._routes[route.name] = route
        await self._nursery.start(self._supervise, route)
        return ToolRef(route.name, self)

    def tools(self) -> list[str]:
        """Names of the tools spawned here."""
        return sorted(self._routes)

    def function_schemas(self) -> dict[str, Mapping[str, Any]]:
        """Each tool's function-calling schema, by name (for an LLM's tool list)."""
        return {name: r.spec.function_schema for name, r in sorted(self._routes.items())}

    def stats(self, tool: str) -> ToolStats:
        """A snapshot of ``tool``'s counters (see :class:`ToolStats`)."""
        route = self._route(tool)
        actor = route.actor
        return route.counters.snapshot(
            tool,
            in_flight=actor.in_flight if actor is not None else 0,
            queued=route.inbox_receive.statistics().current_buffer_used,
            breaker_state=state_name(route.spec.breaker.get_state(tool)),
        )

    async def reconfigure(
        self,
        tool: str,
        *,
        retry_policy: IRetryPolicy | None = None,
        circuit_breaker_policy: ICircuitBreakerPolicy | None = None,
    ) -> None:
        """Swap ``tool``'s policies; calls already running finish with the old ones.

        Queued and in-flight calls are kept.
        """
        route = self._route(tool)
        if retry_policy is not None and not isinstance(retry_policy, IRetryPolicy):
            raise TypeError(f"retry_policy must be an IRetryPolicy, got {retry_policy!r}")
        if circuit_breaker_policy is not None and not isinstance(
            circuit_breaker_policy, ICircuitBreakerPolicy
        ):
            raise TypeError(
                f"circuit_breaker_policy must be an ICircuitBreakerPolicy, got "
                f"{circuit_breaker_policy!r}"
            )
        route.spec = route.spec.with_policies(
            retry_policy=retry_policy, circuit_breaker_policy=circuit_breaker_policy
        )
        route.runner.spec = route.spec
        await trio.lowlevel.checkpoint()

    async def stop(self, tool: str, *, grace_s: float | None = None) -> None:
        """Stop ``tool`` gracefully: no new calls, queued and running ones finish.

        After ``grace_s`` (default: the supervisor's) the rest are cancelled and get
        ``ToolUnavailableError``. The name can then be spawned again.
        """
        route = self._route(tool)
        if route.status == "running":
            route.status = "stopping"
            route.reason = "it was stopped"
            route.inbox_send.close()
        with trio.move_on_after(self._grace_s if grace_s is None else grace_s):
            await route.wait_finished()
        if not route.finished and route.actor is not None:
            route.actor.kill(ActorKilled("stopped: grace period over"))
            await route.wait_finished()
        if self._routes.get(tool) is route:
            del self._routes[tool]

    async def kill(self, tool: str) -> None:
        """Crash ``tool``'s actor on purpose, exactly as a real crash (for fault tests).

        Returns once the actor restarted (or the tool was marked failed).
        """
        route = self._route(tool)
        actor = route.actor
        if actor is None or route.status != "running":
            raise ToolUnavailableError(tool, route.reason or route.status)
        route.restarted = trio.Event()
        actor.kill(ActorKilled(f"killed by Supervisor.kill({tool!r})"))
        await route.restarted.wait()

    # ------------------------------------------------------------------ calls

    async def execute(
        self,
        tool: str,
        args: Mapping[str, Any],
        ctx: ExecutionContext | None = None,
        *,
        timeout: float | None = None,
    ) -> Any:
        """Run ``tool`` with ``args``; return its value or raise.

        ``timeout`` is the overall deadline in seconds (queue wait, every attempt and the
        waits between them); past it the running attempt is cancelled and
        ``ToolTimeoutError`` is raised. A tool failure re-raises the tool's own
        exception; toolvisor's failures raise the errors of ``toolvisor.errors``.
        """
        route = self._routes.get(tool)
        if route is None:
            raise self._unknown(tool)
        spec = route.spec
        spec.validator.validate(args)
        deadline = _INF if timeout is None else _deadline(timeout)
        route.counters.calls += 1
        if ctx is None:
            ctx = _NO_CONTEXT
        try:
            flight: Flight | None = None
            if spec.idempotent:
                # IdempotencyCache.run split, so no coroutine stands between caller and reply.
                idem = self._idem
                lead = idem.lead(spec, args, ctx, deadline, route.counters, self._clock())
                if type(lead) is Deferred:  # a duplicate, a stored answer, or a slow store
                    # A partial, not a lambda: a closure would make every local of
                    # execute() a cell, on every call, the plain ones included.
                    call = functools.partial(self._call, route, args, ctx, deadline, timeout, None)
                    value, _cached = await idem.resume(lead, spec, deadline, route.counters, call)
                    return value
                assert type(lead) is Flight
                flight = lead
            slot = ReplySlot()
            try:
                waiting = self._post(route, args, ctx, deadline, slot)
                if waiting is not None:
                    await self._enqueue(route, waiting, timeout)
                if deadline == _INF:
                    value = await slot.wait()  # the hot path: no frame between caller and reply
                else:
                    value = await self._await_reply(route, slot, deadline, timeout)
            except BaseException as exc:
                if flight is not None:
                    self._idem.failed(flight, exc)
                raise
            if flight is not None:
                self._idem.succeeded(flight, spec, value, self._clock())
        except trio.Cancelled:
            route.counters.cancelled += 1  # the caller's own scope: its running attempt too
            raise
        return value

    async def submit(
        self,
        tool: str,
        args: Mapping[str, Any],
        ctx: ExecutionContext | None = None,
        *,
        timeout: float | None = None,
    ) -> PendingCall:
        """Send a call now, await its result later (``await pending.result()``).

        Raises at once what is wrong before sending: unknown tool, invalid arguments,
        closed supervisor, overload (``overflow="reject"``), an open circuit breaker.
        """
        route = self._routes.get(tool)
        if route is None:
            raise self._unknown(tool)
        spec = route.spec
        spec.validator.validate(args)
        started = trio.current_time()
        deadline = _deadline(timeout)
        route.counters.calls += 1
        slot = ReplySlot()
        ctx = ctx or _NO_CONTEXT
        if spec.idempotent:
            self._nursery.start_soon(
                self._idempotent_into_slot, route, args, ctx, deadline, timeout, slot
            )
        else:
            _refuse_if_open(route)
            await self._enqueue(route, Execute(args, ctx, deadline, started, slot), timeout)
        return PendingCall(
            tool, slot, route.counters, deadline=deadline, timeout=timeout, started=started
        )

    async def execute_many(
        self,
        calls: Iterable[CallSpec],
        *,
        timeout: float | None = None,
    ) -> list[ToolResult]:
        """Run calls concurrently; one :class:`ToolResult` per call, in order.

        Never raises for a call's failure (unknown tool and bad arguments included):
        each result says what happened, which is what an agent loop feeds back.
        """
        items: Sequence[CallSpec] = list(calls)
        results: list[ToolResult | None] = [None] * len(items)

        async def one(i: int, item: CallSpec) -> None:
            tool, args = item[0], item[1]
            ctx = item[2] if len(item) > 2 else None
            started = trio.current_time()
            try:
                pending = await self.submit(tool, args, ctx, timeout=timeout)
                results[i] = await pending.result()
            except Exception as exc:
                results[i] = ToolResult(
                    tool=tool,
                    ok=False,
                    error=exc,
                    elapsed_s=trio.current_time() - started,
                )

        async with trio.open_nursery() as nursery:
            for i, item in enumerate(items):
                nursery.start_soon(one, i, item)
        return [r for r in results if r is not None]

    # ------------------------------------------------------------------ events

    def subscribe(self, callback: Callable[[Event], None]) -> Callable[[], None]:
        """Call ``callback(event)`` for every event; returns a function that unsubscribes.

        Callbacks run in the actor's task: keep them quick and non-blocking. An
        exception in a callback is logged, never propagated into the tool's call.
        """
        self._callbacks.append(callback)
        self._wire_publish()

        def unsubscribe() -> None:
            if callback in self._callbacks:
                self._callbacks.remove(callback)
            self._wire_publish()

        return unsubscribe

    @asynccontextmanager
    async def events(self, buffer: int = 1024) -> AsyncIterator[trio.MemoryReceiveChannel[Event]]:
        """A channel of events; when it is full, new events are dropped (``events_dropped``)."""
        send, receive = trio.open_memory_channel[Event](buffer)
        self._channels.append(send)
        self._wire_publish()
        try:
            async with receive:
                yield receive
        finally:
            self._channels.remove(send)
            send.close()
            self._wire_publish()

    def _wire_publish(self) -> None:
        publish = self._publish if (self._callbacks or self._channels) else None
        for route in self._routes.values():
            route.runner.publish = publish
        self._idem.publish = publish

    def _publish(self, event: Event) -> None:
        for callback in list(self._callbacks):
            try:
                callback(event)
            except Exception:
                log.exception("toolvisor event callback %r failed on %r", callback, event)
        for channel in list(self._channels):
            try:
                channel.send_nowait(event)
            except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
                self.events_dropped += 1

    # ------------------------------------------------------------------ internals

    def _route(self, tool: str) -> _Route:
        route = self._routes.get(tool)
        if route is None:
            raise self._unknown(tool)
        return route

    def _unknown(self, tool: str) -> Exception:
        if self._closing:
            return SupervisorClosedError()
        return UnknownToolError(tool, self._routes)

    def _check_open(self) -> None:
        if self._closing:
            raise SupervisorClosedError()

    def _post(
        self,
        route: _Route,
        args: Mapping[str, Any],
        ctx: ExecutionContext,
        deadline: float,
        slot: ReplySlot,
    ) -> Execute | None:
        """Put a call into the tool's inbox at once; the message back if it must wait."""
        circuit = route.spec.circuit
        if circuit is None or not circuit.clean:  # a clean breaker is closed: skip the check
            _refuse_if_open(route)
        msg = Execute(args, ctx, deadline, self._clock(), slot)
        if route.status == "running":
            try:
                route.inbox_send.send_nowait(msg)
            except (trio.WouldBlock, trio.ClosedResourceError):
                return msg
            return None
        return msg  # _enqueue raises the reason

    async def _call(
        self,
        route: _Route,
        args: Mapping[str, Any],
        ctx: ExecutionContext,
        deadline: float,
        timeout: float | None,
        slot: ReplySlot | None,
    ) -> Any:
        slot = slot or ReplySlot()
        waiting = self._post(route, args, ctx, deadline, slot)
        if waiting is not None:
            await self._enqueue(route, waiting, timeout)
        if deadline == math.inf:
            return await slot.wait()
        return await self._await_reply(route, slot, deadline, timeout)

    async def _await_reply(
        self, route: _Route, slot: ReplySlot, deadline: float, timeout: float | None
    ) -> Any:
        """Wait for the reply until ``deadline`` (finite); past it, the call times out."""
        with trio.move_on_at(deadline):
            return await slot.wait()
        route.counters.timeouts += 1
        route.counters.failures += 1
        raise ToolTimeoutError(route.name, timeout or 0.0, scope="call")

    async def _enqueue(self, route: _Route, msg: Execute, timeout: float | None) -> None:
        """Put ``msg`` into the tool's inbox: at once, or with backpressure/rejection."""
        if route.status != "running":
            raise route.unavailable()
        try:
            route.inbox_send.send_nowait(msg)
        except trio.WouldBlock:
            pass
        except trio.ClosedResourceError:
            raise route.unavailable() from None
        else:
            return
        spec = route.spec
        if spec.overflow == "reject":
            route.counters.rejected += 1
            raise ToolOverloadedError(
                route.name, max_concurrency=spec.max_concurrency, queue_size=spec.queue_size
            )
        with trio.move_on_at(msg.deadline):
            try:
                await route.inbox_send.send(msg)
            except (trio.ClosedResourceError, trio.BrokenResourceError):
                raise route.unavailable() from None
            return
        msg.reply.abandon()
        route.counters.timeouts += 1
        route.counters.failures += 1
        raise ToolTimeoutError(route.name, timeout or 0.0, scope="call")

    async def _idempotent_into_slot(
        self,
        route: _Route,
        args: Mapping[str, Any],
        ctx: ExecutionContext,
        deadline: float,
        timeout: float | None,
        slot: ReplySlot,
    ) -> None:
        """Run an idempotent ``submit()`` in the supervisor's nursery; reply to ``slot``."""
        inner = ReplySlot()
        try:
            value, cached = await self._idem.run(
                route.spec,
                args,
                ctx,
                deadline,
                route.counters,
                lambda: self._call(route, args, ctx, deadline, timeout, inner),
            )
        except Exception as exc:
            slot.attempts = inner.attempts
            slot.reply(outcome.Error(exc))
        else:
            slot.attempts = inner.attempts
            slot.cached = cached
            slot.reply(outcome.Value(value))
        finally:
            # Cancelled because the supervisor closed: the call still gets its answer.
            if not slot.done and slot.reply(outcome.Error(route.unavailable())):
                route.counters.failures += 1

    async def _supervise(
        self, route: _Route, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """The restart loop of one tool (OTP one_for_one with restart intensity)."""
        task_status.started()
        # The status object keeps nursery.start()'s temporary nursery (its cancel scope
        # and status) alive for as long as this frame: about 1.2 KB per actor.
        del task_status
        try:
            while True:
                actor = ToolActor(route.runner, route.inbox_receive)
                route.actor = actor
                error: BaseException | None = None
                try:
                    await actor.run()
                except Exception as exc:  # a crash: a bug in toolvisor or in a policy
                    error = _single(exc)
                cause = actor.crash or error
                if cause is None or route.status == "stopping":
                    return  # inbox closed and drained, or stop() ran out of grace
                log.error("actor of tool %r crashed: %r", route.name, cause)
                self._answer(actor, functools.partial(ActorCrashedError, route.name, cause))
                if not self._may_restart(route, cause):
                    return
        finally:
            actor_now = route.actor
            if actor_now is not None:
                self._answer(actor_now, route.unavailable)
            self._drain(route)
            route.mark_finished()

    def _may_restart(self, route: _Route, cause: BaseException) -> bool:
        now = trio.current_time()
        counters = route.counters
        counters.restarts += 1
        times = route.restart_times
        times.append(now)
        times[:] = [t for t in times if t >= now - self._within_s]
        if len(times) > self._max_restarts:
            route.status = "failed"
            route.reason = (
                f"its actor crashed {len(times)} times within {self._within_s:g} s "
                f"(last: {type(cause).__name__}: {cause}); respawn it once fixed"
            )
            route.inbox_send.close()
            self._publish_if(ToolFailed(route.name, counters.restarts, repr(cause), now))
            return False
        try:
            route.spec.breaker.reset(route.name)  # a fresh incarnation, fresh breaker state
        except Exception:
            log.exception("resetting the breaker of tool %r failed", route.name)
        route.runner = ToolRunner(route.spec, route.invoke, counters, route.runner.publish)
        self._publish_if(ActorRestarted(route.name, counters.restarts, repr(cause), now))
        if route.restarted is not None:
            route.restarted.set()
        return True

    def _publish_if(self, event: Event) -> None:
        if self._callbacks or self._channels:
            self._publish(event)

    @staticmethod
    def _answer(actor: ToolActor, error: Callable[[], Exception]) -> None:
        counters = actor.runner.counters
        for slot in list(actor.held):
            if slot.reply(outcome.Error(error())):
                counters.failures += 1
        actor.held.clear()

    @staticmethod
    def _drain(route: _Route) -> None:
        """Answer every call still queued in a closed tool's inbox."""
        route.inbox_send.close()
        while True:
            try:
                msg = route.inbox_receive.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                return
            if msg.reply.reply(outcome.Error(route.unavailable())):
                route.counters.failures += 1

    async def _close(self, grace_s: float) -> None:
        self._closing = True
        for route in self._routes.values():
            if route.status == "running":
                route.status = "closed"
            route.inbox_send.close()
        with trio.move_on_after(grace_s):
            for route in list(self._routes.values()):
                await route.wait_finished()
        for route in self._routes.values():
            route.status = "closed"

    def _abort(self) -> None:
        self._closing = True
        for route in self._routes.values():
            route.status = "closed"


def _refuse_if_open(route: _Route) -> None:
    """Fail fast in the caller's task while the tool's breaker is open (no hop)."""
    open_for = route.spec.open_for
    if open_for is not None:
        wait = open_for(route.name)
        if wait > 0:
            route.counters.rejected += 1
            raise CircuitOpenError(route.name, wait)


def _single(exc: Exception) -> Exception:
    """The one error inside nested single-error exception groups, else ``exc``."""
    while isinstance(exc, ExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def _deadline(timeout: float | None) -> float:
    if timeout is None:
        return math.inf
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or math.isnan(timeout):
        raise TypeError(f"timeout must be a number of seconds or None, got {timeout!r}")
    if timeout <= 0:
        raise ValueError(f"timeout must be > 0 seconds, got {timeout!r}")
    return trio.current_time() + timeout


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

    Example::

        async with toolvisor.open_supervisor() as sup:
            await sup.spawn(spec, process_payment)
            value = await sup.execute("process_payment", {"transaction_id": "tx-1"})
    """
    if isinstance(max_restarts, bool) or not isinstance(max_restarts, int) or max_restarts < 0:
        raise ValueError(f"max_restarts must be an integer >= 0, got {max_restarts!r}")
    for name, value in (("within_s", within_s), ("grace_s", grace_s)):
        if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
            raise ValueError(f"{name} must be a number >= 0, got {value!r}")
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
