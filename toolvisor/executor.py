"""FunctionToolExecutor: the same pipeline as the tool actor, run in the caller's task.

For code written against the original execution-policies module::

    executor = FunctionToolExecutor(spec, process_payment)
    result = await executor.execute({"transaction_id": "tx-12345", ...}, ctx)

Validation, idempotency, breaker, retries and the per-attempt timeout behave exactly as
under a supervisor (the code is shared); there is no actor, no inbox and no bulkhead,
and no restart: a crash is the caller's exception.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import trio

from .actors.call import Call
from .actors.observer import CallObserver
from .actors.pipeline import Publish, ToolRunner, make_invoker, state_name
from .actors.stats import Counters, ToolStats
from .events import Event
from .spec import ExecutionContext, ToolSpec
from .supervisor.hub import EventHub
from .supervisor.idempotency import IdempotencyCache
from .supervisor.stores.base import IdempotencyStore

__all__ = ["FunctionToolExecutor"]


class FunctionToolExecutor:
    """Run one tool with its spec's policies, in the calling task.

    Args:
        spec: the tool's spec; a snapshot is taken now (later edits change nothing).
        fn: ``async def fn(args)`` or ``async def fn(args, ctx)``.
        idempotency_store: where idempotent results go (default: a MemoryStore).
        on_event: optional callback for retry, breaker and store events (as
            ``subscribe(on_event)``).
    """

    def __init__(
        self,
        spec: ToolSpec,
        fn: Callable[..., Any],
        *,
        idempotency_store: IdempotencyStore | None = None,
        on_event: Callable[[Event], None] | None = None,
    ) -> None:
        if not isinstance(spec, ToolSpec):
            raise TypeError(f"FunctionToolExecutor takes a ToolSpec, got {type(spec).__name__}")
        self.spec = spec.compile()
        self.counters = Counters()
        self._observer: CallObserver | None = None
        self._runner = ToolRunner(self.spec, make_invoker(fn, self.spec.tool_name), self.counters)
        self._cache = IdempotencyCache(idempotency_store)
        self._hub = EventHub(self._wire)
        if on_event is not None:
            self._hub.subscribe(on_event)

    @property
    def tool_name(self) -> str:
        """The tool's name."""
        return self.spec.tool_name

    async def execute(
        self,
        args: Mapping[str, Any],
        ctx: ExecutionContext | None = None,
        *,
        timeout: float | None = None,
    ) -> Any:
        """Run the tool once through its policies; return its value or raise.

        ``timeout`` is the overall deadline (all attempts and waits), as in
        ``Supervisor.execute``; bad arguments, ``ctx`` or ``timeout`` raise as there.
        """
        spec = self.spec
        call = Call.new(spec, self.counters, args, ctx, timeout, self._observer)
        if spec.idempotent:
            return await self._cache.run(spec, call, self._run)
        return await self._run(call)

    def subscribe(self, callback: Callable[[Event], None]) -> Callable[[], None]:
        """Call ``callback(event)`` for every event; returns a function that unsubscribes.

        As ``Supervisor.subscribe``: callbacks run in the calling task, and an exception
        in one is logged, never propagated into the call.
        """
        return self._hub.subscribe(callback)

    def observe(self, observer: CallObserver | None) -> CallObserver | None:
        """Set what sees every call (telemetry), as ``Supervisor.observe``; None removes
        it. Returns the one it replaces."""
        old, self._observer = self._observer, observer
        self._runner.observer = observer
        return old

    def _wire(self, publish: Publish | None) -> None:
        """Hand the hub's ``publish`` (None while nobody listens) to every publisher."""
        self._runner.publish = self.counters.publish = self._cache.publish = publish

    async def forget(self, key: str, ctx: ExecutionContext | None = None) -> bool:
        """Let ``key`` run again (see ``Supervisor.forget``); True if it had a record."""
        tenant = None if ctx is None else ctx.tenant_id
        return await self._cache.forget(self.spec, key, tenant)

    async def _run(self, call: Call) -> Any:
        """The call's attempt loop in this task, within its deadline."""
        try:
            with trio.move_on_at(call.deadline) as scope:
                call.start(scope)
                await self._runner.run(call)
        except BaseException as exc:
            call.settle(exc)  # the caller's own cancellation, or a Ctrl-C
            raise
        if not call.ended:
            call.time_out()
        return call.result()

    def stats(self) -> ToolStats:
        """A snapshot of this executor's counters."""
        return self.counters.snapshot(
            self.spec.tool_name,
            in_flight=0,
            queued=0,
            breaker_state=state_name(self.spec.breaker.get_state(self.spec.tool_name)),
        )

    def get_circuit_state(self) -> str:
        """The breaker's state now (``"closed"``, ``"open"`` or ``"half_open"``)."""
        return state_name(self.spec.breaker.get_state(self.spec.tool_name))
