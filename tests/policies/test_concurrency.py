"""AdaptiveConcurrency on its own: each algorithm's schedule, validation, and models."""

from __future__ import annotations

import math

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from toolvisor import AdaptiveConcurrency as TopLevel
from toolvisor.policies import AdaptiveConcurrency


def test_defaults_and_export() -> None:
    limit = AdaptiveConcurrency()
    assert TopLevel is AdaptiveConcurrency
    assert (limit.initial, limit.min_limit, limit.max_limit, limit.algorithm) == (
        16,
        1,
        256,
        "gradient2",
    )
    assert limit.limit == 16
    assert "AdaptiveConcurrency(initial=16" in repr(limit)


# --------------------------------------------------------------------------- aimd


def test_aimd_adds_one_while_half_the_limit_is_used() -> None:
    limit = AdaptiveConcurrency(initial=10, algorithm="aimd")
    assert limit.on_sample(0.01, inflight=5, dropped=False, now=0.0) == 11
    assert limit.on_sample(0.01, inflight=5, dropped=False, now=0.1) == 11  # 5 * 2 < 11
    assert limit.on_sample(0.01, inflight=6, dropped=False, now=0.2) == 12
    assert limit.limit == 12


def test_aimd_multiplies_by_the_backoff_ratio_on_a_drop() -> None:
    limit = AdaptiveConcurrency(initial=16, algorithm="aimd")
    assert limit.on_sample(5.0, inflight=1, dropped=True, now=0.0) == 14  # floor(16 * 0.9)
    assert limit.on_sample(5.0, inflight=1, dropped=True, now=0.0) == 12  # floor(12.6)
    halving = AdaptiveConcurrency(initial=16, algorithm="aimd", backoff_ratio=0.5)
    assert [halving.on_sample(1.0, 1, True, 0.0) for _ in range(5)] == [8, 4, 2, 1, 1]


def test_aimd_drops_at_least_one_and_stays_within_its_range() -> None:
    limit = AdaptiveConcurrency(initial=5, min_limit=3, max_limit=6, algorithm="aimd")
    assert limit.on_sample(1.0, 1, True, 0.0) == 4  # floor(4.5) = 4: one less at least
    assert limit.on_sample(1.0, 1, True, 0.0) == 3
    assert limit.on_sample(1.0, 1, True, 0.0) == 3  # min_limit
    for _ in range(10):
        limit.on_sample(0.01, 6, False, 0.0)
    assert limit.limit == 6  # max_limit


# --------------------------------------------------------------------------- gradient2


def _warm(limit: AdaptiveConcurrency, rtt: float, n: int = 10) -> None:
    for _ in range(n):
        limit.on_sample(rtt, inflight=limit.max_limit, dropped=False, now=0.0)


def test_gradient2_grows_by_smoothing_times_queue_size_while_latency_holds() -> None:
    limit = AdaptiveConcurrency(initial=16)
    # gradient 1: estimate = 16 * 0.8 + (16 + 4) * 0.2 = 16.8, then 17.6, 18.4
    got = [limit.on_sample(0.1, inflight=16, dropped=False, now=0.0) for _ in range(3)]
    assert got == [16, 17, 18]
    assert limit.long_rtt == pytest.approx(0.1)


def test_gradient2_falls_when_latency_rises_above_its_long_term_average() -> None:
    limit = AdaptiveConcurrency(initial=16, max_limit=16)
    _warm(limit, 0.1)
    assert limit.limit == 16  # at max_limit
    # rtt 4x the long-term average: gradient floored at 0.5;
    # estimate = 16 * 0.8 + (16 * 0.5 + 4) * 0.2 = 15.2
    assert limit.on_sample(0.4, inflight=16, dropped=False, now=1.0) == 15
    for _ in range(60):
        limit.on_sample(0.4, inflight=16, dropped=False, now=1.0)
    # Sustained: the estimate tends to 2 * queue_size (8), the allowance it keeps.
    assert limit.limit == 8


def test_gradient2_does_not_move_while_app_limited() -> None:
    limit = AdaptiveConcurrency(initial=16)
    _warm(limit, 0.1)
    before = limit.limit
    assert limit.on_sample(10.0, inflight=7, dropped=False, now=0.0) == before  # 7 < 18 / 2
    assert limit.on_sample(0.001, inflight=1, dropped=False, now=0.0) == before


def test_gradient2_drop_takes_the_gradient_floor_without_the_allowance() -> None:
    limit = AdaptiveConcurrency(initial=20)
    assert limit.on_sample(30.0, inflight=1, dropped=True, now=0.0) == 18  # 20 * 0.9
    assert limit.long_rtt == 0.0  # a timeout's latency is not the service's


def test_gradient2_forgets_a_long_slow_period_faster() -> None:
    limit = AdaptiveConcurrency(initial=16)
    _warm(limit, 1.0)
    limit.on_sample(0.1, inflight=16, dropped=False, now=0.0)
    # EMA alone: 1.0 * (1 - 2/601) + 0.1 * 2/601 = 0.997; the ratio > 2 cuts it by 10 %.
    assert limit.long_rtt == pytest.approx((1.0 * (1 - 2 / 601) + 0.1 * 2 / 601) * 0.9)


def test_a_zero_latency_sample_is_healthy() -> None:
    limit = AdaptiveConcurrency(initial=4)
    assert limit.on_sample(0.0, inflight=4, dropped=False, now=0.0) == 4  # 4.8
    assert limit.on_sample(0.0, inflight=4, dropped=False, now=0.0) == 5  # 5.6


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"initial": 0}, "initial"),
        ({"initial": 2.5}, "initial"),
        ({"initial": True}, "initial"),
        ({"min_limit": 0}, "min_limit"),
        ({"max_limit": "8"}, "max_limit"),
        ({"min_limit": 4, "max_limit": 2, "initial": 3}, "max_limit"),
        ({"initial": 300}, "initial"),
        ({"initial": 1, "min_limit": 2}, "initial"),
        ({"algorithm": "vegas"}, "algorithm"),
        ({"smoothing": 0}, "smoothing"),
        ({"smoothing": 1.5}, "smoothing"),
        ({"smoothing": math.nan}, "smoothing"),
        ({"queue_size": -1}, "queue_size"),
        ({"queue_size": math.inf}, "queue_size"),
        ({"long_window": 0}, "long_window"),
        ({"backoff_ratio": 1.0}, "backoff_ratio"),
        ({"backoff_ratio": 0.4}, "backoff_ratio"),
    ],
)
def test_bad_arguments_name_the_field(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ValueError, match=f"AdaptiveConcurrency: '{field}' must be") as info:
        AdaptiveConcurrency(**kwargs)  # type: ignore[arg-type]
    assert "\n" not in str(info.value)


def test_the_configuration_is_fixed_once_built() -> None:
    limit = AdaptiveConcurrency()
    with pytest.raises(AttributeError):
        limit.max_limit = 4  # type: ignore[misc]


# --------------------------------------------------------------------------- models

SMOOTHING, QUEUE = 0.2, 4.0  # the defaults, which the gradient2 model's bounds use


class _LimitMachine(RuleBasedStateMachine):
    """Samples of every kind against what the algorithm promises, with its range always.

    The model keeps the latencies seen (the fastest and slowest non-drop samples) and how
    many there were: enough to say which way a sample must move the limit.
    """

    algorithm = "gradient2"

    @initialize(
        low=st.integers(1, 8),
        span=st.integers(0, 200),
        at=st.floats(0, 1),
    )
    def setup(self, low: int, span: int, at: float) -> None:
        high = low + span
        initial = low + round(span * at)
        self.limit = AdaptiveConcurrency(
            initial=initial, min_limit=low, max_limit=high, algorithm=self.algorithm
        )
        self.fastest = math.inf
        self.slowest = 0.0
        self.samples = 0
        self.now = 0.0

    def _sample(self, rtt: float, inflight: int, dropped: bool) -> int:
        self.now += 0.01
        if not dropped:
            self.fastest = min(self.fastest, rtt)
            self.slowest = max(self.slowest, rtt)
            self.samples += 1
        return self.limit.on_sample(rtt, inflight, dropped, self.now)

    @invariant()
    def within_range(self) -> None:
        limit = self.limit.limit
        assert isinstance(limit, int)
        assert self.limit.min_limit <= limit <= self.limit.max_limit

    @rule(inflight=st.integers(0, 300))
    def drop_never_raises_the_limit(self, inflight: int) -> None:
        before = self.limit.limit
        after = self._sample(30.0, inflight, True)
        assert after <= before

    @rule(n=st.integers(20, 40))
    def drops_bring_it_down(self, n: int) -> None:
        before = self.limit.limit
        for _ in range(n):
            self._sample(30.0, 1, True)
        ratio = 0.9 if self.algorithm == "aimd" else 1 - SMOOTHING / 2
        assert self.limit.limit <= max(self.limit.min_limit, math.ceil((before + 1) * ratio**n))

    @rule(rtt=st.floats(1e-4, 10.0))
    def app_limited_changes_nothing(self, rtt: float) -> None:
        before = self.limit.limit
        assert self._sample(rtt, 0, False) == before  # 0 * 2 < limit, 0 < estimate / 2

    @precondition(lambda self: self.samples > 0)
    @rule()
    def healthy_and_busy_never_lowers_it(self) -> None:
        before = self.limit.limit
        after = self._sample(self.fastest, self.limit.max_limit, False)
        assert after >= before

    @rule()
    def healthy_and_busy_climbs(self) -> None:
        before = self.limit.limit
        rtt = self.fastest if self.samples else 0.05
        for _ in range(2):
            self._sample(rtt, self.limit.max_limit, False)
        assert self.limit.limit >= min(self.limit.max_limit, before + 1)


class _Gradient2Machine(_LimitMachine):
    algorithm = "gradient2"

    @precondition(lambda self: self.samples >= 10)
    @rule()
    def rising_latency_never_raises_it_above_the_allowance(self) -> None:
        before = self.limit.limit
        after = self._sample(4 * self.slowest, self.limit.max_limit, False)
        if before >= 2 * QUEUE:
            assert after <= before

    @precondition(lambda self: self.samples >= 10)
    @rule()
    def sustained_latency_brings_it_down(self) -> None:
        slow = 4 * self.slowest
        for _ in range(60):
            self._sample(slow, self.limit.max_limit, False)
        # The estimate tends to 2 * queue_size under the gradient's floor (0.5).
        assert self.limit.limit <= max(self.limit.min_limit, int(2 * QUEUE) + 1)


class _AimdMachine(_LimitMachine):
    algorithm = "aimd"

    @rule(inflight=st.integers(1, 300))
    def each_drop_takes_one_at_least_and_at_most_the_backoff(self, inflight: int) -> None:
        before = self.limit.limit
        after = self._sample(1.0, inflight, True)
        floor = self.limit.min_limit
        assert after == max(floor, min(before - 1, math.floor(before * 0.9)))

    @rule(rtt=st.floats(1e-4, 10.0), share=st.floats(0.5, 2.0))
    def busy_adds_one(self, rtt: float, share: float) -> None:
        before = self.limit.limit
        inflight = math.ceil(before * share / 2) if share < 1 else before
        after = self._sample(rtt, max(inflight, math.ceil(before / 2)), False)
        assert after == min(self.limit.max_limit, before + 1)


_settings = settings(max_examples=80, stateful_step_count=30, deadline=None)
_Gradient2Machine.TestCase.settings = _settings
_AimdMachine.TestCase.settings = _settings
TestGradient2Machine = _Gradient2Machine.TestCase
TestAimdMachine = _AimdMachine.TestCase
