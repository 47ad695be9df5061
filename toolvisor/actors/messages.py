"""The messages a tool actor receives, and the one-shot reply slot each call carries.

A call is an :class:`Execute` message (frozen) holding a :class:`ReplySlot`. The slot
guarantees *exactly one reply*: the first of ``reply()`` (the actor's outcome) and
``abandon()`` (the caller gave up: deadline or cancellation) wins, and everything after
it is dropped. A reply that arrives before anyone waits is kept, so ``submit()`` can
send now and await later.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any, NamedTuple

import outcome
import trio

from ..spec import ExecutionContext

__all__ = ["Execute", "ReplySlot", "SlotState"]


class SlotState(enum.IntEnum):
    """Where a call stands."""

    QUEUED = 0
    RUNNING = 1
    DONE = 2
    ABANDONED = 3


# Module constants: an enum member read through its class costs ~10x a global on the
# Python versions supported (the slot's methods run several times per call).
_QUEUED = SlotState.QUEUED
_RUNNING = SlotState.RUNNING
_DONE = SlotState.DONE
_ABANDONED = SlotState.ABANDONED
_ABORTED = trio.lowlevel.Abort.SUCCEEDED
_current_task = trio.lowlevel.current_task
_reschedule = trio.lowlevel.reschedule
_wait_task_rescheduled = trio.lowlevel.wait_task_rescheduled


class ReplySlot:
    """A one-shot reply channel with cancellation back to the running attempt."""

    __slots__ = ("_counted", "_outcome", "_scope", "_waiter", "attempts", "cached", "state")

    def __init__(self) -> None:
        self.state = _QUEUED
        self.attempts = 0
        self.cached = False
        self._counted = False
        self._outcome: outcome.Outcome[Any] | None = None
        self._waiter: trio.lowlevel.Task | None = None
        self._scope: trio.CancelScope | None = None

    @property
    def done(self) -> bool:
        """True once a reply was given (or the caller gave up)."""
        return self.state >= _DONE

    def start(self, scope: trio.CancelScope) -> bool:
        """The actor takes the call; False if the caller already gave up."""
        if self.state is not _QUEUED:
            return False
        self.state = _RUNNING
        self._scope = scope
        return True

    def start_again(self, scope: trio.CancelScope) -> None:
        """The running call continues under a new cancel scope."""
        if self.state is _RUNNING:
            self._scope = scope

    def reply(self, result: outcome.Outcome[Any]) -> bool:
        """Deliver the outcome; False (and nothing happens) if already replied/abandoned."""
        if self.state >= _DONE:
            return False
        self.state = _DONE
        self._scope = None
        self._outcome = result
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            _reschedule(waiter, result)
        return True

    def abandon(self) -> bool:
        """The caller gives up: cancel the running attempt, drop any later reply."""
        if self.state >= _DONE:
            return False
        self.state = _ABANDONED
        scope, self._scope = self._scope, None
        if scope is not None:
            scope.cancel()
        return True

    def abandoned_now(self) -> bool:
        """True the first time it is asked after the caller gave up: count that once."""
        if self.state is _ABANDONED and not self._counted:
            self._counted = True
            return True
        return False

    async def wait(self) -> Any:
        """The reply's value (or its exception raised).

        If the waiting task is cancelled before the reply, the call is abandoned (its
        running attempt is cancelled) and ``trio.Cancelled`` propagates.
        """
        stored = self._outcome
        if stored is not None:  # read, not unwrap: a PendingCall may be awaited twice
            if isinstance(stored, outcome.Error):
                raise stored.error
            assert isinstance(stored, outcome.Value)
            return stored.value
        if self.state >= _DONE:
            raise RuntimeError("this call was abandoned; its reply is gone")
        self._waiter = _current_task()
        return await _wait_task_rescheduled(self._abort)

    def _abort(self, _raise_cancel: Any) -> trio.lowlevel.Abort:
        """The waiting caller is cancelled: give up the call."""
        self._waiter = None
        self.abandon()
        return _ABORTED


class Execute(NamedTuple):
    """Run the tool once (with its policies) and reply to ``reply``.

    An immutable message (a NamedTuple rather than an attrs class: it is built once per
    call on the hot path, and a tuple is the cheapest immutable record Python has).

    Attributes:
        args: the validated arguments.
        ctx: the caller's context.
        deadline: the overall deadline on trio's clock (``inf`` for none).
        enqueued_at: trio time when the call entered the inbox.
        reply: where the outcome goes.
    """

    args: Mapping[str, Any]
    ctx: ExecutionContext
    deadline: float
    enqueued_at: float
    reply: ReplySlot
