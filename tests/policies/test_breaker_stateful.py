"""Stateful tests: the Standard and Adaptive breakers against a small reference model.

Each rule is applied to the real policy and to the model; after every step the state,
the counters and ``retry_after`` must agree. Time is a ``MockClock`` shared by every
``trio.run`` of the machine, moved only by the ``advance`` rule.

Calls that complete at once go through the public ``execute_with_breaker`` in a
``trio.run`` per step, or through a real supervisor and its tool actor (the caller's
fail-fast on ``retry_after``, then the actor's attempt loop). Calls that stay in flight
across steps (concurrent half-open trials, late results of an older epoch,
cancellations) use the circuit object's own steps (``admit`` / ``record_*`` /
``abandon``), which ``execute_with_breaker`` is made of: the code that runs, not a copy.
"""

from __future__ import annotations

import math
import os
from collections import deque
from fractions import Fraction
from typing import Literal

import attrs
import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

import toolvisor
from toolvisor.errors import CircuitOpenError
from toolvisor.policies import AdaptiveCircuitBreakerPolicy, StandardCircuitBreakerPolicy

TOOL = "tool"
Outcome = Literal["success", "failure", "excluded"]


def budget(default: int, ci: int) -> int:
    """Hypothesis examples: a few for ``pytest``, more in CI (HYPOTHESIS_PROFILE=ci)."""
    return ci if os.environ.get("HYPOTHESIS_PROFILE") == "ci" else default


class BoomError(Exception):
    """A tool failure."""


class BenignError(Exception):
    """An excluded error: counts as a success."""


@attrs.define
class Model:
    """The reference breaker: the rules of the policies' docstrings, written plainly."""

    threshold: int
    recovery: float
    success_threshold: int
    max_trials: int
    # Adaptive only (None for Standard): base, max, error-rate threshold, window size.
    adaptive: tuple[int, int, float, int] | None = None
    state: str = "closed"
    fail: int = 0
    succ: int = 0
    opened_at: float = -math.inf
    epoch: int = 0
    trials: int = 0
    window: deque[bool] = attrs.field(factory=deque)

    def effective_state(self, now: float) -> str:
        if self.state == "open" and now >= self.opened_at + self.recovery:
            return "half_open"
        return self.state

    def retry_after(self, now: float) -> float | None:
        """None when a call would be admitted now, else the seconds until one may be."""
        if self.state == "closed":
            return None
        if self.state == "open":
            wait = self.opened_at + self.recovery - now
            return wait if wait > 0 else None
        return 0.0 if self.trials >= self.max_trials else None

    def current_threshold(self) -> int:
        if self.adaptive is None:
            return self.threshold
        base, high, rate_limit, _size = self.adaptive
        failures = sum(self.window)
        if failures == 0:
            return high
        rate = Fraction(failures, len(self.window))
        limit = Fraction(rate_limit)
        if rate >= limit:
            return base
        exact = base + (high - base) * (1 - rate / limit)
        return math.floor(exact + Fraction(1, 2))

    def _move(self, state: str, now: float) -> None:
        self.state = state
        self.epoch += 1
        self.trials = 0
        self.succ = 0
        if state == "open":
            self.opened_at = now
        if state == "closed":
            self.fail = 0

    def admit(self, now: float) -> int | float:
        """Return the admitted epoch (int) or the rejection's retry_after (float)."""
        if self.state == "closed":
            return self.epoch
        if self.state == "open":
            if now < self.opened_at + self.recovery:
                return float(self.opened_at + self.recovery - now)
            self._move("half_open", now)
        if self.trials >= self.max_trials:
            return 0.0
        self.trials += 1
        return self.epoch

    def complete(self, epoch: int, outcome: Outcome, now: float) -> bool:
        """Record an outcome; return whether it opened the breaker."""
        if epoch != self.epoch:
            return False
        if self.state == "half_open":
            self.trials -= 1
        if self.adaptive is not None:
            self.window.append(outcome == "failure")
            while len(self.window) > self.adaptive[3]:
                self.window.popleft()
        if outcome != "failure":
            self.fail = 0
            if self.state == "half_open":
                self.succ += 1
                if self.succ >= self.success_threshold:
                    self._move("closed", now)
            return False
        self.fail += 1
        if self.state == "half_open" or self.fail >= self.current_threshold():
            self._move("open", now)
            return True
        return False

    def abandon(self, epoch: int) -> None:
        if epoch == self.epoch and self.state == "half_open":
            self.trials -= 1

    def reset(self) -> None:
        self._move("closed", 0.0)
        self.fail = 0
        self.window.clear()
        self.opened_at = -math.inf


class BreakerMachine(RuleBasedStateMachine):
    """Shared rules; subclasses build the policy and the model in ``setup``."""

    policy: StandardCircuitBreakerPolicy | AdaptiveCircuitBreakerPolicy
    model: Model

    def __init__(self) -> None:
        super().__init__()
        self.clock = trio.testing.MockClock()
        # In-flight calls: (model epoch, policy epoch) they were admitted in.
        self.pending: list[tuple[int, int]] = []

    # -- helpers -----------------------------------------------------------------------

    @property
    def now(self) -> float:
        return self.clock.current_time()

    def _call(self, outcome: Outcome) -> tuple[str, BaseException | None]:
        async def tool() -> str:
            if outcome == "failure":
                raise BoomError
            if outcome == "excluded":
                raise BenignError
            return "ok"

        async def run() -> tuple[str, BaseException | None]:
            try:
                return await self.policy.execute_with_breaker(tool, TOOL), None
            except Exception as exc:
                return "raised", exc

        return trio.run(run, clock=self.clock)

    # -- rules ---------------------------------------------------------------------------

    @rule(outcome=st.sampled_from(["success", "failure", "excluded"]))
    def call(self, outcome: Outcome) -> None:
        now = self.now
        admitted = self.model.admit(now)
        value, error = self._call(outcome)
        if isinstance(admitted, float):
            assert isinstance(error, CircuitOpenError)
            assert error.retry_after == admitted
            return
        tripped = self.model.complete(admitted, outcome, now)
        if tripped:
            assert isinstance(error, CircuitOpenError)
            assert error.retry_after == self.model.recovery
            assert isinstance(error.__cause__, BoomError)
        elif outcome == "success":
            assert (value, error) == ("ok", None)
        else:
            assert isinstance(error, BoomError if outcome == "failure" else BenignError)

    @rule(outcome=st.sampled_from(["success", "failure", "excluded"]))
    def supervised_call(self, outcome: Outcome) -> None:
        """The same call through a supervisor: fail-fast in the caller, then the actor."""
        now = self.now
        admitted = self.model.admit(now)
        spec = toolvisor.FunctionToolSpec(id="t-v1", tool_name=TOOL)
        spec.circuit_breaker_policy = self.policy

        async def tool(args: dict[str, object]) -> str:
            if outcome == "failure":
                raise BoomError
            if outcome == "excluded":
                raise BenignError
            return "ok"

        async def run() -> tuple[toolvisor.ToolResult, toolvisor.ToolStats]:
            async with toolvisor.open_supervisor() as sup:
                await sup.spawn(spec, tool)
                [result] = await sup.execute_many([(TOOL, {})])
                return result, sup.stats(TOOL)

        result, stats = trio.run(run, clock=self.clock)
        assert stats.calls == stats.successes + stats.failures + stats.rejected == 1
        if isinstance(admitted, float):
            assert isinstance(result.error, CircuitOpenError)
            assert result.error.retry_after == admitted
            assert (result.attempts, stats.rejected) == (0, 1)
            return
        tripped = self.model.complete(admitted, outcome, now)
        assert result.attempts == 1
        if outcome == "success":
            assert (result.ok, result.value) == (True, "ok")
            return
        # The tool ran: its own error, also when that failure opened the breaker.
        assert isinstance(result.error, BoomError if outcome == "failure" else BenignError)
        notes = getattr(result.error, "__notes__", [])
        assert any("breaker" in note and "opened" in note for note in notes) == tripped

    @rule()
    def start_call(self) -> None:
        now = self.now
        expected = self.model.admit(now)
        circuit = self.policy._circuit(TOOL)
        if isinstance(expected, float):
            with pytest.raises(CircuitOpenError) as info:
                circuit.admit(now)
            assert info.value.retry_after == expected
        else:
            self.pending.append((expected, circuit.admit(now)))

    @precondition(lambda self: self.pending)
    @rule(data=st.data(), outcome=st.sampled_from(["success", "failure", "excluded", "cancel"]))
    def finish_call(self, data: st.DataObject, outcome: str) -> None:
        expected, epoch = self.pending.pop(data.draw(st.integers(0, len(self.pending) - 1)))
        circuit = self.policy._circuit(TOOL)
        now = self.now
        if outcome == "cancel":
            self.model.abandon(expected)
            circuit.abandon(epoch)
        elif outcome == "success":
            assert not self.model.complete(expected, "success", now)
            circuit.record_success(epoch, now)
        else:
            exc = BoomError() if outcome == "failure" else BenignError()
            tripped = self.model.complete(expected, outcome, now)  # type: ignore[arg-type]
            error = circuit.record_failure(epoch, exc, now)
            assert (error is not None) == tripped

    @rule(dt=st.sampled_from([0.0, 0.5, 1.0, 5.0, 10.0]) | st.floats(0, 40))
    def advance(self, dt: float) -> None:
        self.clock.jump(dt)

    @rule()
    def advance_to_half_open(self) -> None:
        remaining = self.model.retry_after(self.now)
        if remaining:
            self.clock.jump(remaining)

    @rule()
    def reset(self) -> None:
        self.model.reset()
        self.policy.reset(TOOL)

    # -- invariants ----------------------------------------------------------------------

    @invariant()
    def agrees_with_model(self) -> None:
        now = self.now

        async def read() -> tuple[str, float | None]:
            return self.policy.get_state(TOOL), self.policy.retry_after(TOOL)

        state, retry_after = trio.run(read, clock=self.clock)
        assert state == self.model.effective_state(now)
        assert retry_after == self.model.retry_after(now)
        assert self.policy.failure_count(TOOL) == self.model.fail
        assert self.policy.success_count(TOOL) == self.model.succ
        if TOOL in self.policy._circuits:
            circuit = self.policy._circuit(TOOL)
            assert circuit.trials == self.model.trials
            assert 0 <= circuit.trials <= self.model.max_trials
            # clean: a success would change nothing (closed, no failure counted, no
            # listener, no adaptive window), so admission and recording are skipped.
            quiet = self.model.adaptive is None
            assert circuit.clean == (quiet and self.model.state == "closed" and not self.model.fail)


_settings = settings(
    max_examples=budget(25, 120),
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


class StandardMachine(BreakerMachine):
    @initialize(
        threshold=st.integers(1, 4),
        recovery=st.sampled_from([0.0, 1.0, 10.0, 30.0]),
        success_threshold=st.integers(1, 3),
        max_trials=st.integers(1, 3),
    )
    def setup(
        self, threshold: int, recovery: float, success_threshold: int, max_trials: int
    ) -> None:
        self.policy = StandardCircuitBreakerPolicy(
            failure_threshold=threshold,
            recovery_timeout=recovery,
            success_threshold=success_threshold,
            half_open_max_calls=max_trials,
            exclude=[BenignError],
        )
        self.model = Model(threshold, recovery, success_threshold, max_trials)


class AdaptiveMachine(BreakerMachine):
    @initialize(
        base=st.integers(1, 3),
        extra=st.integers(0, 5),
        rate=st.sampled_from([0.1, 0.25, 1 / 3, 0.5, 1.0]),
        window=st.integers(1, 12),
        recovery=st.sampled_from([0.0, 1.0, 30.0]),
        success_threshold=st.integers(1, 2),
        max_trials=st.integers(1, 2),
    )
    def setup(
        self,
        base: int,
        extra: int,
        rate: float,
        window: int,
        recovery: float,
        success_threshold: int,
        max_trials: int,
    ) -> None:
        self.policy = AdaptiveCircuitBreakerPolicy(
            base_threshold=base,
            max_threshold=base + extra,
            error_rate_threshold=rate,
            window_size=window,
            recovery_timeout=recovery,
            success_threshold=success_threshold,
            half_open_max_calls=max_trials,
            exclude=[lambda exc: isinstance(exc, BenignError)],
        )
        self.model = Model(
            base + extra,
            recovery,
            success_threshold,
            max_trials,
            adaptive=(base, base + extra, rate, window),
        )

    @invariant()
    def threshold_agrees(self) -> None:
        assert isinstance(self.policy, AdaptiveCircuitBreakerPolicy)
        assert self.policy.current_threshold(TOOL) == self.model.current_threshold()


TestStandardBreakerStateful = StandardMachine.TestCase
TestStandardBreakerStateful.settings = _settings
TestAdaptiveBreakerStateful = AdaptiveMachine.TestCase
TestAdaptiveBreakerStateful.settings = _settings
