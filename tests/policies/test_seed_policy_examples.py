"""The seed document's policy examples, with imports changed to ``toolvisor.policies``.

``asyncio.sleep`` became ``trio.sleep``; a ``SimpleNamespace`` stands in for the spec
(specs are tested with ``toolvisor.spec``).
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
import trio
import trio.testing

from toolvisor.policies import (
    AdaptiveCircuitBreakerPolicy,
    CircuitBreakerPolicyFactory,
    CustomRetryPolicy,
    ExponentialBackoffRetryPolicy,
    FixedRetryPolicy,
    ICircuitBreakerPolicy,
    IRetryPolicy,
    NoOpCircuitBreakerPolicy,
    NoRetryPolicy,
    RetryPolicyFactory,
    StandardCircuitBreakerPolicy,
)


class RateLimitError(Exception):
    def __init__(self, retry_after: float | None = None) -> None:
        super().__init__("rate limited")
        self.retry_after = retry_after


async def my_retry_logic(func: Any, attempt: int, last_exception: Exception) -> Any:
    """Custom retry with rate limit awareness"""
    if attempt >= 5:
        raise last_exception

    # Special handling for rate limits
    if isinstance(last_exception, RateLimitError):
        retry_after = last_exception.retry_after or 60
        await trio.sleep(retry_after)
    else:
        # Exponential backoff for other errors
        await trio.sleep(2**attempt)

    return await func()


def test_quick_start_constructors() -> None:
    spec = SimpleNamespace()
    spec.circuit_breaker_policy = StandardCircuitBreakerPolicy(
        failure_threshold=5,  # Open circuit after 5 failures
        recovery_timeout=30,  # Try recovery after 30 seconds
    )
    spec.circuit_breaker_policy = AdaptiveCircuitBreakerPolicy(
        base_threshold=5, max_threshold=20, error_rate_threshold=0.5, window_size=100
    )
    spec.circuit_breaker_policy = NoOpCircuitBreakerPolicy()
    spec.retry_policy = NoRetryPolicy()
    spec.retry_policy = FixedRetryPolicy(max_attempts=3, delay_seconds=2.0, jitter=0.5)
    spec.retry_policy = ExponentialBackoffRetryPolicy(
        max_attempts=5, base_delay=1.0, max_delay=30.0, multiplier=2.0, jitter=0.1
    )
    spec.retry_policy = CustomRetryPolicy(my_retry_logic)
    assert isinstance(spec.retry_policy, IRetryPolicy)


async def test_custom_rate_limit_example(autojump_clock: trio.testing.MockClock) -> None:
    errors: list[Exception] = [RateLimitError(7), TimeoutError(), RateLimitError(None)]
    times: list[float] = []

    async def tool() -> str:
        times.append(trio.current_time())
        if errors:
            raise errors.pop(0)
        return "ok"

    start = trio.current_time()
    assert await CustomRetryPolicy(my_retry_logic).execute(tool) == "ok"
    # rate limit: 7 s; timeout after attempt 2: 2**2 = 4 s; rate limit without a hint: 60 s
    assert [t - start for t in times] == [0, 7, 11, 71]


async def test_custom_rate_limit_example_gives_up_after_five(
    autojump_clock: trio.testing.MockClock,
) -> None:
    attempts = 0

    async def always_timeout() -> str:
        nonlocal attempts
        attempts += 1
        raise TimeoutError

    start = trio.current_time()
    with pytest.raises(TimeoutError):
        await CustomRetryPolicy(my_retry_logic).execute(always_timeout)
    assert attempts == 5
    assert trio.current_time() - start == 2 + 4 + 8 + 16


def test_factory_example() -> None:
    spec = SimpleNamespace()
    circuit_breaker = CircuitBreakerPolicyFactory.get_policy("standard")
    retry = RetryPolicyFactory.get_policy("exponential")
    spec.circuit_breaker_policy = circuit_breaker
    spec.retry_policy = retry
    assert isinstance(circuit_breaker, StandardCircuitBreakerPolicy)
    assert isinstance(retry, ExponentialBackoffRetryPolicy)


def get_current_tenant() -> str:
    return "acme"


async def test_tenant_aware_breaker_registration() -> None:
    class TenantAwareCircuitBreaker(ICircuitBreakerPolicy):
        """Circuit breaker that tracks state per tenant"""

        async def execute_with_breaker(self, func, tool_name):  # type: ignore[no-untyped-def]
            tenant_id = get_current_tenant()
            key = f"{tool_name}:{tenant_id}"
            # Your logic
            assert key == "process_payment:acme"

        def get_state(self, tool_name):  # type: ignore[no-untyped-def]
            return "closed"

        def reset(self, tool_name):  # type: ignore[no-untyped-def]
            pass

    # Register it
    CircuitBreakerPolicyFactory.register("tenant_aware", TenantAwareCircuitBreaker())

    # Use it
    spec = SimpleNamespace()
    policy = CircuitBreakerPolicyFactory.get_policy("tenant_aware")
    spec.circuit_breaker_policy = policy

    assert isinstance(policy, TenantAwareCircuitBreaker)
    assert isinstance(policy, ICircuitBreakerPolicy)
    assert policy.get_state("process_payment") == "closed"  # type: ignore[no-untyped-call]
    done = await policy.execute_with_breaker(lambda: None, "process_payment")  # type: ignore[no-untyped-call]
    assert done is None
    assert "tenant_aware" in CircuitBreakerPolicyFactory.available()


async def test_seed_timelines(autojump_clock: trio.testing.MockClock) -> None:
    """Fixed: attempts at 0, 2, 4. Exponential: waits 1, 2, 4, 8."""
    for policy, expected in [
        (FixedRetryPolicy(max_attempts=3, delay_seconds=2.0), [0, 2, 4]),
        (
            ExponentialBackoffRetryPolicy(
                max_attempts=5, base_delay=1.0, max_delay=30.0, multiplier=2.0, jitter=0
            ),
            [0, 1, 3, 7, 15],
        ),
    ]:
        times: list[float] = []

        async def failing(times: list[float] = times) -> None:
            times.append(trio.current_time())
            raise TimeoutError("Simulated timeout")

        start = trio.current_time()
        with pytest.raises(TimeoutError):
            await policy.execute(failing)
        assert [t - start for t in times] == expected


def test_combining_and_migration_examples() -> None:
    spec = SimpleNamespace()
    spec.circuit_breaker_policy = AdaptiveCircuitBreakerPolicy(
        base_threshold=10, max_threshold=50, error_rate_threshold=0.3
    )
    spec.retry_policy = ExponentialBackoffRetryPolicy(
        max_attempts=5, base_delay=2.0, max_delay=60.0
    )
    spec.circuit_breaker_policy = StandardCircuitBreakerPolicy(
        failure_threshold=3, recovery_timeout=15
    )
    spec.retry_policy = FixedRetryPolicy(max_attempts=2, delay_seconds=0.5)
    spec.retry_policy = ExponentialBackoffRetryPolicy(
        max_attempts=3, base_delay=1.0, max_delay=10.0
    )
    spec.circuit_breaker_policy = StandardCircuitBreakerPolicy(
        failure_threshold=5, recovery_timeout=30
    )
    assert spec.circuit_breaker_policy.get_state("any") == "closed"
