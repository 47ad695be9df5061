"""Policy factories: built-ins by name, registrations, errors, reset."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest

from toolvisor.errors import PolicyNotFoundError
from toolvisor.policies import (
    AdaptiveCircuitBreakerPolicy,
    CircuitBreakerPolicyFactory,
    CircuitState,
    ExponentialBackoffRetryPolicy,
    FixedRetryPolicy,
    NoOpCircuitBreakerPolicy,
    NoRetryPolicy,
    RetryPolicyFactory,
    StandardCircuitBreakerPolicy,
)

T = TypeVar("T")


class AlwaysClosed:
    """A structural circuit-breaker policy (no base class)."""

    async def execute_with_breaker(self, func: Callable[[], Awaitable[T]], tool_name: str) -> T:
        return await func()

    def get_state(self, tool_name: str) -> CircuitState:
        return CircuitState.CLOSED

    def reset(self, tool_name: str) -> None:
        pass


@pytest.mark.parametrize(
    ("name", "cls"),
    [
        ("standard", StandardCircuitBreakerPolicy),
        ("adaptive", AdaptiveCircuitBreakerPolicy),
        ("noop", NoOpCircuitBreakerPolicy),
    ],
)
def test_breaker_builtins_are_new_instances(name: str, cls: type) -> None:
    first = CircuitBreakerPolicyFactory.get_policy(name)
    assert type(first) is cls
    assert CircuitBreakerPolicyFactory.get_policy(name) is not first


@pytest.mark.parametrize(
    ("name", "cls"),
    [
        ("none", NoRetryPolicy),
        ("fixed", FixedRetryPolicy),
        ("exponential", ExponentialBackoffRetryPolicy),
    ],
)
def test_retry_builtins_are_new_instances(name: str, cls: type) -> None:
    first = RetryPolicyFactory.get_policy(name)
    assert type(first) is cls
    assert RetryPolicyFactory.get_policy(name) is not first


def test_overrides_go_to_the_constructor() -> None:
    breaker = CircuitBreakerPolicyFactory.get_policy("standard", failure_threshold=3)
    assert isinstance(breaker, StandardCircuitBreakerPolicy)
    assert breaker.failure_threshold == 3
    retry = RetryPolicyFactory.get_policy("exponential", max_attempts=2, jitter=0)
    assert isinstance(retry, ExponentialBackoffRetryPolicy)
    assert (retry.max_attempts, retry.jitter) == (2, 0)
    with pytest.raises(TypeError):
        RetryPolicyFactory.get_policy("fixed", no_such_option=1)
    with pytest.raises(ValueError, match="failure_threshold"):
        CircuitBreakerPolicyFactory.get_policy("standard", failure_threshold=0)


def test_unknown_names_list_the_known_ones() -> None:
    with pytest.raises(PolicyNotFoundError) as info:
        CircuitBreakerPolicyFactory.get_policy("nope")
    assert info.value.known == ("adaptive", "noop", "standard")
    assert "standard" in str(info.value)
    with pytest.raises(LookupError, match="exponential"):
        RetryPolicyFactory.get_policy("nope")


def test_register_an_instance() -> None:
    policy = AlwaysClosed()
    CircuitBreakerPolicyFactory.register("always", policy)
    assert CircuitBreakerPolicyFactory.get_policy("always") is policy
    assert CircuitBreakerPolicyFactory.available() == ["adaptive", "noop", "standard", "always"]
    with pytest.raises(TypeError, match="overrides"):
        CircuitBreakerPolicyFactory.get_policy("always", failure_threshold=3)


def test_register_a_zero_argument_callable() -> None:
    RetryPolicyFactory.register("patient", lambda: FixedRetryPolicy(max_attempts=10))
    first = RetryPolicyFactory.get_policy("patient")
    assert isinstance(first, FixedRetryPolicy)
    assert first.max_attempts == 10
    assert RetryPolicyFactory.get_policy("patient") is not first
    CircuitBreakerPolicyFactory.register("mine", AlwaysClosed)  # a class is a callable too
    assert isinstance(CircuitBreakerPolicyFactory.get_policy("mine"), AlwaysClosed)


def test_a_callable_returning_a_non_policy_fails_at_get() -> None:
    RetryPolicyFactory.register("broken", lambda: 42)  # type: ignore[arg-type, return-value]
    with pytest.raises(TypeError, match="broken"):
        RetryPolicyFactory.get_policy("broken")


@pytest.mark.parametrize("bad", [42, "standard", None])
def test_register_rejects_non_policies(bad: Any) -> None:
    with pytest.raises(TypeError):
        CircuitBreakerPolicyFactory.register("bad", bad)


def test_register_protects_builtins_and_duplicates() -> None:
    with pytest.raises(ValueError, match="built-in"):
        CircuitBreakerPolicyFactory.register("standard", AlwaysClosed())
    CircuitBreakerPolicyFactory.register("x", AlwaysClosed())
    with pytest.raises(ValueError, match="already registered"):
        CircuitBreakerPolicyFactory.register("x", AlwaysClosed())
    replacement = AlwaysClosed()
    CircuitBreakerPolicyFactory.register("x", replacement, replace=True)
    assert CircuitBreakerPolicyFactory.get_policy("x") is replacement


def test_registries_are_separate() -> None:
    CircuitBreakerPolicyFactory.register("x", AlwaysClosed())
    assert "x" not in RetryPolicyFactory.available()
    with pytest.raises(TypeError):
        RetryPolicyFactory.register("x", AlwaysClosed())  # type: ignore[arg-type]  # a breaker is not a retry policy


def test_unregister_and_reset() -> None:
    CircuitBreakerPolicyFactory.register("a", AlwaysClosed())
    CircuitBreakerPolicyFactory.register("b", AlwaysClosed())
    CircuitBreakerPolicyFactory.unregister("a")
    assert CircuitBreakerPolicyFactory.available() == ["adaptive", "noop", "standard", "b"]
    with pytest.raises(PolicyNotFoundError):
        CircuitBreakerPolicyFactory.unregister("a")
    with pytest.raises(ValueError, match="built-in"):
        CircuitBreakerPolicyFactory.unregister("noop")
    CircuitBreakerPolicyFactory.reset()
    assert CircuitBreakerPolicyFactory.available() == ["adaptive", "noop", "standard"]
    assert RetryPolicyFactory.available() == ["exponential", "fixed", "none"]
