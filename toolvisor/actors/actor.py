"""The tool actor: a pool of worker tasks reading one inbox, and their watchdog.

One incarnation of a tool's actor. Its workers receive :class:`Call` s straight
from the tool's inbox (a trio memory channel: one hop from the caller), run them through
the tool's :class:`ToolRunner`, which ends them. Until its first call the actor is one task
waiting on the inbox (no nursery, no pool); then the pool starts with that worker and
grows on demand up to ``max_concurrency``, and never more than ``max_concurrency``
attempts of the tool run at once (the bulkhead).

An adaptive bulkhead (``spec.max_concurrency`` an ``AdaptiveConcurrency``) is the same
pool with a gate: a worker takes a slot of a ``trio.CapacityLimiter`` sized to the current
limit before it starts a call (waiting, with the call it took, while ``limit`` calls run),
and gives it back at the call's end, after the call's sample moved the limit. The pool
grows up to the limit, and a worker that finishes a call while the pool is larger than
the limit retires. A fixed bulkhead changed by ``Supervisor.reconfigure`` is gated the
same way from then on (:meth:`ToolActor.resize`); one never changed pays two attribute
checks per call for all this.

Deadlines without a timer per call: each worker runs its calls inside one long-lived
cancel scope and only *writes down* the deadline of the call it serves (the first
attempt's ``now + timeout_s``, or the call's overall deadline if that comes first). One
watchdog task per actor sleeps until the earliest deadline written down and cancels the
scope of every worker past its own. Deadlines of successive calls only grow when they
come from ``timeout_s`` (the same for every call), so a new one never precedes the
watchdog's wake-up and nothing needs to wake it; only a call whose own ``timeout=`` ends
sooner moves the watchdog's alarm forward. Entering a trio cancel scope costs several
times more than the rest of a call's bookkeeping: the hot path enters none.

The actor only ever *ends calls* (through the runner's attempt loop); crashing and
restarting are the supervisor's business. The calls it holds are tracked in ``held`` so
that a crash can answer each of them.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable

import outcome
import trio

from ..errors import ToolTimeoutError
from ..events import ConcurrencyLimitChanged
from . import sweeper
from .call import Call, CallState
from .pipeline import ToolRunner

__all__ = ["ActorKilled", "ToolActor"]


class ActorKilled(Exception):  # noqa: N818 - it is a reason, not an error callers see
    """The reason recorded when ``Supervisor.kill()`` crashes an actor on purpose."""


class _Worker:
    """One worker as the watchdog sees it: its scope and the deadline it must keep."""

    __slots__ = (
        "actor",
        "answered",
        "answers",
        "current",
        "deadline",
        "ending",
        "inflight",
        "scope",
        "since",
        "slot",
    )

    def __init__(self, actor: ToolActor) -> None:
        self.actor = actor
        self.deadline = math.inf
        # The runner says whether a cut of the first attempt at timeout_s ends the call
        # (then the watchdog answers it); ``answered`` is the error it answered with,
        # which the worker's cleanup replays into the attempt loop.
        self.answers = False
        self.answered: Exception | None = None
        # Its tool ended within its timeout and the end waits for (or has just had) the
        # answered attempts' records: the breaker records it next (see in_order).
        self.ending = False
        self.scope: trio.CancelScope | None = None
        self.current: Call | None = None  # the call being served (a cut settles it)
        self.slot = False  # holds a slot of the actor's limiter (a gated bulkhead)
        self.since = -1.0  # when the call it samples started (< 0: no sample to take)
        self.inflight = 0  # the calls running when it started, itself included

    def watch(self, deadline: float) -> None:
        """Have the watchdog cut this worker's scope at ``deadline``."""
        self.actor._watch(self, deadline)

    def in_order(self) -> Awaitable[None] | None:
        """What to wait for until the breaker recorded the actor's other answered
        attempts (see ``pipeline._answerable``), or None when none waits: this worker's
        own answer, if it has one, is the record this worker makes next."""
        actor = self.actor
        if actor._unrecorded <= (self.answered is not None):
            return None
        call = self.current
        if self.answered is None and call is not None:
            # The tool ended within its timeout: while its end waits, only the call's
            # own deadline still applies (the watchdog must not answer it as timed out),
            # and the wait ends at the attempt's deadline at the latest (an attempt whose
            # cleanup never ends must not hold this one's reply for ever).
            # A call starting meanwhile waits for this end's record too: the tool ended
            # before it started, so the breaker it starts with has that end in it.
            until = self.deadline
            actor._watch(self, call.deadline)
            if not self.ending:
                self.ending = True
                actor._ending += 1
            return actor._until_recorded(self, until)
        return actor._until_recorded(self)


class ToolActor:
    """One incarnation of a tool's actor.

    Args:
        runner: runs calls through the tool's policies.
        inbox: the tool's inbox (shared with earlier and later incarnations: queued calls
            survive a crash).
    """

    __slots__ = (
        "_alarm",
        "_alarm_at",
        "_clock",
        "_deferred",
        "_ending",
        "_idle",
        "_limiter",
        "_nursery",
        "_pool",
        "_recorded",
        "_unrecorded",
        "_waiting",
        "_watchdog_stop",
        "_workers",
        "crash",
        "held",
        "inbox",
        "runner",
    )

    def __init__(self, runner: ToolRunner, inbox: trio.MemoryReceiveChannel[Call]) -> None:
        self.runner = runner
        self.inbox = inbox
        # The calls taken from the inbox and not answered yet (a dict as an ordered set:
        # an empty one takes a quarter of an empty set's memory, and idle actors are many).
        self.held: dict[Call, None] = {}
        self.crash: BaseException | None = None
        self._waiting: trio.CancelScope | None = None  # until the first call: for kill()
        self._nursery: trio.Nursery | None = None
        self._pool: list[_Worker] = []  # the running workers, as the watchdog sees them
        self._workers = 0  # workers started, including those not yet running
        self._idle = 0
        self._watchdog_stop: trio.CancelScope | None = None
        self._alarm: trio.CancelScope | None = None  # the watchdog's sleep, once started
        self._alarm_at = math.inf  # when the watchdog wakes next (inf: not started)
        # Attempts the watchdog answered for whose breaker record (the worker's replay)
        # is still to come, and what workers about to start a call wait on meanwhile.
        self._unrecorded = 0
        self._recorded: trio.Event | None = None
        # Workers whose tool's end waits to be recorded after those attempts (a call
        # starting now waits for them too).
        self._ending = 0
        # The workers of answered calls whose cut waits for the sweeper, oldest first
        # (None while there are none: idle actors are many).
        self._deferred: list[tuple[_Worker, Call]] | None = None
        # self._clock() without its lookups (the run's clock is fixed for the run).
        self._clock = trio.lowlevel.current_clock().current_time
        # The gate of an adaptive (or reconfigured) bulkhead; None: the pool is the gate.
        self._limiter: trio.CapacityLimiter | None = None
        if runner.spec.adaptive_concurrency is not None:
            self._limiter = trio.CapacityLimiter(runner.spec.max_concurrency)

    async def run(self) -> None:
        """Serve the inbox until it is closed and drained (or the actor is killed).

        Until its first call the actor is this one task waiting on the inbox, in one
        cancel scope (for ``kill()``): the nursery of its worker pool and watchdog is
        opened when the first call arrives, so an idle actor costs little more than a
        blocked task.
        """
        first: Call | None = None
        if self.crash is None:
            with trio.CancelScope() as waiting:
                self._waiting = waiting
                try:
                    first = await self._next()
                finally:
                    self._waiting = None
        if first is None:
            return  # the inbox closed and drained, or killed while waiting (see crash)
        self.held[first] = None  # held from the moment it left the inbox
        if self.crash is not None:
            return  # killed just as the call arrived: the crash answers it
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            self._workers = 1
            self._grow()  # what _next() could not do without a nursery
            # This frame lives as long as the actor: it must not keep the call alive.
            worker, first = self._worker(first), None
            await worker

    def kill(self, reason: BaseException) -> None:
        """Crash this incarnation: every worker is cancelled, ``crash`` says why."""
        if self.crash is None:
            self.crash = reason
        if self._deferred is not None:
            self._deferred = None  # the cancellation below cuts them
            sweeper.forget(self)
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()
        elif self._waiting is not None:
            self._waiting.cancel()

    @property
    def in_flight(self) -> int:
        """Calls this incarnation holds now."""
        return len(self.held)

    def resize(self) -> None:
        """The spec's bulkhead changed (``reconfigure``): follow it from the next call on.

        From now on every call takes a slot of the limiter, sized to the spec's
        ``max_concurrency``; the calls running now hold one each, so a smaller bulkhead
        starts no call until enough of them ended.
        """
        limit = self.runner.spec.max_concurrency
        limiter = self._limiter
        if limiter is None:
            limiter = trio.CapacityLimiter(limit + len(self._pool))
            for worker in self._pool:
                call = worker.current
                if call is not None and call.state != CallState.QUEUED and not worker.slot:
                    limiter.acquire_on_behalf_of_nowait(worker)
                    worker.slot = True
            self._limiter = limiter
        limiter.total_tokens = limit
        if self._idle == 0:
            self._grow()

    # ------------------------------------------------------------------ workers

    async def _worker(self, first: Call | None = None) -> None:
        me = _Worker(self)
        self._pool.append(me)
        call, first = first, None
        try:
            while True:
                # The scope is entered once a call arrives: an idle worker holds none.
                if call is None:
                    call = await self._next(fresh=True)
                    if call is None:
                        return
                    self.held[call] = None  # held from the moment it left the inbox
                # The call goes to _serve through ``me`` alone: this frame, waiting on
                # _serve for the worker's life, holds no call that _serve finished.
                me.current, call = call, None
                with trio.CancelScope() as scope:
                    me.scope = scope
                    await self._serve(me, scope)
                    return  # the inbox is closed and drained
                # A cancellation ended the scope: a deadline, or the caller gave up.
                me.deadline = math.inf
                cut, me.current = me.current, None
                if cut is not None:
                    await self._settle_cut(cut, me)
                    if me.slot and self._release(cut, me):
                        return  # the pool is larger than the bulkhead: retire
                    del cut  # waiting for the next call, this frame holds none
        finally:
            if me.answered is not None:
                self._record_done()  # killed before its replay: no record is coming
            self._end_recorded(me)  # killed while its end waited: none is coming
            self._pool.remove(me)
            self._workers -= 1
            if self._workers == 0 and self._watchdog_stop is not None:
                self._watchdog_stop.cancel()  # the inbox is drained: nothing left to watch

    async def _next(self, *, fresh: bool = False) -> Call | None:
        """The next call of the inbox; None once it is closed and drained.

        ``fresh``: the worker has just been scheduled (it started, or a cut woke it) and
        has not run a tool since, so a call waiting in the inbox is taken without the
        extra scheduling round that ``receive()`` adds after a value (the tool's own
        first checkpoint yields next). A cancelled worker still takes nothing: a
        killed actor leaves its queued calls to the next incarnation.
        """
        if fresh:
            await trio.lowlevel.checkpoint_if_cancelled()
            try:
                call: Call = self.inbox.receive_nowait()
            except trio.WouldBlock:
                pass
            except (trio.EndOfChannel, trio.ClosedResourceError):
                return None
            else:
                if self._idle == 0:
                    self._grow()
                return call
        self._idle += 1
        try:
            call = await self.inbox.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            return None
        finally:
            self._idle -= 1
        if self._idle == 0:
            self._grow()
        return call

    def _grow(self) -> None:
        """Every worker is busy: start as many more as the backlog needs (up to the cap)."""
        room = self.runner.spec.max_concurrency - self._workers
        if room <= 0 or self._nursery is None:
            return
        for _ in range(min(room, max(1, self.inbox.statistics().current_buffer_used))):
            self._workers += 1
            self._nursery.start_soon(self._worker)

    async def _serve(self, me: _Worker, scope: trio.CancelScope) -> None:
        """Serve ``me.current``, then the inbox's next calls, until it is closed and drained.

        Every call is in ``held`` and ``me.current`` from the moment it left the inbox; a
        cancellation of ``scope`` leaves ``me.current`` set to the call it cut short.
        """
        held = self.held
        clock = self._clock
        call = me.current
        while call is not None:
            if self._unrecorded or self._ending:
                await self._until_recorded()
            if self._limiter is not None:
                await self._acquire(me)
                if self._unrecorded or self._ending:  # since, while it waited for a slot
                    await self._until_recorded()
            now = clock()
            if call.state != CallState.QUEUED:
                pass  # the caller gave up while it was queued: drop it
            elif call.deadline <= now:
                call.time_out()
            else:
                runner = self.runner
                self._watch(me, min(now + runner.spec.timeout_s, call.deadline))
                call.start(scope)
                if me.slot:
                    me.since = now
                    me.inflight = self._limiter.borrowed_tokens  # type: ignore[union-attr]
                await runner.run(call, me)
                me.deadline = math.inf
                if me.answered is not None:
                    # The tool ended before its deferred cut: the breaker recorded the
                    # watchdog's answer, its timeout (pipeline._answerable).
                    me.answered = None
                    self._record_done()
                self._end_recorded(me)  # the breaker recorded its end, if one waited
            held.pop(call, None)
            me.current = None
            if me.slot and self._release(call, me):
                return  # the pool is larger than the bulkhead: retire
            # An idle worker holds no finished call: its arguments and reply (the
            # caller's request objects) are freed as soon as the caller lets them go,
            # not kept through garbage collections until this worker's next call.
            call = None
            call = await self._next()
            if call is not None:
                held[call] = None
                me.current = call

    # ------------------------------------------------------------------ gated bulkhead

    async def _acquire(self, me: _Worker) -> None:
        """Take a slot for the call ``me`` took; wait while the bulkhead is full."""
        limiter = self._limiter
        assert limiter is not None
        while True:
            limit = self.runner.spec.max_concurrency
            if limiter.total_tokens != limit:
                limiter.total_tokens = limit  # a shared limit moved, or a reconfigure
            try:
                limiter.acquire_on_behalf_of_nowait(me)
                break
            except trio.WouldBlock:
                await limiter.acquire_on_behalf_of(me)
            # Handed a slot at a release; the limit may have fallen since.
            limit = self.runner.spec.max_concurrency
            if limiter.borrowed_tokens <= limit:
                if limiter.total_tokens != limit:
                    limiter.total_tokens = limit
                break
            limiter.release_on_behalf_of(me)
        me.slot = True

    def _release(self, call: Call, me: _Worker) -> bool:
        """``call`` is over for ``me``: sample it, then give its slot back.

        Returns True when the pool is larger than the bulkhead now (``me`` retires).
        """
        limiter = self._limiter
        assert limiter is not None
        if me.since >= 0:
            self._sample(call, me)
        limit = self.runner.spec.max_concurrency
        if limiter.total_tokens != limit:
            limiter.total_tokens = limit  # before the release: it may admit a waiter
        limiter.release_on_behalf_of(me)
        me.slot = False
        return self._workers > limit

    def _sample(self, call: Call, me: _Worker) -> None:
        """Feed the call's latency (or its drop) to the adaptive limit; publish a change.

        A drop: the call timed out (an attempt or the call itself), or no attempt of it
        ran (refused in the actor, e.g. by the breaker). A call its caller cancelled says
        nothing about the tool: no sample.
        """
        since, me.since = me.since, -1.0
        adaptive = self.runner.spec.adaptive_concurrency
        if adaptive is None:
            return  # reconfigured to a fixed bulkhead while the call ran
        now = self._clock()
        kind = call.end_kind
        if kind == "succeeded":
            dropped = False
        elif kind == "rejected":
            dropped = True
        elif kind == "failed":
            result = call.outcome
            error = result.error if isinstance(result, outcome.Error) else None
            dropped = isinstance(error, ToolTimeoutError) or isinstance(
                getattr(error, "__cause__", None), ToolTimeoutError
            )
        elif now >= call.deadline:
            dropped = True  # cut by its deadline, its caller ends it as a timeout
        else:
            return
        old = adaptive.limit
        new = adaptive.on_sample(now - since, me.inflight, dropped, now)
        publish = self.runner.publish
        if new != old and publish is not None:
            publish(ConcurrencyLimitChanged(self.runner.spec.tool_name, old, new, now))

    async def _settle_cut(self, call: Call, me: _Worker) -> None:
        """A worker's scope caught a cancellation while serving ``call``: settle it.

        The caller gave up (the call is over), the call's deadline passed (it times out),
        or the watchdog cut the first attempt at ``timeout_s``: that attempt's outcome is a
        retryable ``ToolTimeoutError``, replayed into the attempt loop (under a new scope,
        unless the watchdog answered the call and the loop cannot retry).
        """
        self._end_recorded(me)  # cut while its end waited: the cut is what is recorded
        answered, me.answered = me.answered, None
        if answered is None:
            if call.state != CallState.RUNNING:
                self.held.pop(call, None)
                return  # its caller gave up on it, and ends it
            if self._clock() >= call.deadline:
                self.held.pop(call, None)
                call.time_out()
                return
        runner = self.runner
        call.in_attempt = False  # the attempt is over (cut): the loop goes on from it
        # The watchdog answered the caller already: the loop still records the cut
        # attempt (the breaker, the observer), and its end is a no-op on the ended call.
        if answered is not None and runner.cut_is_final(runner.spec):
            # The call is over and its loop cannot retry: the replay only records the
            # attempt (breaker, observer) and never waits, so it needs no scope to
            # bound it.
            try:
                await runner.run(call, me, replay=answered)
            finally:
                self._record_done()
                # What the replay wrote down (a reconfigured spec's call deadline) is
                # not this worker's next call's.
                me.deadline = math.inf
            return
        timed_out = answered if answered is not None else runner.attempt_timed_out(call)
        try:
            with trio.CancelScope() as scope:
                me.scope = scope
                call.start_again(scope)
                self._watch(me, call.deadline)
                await runner.run(call, me, replay=timed_out)
        finally:
            if answered is not None:
                self._record_done()
        me.deadline = math.inf
        self.held.pop(call, None)
        if call.state == CallState.RUNNING:
            call.time_out()  # cut again: by the call's deadline (its caller abandons it)

    # ------------------------------------------------------------------ watchdog

    def _watch(self, me: _Worker, deadline: float) -> None:
        """Write down the deadline ``me`` must keep; wake the watchdog earlier if needed."""
        me.deadline = deadline
        if deadline < self._alarm_at:
            self._alarm_at = deadline
            if self._alarm is not None:
                self._alarm.deadline = deadline
            elif self._nursery is not None:
                self._alarm = trio.CancelScope()  # placeholder until the watchdog sleeps
                self._nursery.start_soon(self._watchdog)

    def _answer(self, worker: _Worker, now: float) -> bool:
        """``worker``'s first attempt ran out of ``timeout_s``, and that ends its call:
        end it now with the attempt's error (the caller wakes at the deadline, not after
        the worker's cleanup); True if it did.

        The call's one end keeps "exactly one reply": if the tool returned in the same
        instant, whichever end comes first stands and the other is a no-op. A call whose
        own deadline passed too is left to its caller (it times out as a call). The
        attempt's breaker record comes later, when the worker replays the error; until
        it did, no worker of this actor starts a call (:meth:`_until_recorded`).
        """
        call = worker.current
        if (
            call is None
            or call.state != CallState.RUNNING
            or call.attempts != 1
            or not call.in_attempt
            or now >= call.deadline
        ):
            return False
        error = self.runner.attempt_timed_out(call)
        worker.answered = error
        self._unrecorded += 1
        self.held.pop(call, None)  # answered: no longer in flight, nothing for a crash
        call.fail(error)
        return True

    async def _until_recorded(self, me: _Worker | None = None, until: float = math.inf) -> None:
        """Wait until the breaker recorded every attempt the watchdog answered for.

        A call starting now must see the breaker as those attempts left it (one of them
        may have opened it), as it would had each worker recorded its attempt at once:
        the workers whose cut was deferred are cut now.
        """
        # ``me``: a worker waiting with its own attempt running, which the watchdog may
        # answer meanwhile (its own record comes after this wait, so it is not waited
        # for; its cut, if deferred, is made here and ends the wait).
        # A call about to start (no ``me``) also waits for the ends waiting on those
        # records (``in_order``), which are recorded as soon as they are.
        with trio.move_on_at(until):
            while self._unrecorded > (me is not None and me.answered is not None) or (
                me is None and self._ending
            ):
                self.cut_all_deferred()
                event = self._recorded
                if event is None:
                    event = self._recorded = trio.Event()
                await event.wait()

    def _record_done(self) -> None:
        """One attempt the watchdog answered for is recorded (or never will be)."""
        self._unrecorded -= 1
        self._wake_waiters()

    def _end_recorded(self, me: _Worker) -> None:
        """``me``'s end that waited in order is recorded (or never will be), if it had one."""
        if me.ending:
            me.ending = False
            self._ending -= 1
            self._wake_waiters()

    def _wake_waiters(self) -> None:
        event = self._recorded
        if event is not None:  # its waiters look again (they wait for their own counts)
            self._recorded = None
            event.set()

    async def _watchdog(self) -> None:
        """Answer or cut every worker whose deadline passed; sleep until the next one."""
        horizon = self.runner.spec.timeout_s
        with trio.CancelScope() as stop:
            self._watchdog_stop = stop
            if self._workers > 0:
                await self._watch_loop(horizon)

    async def _watch_loop(self, horizon: float) -> None:
        while True:
            now = self._clock()
            # Calls starting later get deadlines of at least now + timeout_s; earlier
            # overall deadlines move the alarm forward themselves (_watch).
            wake = now + horizon
            cut: list[_Worker] = []
            answered: list[tuple[_Worker, Call]] = []
            for worker in self._pool:
                due = worker.deadline
                if due <= now:
                    worker.deadline = math.inf
                    if worker.scope is not None:
                        if worker.answers and self._answer(worker, now):
                            answered.append((worker, worker.current))  # type: ignore[arg-type]
                        else:
                            cut.append(worker)
                elif due < wake:
                    wake = due
            for worker in cut:
                worker.scope.cancel()  # type: ignore[union-attr]
            if answered:
                # The callers answered here run in trio's next batch; their workers'
                # cuts wait until the program is idle (see sweeper.py), so a timeout
                # storm's replies do not wait behind the cleanup of as many attempts.
                deferred = self._deferred
                if deferred is None:
                    self._deferred = answered
                    sweeper.defer(self)
                else:
                    deferred += answered
                del answered  # this frame lives as long as the actor: it keeps no call
                if self.inbox.statistics().current_buffer_used:
                    self.cut_all_deferred()  # calls wait for those workers: no delay
            self._alarm_at = wake
            with trio.CancelScope(deadline=wake) as alarm:
                self._alarm = alarm
                await trio.sleep_forever()

    def cut_all_deferred(self) -> None:
        """Cut every deferred worker now: a call of this actor needs them (or their
        records) to start."""
        if self._deferred is not None:
            self.cut_deferred(math.inf)
            sweeper.forget(self)

    def wants_workers(self) -> None:
        """A call just went into the inbox: if every worker is busy, the deferred ones
        are cut now rather than when the run is idle (the call waits for one)."""
        if self._deferred is not None and self._idle == 0:
            self.cut_all_deferred()

    def has_deferred(self) -> bool:
        """Whether workers of answered calls wait for their cut."""
        return self._deferred is not None

    def cut_deferred(self, budget: float) -> float:
        """Cut up to ``budget`` of the workers of answered calls, oldest first; return
        what is left of ``budget``.

        A worker whose tool ended meanwhile (recorded as its timeout, see _serve) is not
        cut: it may serve another call by now.
        """
        deferred = self._deferred
        if deferred is None:
            return budget
        n = len(deferred) if budget >= len(deferred) else int(budget)
        for worker, call in deferred[:n]:
            if worker.current is call and worker.answered is not None:
                worker.scope.cancel()  # type: ignore[union-attr]
        if n == len(deferred):
            self._deferred = None
        else:
            del deferred[:n]
        return budget - n
