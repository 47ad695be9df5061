"""HedgingPolicy on its own: validation, modes, and the pure schedule of a race."""

from __future__ import annotations

import math

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

import toolvisor as tv
from toolvisor.errors import CircuitOpenError, IdempotencyOutcomeUnknownError, ValidationError
from toolvisor.policies import HedgeSchedule, HedgingPolicy
from toolvisor.policies.hedging import stops_hedging


class SlowError(Exception):
    """A tool failure hedging answers with another attempt."""


def test_defaults_are_pollys() -> None:
    policy = HedgingPolicy()
    assert (policy.max_hedged_attempts, policy.delay) == (1, 2.0)
    assert policy.max_attempts == 2
    assert policy.mode == "latency"
    assert tv.HedgingPolicy is HedgingPolicy


@pytest.mark.parametrize(
    ("delay", "mode"), [(0.5, "latency"), (0, "parallel"), (0.0, "parallel"), (-1, "fallback")]
)
def test_the_sign_of_delay_picks_the_mode(delay: float, mode: str) -> None:
    policy = HedgingPolicy(delay=delay)
    assert policy.mode == mode
    assert isinstance(policy.delay, float)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"max_hedged_attempts": 0}, "max_hedged_attempts"),
        ({"max_hedged_attempts": -1}, "max_hedged_attempts"),
        ({"max_hedged_attempts": 11}, "max_hedged_attempts"),
        ({"max_hedged_attempts": 1.0}, "max_hedged_attempts"),
        ({"max_hedged_attempts": True}, "max_hedged_attempts"),
        ({"delay": math.inf}, "delay"),
        ({"delay": -math.inf}, "delay"),
        ({"delay": math.nan}, "delay"),
        ({"delay": "2"}, "delay"),
        ({"delay": True}, "delay"),
        ({"delay": None}, "delay"),
    ],
)
def test_bad_settings_are_refused_naming_the_field(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ValueError, match=f"'{field}'") as caught:
        HedgingPolicy(**kwargs)  # type: ignore[arg-type]
    assert repr(next(iter(kwargs.values()))) in str(caught.value)


def test_a_misspelt_keyword_suggests_the_right_one() -> None:
    with pytest.raises(TypeError, match="did you mean 'max_hedged_attempts'"):
        HedgingPolicy(max_hedged_attempt=2)  # type: ignore[call-arg]


def test_the_policy_is_frozen_and_readable() -> None:
    policy = HedgingPolicy(max_hedged_attempts=2, delay=0.25)
    with pytest.raises(AttributeError):
        policy.delay = 1.0  # type: ignore[misc]
    assert repr(policy) == "HedgingPolicy(max_hedged_attempts=2, delay=0.25)"
    assert policy == HedgingPolicy(2, 0.25)


def test_a_spec_takes_a_policy_or_none() -> None:
    spec = tv.FunctionToolSpec(id="s", tool_name="s", hedging=HedgingPolicy())
    spec.hedging = None
    with pytest.raises(ValueError, match="hedging must be a HedgingPolicy or None"):
        spec.hedging = 2.0  # type: ignore[assignment]


# --------------------------------------------------------------------------- the schedule


def run_schedule(policy: HedgingPolicy, fails_at: dict[int, float], until: float) -> list[float]:
    """Drive a schedule as the attempt loop does: the start times of the attempts, when
    attempt ``i`` fails ``fails_at[i]`` seconds after it starts and the others hang."""
    now = 0.0
    schedule = policy.schedule(now)
    starts: list[float] = []
    ends: dict[int, float] = {}
    while True:
        while schedule.next_at() <= now:
            index = schedule.launch(now)
            starts.append(now)
            if index in fails_at:
                ends[index] = now + fails_at[index]
        if schedule.over:
            return starts
        next_end = min(ends.values(), default=math.inf)
        now = min(schedule.next_at(), next_end, until)
        if now >= until:
            return starts
        for index, at in list(ends.items()):
            if at <= now:
                del ends[index]
                schedule.failed(SlowError())


def test_latency_mode_starts_the_next_attempt_delay_after_the_latest() -> None:
    policy = HedgingPolicy(max_hedged_attempts=2, delay=1.0)
    assert run_schedule(policy, {}, until=100) == [0.0, 1.0, 2.0]


def test_latency_mode_starts_the_next_attempt_at_once_when_one_fails() -> None:
    policy = HedgingPolicy(max_hedged_attempts=3, delay=1.0)
    # attempt 0 fails at 0.25: attempt 1 then; 1 s later attempt 2, 1 s later attempt 3
    assert run_schedule(policy, {0: 0.25}, until=100) == [0.0, 0.25, 1.25, 2.25]


def test_parallel_mode_starts_every_attempt_at_once() -> None:
    policy = HedgingPolicy(max_hedged_attempts=3, delay=0)
    assert run_schedule(policy, {}, until=100) == [0.0, 0.0, 0.0, 0.0]


def test_fallback_mode_waits_for_a_failure_however_slow_the_attempt() -> None:
    policy = HedgingPolicy(max_hedged_attempts=2, delay=-1)
    assert run_schedule(policy, {}, until=1e6) == [0.0]
    assert run_schedule(policy, {0: 3.0, 1: 0.5}, until=1e6) == [0.0, 3.0, 3.5]


def test_a_race_is_over_once_every_attempt_failed() -> None:
    schedule = HedgingPolicy(max_hedged_attempts=1, delay=-1).schedule(0.0)
    assert schedule.launch(0.0) == 0
    assert not schedule.over
    schedule.failed(SlowError())
    assert schedule.next_at() == -math.inf  # the hedge is due at once
    assert schedule.launch(1.0) == 1
    schedule.failed(SlowError())
    assert schedule.over and schedule.next_at() == math.inf
    assert (schedule.launched, schedule.running) == (2, 0)


@pytest.mark.parametrize(
    "error",
    [
        CircuitOpenError("t", retry_after=1.0),
        IdempotencyOutcomeUnknownError("k", tool="t"),
        ValidationError([], tool="t"),
        TypeError("a bug"),
    ],
)
def test_a_refusal_or_a_bug_stops_further_hedges(error: Exception) -> None:
    assert stops_hedging(error)
    schedule = HedgingPolicy(max_hedged_attempts=3, delay=1.0).schedule(0.0)
    schedule.launch(0.0)
    schedule.launch(1.0)
    schedule.failed(error)
    assert schedule.next_at() == math.inf  # not even by time
    assert not schedule.over  # attempt 1 still runs
    schedule.failed(SlowError())
    assert schedule.over


def test_the_schedule_refuses_steps_the_loop_never_takes() -> None:
    schedule = HedgingPolicy(delay=1.0).schedule(0.0)
    with pytest.raises(RuntimeError, match="running"):
        schedule.failed(SlowError())
    schedule.launch(0.0)
    with pytest.raises(RuntimeError, match="due"):
        schedule.launch(0.5)
    assert "launched=1 running=1" in repr(schedule)


class HedgeMachine(RuleBasedStateMachine):
    """The schedule against a model written from Polly's description of the modes:
    the first attempt at once; one more at once per failure (unless it stops hedging);
    in latency mode one ``delay`` after the latest start, in parallel mode all at once;
    never more than ``1 + max_hedged_attempts``."""

    @initialize(
        hedges=st.integers(1, 4),
        delay=st.sampled_from([-1.0, 0.0, 0.5, 1.0, 3.0]),
    )
    def start(self, hedges: int, delay: float) -> None:
        self.policy = HedgingPolicy(max_hedged_attempts=hedges, delay=delay)
        self.now = 0.0
        self.schedule: HedgeSchedule = self.policy.schedule(self.now)
        # the model
        self.starts: list[float] = []
        self.earned = 1  # starts earned by the race's beginning and by failures
        self.used = 0  # earned starts taken
        self.stopped = False
        self.running = 0

    def model_due(self) -> bool:
        if self.stopped or len(self.starts) >= self.policy.max_attempts:
            return False
        if self.earned > self.used:
            return True
        if self.policy.mode == "fallback":
            return False
        return self.now >= self.starts[-1] + self.policy.delay

    @rule(dt=st.sampled_from([0.0, 0.25, 0.5, 1.0, 2.5]))
    def wait(self, dt: float) -> None:
        self.now += dt

    @rule()
    def launch_if_due(self) -> None:
        assert (self.schedule.next_at() <= self.now) == self.model_due()
        if self.model_due():
            if self.earned > self.used:
                self.used += 1
            index = self.schedule.launch(self.now)
            assert index == len(self.starts)
            self.starts.append(self.now)
            self.running += 1

    @precondition(lambda self: self.running > 0)
    @rule(stop=st.booleans())
    def an_attempt_fails(self, stop: bool) -> None:
        self.schedule.failed(CircuitOpenError("t", retry_after=1.0) if stop else SlowError())
        self.running -= 1
        if stop:
            self.stopped = True
        else:
            self.earned += 1

    @invariant()
    def agrees_with_the_model(self) -> None:
        assert self.schedule.launched == len(self.starts) <= self.policy.max_attempts
        assert self.schedule.running == self.running
        over = self.running == 0 and (self.stopped or len(self.starts) >= self.policy.max_attempts)
        assert self.schedule.over == over
        if self.running == 0 and not over:
            assert self.schedule.next_at() == -math.inf  # nothing runs: the next is due now

    @invariant()
    def fallback_runs_one_attempt_at_a_time(self) -> None:
        if self.policy.mode == "fallback":
            assert self.running <= 1


HedgeMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=30, deadline=None)
TestHedgeMachine = HedgeMachine.TestCase
