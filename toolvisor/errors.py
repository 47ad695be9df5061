"""The one exception hierarchy of toolvisor.

Every error toolvisor raises derives from :class:`ToolvisorError`, carries keyword fields
that explain it (the tool, the limit, the key) and a message that says what to do. Each
docstring says whose fault the error is: the caller's, the tool's, the deployment's or
toolvisor's.

:class:`RateLimitError` is the exception for *tools* to raise (or subclass) when their back
end says "too many requests, come back in N seconds": the built-in retry policies wait at
least its ``retry_after``, and a breaker given ``exclude=[RateLimitError]`` does not count it.

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
    "IdempotencyOutcomeUnknownError",
    "IdempotencyStoreError",
    "PolicyNotFoundError",
    "RateLimitError",
    "RateLimitedError",
    "RemoteToolError",
    "SupervisorClosedError",
    "ToolOverloadedError",
    "ToolTimeoutError",
    "ToolUnavailableError",
    "ToolvisorError",
    "UnknownToolError",
    "ValidationError",
]


#: How many characters of a value a message shows; a message stays a few hundred
#: characters long whatever the caller sent (a 10 MB string included).
_SHOWN = 80
#: The longest a ValidationError's message gets: its first problems, each path and
#: message cut separately (a path never eats the room of the message that explains it).
_MAX_PROBLEMS_SHOWN = 10
_MAX_PATH_CHARS = 60
MAX_PROBLEM_CHARS = 220


def shown(value: object, limit: int = _SHOWN) -> str:
    """``repr(value)`` cut to about ``limit`` characters, with its length when cut.

    Never raises: a value whose ``repr()`` fails is shown by its type.
    """
    if isinstance(value, str | bytes) and len(value) > limit:
        unit = "characters" if isinstance(value, str) else "bytes"
        return f"{value[:limit]!r}... ({len(value):,} {unit})"
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 4 * limit:
        return f"<an integer of {value.bit_length():,} bits>"
    try:
        text = repr(value)
    except Exception as exc:  # a hostile __repr__ must not replace the error being raised
        return f"<{type(value).__name__} whose repr() raised {type(exc).__name__}>"
    return cut(text, limit)


def cut(text: str, limit: int) -> str:
    """``text`` if it has at most ``limit`` characters, else its start and end around a
    note of its whole length, in ``limit`` characters at most (so cutting again changes
    nothing). The end is kept because it usually says what is wrong."""
    if len(text) <= limit:
        return text
    note = f"...({len(text):,} characters in all)..."
    keep = max(limit - len(note), 2)
    head = (keep + 1) // 2
    return f"{text[:head]}{note}{text[len(text) - (keep - head) :]}"


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


class RateLimitError(Exception):
    """The tool's back end refused the call for now and said when to come back.

    Raised by tools, not by toolvisor (the back end's answer, typically HTTP 429): raise
    it, or derive your client's rate-limit exception from it. ``retry_after`` is in seconds
    (None when the back end did not say).

    What toolvisor does with it:

    * the built-in retry policies wait at least ``retry_after`` before the next attempt
      (they honour any exception with a finite numeric ``retry_after`` attribute; this
      class is the documented way to have one);
    * a circuit breaker counts it as a failure unless told otherwise: pass
      ``exclude=[RateLimitError]`` (a 429 means "too fast", not "unhealthy"). pybreaker
      counts an excluded error as a success.

    Example::

        raise RateLimitError("429 Too Many Requests", retry_after=2.5)
    """

    def __init__(self, message: str = "rate limited", *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.args[0]!r}, retry_after={self.retry_after!r})"


class ValidationError(ToolvisorError, ValueError):
    """The caller's arguments do not match the tool's parameters (the caller's fault).

    Raised before anything else happens: the tool is not run, nothing is retried and
    the circuit breaker does not count it. ``errors`` lists every problem at once.

    The message stays under 4 KB whatever the arguments: it shows the first 10
    problems, each path cut to 60 characters and each message to 220 (values are shown
    cut, with their length); ``errors`` keeps every problem's path and message.
    """

    def __init__(self, errors: Sequence[FieldError], *, tool: str | None = None) -> None:
        self.errors: tuple[FieldError, ...] = tuple(errors)
        self.tool = tool
        where = f"tool {shown(tool)}" if tool else "arguments"
        count = len(self.errors)
        lines = "; ".join(
            f"{cut(e.path or '<arguments>', _MAX_PATH_CHARS)}: {cut(e.message, MAX_PROBLEM_CHARS)}"
            for e in self.errors[:_MAX_PROBLEMS_SHOWN]
        )
        if count > _MAX_PROBLEMS_SHOWN:
            lines += f"; and {count - _MAX_PROBLEMS_SHOWN} more (see .errors)"
        super().__init__(
            f"invalid arguments for {where} ({count} problem"
            f"{'s' if count != 1 else ''}): {lines or 'invalid'}"
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


class RateLimitedError(ToolvisorError):
    """The tool's ``rate_limit`` had no token for this call in time (the caller's load).

    The tool was not run (the call counts as rejected). ``retry_after`` is the number of
    seconds until a token would have come for it: more than the limit's ``max_wait_s``,
    or past the call's deadline.
    """

    def __init__(self, tool: str, retry_after: float) -> None:
        self.tool = tool
        self.retry_after = max(0.0, float(retry_after))
        super().__init__(tool, self.retry_after)

    def __str__(self) -> str:
        return (
            f"tool {self.tool!r} is rate limited: no token for this call before "
            f"{self.retry_after:.3g} s; slow down or raise the tool's rate_limit"
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
        super().__init__(f"tool {tool!r} is unavailable: {cut(reason, 1000)}")


class ActorCrashedError(ToolvisorError):
    """The tool's actor crashed while it held this call (a bug in toolvisor or a policy).

    The tool may or may not have run: treat it like a lost connection. ``cause`` is the
    crash; the actor restarts and serves the calls still queued.
    """

    def __init__(self, tool: str, cause: BaseException | None = None) -> None:
        self.tool = tool
        self.cause = cause
        detail = f": {type(cause).__name__}: {cut(str(cause), 500)}" if cause is not None else ""
        super().__init__(f"actor of tool {tool!r} crashed while holding this call{detail}")


class IdempotencyConflictError(ToolvisorError):
    """The idempotency key was used before with different arguments (the caller's fault).

    Use a new key for a new operation, or send the same arguments again.
    """

    def __init__(self, key: str, *, tool: str | None = None) -> None:
        self.key = key
        self.tool = tool
        super().__init__(
            f"idempotency key {shown(key)} was already used with different arguments; "
            "send the original arguments or use a new key"
        )


class IdempotencyOutcomeUnknownError(ToolvisorError):
    """An earlier execution of this key started and was cut: it may have had its effect.

    Nobody's fault yet: an attempt timed out, its caller gave up, or its actor crashed,
    after the tool started (a payment may have been charged). The key does not run again
    until you have checked what happened downstream and called
    ``await sup.forget(tool, key)`` (or its TTL ends). ``key`` is the call's key as the
    tool saw it in ``ctx.idempotency_key``.
    """

    def __init__(self, key: str, *, tool: str | None = None) -> None:
        self.key = key
        self.tool = tool
        where = f" of tool {tool!r}" if tool is not None else ""
        super().__init__(
            f"the outcome of idempotency key {key!r}{where} is unknown: an execution "
            "started and was cut; check the effect downstream, then forget the key "
            "(Supervisor.forget) to let it run again"
        )


class IdempotencyStoreError(ToolvisorError):
    """The idempotency store failed or holds data toolvisor cannot read (deployment's fault).

    ``tool_ran`` says what happened to the call: ``False`` (the default) when the tool
    was *not* run, because without the store toolvisor cannot prove it would not run
    twice; ``True`` when it ran and the store failed afterwards (recording its outcome);
    ``None`` when that cannot be known. Check the store (``store``); retry the call only
    when the tool did not run, or when running it again is harmless.
    """

    def __init__(self, store: str, detail: str, *, tool_ran: bool | None = False) -> None:
        self.store = store
        self.detail = detail
        self.tool_ran = tool_ran
        if tool_ran is None:
            ending = "whether the tool ran for this call is unknown"
        elif tool_ran:
            ending = "the tool ran for this call"
        else:
            ending = "the call was not executed"
        super().__init__(f"idempotency store {store} failed: {cut(detail, 2000)}; {ending}")


class UnknownToolError(ToolvisorError, LookupError):
    """No tool of that name was spawned on this supervisor (the caller's fault)."""

    def __init__(self, name: str, known: Iterable[str]) -> None:
        self.name = name
        self.known = tuple(sorted(known))
        listing = cut(", ".join(repr(k) for k in self.known), 1000) or "none"
        super().__init__(f"unknown tool {shown(name)}; known tools: {listing}")


class DuplicateToolError(ToolvisorError):
    """A tool of that name is already spawned on this supervisor (the caller's fault).

    Use ``reconfigure()`` to change its policies, or ``stop()`` it first.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(
            f"tool {shown(name)} is already spawned; stop() it first or reconfigure() its policies"
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
        available = cut(", ".join(self.known), 1000) or "none"
        super().__init__(f"no policy named {shown(name)}; available: {available}")


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
