"""The hooks a call's observer (telemetry) gets: where a call and its attempts start and end.

Nothing here runs unless an observer is set (``Supervisor.observe``): each hook on the
call path is one attribute check when nothing observes. The hooks are synchronous and
must not raise; they run in the caller's task (``call_started``) or in the tool actor's
task (the rest), never concurrently with each other.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from .call import Call

__all__ = ["ATTEMPT_CONTEXT", "AttemptContext", "CallObserver"]

AttemptContext = Callable[[], AbstractContextManager[object]]
"""Makes a context manager for the running attempt's tool to run inside (see
:meth:`CallObserver.attempt_context`)."""

#: While an attempt's tool runs, its observer's ``attempt_context`` (None: none). A tool
#: wrapper that runs the tool's code in a task of its own (an asyncio tool runs as an
#: asyncio task, in a context of its own) enters one more context manager there.
ATTEMPT_CONTEXT: ContextVar[AttemptContext | None] = ContextVar(
    "toolvisor_attempt_context", default=None
)


class CallObserver(Protocol):
    """What sees every call of a supervisor's tools (see the module docstring)."""

    def call_started(self, call: Call) -> None:
        """``call`` was made (validated and counted), in the caller's task.

        The observer may set ``call.on_end`` (called once when the call ends, whatever
        ends it: ``call.end_kind`` says how) and ``call.trace`` (its own record).
        """

    def call_running(self, call: Call) -> None:
        """The tool's actor starts (or resumes) ``call``'s attempt loop."""

    def attempt_started(self, call: Call) -> None:
        """An attempt starts running the tool; ``call.attempts`` is its number."""

    def attempt_context(self, call: Call) -> AttemptContext | None:
        """What the running attempt's tool runs inside, or None for nothing.

        Asked as each attempt starts (after :meth:`attempt_started`, and for each hedged
        attempt of a race), in the task that then runs the tool. The context manager it
        makes is entered in that task just before the tool runs and exited when the
        tool's coroutine ends, however it ends (returned, raised, cut); an asyncio tool
        enters a second one in its asyncio task. Telemetry makes the attempt's span the
        current one there, so spans the tool opens are its children. Optional: an
        observer without this method gets nothing entered.
        """

    def attempt_ended(
        self, call: Call, error: BaseException | None, retry_in: float | None
    ) -> None:
        """The attempt loop moved on: the running attempt (if any) ended.

        ``error`` is the attempt's failure (None: the tool returned); ``retry_in`` the
        seconds until the next attempt when the retry policy scheduled one, else None.
        Called also when no attempt is running (a retry the breaker refused ends the
        loop): the observer ignores it then.
        """
