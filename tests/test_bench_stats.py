"""The benchmark suite's paired ratios: a/b and b/a come from the same rounds and agree."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from toolvisor._bench._stats import paired_ratio, ratio_median

figure = st.one_of(
    st.floats(min_value=1e-3, max_value=1e6),
    st.sampled_from([0.0, math.nan, math.inf]),  # a failed or empty round
)


@given(st.lists(st.tuples(figure, figure), min_size=1, max_size=16))
def test_a_over_b_is_the_inverse_of_b_over_a(rounds: list[tuple[float, float]]) -> None:
    a = [{"calls_per_s": x} for x, _ in rounds]
    b = [{"calls_per_s": y} for _, y in rounds]
    forward = paired_ratio(a, b, "calls_per_s")
    backward = paired_ratio(b, a, "calls_per_s")
    usable = [(x, y) for x, y in rounds if 0 < x < math.inf and 0 < y < math.inf]
    if not usable:
        assert math.isnan(forward) and math.isnan(backward)
        return
    assert forward * backward == pytest.approx(1.0, rel=1e-9)


def test_two_rounds_as_a_quick_run_has_them() -> None:
    # Ratios 1.0 and 1.5: the arithmetic middle would say 1.25x one way and 0.83x the other.
    a = [{"k": 100.0}, {"k": 150.0}]
    b = [{"k": 100.0}, {"k": 100.0}]
    assert paired_ratio(a, b, "k") == pytest.approx(math.sqrt(1.5))
    assert paired_ratio(b, a, "k") == pytest.approx(1 / math.sqrt(1.5))


def test_ratio_median_of_an_odd_count_is_the_middle_value() -> None:
    assert ratio_median([3.0, 1.0, 2.0]) == 2.0
    assert math.isnan(ratio_median([]))
