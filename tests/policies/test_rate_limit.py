"""RateLimit on its own: the bucket's schedule, validation, and a GCRA model."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from toolvisor.policies import RateLimit


def test_the_bucket_starts_full_and_burst_none_means_rate() -> None:
    limit = RateLimit(3)
    assert limit.capacity == 3
    assert [limit.reserve(100.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limit.reserve(100.0) == pytest.approx(-1 / 3)  # refused: a token in 1/3 s


def test_tokens_refill_at_rate_per_per_s_up_to_burst() -> None:
    limit = RateLimit(2, per_s=10.0, burst=4)  # one token every 5 s
    for _ in range(4):
        assert limit.reserve(0.0) == 0.0
    assert limit.available(5.0) == pytest.approx(1.0)
    assert limit.reserve(5.0) == 0.0
    assert limit.available(1000.0) == 4.0  # never above burst


def test_a_call_waits_up_to_max_wait_s_in_arrival_order() -> None:
    limit = RateLimit(10, burst=1, max_wait_s=0.25)
    assert limit.reserve(0.0) == 0.0
    assert limit.reserve(0.0) == pytest.approx(0.1)
    assert limit.reserve(0.0) == pytest.approx(0.2)
    assert limit.reserve(0.0) == pytest.approx(-0.3)  # past max_wait_s: refused
    assert limit.available(0.0) == pytest.approx(-2.0)  # the refusal took nothing


def test_a_token_that_comes_at_or_past_the_deadline_is_refused() -> None:
    limit = RateLimit(1, burst=1, max_wait_s=10.0)
    assert limit.reserve(0.0, deadline=0.5) == 0.0
    assert limit.reserve(0.0, deadline=1.0) == pytest.approx(-1.0)
    assert limit.reserve(0.0, deadline=1.5) == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"rate": 0}, "rate"),
        ({"rate": -1}, "rate"),
        ({"rate": math.inf}, "rate"),
        ({"rate": True}, "rate"),
        ({"rate": 1, "per_s": 0}, "per_s"),
        ({"rate": 1, "burst": 0.5}, "burst"),
        ({"rate": 1, "max_wait_s": -1}, "max_wait_s"),
        ({"rate": 1, "max_wait_s": math.nan}, "max_wait_s"),
    ],
)
def test_bad_arguments_name_the_field(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ValueError, match=f"'{field}'"):
        RateLimit(**kwargs)  # type: ignore[arg-type]


def test_repr_shows_the_configuration() -> None:
    assert repr(RateLimit(5, burst=10)) == "RateLimit(rate=5, per_s=1.0, burst=10, max_wait_s=0.0)"


class BucketMachine(RuleBasedStateMachine):
    """The real bucket against GCRA, an independent formulation of the same limit.

    GCRA keeps one "theoretical arrival time" (TAT): each admitted call moves it one
    emission interval ``T = per_s / rate`` later, and a call may run once
    ``TAT - (burst - 1) * T`` has come.
    """

    @initialize(
        rate=st.sampled_from([1, 2, 5, 10]),
        per_s=st.sampled_from([1, 2, 10]),
        burst=st.sampled_from([None, 1, 3, 8]),
        max_wait=st.sampled_from([0, 0.5, 2, 30]),
    )
    def setup(self, rate: int, per_s: int, burst: int | None, max_wait: float) -> None:
        self.limit = RateLimit(rate, per_s=per_s, burst=burst, max_wait_s=max_wait)
        self.interval = Fraction(per_s, rate)
        self.tolerance = (Fraction(burst if burst is not None else rate) - 1) * self.interval
        self.capacity = Fraction(burst if burst is not None else rate)
        self.rate_per_s = Fraction(rate, per_s)
        self.max_wait = Fraction(max_wait)
        self.now = Fraction(1000)
        self.tat = self.now - self.interval  # a full bucket
        self.admitted: list[Fraction] = []  # the times the admitted calls run

    @rule(dt=st.sampled_from([0, Fraction(1, 10), Fraction(1, 4), Fraction(1, 2), 1, 3, 50]))
    def tick(self, dt: Fraction) -> None:
        self.now += dt

    @rule(deadline_in=st.sampled_from([None, Fraction(1, 10), 1, 5]))
    def call(self, deadline_in: Fraction | None) -> None:
        deadline = math.inf if deadline_in is None else float(self.now + deadline_in)
        tat = max(self.tat, self.now - self.interval)
        runs_at = max(self.now, tat + self.interval - self.tolerance)
        delay = runs_at - self.now
        refused = delay > self.max_wait or (deadline_in is not None and delay >= deadline_in)
        got = self.limit.reserve(float(self.now), deadline)
        if refused:
            assert got < 0 and -got == pytest.approx(float(delay), abs=1e-6)
        else:
            assert got >= 0 and got == pytest.approx(float(delay), abs=1e-6)
            self.tat = tat + self.interval
            self.admitted.append(runs_at)

    @precondition(lambda self: hasattr(self, "limit"))
    @invariant()
    def no_interval_admits_more_than_burst_plus_rate(self) -> None:
        times = sorted(self.admitted)
        for i, start in enumerate(times):
            for j in range(i, len(times)):
                count = j - i + 1
                assert count <= self.capacity + (times[j] - start) * self.rate_per_s


BucketMachine.TestCase.settings = settings(max_examples=100, stateful_step_count=40, deadline=None)
TestBucketMachine = BucketMachine.TestCase
