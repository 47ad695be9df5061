"""RetryBudget on its own: the balance formula, expiry by slices, validation, a model."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from toolvisor.policies import RetryBudget
from toolvisor.policies.budget import SLICES


def test_the_floor_alone_allows_min_retries_per_s_times_ttl() -> None:
    budget = RetryBudget(ratio=0.0, min_retries_per_s=1.0, ttl_s=5.0)
    assert [budget.try_withdraw(1.0) for _ in range(6)] == [True] * 5 + [False]


def test_each_call_deposits_ratio_credits() -> None:
    budget = RetryBudget(ratio=0.25, min_retries_per_s=0.0, ttl_s=10.0)
    assert not budget.try_withdraw(0.0)
    for _ in range(8):
        budget.deposit(0.0)
    assert budget.balance(0.0) == pytest.approx(2.0)
    assert [budget.try_withdraw(0.0) for _ in range(3)] == [True, True, False]


def test_ratio_point_one_times_ten_calls_is_one_retry_despite_rounding() -> None:
    budget = RetryBudget(ratio=0.1, min_retries_per_s=0.0, ttl_s=10.0)
    for _ in range(10):
        budget.deposit(0.0)
    assert budget.try_withdraw(0.0)
    assert not budget.try_withdraw(0.0)


def test_deposits_and_withdrawals_expire_after_ttl() -> None:
    budget = RetryBudget(ratio=1.0, min_retries_per_s=0.0, ttl_s=10.0)
    budget.deposit(0.0)
    budget.deposit(0.0)
    assert budget.try_withdraw(0.5)
    assert budget.balance(9.99) == pytest.approx(1.0)  # still the window of slice 0
    assert budget.balance(10.0) == 0.0  # slice 0's call and retry expired together
    budget.deposit(10.0)
    assert budget.try_withdraw(15.0)
    assert not budget.try_withdraw(15.0)
    # The spent credit expires with the deposit: an idle budget is back to its floor.
    assert budget.balance(1000.0) == 0.0


def test_a_spent_floor_comes_back_once_the_retries_expire() -> None:
    budget = RetryBudget(ratio=0.0, min_retries_per_s=0.5, ttl_s=2.0)  # 1 retry per 2 s
    assert budget.try_withdraw(0.0)
    assert not budget.try_withdraw(1.9)
    assert budget.try_withdraw(2.0)


def test_a_time_going_back_counts_in_the_latest_slice() -> None:
    budget = RetryBudget(ratio=1.0, min_retries_per_s=0.0, ttl_s=10.0)
    budget.deposit(50.0)
    budget.deposit(3.0)  # an earlier time: counted now, never expiring early
    assert budget.balance(50.0) == pytest.approx(2.0)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"ratio": -0.1}, "ratio"),
        ({"ratio": math.nan}, "ratio"),
        ({"ratio": 5000}, "ratio"),
        ({"ratio": True}, "ratio"),
        ({"min_retries_per_s": -1}, "min_retries_per_s"),
        ({"min_retries_per_s": math.inf}, "min_retries_per_s"),
        ({"ttl_s": 0}, "ttl_s"),
        ({"ttl_s": "10"}, "ttl_s"),
    ],
)
def test_bad_arguments_name_the_field(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ValueError, match=f"'{field}'"):
        RetryBudget(**kwargs)  # type: ignore[arg-type]


def test_repr_shows_the_configuration() -> None:
    assert repr(RetryBudget()) == "RetryBudget(ratio=0.2, min_retries_per_s=10.0, ttl_s=10.0)"


class BudgetMachine(RuleBasedStateMachine):
    """The real budget against a model: every event with its time, the formula applied."""

    @initialize(
        ratio=st.sampled_from([0.0, 0.1, 0.2, 0.5, 1.0, 2.0]),
        floor=st.sampled_from([0.0, 0.1, 0.5, 1.0, 3.0]),
        ttl=st.sampled_from([1.0, 2.5, 10.0]),
    )
    def setup(self, ratio: float, floor: float, ttl: float) -> None:
        self.budget = RetryBudget(ratio=ratio, min_retries_per_s=floor, ttl_s=ttl)
        self.ratio, self.floor, self.ttl = Fraction(ratio), Fraction(floor), Fraction(ttl)
        self.now = Fraction(0)
        self.calls: list[Fraction] = []
        self.retries: list[Fraction] = []

    def _slice(self, t: Fraction) -> int:
        return math.floor(t * SLICES / self.ttl)

    def _live(self, times: list[Fraction]) -> int:
        current = self._slice(self.now)
        return sum(1 for t in times if self._slice(t) > current - SLICES)

    def _model_balance(self) -> Fraction:
        return (
            self.floor * self.ttl + self.ratio * self._live(self.calls) - self._live(self.retries)
        )

    @rule(dt=st.sampled_from([0, 0.01, 0.1, 0.25, 0.5, 1, 3, 20]))
    def tick(self, dt: float) -> None:
        self.now += Fraction(dt)

    @rule()
    def deposit(self) -> None:
        self.budget.deposit(float(self.now))
        self.calls.append(self.now)

    @rule()
    def withdraw(self) -> None:
        allowed = self._model_balance() >= 1
        assert self.budget.try_withdraw(float(self.now)) is allowed
        if allowed:
            self.retries.append(self.now)

    @precondition(lambda self: hasattr(self, "budget"))
    @invariant()
    def balance_matches_the_model(self) -> None:
        assert self.budget.balance(float(self.now)) == pytest.approx(
            float(self._model_balance()), abs=1e-6
        )


BudgetMachine.TestCase.settings = settings(max_examples=100, stateful_step_count=40, deadline=None)
TestBudgetMachine = BudgetMachine.TestCase
