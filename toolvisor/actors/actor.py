"""The tool actor: a pool of worker tasks reading one inbox.

One incarnation of a tool's actor. Its workers receive :class:`Execute` messages straight
from the tool's inbox (a trio memory channel: one hop from the caller), run them through
the tool's :class:`ToolRunner` and reply. The pool starts with one worker and grows on
demand up to ``max_concurrency``, so an idle actor costs one task, and never more than
``max_concurrency`` attempts of the tool run at once (the bulkhead).

The actor only ever *replies*; crashing and restarting are the supervisor's business. The
calls it holds are tracked in ``held`` so that a crash can answer each of them.
"""

from __future__ import annotations

from typing import Any

import outcome
import trio

from ..errors import ToolTimeoutError
from .messages import Execute, ReplySlot, SlotState
from .pipeline import ToolRunner

__all__ = ["ActorKilled", "ToolActor"]


class ActorKilled(Exception):  # noqa: N818 - it is a reason, not an error callers see
    """The reason recorded when ``Supervisor.kill()`` crashes an actor on purpose."""


class ToolActor:
    """One incarnation of a tool's actor.

    Args:
        runner: runs calls through the tool's policies.
        inbox: the tool's inbox (shared with earlier and later incarnations: queued calls
            survive a crash).
    """

    __slots__ = ("_idle", "_nursery", "_workers", "crash", "held", "inbox", "runner")

    def __init__(self, runner: ToolRunner, inbox: trio.MemoryReceiveChannel[Execute]) -> None:
        self.runner = runner
        self.inbox = inbox
        self.held: set[ReplySlot] = set()
        self.crash: BaseException | None = None
        self._nursery: trio.Nursery | None = None
        self._workers = 0
        self._idle = 0

    async def run(self) -> None:
        """Serve the inbox until it is closed and drained (or the actor is killed)."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            self._workers = 1
            await self._worker()

    def kill(self, reason: BaseException) -> None:
        """Crash this incarnation: every worker is cancelled, ``crash`` says why."""
        if self.crash is None:
            self.crash = reason
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()

    @property
    def in_flight(self) -> int:
        """Calls this incarnation holds now."""
        return len(self.held)

    async def _worker(self) -> None:
        # Each worker runs its calls inside one long-lived cancel scope and moves that
        # scope's deadline per call: entering a fresh trio CancelScope costs several
        # times more than setting a deadline, and the first attempt of most calls is
        # also their last. A cancellation (deadline, per-attempt timeout or a caller
        # giving up) ends the scope; the call is then settled and a new scope begins.
        receive = self.inbox.receive
        limit = self.runner.spec.max_concurrency
        current: list[Execute] = []
        while True:
            with trio.CancelScope() as scope:
                while True:
                    self._idle += 1
                    try:
                        msg = await receive()
                    except (trio.EndOfChannel, trio.ClosedResourceError):
                        return
                    finally:
                        self._idle -= 1
                    if self._idle == 0 and self._workers < limit and self._nursery is not None:
                        self._workers += 1
                        self._nursery.start_soon(self._worker)
                    # Held from the moment it leaves the inbox: a crash answers it.
                    self.held.add(msg.reply)
                    current.append(msg)
                    await self._serve(msg, scope)
                    current.clear()
            if current:
                msg = current.pop()
                await self._settle_cut(msg)

    async def _serve(self, msg: Execute, scope: trio.CancelScope) -> None:
        slot = msg.reply
        if slot.state is not SlotState.QUEUED:
            self.held.discard(slot)
            return  # the caller gave up while the call was queued: drop it unexecuted
        runner = self.runner
        counters = runner.counters
        now = trio.current_time()
        deadline = msg.deadline
        if deadline <= now:
            self.held.discard(slot)
            self._reply_call_timeout(msg)
            return
        attempt_deadline = now + runner.spec.timeout_s
        scope.deadline = attempt_deadline if attempt_deadline < deadline else deadline
        slot.start(scope)
        first_error: Exception | None = None
        try:
            if runner.publish is None:
                args, ctx, invoke = msg.args, msg.ctx, runner.invoke
                value = await runner.spec.breaker.execute_with_breaker(
                    lambda: invoke(args, ctx), runner.spec.tool_name
                )
            else:
                value = await runner.first_attempt(msg.args, msg.ctx)
        except Exception as exc:
            first_error = exc
        if first_error is None:
            counters.successes += 1
            slot.attempts = 1
            result: outcome.Outcome[Any] = outcome.Value(value)
        else:
            scope.deadline = deadline  # the retries run on the call's deadline
            result = await self._rest(msg, first_error)
        self.held.discard(slot)
        counters.latency(trio.current_time() - msg.enqueued_at)
        slot.reply(result)

    async def _rest(self, msg: Execute, first_error: Exception) -> outcome.Outcome[Any]:
        try:
            value = await self.runner.run(
                msg.args, msg.ctx, msg.deadline, msg.reply, first_error=first_error
            )
        except Exception as exc:
            return outcome.Error(exc)
        return outcome.Value(value)

    async def _settle_cut(self, msg: Execute) -> None:
        """The worker's scope caught a cancellation while serving ``msg``: settle it."""
        slot = msg.reply
        if slot.state is not SlotState.RUNNING:
            self.held.discard(slot)
            return  # the caller gave up (abandoned): it has its answer already
        runner = self.runner
        if trio.current_time() >= msg.deadline:
            self.held.discard(slot)
            self._reply_call_timeout(msg)
            return
        # The first attempt ran past timeout_s: a retryable failure the breaker counts.
        runner.counters.timeouts += 1
        timeout = ToolTimeoutError(runner.spec.tool_name, runner.spec.timeout_s)
        with trio.CancelScope(deadline=msg.deadline) as scope:
            slot.start_again(scope)
            first_error = await runner.count_failure(timeout)
            result = await self._rest(msg, first_error)
            self.held.discard(slot)
            runner.counters.latency(trio.current_time() - msg.enqueued_at)
            slot.reply(result)
            return
        self.held.discard(slot)
        if slot.state is SlotState.RUNNING:
            self._reply_call_timeout(msg)

    def _reply_call_timeout(self, msg: Execute) -> None:
        counters = self.runner.counters
        counters.timeouts += 1
        counters.failures += 1
        budget = msg.deadline - msg.enqueued_at
        msg.reply.reply(
            outcome.Error(ToolTimeoutError(self.runner.spec.tool_name, budget, scope="call"))
        )
