"""Timeouts answered at the deadline and the breaker, as a Hypothesis state machine.

A tool with one attempt per call (``NoRetryPolicy``) and ``timeout_s=1`` behind a
Standard breaker: a first attempt cut at its timeout ends its call, so the actor's
watchdog answers the caller at the deadline and the attempt is cut once the program is
idle (or as the next call is about to start); the breaker records the failure when the
cut attempt unwinds. Rules issue
batches of calls in one instant (instant successes, instant failures, hangs), against a
small bulkhead so that calls queue, and move a MockClock. The model replays, in the
order they happened, every attempt's start, every success, and every call's failure
as its end was published (``CallFailed``, at the answer), with the breaker's rule:
``failure_threshold`` consecutive failures open it, a success resets the count, and
an open breaker refuses every call (its recovery is never reached here). It checks:

- no attempt starts while the model's breaker is open: a call that starts after a
  timed-out attempt was answered sees the breaker that attempt opened, although the
  breaker records it later;
- a call is refused with ``CircuitOpenError`` only while the model's breaker is open,
  and the breaker's own state and failure count agree with the model's once every task
  has settled (``toolvisor.testing.settle``: the deferred cuts included);
- every call ends exactly once, a hang with ``ToolTimeoutError`` exactly ``timeout_s``
  after its attempt started (the answer is not late by a single clock tick).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import trio
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)
from trio_thread import TrioThread

import toolvisor as tv
from toolvisor.events import CallFailed, Event
from toolvisor.testing import settle

TIMEOUT_S = 1.0
STEP_S = 0.25


class DeclinedError(Exception):
    """The tool's own failure."""


class TimeoutsAndBreaker(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        #: What happened, in order: ("start", n, t), ("ok", n, t), ("failed", error type, t).
        self.log: list[tuple[Any, ...]] = []
        self.kinds: dict[int, str] = {}
        self.outcomes: dict[int, list[tuple[str, Any, float]]] = {}
        self.seq = 0
        self.threshold = 1
        self.run: TrioThread | None = None

    # -------------------------------------------------------------- the trio run

    async def _setup(self, nursery: trio.Nursery) -> None:
        self.nursery = nursery
        await nursery.start(self._host)

    async def _host(self, task_status: trio.TaskStatus[None]) -> None:
        async with tv.open_supervisor() as sup:
            self.sup = sup
            await sup.spawn(self.spec, self._tool)
            sup.subscribe(self._on_event)
            task_status.started()
            await trio.sleep_forever()  # until the run ends

    async def _tool(self, args: dict[str, Any]) -> int:
        n: int = args["n"]
        self.log.append(("start", n, trio.current_time()))
        kind = self.kinds[n]
        if kind == "fail":
            raise DeclinedError(f"call {n}")
        if kind == "hang":
            await trio.sleep_forever()
        self.log.append(("ok", n, trio.current_time()))
        return n

    def _on_event(self, event: Event) -> None:
        if isinstance(event, CallFailed):
            self.log.append(("failed", event.error_type, event.at))

    def step(self, fn: Callable[[], Awaitable[Any]]) -> Any:
        assert self.run is not None
        return self.run.step(fn)

    async def _call(self, n: int) -> None:
        try:
            value = await self.sup.execute("pay", {"n": n})
        except Exception as exc:
            self.outcomes[n].append(("error", exc, trio.current_time()))
        else:
            self.outcomes[n].append(("value", value, trio.current_time()))

    # -------------------------------------------------------------- rules

    @initialize(threshold=st.integers(1, 4), bulkhead=st.integers(1, 3))
    def start(self, threshold: int, bulkhead: int) -> None:
        self.threshold = threshold
        self.spec = tv.FunctionToolSpec(
            id="pay-v1",
            tool_name="pay",
            parameters=[tv.IntegerParameter(name="n", required=True)],
            timeout_s=TIMEOUT_S,
            max_concurrency=bulkhead,
            circuit_breaker_policy=tv.StandardCircuitBreakerPolicy(
                failure_threshold=threshold, recovery_timeout=10_000.0
            ),
        )
        self.run = TrioThread(self._setup)

    @rule(kinds=st.lists(st.sampled_from(["ok", "fail", "hang", "hang"]), min_size=1, max_size=6))
    def issue(self, kinds: list[str]) -> None:
        async def issue() -> None:
            for kind in kinds:
                self.seq += 1
                self.kinds[self.seq] = kind
                self.outcomes[self.seq] = []
                self.nursery.start_soon(self._call, self.seq)

        self.step(issue)

    @rule(seconds=st.sampled_from([0.25, 0.5, 1.0, 1.5]))
    def advance(self, seconds: float) -> None:
        async def advance() -> None:
            assert self.run is not None
            for _ in range(round(seconds / STEP_S)):
                self.run.clock.jump(STEP_S)
                await trio.testing.wait_all_tasks_blocked()

        self.step(advance)

    # -------------------------------------------------------------- the model

    def replay(self) -> tuple[bool, int]:
        """The model's breaker after the log: (open, consecutive failures)."""
        is_open, failures = False, 0
        for entry in self.log:
            what = entry[0]
            if what == "start":
                assert not is_open, f"call {entry[1]} started while the breaker had to be open"
            elif what == "ok":
                failures = 0
            elif entry[1] == "CircuitOpenError":
                assert is_open, f"a call was refused while the breaker had to be closed: {entry}"
            elif not is_open:
                failures += 1
                is_open = failures >= self.threshold
        return is_open, failures

    @invariant()
    def the_breaker_is_the_models(self) -> None:
        if self.run is None:
            return
        # The breaker records the timed-out attempts once the run is idle; calls queued
        # behind them may start meanwhile, so the model reads the log after that.
        self.step(settle)
        is_open, failures = self.replay()

        async def read() -> tuple[str, int]:
            stats = self.sup.stats("pay")
            return stats.breaker_state, self.spec.circuit_breaker_policy.failure_count("pay")

        state, count = self.step(read)
        assert state == ("open" if is_open else "closed")
        if not is_open:
            assert count == failures

    @invariant()
    def every_call_ends_once_and_a_hang_at_its_timeout(self) -> None:
        starts = {e[1]: e[2] for e in self.log if e[0] == "start"}
        for n, outcomes in self.outcomes.items():
            assert len(outcomes) <= 1, (n, outcomes)
            if not outcomes:
                # Still running: only a hang (or a call queued behind one) can be.
                assert self.kinds[n] == "hang" or n not in starts, (n, self.kinds[n])
                continue
            [(how, what, at)] = outcomes
            kind = self.kinds[n]
            if isinstance(what, tv.CircuitOpenError):
                assert n not in starts  # refused: the tool did not run
            elif kind == "ok":
                assert (how, what) == ("value", n)
            elif kind == "fail":
                assert isinstance(what, DeclinedError)
            else:
                assert isinstance(what, tv.ToolTimeoutError), what
                assert at == starts[n] + TIMEOUT_S

    def teardown(self) -> None:
        if self.run is not None:
            self.run.stop()


def test_timeouts_answered_at_the_deadline_keep_the_breaker_in_order() -> None:
    run_state_machine_as_test(
        TimeoutsAndBreaker,
        settings=settings(max_examples=100, stateful_step_count=25, deadline=None),
    )


@pytest.mark.slow
def test_timeouts_answered_at_the_deadline_keep_the_breaker_in_order_longer() -> None:
    run_state_machine_as_test(
        TimeoutsAndBreaker,
        settings=settings(max_examples=600, stateful_step_count=40, deadline=None),
    )
