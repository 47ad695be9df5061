"""What the supervisor hands back: ToolResult, PendingCall and ToolRef."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import attrs
import trio

from ..actors.messages import ReplySlot
from ..actors.stats import Counters, ToolStats
from ..errors import ToolTimeoutError
from ..spec import ExecutionContext

if TYPE_CHECKING:
    from .core import Supervisor

__all__ = ["PendingCall", "ToolRef", "ToolResult"]


@attrs.frozen
class ToolResult:
    """The outcome of one call, without raising (what an agent loop feeds back).

    Attributes:
        tool: the tool called.
        ok: True when the tool returned a value.
        value: the tool's value (None when not ok).
        error: the exception the call ended with (None when ok).
        attempts: attempts made (0 when answered from the idempotency cache or refused
            before running).
        elapsed_s: seconds from the call to its reply, on trio's clock.
        cached: True when answered by the idempotency cache without executing.
    """

    tool: str
    ok: bool
    value: Any = None
    error: BaseException | None = None
    attempts: int = 0
    elapsed_s: float = 0.0
    cached: bool = False

    def unwrap(self) -> Any:
        """The value, or raise the error."""
        if self.error is not None:
            raise self.error
        return self.value


class PendingCall:
    """A call sent with ``Supervisor.submit()``, whose result is awaited later.

    The call runs whether or not anyone awaits it; its overall deadline is enforced by
    the actor. Awaiting ``result()`` after the deadline gives the timeout error.
    """

    __slots__ = ("_counters", "_slot", "_started", "deadline", "timeout", "tool")

    def __init__(
        self,
        tool: str,
        slot: ReplySlot,
        counters: Counters,
        *,
        deadline: float,
        timeout: float | None,
        started: float,
    ) -> None:
        self.tool = tool
        self._slot = slot
        self._counters = counters
        self.deadline = deadline
        self.timeout = timeout
        self._started = started

    @property
    def done(self) -> bool:
        """True once the call has its reply."""
        return self._slot.done

    async def value(self) -> Any:
        """The tool's value, or raise the call's error (like ``execute()``)."""
        try:
            if math.isinf(self.deadline):
                return await self._slot.wait()
            with trio.move_on_at(self.deadline):
                return await self._slot.wait()
        except trio.Cancelled:
            if self._slot.abandoned_now():
                self._counters.cancelled += 1
            raise
        if self._slot.abandoned_now():
            self._counters.timeouts += 1
            self._counters.failures += 1
        raise ToolTimeoutError(self.tool, self.timeout or 0.0, scope="call")

    async def result(self) -> ToolResult:
        """A :class:`ToolResult`; never raises for the call's own failure."""
        try:
            value = await self.value()
        except Exception as exc:
            return self._make(ok=False, error=exc)
        return self._make(ok=True, value=value)

    def _make(
        self, *, ok: bool, value: Any = None, error: BaseException | None = None
    ) -> ToolResult:
        return ToolResult(
            tool=self.tool,
            ok=ok,
            value=value,
            error=error,
            attempts=self._slot.attempts,
            elapsed_s=trio.current_time() - self._started,
            cached=self._slot.cached,
        )


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
