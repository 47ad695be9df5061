"""A tool's routing entry and its restart loop (OTP one_for_one with restart intensity).

A crashed actor's held calls end with ``ActorCrashedError`` (rejected if they had not
started, failed if they had), its queued calls survive in the inbox, and a fresh
incarnation (with fresh breaker state) serves them. Past ``max_restarts`` crashes within
``within_s`` seconds the tool is marked failed: its calls get ``ToolUnavailableError``
and other tools run on. When the loop ends for good, every call still held or queued is
answered: nothing is left without a reply.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

import attrs
import trio

from ..actors.actor import ActorKilled, ToolActor
from ..actors.call import Call
from ..actors.pipeline import ToolRunner, is_cancellation, make_invoker
from ..actors.stats import Counters
from ..errors import ActorCrashedError, SupervisorClosedError, ToolUnavailableError
from ..events import ActorRestarted, ToolFailed
from ..spec import CompiledSpec
from .hub import EventHub

__all__ = ["Intensity", "Route", "supervise"]

log = logging.getLogger("toolvisor")


@attrs.frozen
class Intensity:
    """Restart intensity: more than ``max_restarts`` crashes within ``within_s`` fails a tool."""

    max_restarts: int
    within_s: float


class Route:
    """One routing-table entry: a tool's inbox, counters and current actor."""

    __slots__ = (
        "_done_event",
        "actor",
        "counters",
        "finished",
        "inbox_receive",
        "inbox_send",
        "invoke",
        "name",
        "reason",
        "restart_times",
        "restarted",
        "runner",
        "spec",
        "status",
    )

    def __init__(self, spec: CompiledSpec, fn: Callable[..., Any]) -> None:
        self.name = spec.tool_name
        self.spec = spec
        self.invoke = make_invoker(fn, spec.tool_name)
        self.counters = Counters()
        self.runner = ToolRunner(spec, self.invoke, self.counters)
        self.inbox_send, self.inbox_receive = trio.open_memory_channel[Call](spec.queue_size)
        self.actor: ToolActor | None = None
        self.status = "running"  # running | stopping | failed | closed
        self.reason = ""
        # Idle tools are the common case: a list (never more than max_restarts + 1 long)
        # is much smaller than a deque.
        self.restart_times: list[float] = []
        # Set on the next restart (or the end) of the actor: what every kill() waits for.
        self.restarted: trio.Event | None = None
        self.finished = False
        self._done_event: trio.Event | None = None

    def mark_finished(self) -> None:
        """The actor loop ended: wake whoever waits for it."""
        self.finished = True
        if self._done_event is not None:
            self._done_event.set()
        self._restarted()

    def _restarted(self) -> None:
        event, self.restarted = self.restarted, None
        if event is not None:
            event.set()

    async def wait_finished(self) -> None:
        """Wait until the actor loop ended."""
        if self.finished:
            await trio.lowlevel.checkpoint()
            return
        if self._done_event is None:
            self._done_event = trio.Event()
        await self._done_event.wait()

    async def kill(self, reason: BaseException) -> None:
        """Crash the current actor with ``reason``; return once it restarted or ended.

        Concurrent kills share one wake-up: each returns on the same restart.
        """
        if self.restarted is None:
            self.restarted = trio.Event()
        restarted = self.restarted
        if self.actor is not None:
            self.actor.kill(reason)
        await restarted.wait()

    def unavailable(self) -> Exception:
        """The error of a call this tool cannot take (closed, stopped or failed)."""
        if self.status == "closed":
            return SupervisorClosedError(f"the supervisor closed before tool {self.name!r} ran")
        return ToolUnavailableError(self.name, self.reason or self.status)


async def supervise(route: Route, intensity: Intensity, hub: EventHub, running: trio.Event) -> None:
    """The restart loop of one tool; returns when the tool is stopped, closed or failed.

    Sets ``running`` as it starts (``spawn()`` returns then).
    """
    running.set()
    del running  # this frame lives as long as the tool: it keeps nothing it does not use
    try:
        while True:
            actor = ToolActor(route.runner, route.inbox_receive)
            route.actor = actor
            error: BaseException | None = None
            try:
                await actor.run()
            except BaseException as exc:  # a crash: a bug in toolvisor or in a policy
                if is_cancellation(exc):
                    raise
                error = _single(exc)
            cause = actor.crash or error
            if cause is None or route.status == "stopping":
                return  # inbox closed and drained, or stop() ran out of grace
            if isinstance(cause, ActorKilled):
                log.warning("actor of tool %r killed: %s", route.name, cause)
            else:
                log.error("actor of tool %r crashed: %r", route.name, cause)
            _answer(actor, functools.partial(ActorCrashedError, route.name, cause))
            if not _may_restart(route, cause, intensity, hub):
                return
    finally:
        if route.status == "running":  # the loop was cut (the supervisor is going away)
            route.status = "closed"
        if route.actor is not None:
            _answer(route.actor, route.unavailable)
        _drain(route)
        route.mark_finished()


def _may_restart(route: Route, cause: BaseException, intensity: Intensity, hub: EventHub) -> bool:
    now = trio.current_time()
    counters = route.counters
    counters.restarts += 1
    times = route.restart_times
    times.append(now)
    times[:] = [t for t in times if t >= now - intensity.within_s]
    publish = hub.publisher
    if len(times) > intensity.max_restarts:
        route.status = "failed"
        route.reason = (
            f"its actor crashed {len(times)} times within {intensity.within_s:g} s "
            f"(last: {type(cause).__name__}: {cause}); respawn it once fixed"
        )
        route.inbox_send.close()
        if publish is not None:
            publish(
                ToolFailed(route.name, counters.restarts, repr(cause), now, type(cause).__name__)
            )
        return False
    try:
        route.spec.breaker.reset(route.name)  # a fresh incarnation, fresh breaker state
    except Exception:
        log.exception("resetting the breaker of tool %r failed", route.name)
    route.runner = ToolRunner(
        route.spec, route.invoke, counters, route.runner.publish, route.runner.observer
    )
    if publish is not None:
        publish(
            ActorRestarted(route.name, counters.restarts, repr(cause), now, type(cause).__name__)
        )
    route._restarted()
    return True


def _answer(actor: ToolActor, error: Callable[[], Exception]) -> None:
    """End every call ``actor`` holds with ``error()`` (it will never reply to them)."""
    held = list(actor.held)
    actor.held.clear()
    for call in held:
        call.fail_or_reject(error())


def _drain(route: Route) -> None:
    """Answer every call still queued in a closed tool's inbox (none of them ran)."""
    route.inbox_send.close()
    while True:
        try:
            call = route.inbox_receive.receive_nowait()
        except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
            return
        call.reject(route.unavailable())


def _single(exc: BaseException) -> BaseException:
    """The one error inside nested single-error exception groups, else ``exc``."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc
