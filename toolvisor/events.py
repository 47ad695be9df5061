"""Frozen event records: the hook for logging and metrics.

The supervisor publishes one of these for each state change and retry of its tools, to
every subscriber (``Supervisor.subscribe()``: a callback, or a trio receive channel from
``Supervisor.events()``). Times are on trio's clock (``trio.current_time()``).
"""

from __future__ import annotations

import attrs

__all__ = [
    "EVENT_NAMES",
    "ActorRestarted",
    "BreakerTransition",
    "BudgetExhausted",
    "CallFailed",
    "ConcurrencyLimitChanged",
    "Event",
    "FallbackUsed",
    "HedgeLaunched",
    "RateLimited",
    "ResultNotStored",
    "RetryScheduled",
    "ToolFailed",
]


@attrs.frozen
class RetryScheduled:
    """An attempt failed and the retry policy scheduled another one.

    Attributes:
        tool: the tool's name.
        attempt: the 1-based number of the attempt that failed.
        delay: seconds the actor waits before the next attempt.
        error: ``repr()`` of the exception that made the attempt fail.
        at: trio time of the failure.
        error_type: that exception's class name (e.g. ``"ConnectionError"``).
    """

    tool: str
    attempt: int
    delay: float
    error: str
    at: float
    error_type: str = ""


@attrs.frozen
class BreakerTransition:
    """The tool's circuit breaker moved from one state to another.

    ``old`` and ``new`` are ``CircuitState`` values (``"closed"``, ``"open"``,
    ``"half_open"``).
    """

    tool: str
    old: str
    new: str
    at: float


@attrs.frozen
class ActorRestarted:
    """The tool's actor crashed and was restarted (``restarts`` counts them all).

    ``error`` is ``repr()`` of the crash's cause, ``error_type`` its class name.
    """

    tool: str
    restarts: int
    error: str
    at: float
    error_type: str = ""


@attrs.frozen
class ToolFailed:
    """The tool was given up: its actor crashed more often than its restart intensity
    allows (not a failed call: see :class:`CallFailed` for those).

    From now on its calls get ``ToolUnavailableError``. ``error`` is ``repr()`` of the
    last crash's cause, ``error_type`` its class name.
    """

    tool: str
    restarts: int
    error: str
    at: float
    error_type: str = ""


@attrs.frozen
class ResultNotStored:
    """A successful result could not be persisted by the idempotency store.

    The caller got its result and the key stays marked done (it is not executed again
    within its TTL), but later duplicates get ``IdempotencyStoreError`` explaining why
    instead of the value. ``reason`` says what failed (e.g. not JSON-serialisable).
    """

    tool: str
    key: str
    reason: str
    at: float


@attrs.frozen
class CallFailed:
    """A call ended without the tool's value: it failed or was rejected.

    Published once per such call, at its end, whatever ended it (the tool's last
    failure, a timeout, a crash, an open breaker, a full bulkhead, a stopped tool...).
    Cancelled calls are not failures and publish nothing.

    Attributes:
        tool: the tool's name.
        outcome: ``"failed"`` (the call ran, or was refused for a reason of its own) or
            ``"rejected"`` (no attempt ran), as ``ToolStats`` counts it.
        error_type: the class name of the error the caller got (e.g.
            ``"CircuitOpenError"``, ``"PaymentDeclined"``).
        error: ``repr()`` of that error.
        attempts: attempts that ran the tool.
        at: trio time of the call's end.
    """

    tool: str
    outcome: str
    error_type: str
    error: str
    attempts: int
    at: float


@attrs.frozen
class BudgetExhausted:
    """The tool's retry budget refused a retry: the call ended with the tool's last error.

    One per refused retry (``ToolStats.budget_exhausted`` counts them).
    """

    tool: str
    at: float


@attrs.frozen
class RateLimited:
    """The tool's rate limit had no token in time: the call was refused without running.

    ``retry_after`` is the seconds until its token would have come (as on the
    ``RateLimitedError``); ``ToolStats.rate_limited`` counts these calls.
    """

    tool: str
    retry_after: float
    at: float


@attrs.frozen
class FallbackUsed:
    """The tool's fallback answered a call instead of its error.

    ``error`` is ``repr()`` of the error replaced; ``ToolStats.fallbacks`` counts these
    calls.
    """

    tool: str
    error: str
    at: float


@attrs.frozen
class ConcurrencyLimitChanged:
    """The tool's adaptive concurrency limit moved (its ``spec.max_concurrency`` is an
    ``AdaptiveConcurrency``), after the sample of a call that ended.

    ``old`` and ``new`` are the limits before and after (``ToolStats.concurrency_limit``
    reads the current one). With one instance shared by several specs, the event names the
    tool whose call moved the limit.
    """

    tool: str
    old: int
    new: int
    at: float


@attrs.frozen
class HedgeLaunched:
    """A hedged call started another attempt beside (or after) its first (``spec.hedging``).

    Attributes:
        tool: the tool's name.
        attempt: the 1-based number of the attempt that started (``ctx.attempt``).
        at: trio time it started.
    """

    tool: str
    attempt: int
    at: float


Event = (
    RetryScheduled
    | BreakerTransition
    | ActorRestarted
    | ToolFailed
    | ResultNotStored
    | CallFailed
    | BudgetExhausted
    | RateLimited
    | FallbackUsed
    | ConcurrencyLimitChanged
    | HedgeLaunched
)

#: Each event's name in snake case: telemetry's ``event.name`` attribute and the
#: ``event`` field of :func:`toolvisor.log_events`'s records.
EVENT_NAMES: dict[type, str] = {
    RetryScheduled: "retry_scheduled",
    BreakerTransition: "breaker_transition",
    ActorRestarted: "actor_restarted",
    ToolFailed: "tool_failed",
    ResultNotStored: "result_not_stored",
    CallFailed: "call_failed",
    BudgetExhausted: "budget_exhausted",
    RateLimited: "rate_limited",
    FallbackUsed: "fallback_used",
    ConcurrencyLimitChanged: "concurrency_limit_changed",
    HedgeLaunched: "hedge_launched",
}
