"""The hooks a call's observer (telemetry) gets: where a call and its attempts start and end.

Nothing here runs unless an observer is set (``Supervisor.observe``): each hook on the
call path is one attribute check when nothing observes. The hooks are synchronous and
must not raise; they run in the caller's task (``call_started``) or in the tool actor's
task (the rest), never concurrently with each other.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from .call import Call

__all__ = ["CallObserver"]


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

    def attempt_context(self, call: Call) -> AbstractContextManager[object] | None:
        """What the running attempt's tool runs inside, or None for nothing.

        Asked as each attempt starts (after :meth:`attempt_started`, and for each hedged
        attempt of a race), in the task that then runs the tool: the context manager is
        entered in that task just before the tool runs and exited when the tool's
        coroutine ends, however it ends (returned, raised, cut). Telemetry makes the
        attempt's span the current one there, so spans the tool opens are its children.
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
