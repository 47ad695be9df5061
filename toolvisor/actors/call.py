"""The call: one request from validation to its one reply, and the one place it ends.

A :class:`Call` is made once a call's arguments are valid (it counts itself in
``calls``), travels through the tool's inbox as the actor's message, and ends exactly
once, in one of four ways, each counted here and nowhere else:

* ``succeed``: the tool returned (or the idempotency cache answered for it);
* ``fail``: the tool ran and its last attempt failed, the call timed out, or its actor
  crashed (also: toolvisor refused it for a reason of the call itself, such as an
  idempotency conflict);
* ``reject``: no attempt ran: breaker open, bulkhead full, tool unavailable or stopped,
  supervisor closed before it ran;
* ``cancel``: its caller's own cancel scope gave up on it.

A spec's ``fallback`` (:class:`~toolvisor.policies.fallback.FallbackPolicy`) is applied
here, at the one end, so every kind of call gets it once: a ``fail``, ``reject`` or
``time_out`` whose error the fallback replaces ends the call as a success with the
fallback's value instead (counted in ``successes`` and ``fallbacks``; ``replaced`` keeps
the error, for the idempotency cache, whose key follows the real outcome). A
cancellation is never replaced.

So ``calls == successes + failures + rejected + cancelled`` holds by construction for
every call that is not in flight. The first end wins; every later one is a no-op that
returns False, which is what makes "exactly one reply" hold when an actor's reply races
the caller's deadline or a crash.

States::

    QUEUED --start()--> RUNNING --(an end)--> DONE
       |                   |
       +------ abandon() --+--> ABANDONED --(the caller's end: cancel/time_out)--> DONE

``abandon()`` is what the waiting caller's cancellation does: it cancels the running
attempt at once and drops any later reply; the caller then ends the call itself, as
cancelled (its own scope) or timed out (its deadline), in the same task.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, NoReturn

import outcome
import trio

from .._inputs import check_context, check_timeout
from ..errors import ToolTimeoutError
from ..events import CallFailed, FallbackUsed
from ..spec import CompiledSpec, ExecutionContext
from .stats import Counters

if TYPE_CHECKING:
    from ..policies.fallback import FallbackPolicy
    from .observer import CallObserver

__all__ = ["Call", "CallState", "deadline_of", "raise_alone"]

log = logging.getLogger("toolvisor")

_NO_CONTEXT = ExecutionContext()


def deadline_of(timeout: float | None) -> float:
    """The trio deadline of a call given ``timeout=`` (seconds, or None for none).

    Raises:
        TypeError, ValueError: ``timeout`` is not a number of seconds > 0 (see
            ``check_timeout``).
    """
    if timeout is None:
        return math.inf
    return trio.current_time() + check_timeout(timeout)  # type: ignore[operator]


class CallState:
    """Where a call stands: ordered ints (``state >= ABANDONED``: no reply is taken).

    Plain class attributes rather than an ``enum``: a call reads them several times, and
    reading an enum member through its class costs three times as much.
    """

    QUEUED = 0
    RUNNING = 1
    ABANDONED = 2
    DONE = 3


class Call:
    """One call (see the module docstring).

    Attributes:
        tool: the tool's name.
        args: the validated arguments.
        ctx: the caller's context.
        deadline: the overall deadline on trio's clock (``inf`` for none).
        timeout: the caller's ``timeout=`` (seconds, None for none), the budget a call
            timeout reports.
        started: trio time when the call was made.
        attempts: attempts that ran the tool (an attempt the breaker refused did not).
        key: the idempotency key the tool sees in ``ctx.idempotency_key`` (None when the
            tool is not idempotent).
        in_attempt: an attempt is running now (a cut now leaves the outcome unknown).
        cached: answered by the idempotency cache, without executing.
        state: a :class:`CallState`.
        outcome: how it ended (None until it did).
        end_kind: the word of its end, once it ended: ``"succeeded"``, ``"failed"``,
            ``"rejected"`` or ``"cancelled"`` (None until then).
        trace: a :class:`~toolvisor.actors.observer.CallObserver`'s own record of the
            call (None when nothing observes it).
        fallback: the spec's fallback policy when the call was made (None: none).
        replaced: the error the fallback replaced, once it did (None: the call's reply
            is its own).
    """

    __slots__ = (
        "_scope",
        "_waiter",
        "admit_at",
        "args",
        "attempts",
        "cached",
        "counters",
        "ctx",
        "deadline",
        "end_kind",
        "fallback",
        "in_attempt",
        "key",
        "last_error",
        "on_end",
        "outcome",
        "replaced",
        "started",
        "state",
        "timeout",
        "tool",
        "trace",
    )

    def __init__(
        self,
        tool: str,
        args: Mapping[str, Any],
        ctx: ExecutionContext,
        counters: Counters,
        *,
        deadline: float = math.inf,
        timeout: float | None = None,
        started: float,
    ) -> None:
        self.tool = tool
        self.args = args
        self.ctx = ctx
        self.counters = counters
        self.deadline = deadline
        self.timeout = timeout
        self.started = started
        self.state = CallState.QUEUED
        self.attempts = 0
        self.cached = False
        self.last_error: Exception | None = None  # the tool's latest failure (retries)
        #: The call's idempotency key as the tool sees it (None: not idempotent).
        self.key: str | None = None
        #: An attempt is running: a cut now leaves the call's outcome unknown.
        self.in_attempt = False
        #: The time the call's reserved rate-limit token comes (0: none to wait for).
        self.admit_at = 0.0
        self.outcome: outcome.Outcome[Any] | None = None
        #: Called once with the call when it ends (telemetry, flights); never raises.
        self.on_end: Callable[[Call], None] | None = None
        self.end_kind: str | None = None
        self.trace: Any = None
        self.fallback: FallbackPolicy | None = None
        self.replaced: Exception | None = None
        self._waiter: trio.lowlevel.Task | None = None
        self._scope: trio.CancelScope | None = None
        counters.calls += 1

    @classmethod
    def new(
        cls,
        spec: CompiledSpec,
        counters: Counters,
        args: Mapping[str, Any],
        ctx: ExecutionContext | None,
        timeout: float | None,
        observer: CallObserver | None = None,
    ) -> Call:
        """Validate a call of ``spec``'s tool; the call, counted in ``calls``.

        ``observer`` (telemetry) sees the call start here, in the caller's task; the
        call takes the spec's ``fallback`` now (its events go to ``counters.publish``).

        Raises:
            ValidationError: bad arguments (no call is made, nor counted).
            TypeError, ValueError: a bad ``ctx`` or ``timeout``.
        """
        validator = spec.validator
        validator.validate(args)
        ctx = _NO_CONTEXT if ctx is None else check_context(ctx, validator.limits)
        call = cls(
            spec.tool_name,
            args,
            ctx,
            counters,
            deadline=deadline_of(timeout),
            timeout=timeout,
            started=trio.current_time(),
        )
        fallback = spec.fallback
        if fallback is not None:
            call.fallback = fallback
        if observer is not None:
            observer.call_started(call)
        return call

    def result(self) -> Any:
        """The value of a call that ended, or its error raised."""
        result = self.outcome
        if isinstance(result, outcome.Value):
            return result.value
        if isinstance(result, outcome.Error):
            # The error's traceback keeps this frame: it must keep neither the call
            # (whose outcome is the error) nor the error, or each failed call leaves a
            # reference cycle that only the garbage collector frees.
            box: list[BaseException] = [result.error]
            del self, result
            raise_alone(box)
        raise RuntimeError("this call was cancelled; it has no reply")

    @property
    def done(self) -> bool:
        """True once the call ended or its caller gave up on it (no reply is taken)."""
        return self.state >= CallState.ABANDONED

    @property
    def ended(self) -> bool:
        """True once the call ended (and was counted)."""
        return self.state == CallState.DONE

    # ------------------------------------------------------------------ the actor side

    def start(self, scope: trio.CancelScope) -> bool:
        """The actor takes the call; False if the caller already gave up."""
        if self.state != CallState.QUEUED:
            return False
        self.state = CallState.RUNNING
        self._scope = scope
        return True

    def start_again(self, scope: trio.CancelScope) -> None:
        """The running call continues under a new cancel scope."""
        if self.state == CallState.RUNNING:
            self._scope = scope

    # ------------------------------------------------------------------ the four ends

    def succeed(self, value: Any, *, cached: bool = False) -> bool:
        """End with the tool's value; False (nothing happens) if it ended already."""
        if self.state >= CallState.ABANDONED:
            return False
        counters = self.counters
        counters.successes += 1
        if cached:
            self.cached = True
            counters.cache_hits += 1
        self.end_kind = "succeeded"
        self._end(outcome.Value(value))
        return True

    def fail(self, error: BaseException) -> bool:
        """End with ``error`` after the call ran (or for a reason of its own)."""
        if self.state >= CallState.ABANDONED:
            return False
        if self.fallback is not None and self._fall_back(error):
            return True
        self.counters.failures += 1
        self.end_kind = "failed"
        self._end(outcome.Error(error))
        return True

    def reject(self, error: BaseException) -> bool:
        """End with ``error`` without any attempt having run."""
        if self.state >= CallState.ABANDONED:
            return False
        if self.fallback is not None and self._fall_back(error):
            return True
        self.counters.rejected += 1
        self.end_kind = "rejected"
        self._end(outcome.Error(error))
        return True

    def fail_or_reject(self, error: BaseException) -> bool:
        """End with ``error``: rejected if the actor never started it, else failed."""
        if self.state == CallState.QUEUED and not self.attempts:
            return self.reject(error)
        return self.fail(error)

    def cancel(self) -> bool:
        """End as cancelled by the caller's own scope (its running attempt is cancelled)."""
        if self.state == CallState.DONE:
            return False
        self._cut()
        self.counters.cancelled += 1
        self.end_kind = "cancelled"
        self._end(None)
        return True

    def time_out(self) -> ToolTimeoutError | None:
        """End with the call's ``ToolTimeoutError`` (its deadline passed); return it.

        Returned also when the call's fallback replaced it (the call's reply is then the
        fallback's value: :meth:`result` says which). None if the call had ended
        already. The running attempt is cancelled.
        """
        if self.state == CallState.DONE:
            return None
        self._cut()
        error = ToolTimeoutError(self.tool, self.timeout or 0.0, scope="call")
        self.counters.timeouts += 1
        if self.fallback is not None and self._fall_back(error):
            return error
        self.counters.failures += 1
        self.end_kind = "failed"
        self._end(outcome.Error(error))
        return error

    def settle(self, exc: BaseException) -> None:
        """End a call still open when ``exc`` escapes from code working on it.

        ``trio.Cancelled``: the caller's own scope; any other error: a failure. A call
        that ended already is left as it is.
        """
        if self.state == CallState.DONE:
            return
        if isinstance(exc, trio.Cancelled):
            self.cancel()
        elif self.state == CallState.ABANDONED:
            self.cancel()  # abandoned by a cancellation whose exception became another
        else:
            self.fail(exc)

    def abandon(self) -> bool:
        """The caller gives up: cancel the running attempt, drop any later reply.

        The caller ends the call next (``cancel`` or ``time_out``).
        """
        if self.state >= CallState.ABANDONED:
            return False
        self._cut()
        self.state = CallState.ABANDONED
        return True

    def _fall_back(self, error: BaseException) -> bool:
        """End with the fallback's value instead of ``error``, if the fallback replaces it.

        False (nothing happens) when it does not, or when its ``fn`` raised: the call
        then keeps its own end, and a note on ``error`` names ``fn``'s exception.
        """
        policy = self.fallback
        if policy is None or not isinstance(error, Exception) or not policy.replaces(error):
            return False
        try:
            value = policy.value_for(error)
        except Exception as exc:
            log.exception("the fallback of tool %r failed on %r", self.tool, error)
            error.add_note(
                f"toolvisor: the fallback of tool {self.tool!r} raised {exc!r}; "
                "the call ends with its own error"
            )
            return False
        counters = self.counters
        counters.successes += 1
        counters.fallbacks += 1
        self.replaced = error
        self.end_kind = "succeeded"
        self._end(outcome.Value(value))
        publish = counters.publish
        if publish is not None:
            publish(FallbackUsed(tool=self.tool, error=repr(error), at=trio.current_time()))
        return True

    def _cut(self) -> None:
        scope, self._scope = self._scope, None
        if scope is not None:
            scope.cancel()

    def _end(self, result: outcome.Outcome[Any] | None) -> None:
        self.state = CallState.DONE
        self._scope = None
        self.outcome = result
        counters = self.counters
        if self.attempts:
            counters.latency(trio.current_time() - self.started)
        publish = counters.publish
        if publish is not None and type(result) is outcome.Error:
            error = result.error
            publish(
                CallFailed(
                    tool=self.tool,
                    outcome=self.end_kind or "failed",
                    error_type=type(error).__name__,
                    error=repr(error),
                    attempts=self.attempts,
                    at=trio.current_time(),
                )
            )
        on_end = self.on_end
        if on_end is not None:
            self.on_end = None
            on_end(self)
        waiter = self._waiter
        if waiter is not None and result is not None:
            self._waiter = None
            trio.lowlevel.reschedule(waiter, result)

    # ------------------------------------------------------------------ the caller side

    async def wait(self) -> Any:
        """The call's value (or its error raised), once it ends; for one waiting task.

        Bounded by the call's deadline: past it the call times out (``ToolTimeoutError``).
        A waiting task cancelled by its own scope cancels the call (and its running
        attempt) and ``trio.Cancelled`` propagates. May be called again after the end
        (a ``PendingCall`` may be awaited twice).
        """
        if self.state == CallState.DONE:
            return self.result()
        abort = _Abort(self)
        try:
            if self.deadline == math.inf:
                self._waiter = trio.lowlevel.current_task()
                return await trio.lowlevel.wait_task_rescheduled(abort)
            with trio.move_on_at(self.deadline):
                self._waiter = trio.lowlevel.current_task()
                return await trio.lowlevel.wait_task_rescheduled(abort)
        except trio.Cancelled:
            self.cancel()
            raise
        except BaseException:
            # The call's error, raised: its traceback keeps this frame and trio's (which
            # holds ``abort``), so neither may keep the call (see result()).
            del self
            raise
        finally:
            abort.call = None
        # The call times out, unless it ended as the deadline fired (its outcome stands);
        # either way its reply is its outcome (a fallback's value, maybe).
        self.time_out()
        return self.result()


def raise_alone(box: list[BaseException]) -> NoReturn:
    """Raise the one error in ``box`` from a frame that keeps no reference to it.

    A frame on an error's traceback that refers to the error (or to a call whose outcome
    it is) makes a reference cycle, freed only by the garbage collector.
    """
    error = box.pop()
    try:
        raise error
    finally:
        del error


class _Abort:
    """``wait()``'s abort function: its waiting task is cancelled, so the call is given
    up (the waiter ends it next). It lets go of the call once the wait is over."""

    __slots__ = ("call",)

    def __init__(self, call: Call) -> None:
        self.call: Call | None = call

    def __call__(self, _raise_cancel: Any) -> trio.lowlevel.Abort:
        call = self.call
        if call is not None:
            call._waiter = None
            call.abandon()
        return trio.lowlevel.Abort.SUCCEEDED
