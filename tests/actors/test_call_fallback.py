"""A Call with a fallback: every end the fallback replaces becomes one success, once.

A Hypothesis state machine drives real ``Call`` objects carrying a ``FallbackPolicy``
(as ``Call.new`` gives them one from their spec) through the actor's, the send path's
and the caller's ends, against a small model: which errors are replaced, what the reply
is, and that the counters add up with ``fallbacks`` inside ``successes``.
"""

from __future__ import annotations

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
    rule,
    run_state_machine_as_test,
)

import toolvisor as tv
from toolvisor.actors.call import Call, CallState
from toolvisor.actors.stats import Counters


class ReplacedError(Exception):
    """A failure the fallback replaces."""


class KeptError(Exception):
    """A failure the fallback leaves alone."""


def _fn(error: Exception) -> Any:
    return ("fn", type(error).__name__)


def _broken(error: Exception) -> Any:
    raise RuntimeError("the fallback itself failed")


ON = (ReplacedError, tv.CircuitOpenError, tv.ToolTimeoutError)
POLICIES = {
    "value": tv.FallbackPolicy(value="fallback", on=ON),
    "fn": tv.FallbackPolicy(fn=_fn, on=ON),
    "broken": tv.FallbackPolicy(fn=_broken, on=ON),
}
ERRORS = {
    "replaced": lambda: ReplacedError("down"),
    "kept": lambda: KeptError("bug"),
    "circuit_open": lambda: tv.CircuitOpenError("t", 1.0),
    "overloaded": lambda: tv.ToolOverloadedError("t", max_concurrency=1, queue_size=0),
}


@attrs.define(eq=False)
class Model:
    call: Call
    policy: str
    ended: bool = False
    gave_up: bool = False  # abandoned: only the caller's own ends take effect
    reply: Any = None  # the value, or the error, once ended
    replaced: bool = False


def in_trio(fn: Any) -> Any:
    async def main() -> Any:
        return fn()

    return trio.run(main, clock=trio.testing.MockClock())


class FallbackCallMachine(RuleBasedStateMachine):
    calls = Bundle("calls")

    def __init__(self) -> None:
        super().__init__()
        self.counters = Counters()
        self.events: list[tv.Event] = []
        self.counters.publish = self.events.append
        self.models: list[Model] = []
        self.expect = dict.fromkeys(
            ("calls", "successes", "failures", "rejected", "cancelled", "fallbacks", "timeouts"),
            0,
        )

    @rule(target=calls, policy=st.sampled_from(sorted(POLICIES)))
    def new_call(self, policy: str) -> Model:
        call = Call("t", {}, tv.ExecutionContext(), self.counters, timeout=5.0, started=0)
        call.fallback = POLICIES[policy]
        self.expect["calls"] += 1
        model = Model(call, policy)
        self.models.append(model)
        return model

    @rule(m=calls)
    def start(self, m: Model) -> None:
        m.call.start(trio.CancelScope())

    @rule(m=calls)
    def attempt_runs(self, m: Model) -> None:
        if m.call.state == CallState.RUNNING:
            m.call.attempts += 1

    def _expect_end(self, m: Model, error: Exception, counter: str) -> None:
        replaces = isinstance(error, ON) and m.policy != "broken"
        m.ended = True
        if replaces:
            self.expect["successes"] += 1
            self.expect["fallbacks"] += 1
            m.replaced = True
            m.reply = "fallback" if m.policy == "value" else ("fn", type(error).__name__)
        else:
            self.expect[counter] += 1
            m.reply = error

    @rule(
        m=calls,
        how=st.sampled_from(["fail", "reject", "fail_or_reject"]),
        kind=st.sampled_from(sorted(ERRORS)),
    )
    def an_end(self, m: Model, how: str, kind: str) -> None:
        error = ERRORS[kind]()
        effect = not m.ended and not m.gave_up
        if how == "fail_or_reject":
            counter = (
                "rejected"
                if m.call.state == CallState.QUEUED and not m.call.attempts
                else "failures"
            )
        else:
            counter = "failures" if how == "fail" else "rejected"
        assert in_trio(lambda: getattr(m.call, how)(error)) is effect
        if effect:
            self._expect_end(m, error, counter)

    @rule(m=calls)
    def succeed(self, m: Model) -> None:
        effect = not m.ended and not m.gave_up
        assert in_trio(lambda: m.call.succeed("real")) is effect
        if effect:
            m.ended, m.reply = True, "real"
            self.expect["successes"] += 1

    @rule(m=calls)
    def abandon(self, m: Model) -> None:
        if m.call.abandon():
            m.gave_up = True

    @rule(m=calls)
    def time_out(self, m: Model) -> None:
        error = in_trio(m.call.time_out)
        if m.ended:
            assert error is None
            return
        assert isinstance(error, tv.ToolTimeoutError) and error.scope == "call"
        self.expect["timeouts"] += 1
        self._expect_end(m, error, "failures")

    @rule(m=calls)
    def cancel(self, m: Model) -> None:
        assert in_trio(m.call.cancel) is (not m.ended)
        if not m.ended:  # never replaced
            m.ended, m.reply = True, None
            self.expect["cancelled"] += 1

    @invariant()
    def counters_match_the_model(self) -> None:
        c = self.counters
        got = {k: getattr(c, k) for k in self.expect}
        assert got == self.expect
        used = [e for e in self.events if isinstance(e, tv.FallbackUsed)]
        failed = [e for e in self.events if isinstance(e, tv.CallFailed)]
        assert len(used) == c.fallbacks
        assert len(failed) == c.failures + c.rejected  # a replaced error is no failure
        assert len(used) + len(failed) == len(self.events)
        if all(m.ended for m in self.models):
            assert c.calls == c.successes + c.failures + c.rejected + c.cancelled

    @invariant()
    def replies_match_the_model(self) -> None:
        for m in self.models:
            call = m.call
            assert call.ended is m.ended
            if not m.ended:
                continue
            assert (call.replaced is not None) is m.replaced
            if m.reply is None:
                assert call.outcome is None and call.end_kind == "cancelled"
            elif isinstance(m.reply, Exception):
                assert call.outcome is not None and call.outcome.error is m.reply  # type: ignore[union-attr]
                if m.policy == "broken" and isinstance(m.reply, ON):
                    assert any("the fallback of tool 't' raised" in n for n in m.reply.__notes__)
            else:
                assert call.result() == m.reply and call.end_kind == "succeeded"


FallbackCallMachine.TestCase.settings = settings(max_examples=25, stateful_step_count=25)
test_call_with_a_fallback = FallbackCallMachine.TestCase


@pytest.mark.slow
def test_call_with_a_fallback_longer() -> None:
    run_state_machine_as_test(
        FallbackCallMachine, settings=settings(max_examples=200, stateful_step_count=40)
    )
