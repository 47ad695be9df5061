"""The execution pipeline of one call, shared by the tool actor and FunctionToolExecutor.

Per call: the retry policy drives attempts; each attempt passes the circuit breaker,
which admits it (or fails fast with ``CircuitOpenError``), runs the tool under the
spec's per-attempt ``timeout_s`` (``ToolTimeoutError`` past it, retryable) and records
the outcome. Cancellation is never counted nor retried: only ``Exception`` is caught.

A tool failure re-raises the tool's own last exception, with a note saying how many
attempts were made, so ``except PaymentDeclined:`` keeps working.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping
from types import CoroutineType
from typing import Any

import trio

from ..errors import CircuitOpenError, ToolTimeoutError
from ..events import BreakerTransition, Event, RetryScheduled
from ..spec import CompiledSpec, ExecutionContext
from .messages import ReplySlot
from .stats import Counters

__all__ = ["Invoker", "ToolRunner", "make_invoker", "state_name"]

Invoker = Callable[[Mapping[str, Any], ExecutionContext], Awaitable[Any]]
Publish = Callable[[Event], None]


def state_name(state: object) -> str:
    """``"closed"`` for ``CircuitState.CLOSED`` or a user policy's plain ``"closed"``."""
    value = getattr(state, "value", state)
    return value if isinstance(value, str) else str(value)


def make_invoker(fn: Callable[..., Any], tool_name: str) -> Invoker:
    """Adapt ``async def fn(args)`` or ``async def fn(args, ctx)`` to one calling shape.

    Raises:
        TypeError: ``fn`` is not an async function (naming the tool and what to do).
    """
    if not callable(fn):
        raise TypeError(f"tool {tool_name!r}: the tool function must be callable, got {fn!r}")
    is_async = inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004 - async callable objects count too
    )
    if not is_async:
        raise TypeError(
            f"tool {tool_name!r}: {fn!r} is not an async function; define it with "
            "`async def fn(args)` or `async def fn(args, ctx)`"
        )
    try:
        params = [
            p
            for p in inspect.signature(fn).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)
        ]
    except (TypeError, ValueError):
        params = []
    takes_ctx = len(params) >= 2 or any(p.kind is p.VAR_POSITIONAL for p in params)
    if not params:
        raise TypeError(
            f"tool {tool_name!r}: {fn!r} takes no arguments; it must accept `args` "
            "(and optionally `ctx`)"
        )

    # The coroutine check inline (it is every call's), the rest in _awaitable().
    if takes_ctx:

        def invoke(args: Mapping[str, Any], ctx: ExecutionContext) -> Awaitable[Any]:
            result = fn(args, ctx)
            return result if type(result) is CoroutineType else _awaitable(result, tool_name)

    else:

        def invoke(args: Mapping[str, Any], ctx: ExecutionContext) -> Awaitable[Any]:
            result = fn(args)
            return result if type(result) is CoroutineType else _awaitable(result, tool_name)

    return invoke


def _awaitable(result: object, tool_name: str) -> Awaitable[Any]:
    if inspect.isawaitable(result):
        return result
    raise TypeError(
        f"tool {tool_name!r} returned {type(result).__name__}, not an awaitable; "
        "the tool function must be `async def`"
    )


class ToolRunner:
    """Runs calls of one tool through its policies; counts what happens.

    The runner belongs to one actor (or executor); only its tasks touch the counters
    and the breaker state of its tool.
    """

    __slots__ = ("_last_state", "counters", "invoke", "publish", "spec")

    def __init__(
        self,
        spec: CompiledSpec,
        invoke: Invoker,
        counters: Counters,
        publish: Publish | None = None,
    ) -> None:
        self.spec = spec
        self.invoke = invoke
        self.counters = counters
        self.publish = publish
        self._last_state = state_name(spec.breaker.get_state(spec.tool_name))

    async def first_attempt(self, args: Mapping[str, Any], ctx: ExecutionContext) -> Any:
        """The actor's first attempt of a call, through the breaker.

        No timeout scope of its own: the actor runs it inside a cancel scope whose
        deadline is the attempt's. While events are subscribed, the breaker's state is
        observed before and after, so its transitions are published.
        """
        spec = self.spec
        invoke = self.invoke
        if self.publish is None:
            return await spec.breaker.execute_with_breaker(
                lambda: invoke(args, ctx), spec.tool_name
            )
        self._observe_breaker()
        try:
            return await spec.breaker.execute_with_breaker(
                lambda: invoke(args, ctx), spec.tool_name
            )
        finally:
            self._observe_breaker()

    async def run(
        self,
        args: Mapping[str, Any],
        ctx: ExecutionContext,
        deadline: float,
        slot: ReplySlot | None = None,
        first_error: Exception | None = None,
    ) -> Any:
        """Run the call's attempts through the retry policy; count the outcome.

        With ``first_error``, the first attempt already ran (in the actor's fast path) and
        failed with it: the retry policy sees that failure as attempt 1 and schedules
        the rest. Every attempt run here has its own ``timeout_s`` scope.
        """
        spec = self.spec
        name = spec.tool_name
        timeout_s = spec.timeout_s
        invoke = self.invoke
        counters = self.counters
        breaker = spec.breaker
        attempts = 0 if first_error is None else 1
        replay = first_error
        # Did the tool run at all? A refusal at admission is a CircuitOpenError with no
        # cause; the one raised when a failure trips the breaker is chained from it.
        ran = first_error is not None and not (
            isinstance(first_error, CircuitOpenError) and first_error.__cause__ is None
        )

        async def timed() -> Any:
            nonlocal ran
            ran = True
            with trio.move_on_after(timeout_s):
                return await invoke(args, ctx)
            counters.timeouts += 1
            raise ToolTimeoutError(name, timeout_s)

        async def attempt() -> Any:
            nonlocal attempts, replay
            if replay is not None:
                error, replay = replay, None
                raise error
            attempts += 1
            if self.publish is None:
                return await breaker.execute_with_breaker(timed, name)
            self._observe_breaker()
            try:
                return await breaker.execute_with_breaker(timed, name)
            finally:
                self._observe_breaker()

        try:
            value = await spec.retry_policy.execute(
                attempt, deadline=deadline, on_retry=self._on_retry
            )
        except Exception as exc:
            if isinstance(exc, CircuitOpenError) and not ran:
                counters.rejected += 1
            else:
                counters.failures += 1
            if slot is not None:
                slot.attempts = attempts
            if attempts > 1:
                exc.add_note(f"toolvisor: tool {name!r} failed after {attempts} attempts")
            raise
        counters.successes += 1
        if slot is not None:
            slot.attempts = attempts
        return value

    async def count_failure(self, error: Exception) -> Exception:
        """Let the breaker count ``error`` as a failed attempt (it did not see it happen).

        Returns the error the attempt ends with: ``error`` itself, or the
        ``CircuitOpenError`` raised if this failure trips the breaker.
        """

        async def fail() -> Any:
            raise error

        try:
            await self.spec.breaker.execute_with_breaker(fail, self.spec.tool_name)
        except Exception as exc:
            return exc
        return error  # an excluded error counts as a success and is not re-raised here

    def _on_retry(self, attempt: int, delay: float, exc: BaseException) -> None:
        self.counters.retries += 1
        if self.publish is not None:
            self.publish(
                RetryScheduled(
                    tool=self.spec.tool_name,
                    attempt=attempt,
                    delay=delay,
                    error=repr(exc),
                    at=trio.current_time(),
                )
            )

    def _observe_breaker(self) -> None:
        state = state_name(self.spec.breaker.get_state(self.spec.tool_name))
        if state != self._last_state and self.publish is not None:
            old, self._last_state = self._last_state, state
            self.publish(
                BreakerTransition(
                    tool=self.spec.tool_name, old=old, new=state, at=trio.current_time()
                )
            )
        self._last_state = state
