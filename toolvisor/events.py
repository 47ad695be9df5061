"""Frozen event records: the hook for logging and metrics.

The supervisor publishes one of these for each state change and retry of its tools, to
every subscriber (``Supervisor.subscribe()``: a callback, or a trio receive channel from
``Supervisor.events()``). Times are on trio's clock (``trio.current_time()``).
"""

from __future__ import annotations

import attrs

__all__ = [
    "ActorRestarted",
    "BreakerTransition",
    "Event",
    "HedgeLaunched",
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
    """

    tool: str
    attempt: int
    delay: float
    error: str
    at: float


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
    """The tool's actor crashed and was restarted (``restarts`` counts them all)."""

    tool: str
    restarts: int
    error: str
    at: float


@attrs.frozen
class ToolFailed:
    """The tool's actor crashed more often than its restart intensity allows.

    From now on its calls get ``ToolUnavailableError``.
    """

    tool: str
    restarts: int
    error: str
    at: float


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
    | HedgeLaunched
)
