"""What the supervisor hands back for a call: ToolResult and PendingCall."""

from __future__ import annotations

from typing import Any

import attrs
import outcome
import trio

from ..actors.call import Call

__all__ = ["PendingCall", "Relay", "ToolResult"]


@attrs.frozen
class ToolResult:
    """The outcome of one call, without raising (what an agent loop feeds back).

    Attributes:
        tool: the tool called.
        ok: True when the tool returned a value (or the spec's fallback answered the
            call instead of its error: then ``fallback`` is True).
        value: the tool's value (None when not ok).
        error: the exception the call ended with (None when ok).
        attempts: attempts that ran the tool (0 when answered from the idempotency cache
            or refused before running; an attempt the breaker refused did not run).
        elapsed_s: seconds from the call to its reply, on trio's clock.
        cached: True when answered by the idempotency cache without executing.
        fallback: True when the spec's fallback answered the call instead of its error
            (``ok`` is True and ``value`` is the fallback's; ``error`` is None).

    For an LLM agent loop, :attr:`error_info` says what the model needs to know about
    the error (whether trying again can help, and when) and :meth:`to_text` is the text
    the model reads; both are those of :mod:`toolvisor.llm` (``error_info``,
    ``result_text``).
    """

    tool: str
    ok: bool
    value: Any = None
    error: BaseException | None = None
    attempts: int = 0
    elapsed_s: float = 0.0
    cached: bool = False
    fallback: bool = False

    @classmethod
    def of(cls, call: Call, *, value: Any = None, error: BaseException | None = None) -> ToolResult:
        """The result of ``call``, which ended with ``value`` or ``error``."""
        return cls(
            tool=call.tool,
            ok=error is None,
            value=value,
            error=error,
            attempts=call.attempts,
            elapsed_s=trio.current_time() - call.started,
            cached=call.cached,
            fallback=call.replaced is not None,
        )

    @property
    def error_info(self) -> dict[str, Any] | None:
        """``{"type", "message", "retryable", "retry_after"}`` of the error, or None when ok.

        ``retryable`` says whether calling again now, with the same arguments, can help;
        ``retry_after`` the seconds to wait first when only waiting helps (an open circuit
        breaker, a rate limit). See :func:`toolvisor.llm.error_info`.
        """
        from ..llm import error_info

        return error_info(self.error)

    def to_text(self) -> str:
        """The outcome as the text a model reads (:func:`toolvisor.llm.result_text`).

        A value as it is if a string, else as JSON; an error as its type, its message and
        what to do next (fix the arguments, wait, try again or not).
        """
        from ..llm import result_text

        return result_text(self)

    def unwrap(self) -> Any:
        """The value, or raise the error."""
        if self.error is not None:
            raise self.error
        return self.value


class PendingCall:
    """A call sent with ``Supervisor.submit()``, whose result is awaited later.

    The call runs whether or not anyone awaits it, within its deadline. Awaiting it after
    its deadline gives the call's ``ToolTimeoutError``; a task awaiting it that is
    cancelled by its own scope cancels the call (as a cancelled ``execute()`` would).
    """

    __slots__ = ("_call", "_relay", "tool")

    def __init__(self, call: Call, relay: Relay | None = None) -> None:
        self.tool = call.tool
        self._call = call
        self._relay = relay

    @property
    def deadline(self) -> float:
        """The call's overall deadline on trio's clock (``inf`` for none)."""
        return self._call.deadline

    @property
    def timeout(self) -> float | None:
        """The call's ``timeout=`` in seconds (None for none)."""
        return self._call.timeout

    @property
    def done(self) -> bool:
        """True once the call has its answer."""
        if self._relay is not None:
            return self._relay.result is not None
        return self._call.done

    async def value(self) -> Any:
        """The tool's value, or raise the call's error (like ``execute()``)."""
        if self._relay is not None:
            return await self._relay.wait()
        return await self._call.wait()

    async def result(self) -> ToolResult:
        """A :class:`ToolResult`; never raises for the call's own failure."""
        try:
            value = await self.value()
        except Exception as exc:
            return ToolResult.of(self._call, error=exc)
        return ToolResult.of(self._call, value=value)


class Relay:
    """The answer of a call that runs in a task of its own (an idempotent ``submit()``).

    The task runs the call in ``scope`` and sets ``result`` when it is over; an awaiting
    task cancelled by its own scope cancels that scope, and so the call.
    """

    __slots__ = ("_done", "result", "scope")

    def __init__(self) -> None:
        self.scope = trio.CancelScope()
        self.result: outcome.Outcome[Any] | None = None
        self._done = trio.Event()

    def set(self, result: outcome.Outcome[Any]) -> None:
        """The call is over: hand its outcome to whoever awaits it."""
        if self.result is None:
            self.result = result
            self._done.set()

    async def wait(self) -> Any:
        """The outcome's value, or its error raised."""
        try:
            await self._done.wait()
        except trio.Cancelled:
            self.scope.cancel()
            raise
        result = self.result
        if isinstance(result, outcome.Value):
            return result.value
        assert isinstance(result, outcome.Error)
        raise result.error
