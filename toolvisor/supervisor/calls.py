"""The call path in the caller's task: make a call, send it to its actor, wait for its end.

One send-and-wait for every kind of call: ``execute`` sends and waits, ``submit`` sends
and hands the waiting to a ``PendingCall``, and the idempotency cache sends its leader's
call the same way. Routing happens here, in the caller's task: the call goes straight
into the tool actor's inbox (one hop). A call the tool cannot take is ended here:
rejected while the breaker is open (``retry_after`` of the breaker's public protocol),
when the spec's ``rate_limit`` has no token for it in time (``RateLimitedError``; a call
whose token comes within ``max_wait_s`` and its deadline waits for it here, then goes in),
when the tool is not running, or when the inbox is full with ``overflow="reject"``; timed
out when it waits for room in the inbox past its deadline. A call ended here with an
error its spec's ``fallback`` replaces gets the fallback's value instead (the ``Call``
decides, at its one end): nothing here raises for it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Protocol

import trio

from ..actors.call import Call, raise_alone
from ..errors import CircuitOpenError, RateLimitedError, ToolOverloadedError
from ..events import RateLimited
from ..spec import ExecutionContext
from .restarts import Route
from .results import ToolResult

__all__ = ["CallSpec", "post", "refuse", "run_many", "send", "send_and_wait"]


def post(route: Route, call: Call) -> bool:
    """Put ``call`` into its tool's inbox now; False if it must wait for room.

    True also when the call ended here and its spec's fallback answered it (its reply is
    there to take). Otherwise a call ended here raises its error:
    ``CircuitOpenError`` (breaker open),
    ``RateLimitedError`` (no token in time; with one to wait for, False and
    ``call.admit_at`` set),
    ``ToolUnavailableError`` / ``SupervisorClosedError`` (the tool does not run),
    ``ToolOverloadedError`` (inbox full, ``overflow="reject"``).
    """
    sent = _post(route, call)
    if type(sent) is bool:
        return sent
    # The error's traceback keeps this frame: it lets go of the call (whose outcome is
    # the error) and of the error before raising it (see Call.result).
    box: list[BaseException] = [sent]
    del sent, call
    return raise_alone(box)


def _post(route: Route, call: Call) -> bool | Exception:
    """:func:`post`, returning the error of a call it ended instead of raising it."""
    retry_after = route.spec.retry_after
    if retry_after is not None:
        wait = retry_after(route.name)
        if wait is not None:
            return _refusal(call, CircuitOpenError(route.name, wait))
    refused: Exception
    if route.status == "running":
        limit = route.spec.rate_limit
        if limit is not None:
            now = trio.current_time()
            delay = limit.reserve(now, call.deadline)
            if delay:
                if delay > 0:
                    call.admit_at = now + delay
                    return False
                return _rate_limited(route, call, -delay)
        try:
            route.inbox_send.send_nowait(call)
        except trio.WouldBlock:
            spec = route.spec
            if spec.overflow != "reject":
                return False
            refused = ToolOverloadedError(
                route.name, max_concurrency=spec.max_concurrency, queue_size=spec.queue_size
            )
        except trio.ClosedResourceError:
            refused = route.unavailable()
        else:
            actor = route.actor
            if actor is not None:
                actor.wants_workers()  # timed-out attempts may wait for their cut
            return True
    else:
        refused = route.unavailable()
    return _refusal(call, refused)


def _refusal(call: Call, error: Exception) -> bool | Exception:
    """End ``call`` as rejected with ``error`` (the tool did not run); ``error`` to
    raise, or True if the spec's fallback answered the call instead."""
    call.reject(error)
    return True if call.replaced is not None else error


def refuse(call: Call, error: Exception) -> None:
    """End ``call`` as rejected with ``error`` (the tool did not run) and raise it, unless
    the spec's fallback answered the call instead."""
    refused = _refusal(call, error)
    if isinstance(refused, Exception):
        box: list[BaseException] = [refused]
        del refused, error, call  # see post()
        raise_alone(box)


def _rate_limited(route: Route, call: Call, retry_after: float) -> bool | Exception:
    """The rate limit has no token for ``call`` in time: refuse it (see :func:`_post`)."""
    call.counters.rate_limited += 1
    publish = route.runner.publish
    if publish is not None:
        publish(RateLimited(tool=route.name, retry_after=retry_after, at=trio.current_time()))
    return _refusal(call, RateLimitedError(route.name, retry_after))


async def send(route: Route, call: Call) -> None:
    """Put ``call`` into its tool's inbox, waiting for room up to its deadline.

    Raises (the call ended with it, unless its fallback answered it): what :func:`post`
    raises, and ``ToolTimeoutError`` when no room came before the deadline.
    """
    if not post(route, call):
        await _wait_for_room(route, call)


def send_and_wait(route: Route, call: Call) -> Awaitable[Any]:
    """Send ``call``; the awaitable of its end (its value, or its error raised).

    Not a coroutine of its own: in the common case (room in the inbox) the call is sent
    here and the caller awaits ``call.wait()`` directly, one frame less per call in
    flight (100,000 calls in flight hold 100,000 of them).
    """
    try:
        sent = post(route, call)
    except BaseException:
        del call  # the error's traceback keeps this frame (see post)
        raise
    if sent:
        return call.wait()
    return _send_then_wait(route, call)


async def _send_then_wait(route: Route, call: Call) -> Any:
    await _wait_for_room(route, call)
    return await call.wait()


async def _wait_for_room(route: Route, call: Call) -> None:
    """Wait for the call's rate-limit token, if any, then for room until its deadline."""
    try:
        with trio.move_on_at(call.deadline) as waiting:
            if call.admit_at:
                await trio.sleep_until(call.admit_at)
            await route.inbox_send.send(call)
    except (trio.ClosedResourceError, trio.BrokenResourceError):
        pass  # the tool stopped while the call waited: refused below
    except trio.Cancelled:
        call.cancel()
        raise
    else:
        if waiting.cancelled_caught:
            timed_out = call.time_out()
            assert timed_out is not None  # nobody else had the call
            if call.replaced is None:
                raise timed_out
        return
    refuse(call, route.unavailable())


CallSpec = tuple[str, Mapping[str, Any]] | tuple[str, Mapping[str, Any], ExecutionContext | None]
"""An ``execute_many`` entry: ``(tool, args)`` or ``(tool, args, ctx)``."""


class _Pending(Protocol):
    async def result(self) -> ToolResult: ...


Submit = Callable[..., Awaitable[_Pending]]
"""``submit(tool, args, ctx, *, timeout=...)`` of a Supervisor or a remote client."""


async def run_many(submit: Submit, calls: Iterable[Any], timeout: float | None) -> list[ToolResult]:
    """``execute_many``: every call submitted concurrently, one ToolResult each, in order.

    Never raises for a call's failure: a refused call, bad arguments or a malformed entry
    (a TypeError naming it) is a failed ToolResult, and the other calls run.
    """
    items = list(calls)
    results: list[ToolResult | None] = [None] * len(items)

    async def one(i: int, item: Any) -> None:
        started = trio.current_time()
        tool = "?"
        try:
            tool, args, ctx = _unpack(i, item)
            pending = await submit(tool, args, ctx, timeout=timeout)
            results[i] = await pending.result()
        except Exception as exc:
            results[i] = ToolResult(
                tool=tool, ok=False, error=exc, elapsed_s=trio.current_time() - started
            )

    async with trio.open_nursery() as nursery:
        for i, item in enumerate(items):
            nursery.start_soon(one, i, item)
    return [r for r in results if r is not None]


def _unpack(i: int, item: Any) -> tuple[str, Mapping[str, Any], ExecutionContext | None]:
    """An ``execute_many`` entry as ``(tool, args, ctx)``; TypeError naming a bad one."""
    if isinstance(item, tuple | list) and len(item) in (2, 3):
        ctx = item[2] if len(item) == 3 else None
        return item[0], item[1], ctx
    raise TypeError(
        f"execute_many() entry {i} must be (tool, args) or (tool, args, ctx), got {item!r:.200}"
    )
