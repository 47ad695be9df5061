"""Deferred cuts (``actors/sweeper.py``) against a model, as a Hypothesis state machine.

One tool, ``timeout_s=0.5``, a built-in retry policy with ``max_attempts=1`` (so the
watchdog answers a timed-out first attempt itself and defers its cut), a Standard
breaker with a small ``failure_threshold`` that never recovers here, a bulkhead of 1 to
4. Each example is one trio run on a MockClock that moves only when a rule moves it.
Rules make calls of three kinds (``hang``: never returns; ``ok``: returns after a delay
shorter than ``timeout_s``; ``slow``: returns a little after ``timeout_s``, maybe before
its deferred cut), move the clock, let the sweeper look at an idle run, keep the run
busy (a task with a timer always due within ``IDLE_S``) or not, kill the actor, settle.

Every timer toolvisor sets here is a whole number of ``GRID`` steps after a call's start
(``timeout_s`` and the delays are), every call starts at such a moment, and the clock
moves ``GRID`` at a time, waiting for every task to block at each step: it never jumps
over a deadline. The one exception is ``idle_look``, which moves ``TICK`` (a little more
than ``IDLE_S``) past a grid point, where no timer of toolvisor can be due: the sweeper
is then the only task that wakes, in a run that is idle by its definition.

The model is what the tool itself sees (its start, its return, its cancellation) and
the supervisor's synchronous ``CallFailed`` events (the watchdog's answers among them),
in the order they happen, plus two breaker models with the breaker's rule
(``failure_threshold`` timeouts in a row open it, a success while closed resets the
count, open stays open, a restart resets it):

- the *record* model sees each attempt where the breaker records it: a timeout when its
  cut attempt unwinds (not a cut made by a kill), and when the tool returns, a success
  recorded after every answered attempt waiting for its cut (its worker cuts them, and
  waits until none is left unrecorded, one answered in the same instant included), or,
  if the watchdog answered it already, a timeout recorded as a cut's is (its worker
  cuts the waiting attempts and itself): never behind an attempt answered after it. The
  real breaker must equal it whenever every task is blocked, and at every attempt's
  start;
- the *promise* model sees a timeout at its answer and a success at its return, as if
  every timed-out attempt had been cut at its deadline. A call that starts must find it
  closed, a refused call open, and once the cuts are made the breaker must be what it
  says.

Checked after every rule, and at every step of the clock:

- every call gets exactly one reply: its value exactly ``delay`` after its start, a
  ``ToolTimeoutError`` exactly ``timeout_s`` after its start (the watchdog's answer,
  not a clock step later), ``CircuitOpenError`` without its tool running, or
  ``ActorCrashedError`` for an attempt a kill cut; no call goes without one past its
  time, and one ``CallFailed`` per failed call;
- no attempt starts while a timed-out attempt of its actor waits for its cut: the
  worker cuts them and waits for their records first, even if the sweeper never ran;
- a call that waits for a worker does not wait for the sweeper: while one waits, no
  answered attempt is left uncut and every worker of the bulkhead runs an attempt;
- a deferred cut is made at the latest ``MAX_DEFER_S`` after the answer (busy run or
  not), at the sweeper's first look at an idle run (``idle_look``), on ``settle()``,
  and by a kill;
- a kill leaves nothing of the killed incarnation running and no call without a reply;
- ``sup.stats()``: calls, successes, failures, rejected, cancelled (0), timeouts,
  in_flight + queued and restarts are what the replies say, so
  ``calls == successes + failures + rejected + cancelled`` once nothing is in flight.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest
import trio
import trio.testing
from hypothesis import event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from trio_thread import TrioThread  # type: ignore[import-not-found, unused-ignore]

import toolvisor as tv
from toolvisor.actors import sweeper
from toolvisor.events import CallFailed, Event
from toolvisor.testing import settle

T = TypeVar("T")

TOOL = "dep"
TIMEOUT_S = 0.5
#: The clock's step; every delay and every start is a multiple of it (binary fractions:
#: the sums are exact, so an answer "at start + timeout_s" is an exact comparison).
GRID = 1 / 32
#: idle_look's step past a grid point: more than IDLE_S (the sweeper's sleep ends), and
#: the next grid point is more than IDLE_S farther (the run counts as idle).
TICK = 2.0**-9
#: The latest a deferred cut may come after its answer: MAX_DEFER_S, the sweeper's
#: period, and a margin for float sums.
DEFER_BOUND = sweeper.MAX_DEFER_S + 2 * sweeper.IDLE_S
assert sweeper.IDLE_S < TICK and TICK + sweeper.IDLE_S < GRID < sweeper.MAX_DEFER_S < TIMEOUT_S
assert (TIMEOUT_S / GRID).is_integer()

RETRIES: dict[str, Callable[[], tv.IRetryPolicy]] = {
    "none": tv.NoRetryPolicy,
    "fixed": lambda: tv.FixedRetryPolicy(max_attempts=1),
    "exponential": lambda: tv.ExponentialBackoffRetryPolicy(max_attempts=1, jitter=0.0),
}

CALL = st.one_of(
    st.just(("hang", math.inf)),
    st.integers(0, round(TIMEOUT_S / GRID) - 1).map(lambda k: ("ok", k * GRID)),
    # Returns before a busy run's sweeper cuts it (at most 0.125 s after the answer), or
    # as it does.
    st.integers(1, 4).map(lambda k: ("slow", TIMEOUT_S + k * GRID)),
)


class Breaker:
    """The breaker's rule, as the model sees it."""

    def __init__(self, threshold: int) -> None:
        self.threshold = threshold
        self.failures = 0
        self.open = False

    def success(self) -> None:
        if not self.open:
            self.failures = 0

    def failure(self) -> None:
        if not self.open:
            self.failures += 1
            self.open = self.failures >= self.threshold

    def reset(self) -> None:
        self.failures, self.open = 0, False


@dataclass
class Attempt:
    """A call's one attempt, as its tool saw it."""

    n: int
    kind: str
    delay: float  # when the tool returns, after its start (inf: never)
    start: float
    life: int  # the actor incarnation that ran it
    answered_at: float | None = None  # the watchdog answered its call (timeout)
    ended: str | None = None  # "returned" or "cut"

    @property
    def due(self) -> float:
        """When its call must be answered."""
        return self.start + min(self.delay, TIMEOUT_S)


class DeferredCuts(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.run: TrioThread | None = None
        self.calls: dict[int, tuple[str, float]] = {}
        self.replies: dict[int, list[tuple[str, Any, float]]] = {}
        self.attempts: dict[int, Attempt] = {}
        self.failed_events: list[CallFailed] = []
        self.violations: list[str] = []
        self.life = 0  # incarnations of the actor killed so far
        self.kill_times: list[float] = []
        self.busy: trio.CancelScope | None = None
        #: The ends of tools that returned while answered attempts waited for their cut:
        #: the breaker records them after those ("success" or "failure").
        self.postponed: list[str] = []
        self.notes: list[str] = []  # for hypothesis.event(), which only the test thread has

    # -------------------------------------------------------------- the trio run

    async def _setup(self, nursery: trio.Nursery) -> None:
        self.nursery = nursery
        await nursery.start(self._host)

    async def _host(self, task_status: trio.TaskStatus[None]) -> None:
        async with tv.open_supervisor(max_restarts=10_000) as sup:
            self.sup = sup
            sup.subscribe(self._on_event)
            await sup.spawn(self.spec, self._tool)
            task_status.started()
            await trio.sleep_forever()  # until the run ends

    def step(self, fn: Callable[[], Awaitable[T]]) -> T:
        assert self.run is not None
        result: T = self.run.step(fn)
        return result

    def now(self) -> float:
        return trio.current_time()

    async def _call(self, n: int) -> None:
        try:
            value = await self.sup.execute(TOOL, {"n": n})
        except Exception as exc:
            self.replies[n].append(("error", exc, self.now()))
        else:
            self.replies[n].append(("value", value, self.now()))

    async def _tool(self, args: dict[str, Any]) -> int:
        n: int = args["n"]
        self._started(n)
        try:
            await trio.sleep(self.calls[n][1])  # a hang: inf, forever
        except trio.Cancelled:
            self._cut(n)
            raise
        self._returned(n)
        return n

    async def _busy(self, task_status: trio.TaskStatus[trio.CancelScope]) -> None:
        # A timer always due within IDLE_S of the clock, which _step_clock moves on
        # before each step (so it never fires): the run is never idle for the sweeper.
        # (A task sleeping IDLE_S / 4 in a loop is not that on a MockClock: it wakes in
        # the sweeper's batch, and before it ran again trio counts it neither runnable
        # nor waiting for a deadline.)
        with trio.CancelScope() as scope:
            task_status.started(scope)
            await trio.sleep_forever()

    # -------------------------------------------------------------- what happens

    def _real_breaker(self) -> tuple[str, int]:
        return str(self.breaker.get_state(TOOL)), self.breaker.failure_count(TOOL)

    def _pending(self) -> list[Attempt]:
        """The attempts answered at their timeout whose tool was neither cut nor returned."""
        return [
            a
            for a in self.attempts.values()
            if a.life == self.life and a.answered_at is not None and a.ended is None
        ]

    def _started(self, n: int) -> None:
        now = self.now()
        if n in self.attempts:
            self.violations.append(f"call {n} ran twice")
            return
        if now % GRID:
            self.violations.append(f"call {n} started at {now}, between two clock steps")
        pending = [a.n for a in self._pending()]
        if pending:
            self.violations.append(
                f"call {n} started at {now} while timed-out attempts {pending} were not cut"
            )
        if self.record.open:
            self.violations.append(f"call {n} started at {now} with the breaker open")
        if self.promise.open:
            self.violations.append(
                f"call {n} started at {now} although the timeouts before it opened the breaker"
            )
        real = self._real_breaker()
        if real != ("closed", self.record.failures):
            self.violations.append(
                f"call {n} started at {now} seeing the breaker {real}, "
                f"the attempts before it left ('closed', {self.record.failures})"
            )
        kind, delay = self.calls[n]
        self.attempts[n] = Attempt(n, kind, delay, now, self.life)

    def _returned(self, n: int) -> None:
        attempt = self.attempts[n]
        attempt.ended = "returned"
        if attempt.answered_at is not None:
            # Its caller has the timeout, and so has the breaker: its worker cuts the
            # answered attempts still waiting, itself among them, and the records come
            # as theirs do, in the same instant, before any attempt answered later.
            self.notes.append("an answered attempt returned before its cut")
            self._recorded_as_cut()
            return
        self.promise.success()
        if self._pending():
            self.notes.append("a tool ended while answered attempts waited for their cut")
            self.postponed.append("success")
        else:
            self._record("success")

    def _record(self, end: str) -> None:
        if end == "success":
            self.record.success()
        else:
            self.record.failure()

    def _cut(self, n: int) -> None:
        attempt = self.attempts[n]
        attempt.ended = "cut"
        if attempt.life < self.life:
            return  # cut by the kill: no record (and the restart reset the breaker)
        if attempt.answered_at is None:
            self.violations.append(f"call {n}'s attempt was cut at {self.now()}, unanswered")
        self._recorded_as_cut()

    def _recorded_as_cut(self) -> None:
        self.record.failure()  # recorded as it unwinds, before anything else runs
        if not self._pending():
            for end in self.postponed:  # the ends that waited for these records
                self._record(end)
            self.postponed.clear()

    def _on_event(self, e: Event) -> None:
        if not isinstance(e, CallFailed):
            return
        self.failed_events.append(e)
        if e.error_type == "ToolTimeoutError":
            # The watchdog answers every attempt due now in one pass: the first event of
            # the pass marks them all.
            for a in self.attempts.values():
                if (
                    a.life == self.life
                    and a.ended is None
                    and a.answered_at is None
                    and a.start + TIMEOUT_S == e.at
                ):
                    a.answered_at = e.at
                    self.promise.failure()
        elif e.error_type == "CircuitOpenError":
            if not self.record.open or self._real_breaker()[0] != "open":
                self.violations.append(f"a call was refused at {e.at} with the breaker closed")
            if not self.promise.open:
                self.violations.append(f"a call was refused at {e.at}: no timeouts opened it")

    # -------------------------------------------------------------- checks

    def _check(self, *, deep: bool) -> list[str]:
        """What is wrong now (every task blocked); ``deep`` adds the stats."""
        now = self.now()
        problems: list[str] = []
        waiting: list[int] = []
        counts = {"value": 0, "timeout": 0, "open": 0, "crashed_ran": 0, "unreplied": 0}
        for n, (kind, _) in self.calls.items():
            replies = self.replies[n]
            attempt = self.attempts.get(n)
            if len(replies) > 1:
                problems.append(f"call {n} got {len(replies)} replies: {replies}")
                continue
            if not replies:
                counts["unreplied"] += 1
                if attempt is None:
                    waiting.append(n)
                elif attempt.life < self.life:
                    problems.append(f"call {n} of a killed incarnation got no reply")
                elif now >= attempt.due:
                    problems.append(f"call {n} ({kind}) got no reply by {attempt.due} (now {now})")
                continue
            [(how, what, at)] = replies
            if how == "value":
                counts["value"] += 1
                if (
                    attempt is None
                    or kind != "ok"
                    or what != n
                    or at != attempt.start + attempt.delay
                    or attempt.ended != "returned"
                ):
                    problems.append(f"call {n} ({kind}, {attempt}): value {what!r} at {at}")
            elif isinstance(what, tv.ToolTimeoutError):
                counts["timeout"] += 1
                if (
                    attempt is None
                    or kind == "ok"
                    or at != attempt.start + TIMEOUT_S
                    or attempt.answered_at != at
                ):
                    problems.append(f"call {n} ({kind}, {attempt}): timed out at {at}")
            elif isinstance(what, tv.CircuitOpenError):
                counts["open"] += 1
                if attempt is not None:
                    problems.append(f"call {n} refused by the breaker after it ran: {attempt}")
            elif isinstance(what, tv.ActorCrashedError):
                counts["crashed_ran"] += 1
                if (
                    attempt is None
                    or attempt.life >= self.life
                    or attempt.answered_at is not None
                    or at != self.kill_times[attempt.life]
                ):
                    problems.append(f"call {n} ({attempt}): {what!r} at {at}")
            else:
                problems.append(f"call {n} ({kind}): unexpected {what!r} at {at}")
        pending = self._pending()
        for a in pending:
            assert a.answered_at is not None
            if now - a.answered_at >= DEFER_BOUND:
                problems.append(f"call {a.n}, answered at {a.answered_at}, not cut by {now}")
        if waiting:
            running = [a.n for a in self.attempts.values() if a.ended is None]
            if pending or len(running) != self.bulkhead:
                problems.append(
                    f"calls {waiting} wait for a worker while attempts {running} run "
                    f"(of them {[a.n for a in pending]} answered)"
                )
        for a in self.attempts.values():
            if a.life < self.life and a.ended is None:
                problems.append(f"call {a.n}'s attempt still runs after its actor was killed")
        answered = sum(a.answered_at is not None for a in self.attempts.values())
        timeouts = sum(e.error_type == "ToolTimeoutError" for e in self.failed_events)
        errors = sum(how == "error" for rs in self.replies.values() for how, _, _ in rs)
        if not answered == timeouts == counts["timeout"] or len(self.failed_events) != errors:
            problems.append(
                f"{answered} attempts answered, {timeouts} timeout events, "
                f"{counts['timeout']} timeout replies; {len(self.failed_events)} CallFailed "
                f"for {errors} failed calls"
            )
        state, count = self._real_breaker()
        model = ("open" if self.record.open else "closed", self.record.failures)
        if state != model[0] or (state == "closed" and count != model[1]):
            problems.append(f"the breaker is {state} ({count}), the model says {model}")
        if deep:
            stats = self.sup.stats(TOOL)
            want = {
                "calls": len(self.calls),
                "successes": counts["value"],
                "failures": counts["timeout"] + counts["crashed_ran"],
                "rejected": counts["open"],
                "cancelled": 0,
                "timeouts": counts["timeout"],
                "in_flight + queued": counts["unreplied"],
                "restarts": self.life,
            }
            unreplied = stats.in_flight + stats.queued
            got = {k: getattr(stats, k, None) for k in want} | {"in_flight + queued": unreplied}
            if got != want:
                problems.append(f"stats {got}, the model says {want}")
            ended = stats.successes + stats.failures + stats.rejected + stats.cancelled
            if stats.calls != ended + unreplied:
                problems.append(f"the stats do not add up: {stats}")
        return problems

    def _expect(self, problems: list[str]) -> None:
        problems = list(dict.fromkeys(self.violations + problems))  # each one once
        assert not problems, "\n".join(problems)

    async def _step_clock(self, seconds: float) -> None:
        assert self.run is not None
        if self.busy is not None:
            self.busy.deadline = self.now() + seconds + sweeper.IDLE_S / 2
        self.run.clock.jump(seconds)
        await trio.testing.wait_all_tasks_blocked()
        self.violations.extend(self._check(deep=False))

    def _next_timer(self, *, answers_only: bool) -> float:
        """The earliest moment an attempt of the model must be answered at its timeout,
        or (not ``answers_only``) returns."""
        due = [
            a.start + TIMEOUT_S
            for a in self.attempts.values()
            if a.ended is None and a.answered_at is None and a.delay > TIMEOUT_S
        ]
        if not answers_only:
            due += [a.start + a.delay for a in self.attempts.values() if a.ended is None]
        return min(due, default=math.inf)

    # -------------------------------------------------------------- rules

    @initialize(
        threshold=st.integers(1, 4),
        bulkhead=st.integers(1, 4),
        retry=st.sampled_from(sorted(RETRIES)),
        busy=st.booleans(),
    )
    def start(self, threshold: int, bulkhead: int, retry: str, busy: bool) -> None:
        self.bulkhead = bulkhead
        self.record = Breaker(threshold)
        self.promise = Breaker(threshold)
        self.breaker = tv.StandardCircuitBreakerPolicy(
            failure_threshold=threshold, recovery_timeout=10_000.0
        )
        self.spec = tv.FunctionToolSpec(
            id=f"{TOOL}-v1",
            tool_name=TOOL,
            parameters=[tv.IntegerParameter(name="n", required=True)],
            timeout_s=TIMEOUT_S,
            max_concurrency=bulkhead,
            retry_policy=RETRIES[retry](),
            circuit_breaker_policy=self.breaker,
        )
        self.run = TrioThread(self._setup)
        if busy:
            self.toggle_busy()

    @rule(calls=st.lists(CALL, min_size=1, max_size=2))
    def call(self, calls: list[tuple[str, float]]) -> None:
        async def issue() -> None:
            for kind, delay in calls:
                n = len(self.calls) + 1
                self.calls[n] = (kind, delay)
                self.replies[n] = []
                self.nursery.start_soon(self._call, n)

        self.step(issue)

    @rule(steps=st.sampled_from([1, 2, 3, 4, 8, 16, 32]))
    def advance(self, steps: int) -> None:
        async def advance() -> None:
            for _ in range(steps):
                await self._step_clock(GRID)

        self.step(advance)

    @rule(answers_only=st.booleans())
    def advance_to_the_next_deadline(self, answers_only: bool) -> None:
        """Step the clock until the next timeout (or return) is due, and stop there."""

        async def advance() -> None:
            due = self._next_timer(answers_only=answers_only)
            for _ in range(40 if due < math.inf else 1):
                await self._step_clock(GRID)
                if self.now() >= due:
                    return

        self.step(advance)

    @precondition(lambda self: self.busy is None)
    @rule()
    def idle_look(self) -> None:
        """The sweeper's first look at an idle run cuts every deferred worker."""

        async def look() -> None:
            await self._step_clock(TICK)
            pending = [a.n for a in self._pending()]
            if pending:
                self.violations.append(f"an idle look at {self.now()} left {pending} uncut")
            await self._step_clock(GRID - TICK)  # back on the grid

        self.step(look)

    @rule()
    def toggle_busy(self) -> None:
        async def toggle() -> None:
            if self.busy is None:
                self.busy = await self.nursery.start(self._busy)
                self.busy.deadline = self.now() + sweeper.IDLE_S / 2
            else:
                self.busy.cancel()
                self.busy = None

        self.step(toggle)

    @precondition(lambda self: any(a.ended is None for a in self.attempts.values()))
    @rule()
    def kill(self) -> None:
        """Kill the actor while attempts run (deferred or not): restarted at once."""

        async def kill() -> None:
            self.kill_times.append(self.now())
            self.life += 1  # what ran so far ran in the killed incarnation
            self.record.reset()  # the restart resets the breaker
            self.promise.reset()
            self.postponed.clear()
            await self.sup.kill(TOOL)

        self.step(kill)

    @rule()
    def settle(self) -> None:
        async def flush() -> list[str]:
            await settle()
            pending = [a.n for a in self._pending()]
            return [f"settle() left {pending} uncut"] if pending else []

        self._expect(self.step(flush))
        self.check_the_promise()

    def check_the_promise(self) -> None:
        """Once every cut is made, the breaker is what the timeouts' answers made it."""
        real = self.step(self._async(self._real_breaker))
        model = ("open" if self.promise.open else "closed", self.promise.failures)
        assert real[0] == model[0] and (real[0] == "open" or real[1] == model[1]), (real, model)

    @staticmethod
    def _async(fn: Callable[[], T]) -> Callable[[], Awaitable[T]]:
        async def run() -> T:
            return fn()

        return run

    # -------------------------------------------------------------- invariants

    @invariant()
    def nothing_is_wrong(self) -> None:
        for note in self.notes:
            event(note)
        self.notes.clear()
        if self.run is not None:
            self._expect(self.step(self._async(lambda: self._check(deep=True))))

    def teardown(self) -> None:
        if self.run is None:
            return
        try:
            self.step(settle)
            self._expect(self.step(self._async(lambda: self._check(deep=True))))
            self.check_the_promise()
        finally:
            self.run.stop()  # cancels what still runs: no more checks


def test_deferred_cuts_keep_their_promises() -> None:
    run_state_machine_as_test(
        DeferredCuts,
        settings=settings(max_examples=300, stateful_step_count=30, deadline=None),
    )


@pytest.mark.slow
def test_deferred_cuts_keep_their_promises_longer() -> None:
    run_state_machine_as_test(
        DeferredCuts,
        settings=settings(max_examples=500, stateful_step_count=40, deadline=None),
    )


class _SubclassedNoRetry(tv.NoRetryPolicy):
    """NoRetryPolicy, but not a built-in type: the watchdog cuts at the timeout itself."""


@pytest.mark.parametrize(
    "retry",
    [
        pytest.param(tv.NoRetryPolicy, id="deferred cut"),
        pytest.param(_SubclassedNoRetry, id="cut at the deadline"),
    ],
)
async def test_a_success_between_a_timeouts_answer_and_its_cut_keeps_the_order(
    autojump_clock: trio.testing.MockClock, retry: Callable[[], tv.IRetryPolicy]
) -> None:
    # Threshold 2: A1 and A2 time out in a row (at 1.0 and 1.5); S, started before A2's
    # answer, succeeds 0.5 ms after it, before the sweeper's look (1.501). Cut at the
    # deadline, A2's timeout opens the breaker and S's late success changes nothing: D
    # is refused. Deferred, S's success waits for A2's cut and record (S's worker makes
    # the cut), so the breaker sees the same order and D is refused too.
    async def tool(args: dict[str, Any]) -> float:
        await trio.sleep(args["sleep"])
        return float(args["sleep"])

    breaker = tv.StandardCircuitBreakerPolicy(failure_threshold=2, recovery_timeout=10_000)
    spec = tv.FunctionToolSpec(
        id="order-v1",
        tool_name="order",
        parameters=[tv.NumericParameter(name="sleep", required=True)],
        timeout_s=1.0,
        max_concurrency=2,
        retry_policy=retry(),
        circuit_breaker_policy=breaker,
    )
    replies: dict[str, object] = {}

    async def call(name: str, sleep: float) -> None:
        try:
            replies[name] = await sup.execute("order", {"sleep": sleep})
        except Exception as exc:
            replies[name] = type(exc)

    async with tv.open_supervisor() as sup:
        await sup.spawn(spec, tool)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(call, "A1", 100.0)
            await trio.sleep(0.5)
            nursery.start_soon(call, "A2", 100.0)
            await trio.sleep(0.5)
            nursery.start_soon(call, "S", 0.5005)
            await trio.sleep(1.0)
            nursery.start_soon(call, "D", 0.0)
        await settle()
        assert replies == {
            "A1": tv.ToolTimeoutError,
            "A2": tv.ToolTimeoutError,
            "S": 0.5005,
            "D": tv.CircuitOpenError,
        }
        assert sup.stats("order").breaker_state == "open"
