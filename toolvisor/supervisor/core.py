"""The supervisor: spawns tool actors, routes calls to them, restarts them when they crash.

Routing happens in the caller's task (``calls.py``): a call is validated, made a
:class:`~toolvisor.actors.call.Call` and sent straight into its tool actor's inbox (one
hop); the caller then waits for the call's end. The supervisor's own tasks only run the
restart loops (``restarts.py``); ``open.py`` opens and closes it.
"""

from __future__ import annotations

import contextvars
import copy
import functools
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

import attrs
import outcome
import trio

from .._inputs import check_timeout, check_tool_name
from ..actors.actor import ActorKilled
from ..actors.call import Call
from ..actors.observer import CallObserver
from ..actors.pipeline import state_name
from ..actors.stats import ToolStats
from ..errors import (
    DuplicateToolError,
    SupervisorClosedError,
    ToolUnavailableError,
    UnknownToolError,
)
from ..events import Event
from ..policies.budget import RetryBudget
from ..policies.circuit_breaker import ICircuitBreakerPolicy
from ..policies.concurrency import AdaptiveConcurrency
from ..policies.fallback import FallbackPolicy
from ..policies.hedging import HedgingPolicy
from ..policies.rate_limit import RateLimit
from ..policies.retry import IRetryPolicy
from ..spec import CompiledSpec, ExecutionContext, ToolSpec, Unchanged, check_bulkhead
from .calls import CallSpec, refuse, run_many, send, send_and_wait
from .hub import EventHub, Publish
from .idempotency import IdempotencyCache
from .restarts import Intensity, Route, supervise
from .results import PendingCall, Relay, ToolResult
from .stores.base import IdempotencyStore

__all__ = ["Supervisor", "ToolRef"]


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
        self._routes: dict[str, Route] = {}
        self._gone: dict[str, str] = {}  # stopped tools: name -> why (until respawned)
        self._closing = False
        self._intensity = Intensity(max_restarts, within_s)
        self._grace_s = grace_s
        self._hub = EventHub(self._wire)
        self._idem = IdempotencyCache(idempotency_store)
        self._observer: CallObserver | None = None
        # What every tool's actor runs in, whoever spawns the tool: a copy of the context
        # the supervisor was opened in. A tool spawned from a request or from another
        # tool's attempt must not keep that request's context variables (its current
        # span, its request id) for all its later calls.
        self._context = contextvars.copy_context()

    # ------------------------------------------------------------------ tools

    async def spawn(self, spec: ToolSpec, fn: Callable[..., Any]) -> ToolRef:
        """Start an actor for ``spec`` running ``fn``; return its :class:`ToolRef`.

        Takes a snapshot of ``spec``: later edits change nothing (use ``reconfigure``).

        Raises:
            DuplicateToolError: a tool of that name runs here already.
            TypeError: ``spec`` is not a ToolSpec or ``fn`` is not an async function.
            SupervisorClosedError: the supervisor is closing.
        """
        if self._closing:
            raise SupervisorClosedError()
        if not isinstance(spec, ToolSpec):
            raise TypeError(f"spawn() takes a ToolSpec, got {type(spec).__name__}")
        if spec.tool_name in self._routes:
            raise DuplicateToolError(spec.tool_name)
        route = Route(spec.compile(), fn)
        route.runner.publish = route.counters.publish = self._hub.publisher
        route.runner.observer = self._observer
        self._routes[route.name] = route
        self._gone.pop(route.name, None)
        running = trio.Event()
        task = functools.partial(supervise, route, self._intensity, self._hub, running)
        # start_soon copies the context current while it runs: the supervisor's here.
        self._context.run(self._nursery.start_soon, task)
        await running.wait()
        return ToolRef(route.name, self)

    def tools(self) -> list[str]:
        """Names of the tools spawned here."""
        return sorted(self._routes)

    def function_schemas(self) -> dict[str, Mapping[str, Any]]:
        """Each tool's function-calling schema, by name (for an LLM's tool list).

        Copies: editing them changes nothing the supervisor validates with.
        """
        return {
            name: copy.deepcopy(r.spec.function_schema) for name, r in sorted(self._routes.items())
        }

    def spec(self, tool: str) -> CompiledSpec:
        """The snapshot ``tool`` runs with now (its policies after any ``reconfigure``)."""
        return self._route(tool).spec

    def stats(self, tool: str) -> ToolStats:
        """A snapshot of ``tool``'s counters (see :class:`ToolStats`)."""
        route = self._route(tool)
        actor = route.actor
        return route.counters.snapshot(
            tool,
            in_flight=actor.in_flight if actor is not None else 0,
            queued=route.inbox_receive.statistics().current_buffer_used,
            breaker_state=state_name(route.spec.breaker.get_state(tool)),
            concurrency_limit=route.spec.max_concurrency,
        )

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
        """Swap ``tool``'s policies; calls already running finish with the old ones.

        Queued and in-flight calls are kept. ``retry_policy`` and
        ``circuit_breaker_policy``: None keeps the current one. The strategies
        (``retry_budget``, ``rate_limit``, ``fallback``, ``hedging``) are kept unless
        given; None removes one (hedging only on read-only or idempotent tools). A new
        ``RetryBudget`` or ``RateLimit`` starts with its own state (a full bucket, the
        floor's credits); calls made from now on take the new
        ``fallback``, calls already made keep the one they took. ``max_concurrency`` (an
        int or an :class:`~toolvisor.AdaptiveConcurrency`; None keeps it) resizes the
        bulkhead: a larger one starts more calls at once, a smaller one starts none until
        fewer than it run.

        Raises:
            TypeError: an argument of the wrong kind (naming it); nothing is swapped.
            ValueError: ``hedging`` for a tool neither read-only nor idempotent; nothing
                is swapped.
        """
        route = self._route(tool)
        for field, value, kind in (
            ("retry_budget", retry_budget, RetryBudget),
            ("rate_limit", rate_limit, RateLimit),
            ("fallback", fallback, FallbackPolicy),
            ("hedging", hedging, HedgingPolicy),
        ):
            if (
                value is not None
                and value is not Unchanged.UNCHANGED
                and not isinstance(value, kind)
            ):
                raise TypeError(
                    f"{field} must be a {kind.__name__}, or None to remove it, got {value!r}"
                )
        if retry_policy is not None and not isinstance(retry_policy, IRetryPolicy):
            raise TypeError(f"retry_policy must be an IRetryPolicy, got {retry_policy!r}")
        if circuit_breaker_policy is not None and not isinstance(
            circuit_breaker_policy, ICircuitBreakerPolicy
        ):
            raise TypeError(
                f"circuit_breaker_policy must be an ICircuitBreakerPolicy, got "
                f"{circuit_breaker_policy!r}"
            )
        if max_concurrency is not None:
            check_bulkhead(max_concurrency)
        route.spec = route.spec.with_policies(
            retry_policy=retry_policy,
            circuit_breaker_policy=circuit_breaker_policy,
            retry_budget=retry_budget,
            rate_limit=rate_limit,
            fallback=fallback,
            hedging=hedging,
        )
        if max_concurrency is not None:
            route.spec = attrs.evolve(route.spec, concurrency=max_concurrency)
        route.runner.spec = route.spec
        if max_concurrency is not None and route.actor is not None:
            route.actor.resize()
        await trio.lowlevel.checkpoint()

    async def stop(self, tool: str, *, grace_s: float | None = None) -> None:
        """Stop ``tool`` gracefully: no new calls, queued and running ones finish.

        After ``grace_s`` (default: the supervisor's) the rest are cancelled and get
        ``ToolUnavailableError``. The name can then be spawned again; until then its
        calls get ``ToolUnavailableError`` saying it was stopped.
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
            self._gone[tool] = route.reason or "it was stopped"

    async def kill(self, tool: str) -> None:
        """Crash ``tool``'s actor on purpose, exactly as a real crash (for fault tests).

        Returns once the actor restarted (or the tool was marked failed). Concurrent
        kills of one tool all return on that restart.
        """
        route = self._route(tool)
        if route.actor is None or route.status != "running":
            raise ToolUnavailableError(tool, route.reason or route.status)
        await route.kill(ActorKilled(f"killed by Supervisor.kill({tool!r})"))

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
        return await self._start(tool, args, ctx, timeout)[1]

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
        route = self._route(tool)
        call = Call.new(route.spec, route.counters, args, ctx, timeout, self._observer)
        if not route.spec.idempotent:
            await send(route, call)
            return PendingCall(call)
        if route.status != "running" or self._closing:
            refuse(call, route.unavailable())
            return PendingCall(call)  # its fallback answered it
        relay = Relay()
        self._nursery.start_soon(self._idempotent_in_task, route, call, relay)
        return PendingCall(call, relay)

    async def forget(self, tool: str, key: str, ctx: ExecutionContext | None = None) -> bool:
        """Let ``key`` of ``tool`` run again: drop its record (done, or outcome unknown).

        ``key`` is the key as the tool saw it (``ctx.idempotency_key``, or
        ``IdempotencyOutcomeUnknownError.key``); the tenant comes from ``ctx``. Returns True
        if there was a record. Use it once you have checked downstream what an execution
        whose outcome is unknown did.
        """
        route = self._route(tool)
        tenant = None if ctx is None else ctx.tenant_id
        return await self._idem.forget(route.spec, key, tenant)

    async def execute_many(
        self,
        calls: Iterable[CallSpec],
        *,
        timeout: float | None = None,
    ) -> list[ToolResult]:
        """Run calls concurrently; one :class:`ToolResult` per call, in order.

        Never raises for a call's failure (unknown tool, bad arguments and malformed
        entries included): each result says what happened, which is what an agent loop
        feeds back.
        """
        check_timeout(timeout)
        return await run_many(self.submit, calls, timeout)

    # ------------------------------------------------------------------ events

    def subscribe(self, callback: Callable[[Event], None]) -> Callable[[], None]:
        """Call ``callback(event)`` for every event; returns a function that unsubscribes.

        Callbacks run in the actor's task: keep them quick and non-blocking. An
        exception in a callback is logged, never propagated into the tool's call.
        """
        return self._hub.subscribe(callback)

    def events(self, buffer: int = 1024) -> Any:
        """An async context manager giving a channel of events.

        When the channel is full, new events are dropped (counted in ``events_dropped``)::

            async with sup.events() as events:
                async for event in events: ...
        """
        return self._hub.events(buffer)

    @property
    def events_dropped(self) -> int:
        """Events dropped because an ``events()`` channel was full."""
        return self._hub.dropped

    def observe(self, observer: CallObserver | None) -> CallObserver | None:
        """Set what sees every call of every tool, spawned now or later (telemetry).

        One observer at a time; None removes it. Returns the one it replaces. This is
        the hook :func:`toolvisor.telemetry.instrument` uses; see
        :class:`~toolvisor.actors.observer.CallObserver` for what it is told.
        """
        old, self._observer = self._observer, observer
        for route in self._routes.values():
            route.runner.observer = observer
        return old

    # ------------------------------------------------------------------ internals

    def _wire(self, publish: Publish | None) -> None:
        for route in self._routes.values():
            route.runner.publish = route.counters.publish = publish
        self._idem.publish = publish

    def _route(self, tool: str) -> Route:
        try:
            route = self._routes.get(tool)
        except TypeError:  # unhashable: not a name at all (check_tool_name says so)
            route = None
        if route is not None:  # only a str is a key: a name found is a name
            return route
        check_tool_name(tool)
        if self._closing:
            raise SupervisorClosedError()
        gone = self._gone.get(tool)
        if gone is not None:
            raise ToolUnavailableError(tool, gone)
        raise UnknownToolError(tool, self._routes)

    def _start(
        self,
        tool: str,
        args: Mapping[str, Any],
        ctx: ExecutionContext | None,
        timeout: float | None,
    ) -> tuple[Call, Awaitable[Any]]:
        """``execute``'s call, made and sent here: the call, and the awaitable of its end.

        For a caller that needs the call after its end (``toolvisor.mcp`` reports the
        attempts of a failed call) without a ``submit`` and its ``ToolResult``. Raises
        what ``execute`` raises before sending (unknown tool, invalid arguments, and the
        refusals of ``post``: the call ended with its error, its ``attempts`` 0).
        """
        route = self._route(tool)
        call = Call.new(route.spec, route.counters, args, ctx, timeout, self._observer)
        if route.spec.idempotent:
            return call, self._idem.run(route.spec, call, functools.partial(send_and_wait, route))
        try:
            return call, send_and_wait(route, call)
        except BaseException:
            del call  # a refusal's traceback keeps this frame (see calls.post)
            raise

    async def _idempotent_in_task(self, route: Route, call: Call, relay: Relay) -> None:
        """Run an idempotent ``submit()`` in the supervisor's nursery; answer ``relay``."""
        try:
            with relay.scope:
                execute = functools.partial(send_and_wait, route)
                try:
                    value = await self._idem.run(route.spec, call, execute)
                except Exception as exc:
                    relay.set(outcome.Error(exc))
                else:
                    relay.set(outcome.Value(value))
        finally:
            if relay.result is None:  # cancelled: by its awaiter, or the supervisor closing
                relay.set(outcome.Error(route.unavailable()))

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

    def _ended(self) -> None:
        """Every actor of the supervisor ended: no call runs any more, so the
        idempotency cache's background work (renewals, settling) stops; a claim still
        held lapses with its lease."""
        self._idem.close()


@attrs.frozen
class ToolRef:
    """A handle on a spawned tool, as ``Supervisor.spawn()`` returns it."""

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
