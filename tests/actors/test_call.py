"""The Call: exactly one end, counted once, and its waiting caller.

A Hypothesis state machine drives real ``Call`` objects (sharing one ``Counters``, as the
calls of one tool do) through every transition the actor, the supervisor and the
caller's task apply to them, against a small model; the direct tests below it cover
the waiting caller: its deadline, its own cancellation, and a reply racing the deadline.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import attrs
import pytest
import trio
import trio.testing
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
)

import toolvisor as tv
from toolvisor.actors.call import Call, CallState
from toolvisor.actors.stats import Counters

QUEUED, RUNNING, ABANDONED, DONE = "queued", "running", "abandoned", "done"


class ToolFailedError(Exception):
    """A tool's own failure."""


@attrs.define(eq=False)
class Model:
    """What one call should be, and the objects to check it by."""

    call: Call
    state: str = QUEUED
    end: str | None = None  # success | failure | rejected | cancelled | timeout
    value: Any = None
    error: BaseException | None = None
    attempts: int = 0
    scope: trio.CancelScope | None = None  # the scope the call runs under now
    cut: list[trio.CancelScope] = attrs.Factory(list)  # scopes it must have cancelled
    kept: list[trio.CancelScope] = attrs.Factory(list)  # scopes it must not have cancelled


def in_trio(fn: Callable[[], Any]) -> Any:
    """Run ``fn`` inside a trio run (a Call's end reads trio's clock for its latency)."""

    async def main() -> Any:
        return fn()

    return trio.run(main, clock=trio.testing.MockClock())


async def _cancelled_error() -> trio.Cancelled:
    with trio.CancelScope() as scope:
        scope.cancel()
        try:
            await trio.lowlevel.checkpoint()
        except trio.Cancelled as exc:
            return exc
    raise AssertionError("not cancelled")


class CallMachine(RuleBasedStateMachine):
    """Every transition of ``Call``, applied to real calls and to the model."""

    calls = Bundle("calls")

    def __init__(self) -> None:
        super().__init__()
        self.counters = Counters()
        self.models: list[Model] = []
        self.expect = {"calls": 0, "successes": 0, "failures": 0, "rejected": 0}
        self.expect |= {"cancelled": 0, "timeouts": 0, "cache_hits": 0}

    # -------------------------------------------------------------- making calls

    @rule(target=calls, timeout=st.none() | st.floats(0.5, 100))
    def new_call(self, timeout: float | None) -> Model:
        call = Call("t", {"x": 1}, tv.ExecutionContext(), self.counters, timeout=timeout, started=0)
        model = Model(call)
        self.models.append(model)
        self.expect["calls"] += 1
        assert call.state is CallState.QUEUED and not call.done and not call.ended
        return model

    # -------------------------------------------------------------- the actor's side

    @rule(m=calls)
    def start(self, m: Model) -> None:
        scope = trio.CancelScope()
        took = m.call.start(scope)
        assert took == (m.state == QUEUED)
        if took:
            m.state, m.scope = RUNNING, scope
        else:
            m.kept.append(scope)  # a call not taken never holds the scope

    @rule(m=calls)
    def start_again(self, m: Model) -> None:
        scope = trio.CancelScope()
        m.call.start_again(scope)
        if m.state == RUNNING:
            assert m.scope is not None
            m.kept.append(m.scope)  # the old attempt's scope ended on its own
            m.scope = scope
        else:
            m.kept.append(scope)

    @precondition(lambda self: any(m.state == RUNNING for m in self.models))
    @rule(data=st.data())
    def attempt_runs(self, data: st.DataObject) -> None:
        m = data.draw(st.sampled_from([m for m in self.models if m.state == RUNNING]))
        m.call.attempts += 1  # what the attempt loop does as the tool starts
        m.attempts += 1

    # -------------------------------------------------------------- the ends

    def _ends(self, m: Model) -> bool:
        """Whether an end other than the caller's (cancel/time_out) takes effect now."""
        return m.state in (QUEUED, RUNNING)

    def _ended(self, m: Model, end: str, *, cut: bool = False) -> None:
        if cut and m.scope is not None:
            m.cut.append(m.scope)
        elif m.scope is not None:
            m.kept.append(m.scope)
        m.state, m.end, m.scope = DONE, end, None

    def _end(self, m: Model, how: str, value: int = 0, cached: bool = False) -> None:
        """Apply one of the actor's ends to ``m``'s call (inside trio) and to the model."""
        effect = self._ends(m)
        call = m.call
        if how == "succeed":
            assert call.succeed(value, cached=cached) is effect
            if effect:
                self.expect["successes"] += 1
                self.expect["cache_hits"] += cached
                m.value = value
                self._ended(m, "success")
            return
        error: Exception
        if how == "fail":
            error = ToolFailedError("boom")
            assert call.fail(error) is effect
            end = "failure"
        elif how == "reject":
            error = tv.CircuitOpenError("t", 1.0)
            assert call.reject(error) is effect
            end = "rejected"
        else:
            error = tv.ActorCrashedError("t", RuntimeError("crash"))
            end = "rejected" if m.state == QUEUED and not m.attempts else "failure"
            assert call.fail_or_reject(error) is effect
        if effect:
            self.expect["rejected" if end == "rejected" else "failures"] += 1
            m.error = error
            self._ended(m, end)

    @rule(m=calls, cached=st.booleans(), value=st.integers())
    def succeed(self, m: Model, cached: bool, value: int) -> None:
        in_trio(lambda: self._end(m, "succeed", value, cached))

    @rule(m=calls, how=st.sampled_from(["fail", "reject", "fail_or_reject"]))
    def fail_reject(self, m: Model, how: str) -> None:
        in_trio(lambda: self._end(m, how))

    @rule(
        m=calls,
        first=st.sampled_from(["watchdog", "worker"]),
        reply=st.sampled_from(["succeed", "fail"]),
    )
    def attempt_deadline_races_the_reply(self, m: Model, first: str, reply: str) -> None:
        """The watchdog answers a call whose first attempt ran out of ``timeout_s``
        (``fail`` with the attempt's ToolTimeoutError, counted in ``timeouts`` as the
        runner does) in the same instant as the worker's own reply: whichever comes
        first is the call's one end, the other is a no-op. The watchdog answers only a
        running call (``ToolActor._answer``)."""
        if m.state != RUNNING:
            return
        effect = True

        def race() -> list[bool]:
            timed_out = tv.ToolTimeoutError("t", 0.5)
            self.counters.timeouts += 1  # ToolRunner.attempt_timed_out, before the answer
            self.expect["timeouts"] += 1
            ends: dict[str, Callable[[], bool]] = {
                "watchdog": lambda: m.call.fail(timed_out),
                "worker": (
                    (lambda: m.call.succeed(7))
                    if reply == "succeed"
                    else (lambda: m.call.fail(ToolFailedError("late")))
                ),
            }
            order = [first, "worker" if first == "watchdog" else "watchdog"]
            took = [ends[who]() for who in order]
            if effect:
                if first == "watchdog":
                    m.error = timed_out
                    m.value = None
                elif reply == "succeed":
                    m.value = 7
                else:
                    m.error = m.call.outcome.error  # type: ignore[union-attr]
            return took

        assert in_trio(race) == [True, False]
        if effect:
            if first == "watchdog" or reply == "fail":
                self.expect["failures"] += 1
                self._ended(m, "failure")
            else:
                self.expect["successes"] += 1
                self._ended(m, "success")

    @rule(m=calls)
    def cancel(self, m: Model) -> None:
        effect = m.state != DONE
        assert in_trio(m.call.cancel) is effect
        if effect:
            self.expect["cancelled"] += 1
            self._ended(m, "cancelled", cut=True)

    @rule(m=calls)
    def time_out(self, m: Model) -> None:
        effect = m.state != DONE
        error = in_trio(m.call.time_out)
        if not effect:
            assert error is None
            return
        assert isinstance(error, tv.ToolTimeoutError)
        assert (error.tool, error.scope) == ("t", "call")
        assert error.timeout_s == (m.call.timeout or 0.0)
        self.expect["timeouts"] += 1
        self.expect["failures"] += 1
        m.error = error
        self._ended(m, "timeout", cut=True)

    @rule(m=calls)
    def abandon(self, m: Model) -> None:
        effect = m.state in (QUEUED, RUNNING)
        assert m.call.abandon() is effect
        if effect:
            if m.scope is not None:
                m.cut.append(m.scope)
            m.state, m.scope = ABANDONED, None

    @rule(m=calls, kind=st.sampled_from(["cancelled", "error"]))
    def settle(self, m: Model, kind: str) -> None:
        async def main() -> None:
            exc = await _cancelled_error() if kind == "cancelled" else ToolFailedError("escaped")
            m.call.settle(exc)
            if m.state == DONE:
                return
            if kind == "cancelled" or m.state == ABANDONED:
                self.expect["cancelled"] += 1
                self._ended(m, "cancelled", cut=True)
            else:
                self.expect["failures"] += 1
                m.error = exc
                self._ended(m, "failure")

        trio.run(main, clock=trio.testing.MockClock())

    # -------------------------------------------------------------- the waiting caller

    @rule(m=calls, end=st.sampled_from(["succeed", "fail", "reject", "none"]))
    def wait_for_an_end(self, m: Model, end: str) -> None:
        """A task waits for the call; another ends it, or its deadline does (or, with
        none, the waiting task's own scope gives up)."""
        got: list[Any] = []
        clock = trio.testing.MockClock()
        times_out = False

        async def waiter() -> None:
            try:
                got.append(("value", await m.call.wait()))
            except Exception as exc:
                got.append(("error", exc))

        async def main() -> None:
            nonlocal times_out
            async with trio.open_nursery() as nursery:
                nursery.start_soon(waiter)
                await trio.testing.wait_all_tasks_blocked()
                if end != "none":
                    self._end(m, end, value=42)
                if m.state != DONE:
                    if math.isinf(m.call.deadline):
                        nursery.cancel_scope.cancel()
                    else:
                        times_out = True
                        clock.jump(m.call.deadline - trio.current_time())

        trio.run(main, clock=clock)
        if not got:  # the waiting task's own scope gave up
            assert m.state != DONE
            self.expect["cancelled"] += 1
            self._ended(m, "cancelled", cut=True)
            return
        [(kind, result)] = got
        if times_out:
            assert isinstance(result, tv.ToolTimeoutError)
            assert (result.scope, result.timeout_s) == ("call", m.call.timeout)
            self.expect["timeouts"] += 1
            self.expect["failures"] += 1
            m.error = result
            self._ended(m, "timeout", cut=True)
            return
        self._check_reply(m, kind, result)

    @rule(m=calls)
    def waiter_cancelled(self, m: Model) -> None:
        """The waiting task's own scope is cancelled: the call is cancelled (if not over)."""
        cancelled = False

        async def main() -> None:
            nonlocal cancelled
            with trio.CancelScope() as scope:
                scope.cancel()
                try:
                    await m.call.wait()
                except trio.Cancelled:
                    cancelled = True
                    raise

        before = m.state
        if before == DONE and m.end == "cancelled":
            with pytest.raises(RuntimeError, match="cancelled"):
                trio.run(main, clock=trio.testing.MockClock())
            return
        try:
            trio.run(main, clock=trio.testing.MockClock())
        except Exception as exc:
            assert before == DONE
            self._check_reply(m, "error", exc)
            return
        if before == DONE:
            assert not cancelled
            assert m.end == "success"
            return
        assert cancelled
        self.expect["cancelled"] += 1
        self._ended(m, "cancelled", cut=True)

    def _check_reply(self, m: Model, kind: str, result: Any) -> None:
        assert m.state == DONE
        if m.end == "success":
            assert (kind, result) == ("value", m.value)
        elif m.end == "cancelled":  # nobody can wait for a reply to a cancelled call
            assert kind == "error" and isinstance(result, RuntimeError)
        else:
            assert (kind, result) == ("error", m.error)

    # -------------------------------------------------------------- invariants

    @invariant()
    def counters_match_the_model(self) -> None:
        c = self.counters
        seen = {name: getattr(c, name) for name in self.expect}
        assert seen == self.expect
        ended = c.successes + c.failures + c.rejected + c.cancelled
        open_calls = sum(m.state != DONE for m in self.models)
        assert c.calls == ended + open_calls

    @invariant()
    def states_and_scopes_match_the_model(self) -> None:
        in_trio(self._check_states)  # a scope's cancel_called reads trio's clock

    def _check_states(self) -> None:
        names = {QUEUED: CallState.QUEUED, RUNNING: CallState.RUNNING}
        names |= {ABANDONED: CallState.ABANDONED, DONE: CallState.DONE}
        for m in self.models:
            call = m.call
            assert call.state is names[m.state]
            assert call.ended == (m.state == DONE)
            assert call.done == (m.state in (ABANDONED, DONE))
            assert call.attempts == m.attempts
            assert all(s.cancel_called for s in m.cut)
            assert not any(s.cancel_called for s in m.kept)
            if m.scope is not None:
                assert not m.scope.cancel_called
            if m.state == DONE:
                if m.end == "success":
                    assert call.result() == m.value
                elif m.end == "cancelled":
                    assert call.outcome is None
                else:
                    with pytest.raises(BaseException) as info:
                        call.result()
                    assert info.value is m.error


CallMachine.TestCase.settings = settings(max_examples=25, stateful_step_count=25)
test_call_state_machine = CallMachine.TestCase


@pytest.mark.slow
def test_call_state_machine_longer() -> None:
    from hypothesis.stateful import run_state_machine_as_test

    run_state_machine_as_test(
        CallMachine, settings=settings(max_examples=150, stateful_step_count=40)
    )


# ------------------------------------------------------------------ the waiting caller


def new_call(timeout: float | None) -> Call:
    deadline = math.inf if timeout is None else trio.current_time() + timeout
    return Call(
        "t",
        {"x": 1},
        tv.ExecutionContext(),
        Counters(),
        deadline=deadline,
        timeout=timeout,
        started=trio.current_time(),
    )


async def test_a_deadline_that_fires_times_the_call_out_and_cuts_its_attempt(
    autojump_clock: trio.testing.MockClock,
) -> None:
    call = new_call(timeout=5)
    attempt = trio.CancelScope()
    assert call.start(attempt)
    call.attempts = 1
    with pytest.raises(tv.ToolTimeoutError) as info:
        await call.wait()
    assert trio.current_time() == 5
    assert (info.value.scope, info.value.timeout_s) == ("call", 5)
    assert attempt.cancel_called
    assert not call.succeed("late")  # the actor's reply after the deadline is dropped
    c = call.counters
    assert (c.calls, c.failures, c.timeouts, c.successes, c.cancelled) == (1, 1, 1, 0, 0)
    with pytest.raises(tv.ToolTimeoutError):
        await call.wait()  # awaited again: the same end


async def test_the_callers_own_cancellation_cancels_the_call_and_its_attempt(
    autojump_clock: trio.testing.MockClock,
) -> None:
    call = new_call(timeout=100)
    attempt = trio.CancelScope()
    assert call.start(attempt)
    with trio.move_on_after(3) as caller:
        await call.wait()
    assert caller.cancelled_caught
    assert attempt.cancel_called
    assert call.ended and call.outcome is None
    assert not call.fail(ToolFailedError("late"))
    assert call.time_out() is None
    c = call.counters
    assert (c.calls, c.cancelled, c.failures, c.timeouts) == (1, 1, 0, 0)


async def test_a_caller_cancelled_while_queued_drops_the_call_before_it_starts() -> None:
    call = new_call(timeout=None)
    with trio.CancelScope() as caller:
        caller.cancel()
        await call.wait()
    assert call.ended
    assert not call.start(trio.CancelScope())  # the actor takes it later: dropped
    assert call.counters.cancelled == 1


@pytest.mark.parametrize("reply_at", [4.5, 5.0, 5.5])
async def test_a_reply_racing_the_deadline_gives_one_end(
    autojump_clock: trio.testing.MockClock, reply_at: float
) -> None:
    call = new_call(timeout=5)
    attempt = trio.CancelScope()
    assert call.start(attempt)
    replied: list[bool] = []
    got: list[Any] = []

    async def actor() -> None:
        await trio.sleep_until(reply_at)
        replied.append(call.succeed("value"))

    async def caller() -> None:
        try:
            got.append(await call.wait())
        except tv.ToolTimeoutError as exc:
            got.append(exc)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(caller)
        nursery.start_soon(actor)
    c = call.counters
    [answer] = got
    assert c.calls == c.successes + c.failures == 1
    if answer == "value":
        assert replied == [True] and c.successes == 1 and not attempt.cancel_called
    else:
        assert isinstance(answer, tv.ToolTimeoutError)
        assert replied == [False] and c.timeouts == c.failures == 1 and attempt.cancel_called
    if reply_at < 5:
        assert answer == "value"
    elif reply_at > 5:
        assert isinstance(answer, tv.ToolTimeoutError)
