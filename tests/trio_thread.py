"""A trio run in a thread of its own, for Hypothesis state machines that drive it.

A state machine's rules run in the test's thread; each rule sends a step into the run
(``step``), which returns once every task of the run is blocked again, so the next rule
sees a settled system. The run's clock is a MockClock that moves only when a step moves
it (``clock.jump``).
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable
from typing import TypeVar

import trio
import trio.testing

T = TypeVar("T")


class TrioThread:
    """``setup(nursery)`` run in a new trio run (in a daemon thread), which then waits
    for steps until :meth:`stop`; the constructor returns once ``setup`` did."""

    def __init__(self, setup: Callable[[trio.Nursery], Awaitable[None]]) -> None:
        self.clock = trio.testing.MockClock()
        #: What ended the run before stop(), if anything did.
        self.failure: BaseException | None = None
        self._setup = setup
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._thread_main, daemon=True)
        self._thread.start()
        self._ready.wait(10)
        assert self._ready.is_set() and self.failure is None, self.failure

    def _thread_main(self) -> None:
        try:
            trio.run(self._main, clock=self.clock)
        except BaseException as exc:
            self.failure = exc
            self._ready.set()

    async def _main(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        self._finish = trio.Event()
        async with trio.open_nursery() as nursery:
            await self._setup(nursery)
            self._ready.set()
            await self._finish.wait()
            nursery.cancel_scope.cancel()

    def step(self, fn: Callable[[], Awaitable[T]]) -> T:
        """Run ``fn()`` in the trio run, then wait until every task is blocked."""

        async def run() -> T:
            value = await fn()
            await trio.testing.wait_all_tasks_blocked()
            return value

        return trio.from_thread.run(run, trio_token=self._token)

    def stop(self) -> None:
        """End the run (its nursery is cancelled) and its thread; raise what failed it."""
        if self.failure is None:
            trio.from_thread.run_sync(self._finish.set, trio_token=self._token)
        self._thread.join(10)
        assert not self._thread.is_alive()
        assert self.failure is None, self.failure
