"""Events as structured ``logging`` records: one record per event, its fields as ``extra``.

``log_events(sup)`` subscribes to a supervisor's events and turns each one into a single
``logging`` record whose fields are attributes of the record (``record.tool``,
``record.attempt``, ``record.wait_s``, ``record.error_type``...), so JSON formatters and
structlog's stdlib integration get them without parsing the message. The message itself
is a readable sentence for plain text logs.

Events are built only while someone subscribes, so nothing is logged (and nothing costs)
until ``log_events`` is called; the function it returns stops it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol

from .events import (
    EVENT_NAMES,
    ActorRestarted,
    BreakerTransition,
    BudgetExhausted,
    CallFailed,
    ConcurrencyLimitChanged,
    Event,
    FallbackUsed,
    HedgeLaunched,
    RateLimited,
    ResultNotStored,
    RetryScheduled,
    ToolFailed,
)

__all__ = ["event_record", "log_events"]


class _Subscribable(Protocol):
    def subscribe(self, callback: Callable[[Event], None]) -> Callable[[], None]: ...


def event_record(event: Event) -> tuple[int, str, dict[str, Any]]:
    """The level, message and ``extra`` fields of ``event``'s log record.

    Every record has ``event`` (the event's name in snake case, as the telemetry's
    ``event.name``), ``tool`` and ``at`` (trio time); the rest depends on the event:

    * ``retry_scheduled`` (INFO): ``attempt`` (the one that failed), ``wait_s``,
      ``error_type``, ``error``;
    * ``breaker_transition`` (WARNING when it opens, else INFO): ``old_state``,
      ``new_state``;
    * ``actor_restarted`` (WARNING) and ``tool_failed`` (ERROR, the tool is given up):
      ``restarts``, ``error_type``, ``error``;
    * ``call_failed`` (INFO): ``outcome`` (``failed`` or ``rejected``), ``attempts``,
      ``error_type``, ``error``;
    * ``result_not_stored`` (ERROR): ``key``, ``reason``;
    * ``budget_exhausted`` (WARNING: a retry was skipped);
    * ``rate_limited`` (INFO): ``retry_after_s``;
    * ``fallback_used`` (INFO): ``error`` (the error replaced);
    * ``hedge_launched`` (INFO): ``attempt``;
    * ``concurrency_limit_changed`` (INFO): ``old_limit``, ``new_limit``.
    """
    fields: dict[str, Any] = {
        "event": EVENT_NAMES.get(type(event), type(event).__name__),
        "tool": event.tool,
        "at": event.at,
    }
    if isinstance(event, RetryScheduled):
        fields.update(
            attempt=event.attempt,
            wait_s=event.delay,
            error_type=event.error_type,
            error=event.error,
        )
        message = (
            f"tool {event.tool!r}: attempt {event.attempt} failed ({event.error_type or 'error'});"
            f" retrying in {event.delay:g} s"
        )
        return logging.INFO, message, fields
    if isinstance(event, BreakerTransition):
        fields.update(old_state=event.old, new_state=event.new)
        level = logging.WARNING if event.new == "open" else logging.INFO
        return level, f"tool {event.tool!r}: breaker {event.old} -> {event.new}", fields
    if isinstance(event, ActorRestarted | ToolFailed):
        fields.update(
            restarts=event.restarts,
            error_type=event.error_type,
            error=event.error,
        )
        if isinstance(event, ActorRestarted):
            message = f"tool {event.tool!r}: actor restarted (restart {event.restarts})"
            return logging.WARNING, message, fields
        message = f"tool {event.tool!r}: given up after {event.restarts} restarts"
        return logging.ERROR, message, fields
    if isinstance(event, CallFailed):
        fields.update(
            outcome=event.outcome,
            attempts=event.attempts,
            error_type=event.error_type,
            error=event.error,
        )
        message = (
            f"tool {event.tool!r}: call {event.outcome} ({event.error_type}) "
            f"after {event.attempts} attempt{'' if event.attempts == 1 else 's'}"
        )
        return logging.INFO, message, fields
    if isinstance(event, ResultNotStored):
        fields.update(key=event.key, reason=event.reason)
        return logging.ERROR, f"tool {event.tool!r}: result not stored: {event.reason}", fields
    if isinstance(event, BudgetExhausted):
        message = f"tool {event.tool!r}: retry budget exhausted; the retry was skipped"
        return logging.WARNING, message, fields
    if isinstance(event, RateLimited):
        fields.update(retry_after_s=event.retry_after)
        message = f"tool {event.tool!r}: rate limited (a token in {event.retry_after:.3g} s)"
        return logging.INFO, message, fields
    if isinstance(event, FallbackUsed):
        fields.update(error=event.error)
        return logging.INFO, f"tool {event.tool!r}: fallback answered {event.error}", fields
    if isinstance(event, HedgeLaunched):
        fields.update(attempt=event.attempt)
        return logging.INFO, f"tool {event.tool!r}: hedged attempt {event.attempt}", fields
    if isinstance(event, ConcurrencyLimitChanged):
        fields.update(old_limit=event.old, new_limit=event.new)
        message = f"tool {event.tool!r}: concurrency limit {event.old} -> {event.new}"
        return logging.INFO, message, fields
    return logging.INFO, f"tool {event.tool!r}: {type(event).__name__}", fields


def log_events(
    sup: _Subscribable,
    *,
    logger: logging.Logger | str = "toolvisor.events",
    level: int | None = None,
) -> Callable[[], None]:
    """Log every event of ``sup`` as one structured record (see :func:`event_record`).

    Args:
        sup: a ``Supervisor`` (or anything with its ``subscribe``).
        logger: the logger, or its name.
        level: one level for every record (None: each event's own, as listed in
            :func:`event_record`).

    Returns:
        A function that stops the logging (calling it twice is harmless).

    Raises:
        TypeError: ``logger`` is neither a Logger nor a name, or ``level`` not an int.
    """
    if isinstance(logger, str):
        target = logging.getLogger(logger)
    elif isinstance(logger, logging.Logger):
        target = logger
    else:
        raise TypeError(f"logger must be a logging.Logger or its name, got {logger!r}")
    if level is not None and (not isinstance(level, int) or isinstance(level, bool)):
        raise TypeError(f"level must be a logging level (an int) or None, got {level!r}")

    def log(event: Event) -> None:
        own, message, fields = event_record(event)
        chosen = own if level is None else level
        if target.isEnabledFor(chosen):
            target.log(chosen, message, extra=fields)

    return sup.subscribe(log)
