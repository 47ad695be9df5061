"""The guest run's life and the bridge's calls against a model (Hypothesis stateful).

Rules open and close ``toolvisor.aio`` supervisors on one asyncio loop (they share its
trio guest run), call them, and cancel calls at random moments; after every step the
guest run exists exactly while a supervisor is open, and each supervisor's counters
match the calls the model made, each with one outcome.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from aio_helpers import add_up, make_spec, settled
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

import toolvisor.aio as aio
from toolvisor.aio._guest import Guest


async def nap(args: dict[str, Any]) -> int:
    await asyncio.sleep(args["x"] / 1000)
    return int(args["x"])


class _Open:
    def __init__(self, stack: contextlib.AsyncExitStack, sup: aio.Supervisor) -> None:
        self.stack = stack
        self.sup = sup
        self.calls = 0
        self.values = 0
        self.cancelled = 0


class GuestMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.open: list[_Open] = []

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(asyncio.wait_for(coro, 10))

    @rule()
    def open_supervisor(self) -> None:
        async def enter() -> _Open:
            stack = contextlib.AsyncExitStack()
            sup = await stack.enter_async_context(aio.open_supervisor())
            await sup.spawn(make_spec(), nap)
            return _Open(stack, sup)

        self.open.append(self.run(enter()))

    @precondition(lambda self: self.open)
    @rule(data=st.data(), x=st.integers(0, 3))
    def call(self, data: st.DataObject, x: int) -> None:
        entry = data.draw(st.sampled_from(self.open))
        entry.calls += 1
        assert self.run(entry.sup.execute("t", {"x": x})) == x
        entry.values += 1

    @precondition(lambda self: self.open)
    @rule(data=st.data(), x=st.integers(0, 3), after_ms=st.integers(0, 4))
    def call_and_cancel(self, data: st.DataObject, x: int, after_ms: int) -> None:
        entry = data.draw(st.sampled_from(self.open))
        entry.calls += 1

        async def go() -> str:
            call = asyncio.ensure_future(entry.sup.execute("t", {"x": x}))
            await asyncio.sleep(after_ms / 1000)
            call.cancel()
            try:
                await call
            except asyncio.CancelledError:
                return "cancelled"
            return "value"

        if self.run(go()) == "value":
            entry.values += 1
        else:
            entry.cancelled += 1

        self.run(settled(entry.sup, "t"))

    @precondition(lambda self: self.open)
    @rule(data=st.data())
    def close_supervisor(self, data: st.DataObject) -> None:
        entry = data.draw(st.sampled_from(self.open))
        self.open.remove(entry)
        self.run(entry.stack.aclose())
        stats = entry.sup.stats("t")
        assert stats.calls == entry.calls and add_up(stats)

    @invariant()
    def the_guest_run_lives_while_a_supervisor_is_open(self) -> None:
        guest = Guest._by_loop.get(self.loop)
        if self.open:
            assert guest is not None and guest.users == len(self.open)
        else:
            assert guest is None

    @invariant()
    def every_call_has_exactly_one_outcome(self) -> None:
        for entry in self.open:
            stats = entry.sup.stats("t")
            assert stats.calls == entry.calls == entry.values + entry.cancelled
            assert add_up(stats) and stats.in_flight == 0
            assert stats.failures == 0 and stats.rejected == 0
            # a caller cancelled after its reply still sees CancelledError
            assert stats.successes >= entry.values and stats.cancelled <= entry.cancelled

    def teardown(self) -> None:
        for entry in self.open:
            self.run(entry.stack.aclose())
        self.loop.close()


GuestMachine.TestCase.settings = settings(max_examples=25, stateful_step_count=15, deadline=None)
test_guest_run_and_calls = GuestMachine.TestCase
