"""Deferred cuts: cancel the attempts whose callers were answered already, when idle.

When an attempt's first ``timeout_s`` ends its call, the actor's watchdog answers the
caller with the timeout error at the deadline (see ``actor.py``). What is left is
cleanup: cancel the worker's scope, unwind the tool's coroutine, let the attempt loop
record the cut attempt (breaker, observer). In a timeout storm (a dependency hangs and
thousands of calls time out within milliseconds) that cleanup costs about twice the
answers themselves, and done as each deadline passes it delays every later deadline's
answer by as much: the errors reach their callers late.

So the cleanup waits until the program has nothing else to do: one sweeper per trio
run (a system task, started by the first deferred cut) looks every ``IDLE_S`` (on trio's
clock) whether the run is idle (no task runnable and no deadline within ``IDLE_S``, from
``trio.lowlevel.current_statistics``: a storm's deadlines come microseconds apart), and
when it is, or when ``MAX_DEFER_S`` passed without such a moment (a program that never
idles), cuts up to ``CHUNK`` workers, the oldest first. A chunk bounds the pause the
cleanup itself causes (a few milliseconds) in a program that does other work meanwhile.
The sweeper sleeps on an event while nothing is deferred.

Nothing waits on the sweeper for correctness:

* a worker of the actor about to start a call cuts that actor's deferred workers itself
  and waits for their records (``ToolActor._until_recorded``), so every call starts
  after the breaker saw the cut attempts, and after they stopped running, as it would
  had they been cut at once; and a call that goes into the inbox while every worker of
  the actor is busy (``ToolActor.wants_workers``), or waits there as calls are answered,
  has the deferred workers cut at once: it does not wait for the sweeper;
* the breaker records what a cut at the deadline would have left: an answered attempt
  whose tool returns (or fails) on its own meanwhile is recorded as its timeout, the
  caller's answer, and its worker is not cut; and the end of any other attempt of the
  actor that comes meanwhile is recorded only after the answered ones (its worker cuts
  them and waits for their records: ``pipeline._answerable``), so a success never
  comes before the timeouts that preceded it, and a call about to start waits for such
  an end's record too (the tool ended before the call started). Its reply waits with
  it, normally no time at all (a cut unwinds at once), at the latest until its own
  attempt's deadline (an answered attempt's cleanup that awaits, a breaker that
  records slowly);
* ``kill()`` cancels every worker of the actor, deferred or not.

:func:`flush` cuts every deferred worker at once (``toolvisor.testing.settle``).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import trio

if TYPE_CHECKING:
    from .actor import ToolActor

__all__ = ["CHUNK", "IDLE_S", "MAX_DEFER_S", "defer", "flush", "forget"]

#: How often the sweeper looks, and how far away the next deadline must be for the run
#: to count as idle (seconds, trio's clock).
IDLE_S = 0.001
#: The longest a deferred cut waits for such a moment (seconds).
MAX_DEFER_S = 0.1
#: Workers cut per sweep; the next chunk waits for the next idle moment.
CHUNK = 256


class _Sweeper:
    __slots__ = ("actors", "since", "wake")

    def __init__(self) -> None:
        # The actors with deferred cuts, in the order they deferred their first (a dict
        # as an ordered set).
        self.actors: dict[ToolActor, None] = {}
        self.wake: trio.Event | None = None
        self.since = trio.current_time()  # the last sweep, or the first deferral since

    async def run(self) -> None:
        statistics = trio.lowlevel.current_statistics
        while True:
            if not self.actors:
                wake = self.wake = trio.Event()
                await wake.wait()
                self.since = trio.current_time()
                continue
            await trio.sleep(IDLE_S)
            now = trio.current_time()
            seen = statistics()
            idle = seen.tasks_runnable == 0 and seen.seconds_to_next_deadline > IDLE_S
            if idle or now - self.since >= MAX_DEFER_S:
                self.sweep(CHUNK)
                self.since = now

    def sweep(self, budget: float) -> None:
        """Cut up to ``budget`` deferred workers, the oldest actors' first."""
        actors = self.actors
        for actor in list(actors):
            budget = actor.cut_deferred(budget)
            if not actor.has_deferred():
                actors.pop(actor, None)
            if budget <= 0:
                return


_SWEEPER: trio.lowlevel.RunVar[_Sweeper] = trio.lowlevel.RunVar("toolvisor_sweeper")


def _current() -> _Sweeper | None:
    """This run's sweeper, if a cut was deferred in it."""
    try:
        return _SWEEPER.get()
    except LookupError:
        return None


def defer(actor: ToolActor) -> None:
    """``actor`` has deferred cuts now: have this run's sweeper make them."""
    sweeper = _current()
    if sweeper is None:
        sweeper = _Sweeper()
        _SWEEPER.set(sweeper)
        trio.lowlevel.spawn_system_task(sweeper.run, name="toolvisor deferred cuts")
    sweeper.actors[actor] = None
    wake = sweeper.wake
    if wake is not None:
        sweeper.wake = None
        wake.set()


def flush() -> None:
    """Cut every deferred worker of this run now."""
    sweeper = _current()
    if sweeper is not None:
        sweeper.sweep(math.inf)


def forget(actor: ToolActor) -> None:
    """``actor`` has no deferred cut left (it cut them itself, or was killed)."""
    sweeper = _current()
    if sweeper is not None:
        sweeper.actors.pop(actor, None)
