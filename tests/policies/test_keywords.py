"""A misspelt keyword gets a TypeError naming the keyword the policy takes."""

from __future__ import annotations

from typing import Any

import pytest

import toolvisor as tv


@pytest.mark.parametrize(
    ("make", "given", "meant"),
    [
        (tv.FixedRetryPolicy, "delay", "delay_seconds"),
        (tv.FixedRetryPolicy, "retries", "max_attempts"),
        (tv.ExponentialBackoffRetryPolicy, "max_atempts", "max_attempts"),
        (tv.ExponentialBackoffRetryPolicy, "initial_delay", "base_delay"),
        (tv.StandardCircuitBreakerPolicy, "threshold", "failure_threshold"),
        (tv.StandardCircuitBreakerPolicy, "reset_timeout", "recovery_timeout"),
        (tv.AdaptiveCircuitBreakerPolicy, "recovery_timeout_s", "recovery_timeout"),
    ],
)
def test_an_unknown_keyword_names_the_one_meant(make: Any, given: str, meant: str) -> None:
    with pytest.raises(TypeError, match=f"did you mean '{meant}'") as info:
        make(**{given: 1})
    assert make.__name__ in str(info.value)


def test_no_guess_lists_what_it_takes_and_right_keywords_still_work() -> None:
    with pytest.raises(TypeError, match=r"'zzz' \(it takes: max_attempts, delay_seconds"):
        tv.FixedRetryPolicy(zzz=1)
    assert tv.FixedRetryPolicy(max_attempts=2, delay_seconds=0.5).delay_seconds == 0.5
    with pytest.raises(TypeError):  # a wrong type still fails as attrs says
        tv.StandardCircuitBreakerPolicy(failure_threshold="5")  # type: ignore[arg-type]
