"""The one exception hierarchy of toolvisor.

Every error derives from :class:`ToolvisorError`, carries keyword fields that explain it
(the tool, the limit, the key) and a message that says what to do. Each docstring says
whose fault the error is: the caller's, the tool's, the deployment's or toolvisor's.

A *tool's own* failure is never wrapped: the caller gets the exception the tool raised
(with a note of how many attempts were made), so ``except PaymentDeclined:`` keeps working.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import attrs

__all__ = [
    "ActorCrashedError",
    "CircuitOpenError",
    "DeliveryFailedError",
    "DuplicateToolError",
    "FieldError",
    "IdempotencyConflictError",
    "IdempotencyStoreError",
    "PolicyNotFoundError",
    "RemoteToolError",
    "SupervisorClosedError",
    "ToolOverloadedError",
    "ToolTimeoutError",
    "ToolUnavailableError",
    "ToolvisorError",
    "UnknownToolError",
    "ValidationError",
]


class ToolvisorError(Exception):
    """Base class of every error toolvisor raises on its own account."""

    def __reduce__(self) -> tuple[Any, ...]:
        # The subclasses' __init__ take structured fields, not the message that ends up in
        # ``args``: rebuild from args + fields so pickle and copy.copy keep working.
        return (_rebuild, (type(self), self.args, self.__dict__))


def _rebuild(
    cls: type[ToolvisorError], args: tuple[Any, ...], state: dict[str, Any]
) -> ToolvisorError:
    err = cls.__new__(cls, *args)
    err.args = args
    err.__dict__.update(state)
    return err


@attrs.frozen
class FieldError:
    """One problem found in a call's arguments.

    Attributes:
        path: where the problem is, as a JSON-pointer-like string (``"/items/2/name"``;
            ``""`` is the arguments object itself).
        message: what is wrong there.
    """

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path or '<arguments>'}: {self.message}"


class ValidationError(ToolvisorError, ValueError):
    """The caller's arguments do not match the tool's parameters (the caller's fault).

    Raised before anything else happens: the tool is not run, nothing is retried and
    the circuit breaker does not count it. ``errors`` lists every problem at once.
    """

    def __init__(self, errors: Sequence[FieldError], *, tool: str | None = None) -> None:
        self.errors: tuple[FieldError, ...] = tuple(errors)
        self.tool = tool
        where = f"tool {tool!r}" if tool else "arguments"
        lines = "; ".join(str(e) for e in self.errors) or "invalid"
        super().__init__(
            f"invalid arguments for {where} ({len(self.errors)} problem"
            f"{'s' if len(self.errors) != 1 else ''}): {lines}"
        )


class CircuitOpenError(ToolvisorError):
    """The tool's circuit breaker is open, so the call failed fast (the dependency's fault).

    The tool was not run. ``retry_after`` is the number of seconds until the breaker lets
    a trial call through (0 when it is half-open and its trial slots are busy).
    """

    def __init__(self, tool: str, retry_after: float) -> None:
        self.tool = tool
        self.retry_after = max(0.0, float(retry_after))
        # The message is formatted when read: an open breaker refuses calls by the
        # thousand per second, and formatting it costs more than the rest of a refusal.
        super().__init__(tool, self.retry_after)

    def __str__(self) -> str:
        return (
            f"circuit breaker of tool {self.tool!r} is open: failing fast; "
            f"a trial call is allowed in {self.retry_after:.3g} s"
        )


class ToolTimeoutError(ToolvisorError, TimeoutError):
    """A deadline passed (usually the dependency's fault; sometimes a too short budget).

    Either one attempt ran past the spec's ``timeout_s`` (``scope == "attempt"``, which is
    retryable) or the whole call ran past the caller's ``timeout=`` (``scope == "call"``).
    """

    def __init__(self, tool: str, timeout_s: float, *, scope: str = "attempt") -> None:
        self.tool = tool
        self.timeout_s = timeout_s
        self.scope = scope
        what = "an attempt" if scope == "attempt" else "the call"
        hint = (
            "raise spec.timeout_s if the tool is just slow"
            if scope == "attempt"
            else "give the call a larger timeout= or make the tool faster"
        )
        super().__init__(f"tool {tool!r}: {what} exceeded {timeout_s:.3g} s ({hint})")


class ToolOverloadedError(ToolvisorError):
    """The tool's bulkhead is full and its spec says ``overflow="reject"`` (load's fault).

    Slow down, or raise the spec's ``max_concurrency`` / ``queue_size``.
    """

    def __init__(self, tool: str, *, max_concurrency: int, queue_size: int) -> None:
        self.tool = tool
        self.max_concurrency = max_concurrency
        self.queue_size = queue_size
        super().__init__(
            f"tool {tool!r} is overloaded: {max_concurrency} running and {queue_size} "
            "queued; retry later or raise max_concurrency/queue_size"
        )


class ToolUnavailableError(ToolvisorError):
    """The tool's actor crashed more often than its restart intensity allows, or was stopped.

    toolvisor's or a policy's fault, not the tool's: look at ``reason`` and the logged
    crash. Other tools keep running; respawn the tool once the cause is fixed.
    """

    def __init__(self, tool: str, reason: str) -> None:
        self.tool = tool
        self.reason = reason
        super().__init__(f"tool {tool!r} is unavailable: {reason}")


class ActorCrashedError(ToolvisorError):
    """The tool's actor crashed while it held this call (a bug in toolvisor or a policy).

    The tool may or may not have run: treat it like a lost connection. ``cause`` is the
    crash; the actor restarts and serves the calls still queued.
    """

    def __init__(self, tool: str, cause: BaseException | None = None) -> None:
        self.tool = tool
        self.cause = cause
        detail = f": {type(cause).__name__}: {cause}" if cause is not None else ""
        super().__init__(f"actor of tool {tool!r} crashed while holding this call{detail}")


class IdempotencyConflictError(ToolvisorError):
    """The idempotency key was used before with different arguments (the caller's fault).

    Use a new key for a new operation, or send the same arguments again.
    """

    def __init__(self, key: str, *, tool: str | None = None) -> None:
        self.key = key
        self.tool = tool
        super().__init__(
            f"idempotency key {key!r} was already used with different arguments; "
            "send the original arguments or use a new key"
        )


class IdempotencyStoreError(ToolvisorError):
    """The idempotency store failed or holds data toolvisor cannot read (deployment's fault).

    The call was *not* executed: without the store toolvisor cannot prove it would not
    execute twice. Check the store (``store``) and retry the call.
    """

    def __init__(self, store: str, detail: str) -> None:
        self.store = store
        self.detail = detail
        super().__init__(f"idempotency store {store} failed: {detail}; the call was not executed")


class UnknownToolError(ToolvisorError, LookupError):
    """No tool of that name was spawned on this supervisor (the caller's fault)."""

    def __init__(self, name: str, known: Iterable[str]) -> None:
        self.name = name
        self.known = tuple(sorted(known))
        listing = ", ".join(repr(k) for k in self.known) or "none"
        super().__init__(f"unknown tool {name!r}; known tools: {listing}")


class DuplicateToolError(ToolvisorError):
    """A tool of that name is already spawned on this supervisor (the caller's fault).

    Use ``reconfigure()`` to change its policies, or ``stop()`` it first.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(
            f"tool {name!r} is already spawned; stop() it first or reconfigure() its policies"
        )


class SupervisorClosedError(ToolvisorError):
    """The supervisor is closing or closed, so it takes no new calls (the caller's fault)."""

    def __init__(self, detail: str = "the supervisor is closed") -> None:
        super().__init__(f"{detail}; open a new supervisor to run more calls")


class PolicyNotFoundError(ToolvisorError, LookupError):
    """No policy is registered under that name in the factory (the caller's fault)."""

    def __init__(self, name: str, known: Iterable[str]) -> None:
        self.name = name
        self.known = tuple(sorted(known))
        super().__init__(f"no policy named {name!r}; available: {', '.join(self.known) or 'none'}")


class DeliveryFailedError(ToolvisorError):
    """A remote call was delivered to workers ``deliveries`` times and never answered.

    The deployment's fault, or the call's: every worker that took it died or was cut off
    before replying (a call that kills its worker is a *poison message*). The call was
    moved to the tool's dead-letter stream and is not tried again; look there, and at the
    workers' logs, before sending it anew.
    """

    def __init__(self, tool: str, deliveries: int) -> None:
        self.tool = tool
        self.deliveries = deliveries
        super().__init__(
            f"call to tool {tool!r} was delivered {deliveries} time"
            f"{'s' if deliveries != 1 else ''} and no worker answered it; it was moved to the "
            "dead-letter stream (check the workers' logs before sending it again)"
        )


class RemoteToolError(ToolvisorError):
    """A remote tool raised an exception of its own (the tool's fault, as locally).

    Exceptions do not cross processes as objects (nothing is pickled): ``type_name`` is the
    qualified name of the tool's exception class (``"ValueError"``,
    ``"myapp.payments.PaymentDeclined"``) and ``message`` its text. Match on
    ``type_name`` where a local caller would have caught the class.
    """

    def __init__(self, type_name: str, message: str, *, tool: str | None = None) -> None:
        self.type_name = type_name
        self.message = message
        self.tool = tool
        where = f"tool {tool!r} raised " if tool else ""
        super().__init__(f"{where}{type_name}: {message}")
