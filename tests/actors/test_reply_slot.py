"""The reply slot: exactly one reply per call, whatever the order of events.

A stateful test drives a ``ReplySlot`` through every order of start / start_again /
reply / abandon against a small model; direct tests cover the waiting caller.
"""

from __future__ import annotations

from typing import Any

import attrs
import outcome
import pytest
import trio
import trio.testing
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from toolvisor.actors.messages import ReplySlot, SlotState


class Scope:
    """Stands for the attempt's cancel scope (a real one needs a running trio)."""

    def __init__(self) -> None:
        self.cancel_called = False

    def cancel(self) -> None:
        self.cancel_called = True


def new_scope() -> Any:
    return Scope()


@attrs.define
class SlotModel:
    """QUEUED -> RUNNING -> DONE, or ABANDONED from QUEUED or RUNNING; DONE/ABANDONED end."""

    state: str = "queued"
    value: outcome.Outcome[Any] | None = None
    scope: Scope | None = None  # the attempt a caller giving up must cancel
    counted: bool = False


class ReplySlotMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.slot = ReplySlot()
        self.model = SlotModel()
        self.scopes: list[Scope] = []

    @rule()
    def start(self) -> None:
        scope = new_scope()
        self.scopes.append(scope)
        expected = self.model.state == "queued"
        assert self.slot.start(scope) is expected
        if expected:
            self.model.state = "running"
            self.model.scope = scope

    @rule()
    def start_again(self) -> None:
        scope = new_scope()
        self.scopes.append(scope)
        self.slot.start_again(scope)
        if self.model.state == "running":
            self.model.scope = scope

    @rule(value=st.integers() | st.none(), fail=st.booleans())
    def reply(self, value: int | None, fail: bool) -> None:
        result: outcome.Outcome[Any] = (
            outcome.Error(ValueError(value)) if fail else outcome.Value(value)
        )
        expected = self.model.state in ("queued", "running")
        assert self.slot.reply(result) is expected
        if expected:
            self.model.state = "done"
            self.model.value = result
            self.model.scope = None

    @rule()
    def abandon(self) -> None:
        expected = self.model.state in ("queued", "running")
        assert self.slot.abandon() is expected
        if expected:
            self.model.state = "abandoned"
            if self.model.scope is not None:
                assert self.model.scope.cancel_called  # the running attempt is cut short
            self.model.scope = None

    @rule()
    def abandoned_now(self) -> None:
        expected = self.model.state == "abandoned" and not self.model.counted
        assert self.slot.abandoned_now() is expected
        if expected:
            self.model.counted = True

    @invariant()
    def agrees(self) -> None:
        states = {
            "queued": SlotState.QUEUED,
            "running": SlotState.RUNNING,
            "done": SlotState.DONE,
            "abandoned": SlotState.ABANDONED,
        }
        assert self.slot.state is states[self.model.state]
        assert self.slot.done == (self.model.state in ("done", "abandoned"))
        # Only the attempt the caller abandoned is ever cancelled.
        cancelled = [s for s in self.scopes if s.cancel_called]
        assert len(cancelled) <= 1

    def teardown(self) -> None:
        """What a caller awaiting the slot now gets (awaited twice: a PendingCall may be)."""
        if self.model.state not in ("done", "abandoned"):
            return
        for _ in range(2):
            got: outcome.Outcome[Any] = trio.run(outcome.acapture, self.slot.wait)
            if self.model.state == "abandoned":
                assert isinstance(got, outcome.Error)
                assert isinstance(got.error, RuntimeError)
            elif isinstance(self.model.value, outcome.Value):
                assert got == outcome.Value(self.model.value.value)
            else:
                assert isinstance(self.model.value, outcome.Error)
                assert isinstance(got, outcome.Error)
                assert got.error is self.model.value.error


TestReplySlot = ReplySlotMachine.TestCase


async def test_a_waiting_caller_gets_the_reply_given_later() -> None:
    slot = ReplySlot()
    got: list[object] = []

    async def caller() -> None:
        got.append(await slot.wait())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(caller)
        await trio.testing.wait_all_tasks_blocked()
        assert slot.reply(outcome.Value("ok"))
        assert not slot.reply(outcome.Value("late"))  # a second reply is dropped
    assert got == ["ok"]


async def test_a_cancelled_caller_abandons_the_call_and_cancels_its_attempt(
    autojump_clock: trio.testing.MockClock,
) -> None:
    slot = ReplySlot()
    attempt = trio.CancelScope()
    assert slot.start(attempt)
    with trio.move_on_after(1) as waited:
        await slot.wait()
    assert waited.cancelled_caught
    assert slot.state is SlotState.ABANDONED and attempt.cancel_called
    assert not slot.reply(outcome.Value("too late"))
    with pytest.raises(RuntimeError, match="abandoned"):
        await slot.wait()
