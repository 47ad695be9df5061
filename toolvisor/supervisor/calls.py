"""The call path in the caller's task: make a call, send it to its actor, wait for its end.

One send-and-wait for every kind of call: ``execute`` sends and waits, ``submit`` sends
and hands the waiting to a ``PendingCall``, and the idempotency cache sends its leader's
call the same way. Routing happens here, in the caller's task: the call goes straight
into the tool actor's inbox (one hop). A call the tool cannot take is ended here:
rejected while the breaker is open (``retry_after`` of the breaker's public protocol),
when the tool is not running, or when the inbox is full with ``overflow="reject"``; timed
out when it waits for room in the inbox past its deadline.
"""

from __future__ import annotations

from typing import Any

import trio

from ..actors.call import Call
from ..errors import CircuitOpenError, ToolOverloadedError
from .restarts import Route

__all__ = ["send", "send_and_wait"]


async def send(route: Route, call: Call) -> None:
    """Put ``call`` into its tool's inbox (backpressure up to its deadline).

    Raises (the call ended with it): ``CircuitOpenError`` (breaker open),
    ``ToolUnavailableError`` / ``SupervisorClosedError`` (the tool does not run),
    ``ToolOverloadedError`` (inbox full, ``overflow="reject"``), ``ToolTimeoutError``
    (no room before the deadline).
    """
    retry_after = route.spec.retry_after
    if retry_after is not None:
        wait = retry_after(route.name)
        if wait is not None:
            refused = CircuitOpenError(route.name, wait)
            call.reject(refused)
            raise refused
    if route.status == "running":
        try:
            route.inbox_send.send_nowait(call)
        except trio.WouldBlock:
            full = True
        except trio.ClosedResourceError:
            full = False
        else:
            return
        if full and await _send_waiting(route, call):
            return
    unavailable = route.unavailable()
    call.reject(unavailable)
    raise unavailable


async def _send_waiting(route: Route, call: Call) -> bool:
    """The inbox is full: reject, or wait for room until the call's deadline.

    Returns True once sent, False when the inbox closed meanwhile.
    """
    spec = route.spec
    if spec.overflow == "reject":
        overloaded = ToolOverloadedError(
            route.name, max_concurrency=spec.max_concurrency, queue_size=spec.queue_size
        )
        call.reject(overloaded)
        raise overloaded
    try:
        with trio.move_on_at(call.deadline) as waiting:
            await route.inbox_send.send(call)
    except (trio.ClosedResourceError, trio.BrokenResourceError):
        return False
    except trio.Cancelled:
        call.cancel()
        raise
    if waiting.cancelled_caught:
        timed_out = call.time_out()
        assert timed_out is not None  # nobody else had the call
        raise timed_out
    return True


async def send_and_wait(route: Route, call: Call) -> Any:
    """Send ``call`` and wait for its end; its value, or its error raised."""
    await send(route, call)
    return await call.wait()
