"""Every code example of the seed document (docs/origins.md), with only its imports
changed, and checks of what the seed's text says happens, on trio's MockClock.

Each example is copied verbatim between ``# --- seed`` and ``# --- end seed`` markers;
the only edits are the import lines (``core.tools...`` -> ``toolvisor...``), missing
imports the seed forgot (``ToolType``), ``asyncio.sleep`` -> ``trio.sleep`` and the
seed's ``(...)`` placeholders filled with an id and a tool name. Names the seed leaves
undefined (``payment_gateway``, ``ctx``, ``RateLimitError``, ``get_current_tenant``)
are defined by the test around the example.
"""

from __future__ import annotations

import contextvars
import random
from collections.abc import Iterator
from typing import Any

import pytest
import trio

import toolvisor
from toolvisor import (
    BreakerTransition,
    CircuitOpenError,
    CircuitState,
    ExecutionContext,
    RetryScheduled,
)

# The seed's examples use the jitter of the process-wide generator; seed it per test.
from toolvisor.policies import DEFAULT_RNG
from toolvisor.testing import AttemptRecorder, EventLog, FlakyTool, RateLimitError


@pytest.fixture(autouse=True)
def _seeded_jitter() -> Iterator[None]:
    state = DEFAULT_RNG.getstate()
    DEFAULT_RNG.seed(20240601)
    yield
    DEFAULT_RNG.setstate(state)


@pytest.fixture
def seeded_random() -> Iterator[None]:
    """The seed's "Test Your Policies" uses the global ``random``: seed it, then restore."""
    state = random.getstate()
    random.seed(1234)
    yield
    random.setstate(state)


async def _always_fail(args: dict[str, Any]) -> Any:
    raise ConnectionError("back end down")


def _executor(spec: toolvisor.ToolSpec, fn: Any) -> toolvisor.FunctionToolExecutor:
    return toolvisor.FunctionToolExecutor(spec, fn)


# =========================================================================== breakers


async def test_standard_circuit_breaker(autojump_clock: trio.testing.MockClock) -> None:
    # fmt: off
    # --- seed: Quick Start / Standard Circuit Breaker
    from toolvisor.policies import StandardCircuitBreakerPolicy
    from toolvisor.spec import FunctionToolSpec

    # Create tool spec
    spec = FunctionToolSpec(
        id="payment-v1",
        tool_name="process_payment",
        description="Process payment",
        # ... other config
    )

    # Configure circuit breaker at build time
    spec.circuit_breaker_policy = StandardCircuitBreakerPolicy(
        failure_threshold=5,    # Open circuit after 5 failures
        recovery_timeout=30     # Try recovery after 30 seconds
    )

    # Circuit breaker states:
    # CLOSED -> Normal operation
    # OPEN -> Fails immediately (circuit open)
    # HALF_OPEN -> Testing recovery
    # --- end seed
    # fmt: on

    tool = FlakyTool([ConnectionError("down")] * 5)
    executor = _executor(spec, tool)
    assert executor.get_circuit_state() == "closed"
    for _ in range(4):
        with pytest.raises(ConnectionError):
            await executor.execute({})
    assert executor.get_circuit_state() == CircuitState.CLOSED
    with pytest.raises(ConnectionError):  # the 5th failure opens it
        await executor.execute({})
    assert executor.get_circuit_state() == "open"

    # OPEN: fails immediately, without running the tool.
    opened_at = trio.current_time()
    with pytest.raises(CircuitOpenError) as info:
        await executor.execute({})
    assert trio.current_time() == opened_at
    assert tool.calls == 5
    assert info.value.retry_after == pytest.approx(30)

    # HALF_OPEN after 30 s: one trial call; its success closes the breaker.
    await trio.sleep(30)
    assert executor.get_circuit_state() == "half_open"
    assert await executor.execute({}) == {"status": "success"}
    assert executor.get_circuit_state() == "closed"
    assert tool.calls == 6


async def test_adaptive_circuit_breaker(autojump_clock: trio.testing.MockClock) -> None:
    spec = toolvisor.FunctionToolSpec(id="search-v1", tool_name="search")

    # fmt: off

    # --- seed: Quick Start / Adaptive Circuit Breaker
    from toolvisor.policies import AdaptiveCircuitBreakerPolicy

    # Adjusts thresholds based on error rates
    spec.circuit_breaker_policy = AdaptiveCircuitBreakerPolicy(
        base_threshold=5,           # Minimum failures before opening
        max_threshold=20,           # Maximum failures (when healthy)
        error_rate_threshold=0.5,   # 50% error rate triggers adjustment
        window_size=100             # Consider last 100 requests
    )

    # Threshold adapts:
    # - Low error rate -> increases to max_threshold
    # - High error rate -> decreases to base_threshold
    # - Self-adjusting to service behavior
    # --- end seed
    # fmt: on

    policy = spec.circuit_breaker_policy
    assert isinstance(policy, AdaptiveCircuitBreakerPolicy)

    # A healthy service: low error rate -> the threshold is max_threshold.
    healthy = FlakyTool([None] * 100 + [ConnectionError("blip")] * 30)
    executor = _executor(spec, healthy)
    for _ in range(100):
        await executor.execute({})
    assert policy.current_threshold("search") == 20

    # Self-adjusting: as failures fill the window the threshold falls below 20, and the
    # breaker opens after 16 consecutive failures (threshold 20 - 15 * (16/100) / 0.5).
    failures = 0
    while executor.get_circuit_state() == "closed":
        with pytest.raises((ConnectionError, CircuitOpenError)):
            await executor.execute({})
        failures += 1
    assert failures == 16
    assert 5 < policy.current_threshold("search") < 20

    # A service failing from the start: error rate >= 50 % -> base_threshold (5).
    spec.tool_name = "search-2"
    executor = _executor(spec, _always_fail)
    for _ in range(4):
        with pytest.raises(ConnectionError):
            await executor.execute({})
    assert policy.current_threshold("search-2") == 5
    with pytest.raises(ConnectionError):
        await executor.execute({})
    assert executor.get_circuit_state() == "open"


async def test_disable_circuit_breaker(autojump_clock: trio.testing.MockClock) -> None:
    spec = toolvisor.FunctionToolSpec(id="dev-v1", tool_name="dev_tool")

    # fmt: off

    # --- seed: Quick Start / Disable Circuit Breaker
    from toolvisor.policies import NoOpCircuitBreakerPolicy

    # For development/testing
    spec.circuit_breaker_policy = NoOpCircuitBreakerPolicy()
    # All requests pass through, no circuit breaking
    # --- end seed
    # fmt: on

    tool = FlakyTool(failure_rate=1.0, error=lambda: ConnectionError("down"))
    executor = _executor(spec, tool)
    for _ in range(50):
        with pytest.raises(ConnectionError):
            await executor.execute({})
    assert tool.calls == 50  # every request passed through
    assert executor.get_circuit_state() == "closed"


# =========================================================================== retries


async def test_no_retry(autojump_clock: trio.testing.MockClock) -> None:
    spec = toolvisor.FunctionToolSpec(id="validate-v1", tool_name="validate")

    # fmt: off

    # --- seed: Retry Policies / No Retry (Default)
    from toolvisor.policies import NoRetryPolicy

    # Fail immediately on first error
    spec.retry_policy = NoRetryPolicy()
    # --- end seed
    # fmt: on

    tool = AttemptRecorder(FlakyTool([ConnectionError("no")]))
    start = trio.current_time()
    with pytest.raises(ConnectionError):
        await _executor(spec, tool).execute({})
    assert tool.attempts == 1
    assert trio.current_time() == start

    # "Default": a spec without any retry configuration does not retry either.
    plain = AttemptRecorder(FlakyTool([ConnectionError("no")]))
    with pytest.raises(ConnectionError):
        await _executor(toolvisor.FunctionToolSpec(id="d-v1", tool_name="d"), plain).execute({})
    assert plain.attempts == 1


async def test_fixed_delay_retry(autojump_clock: trio.testing.MockClock) -> None:
    spec = toolvisor.FunctionToolSpec(id="net-v1", tool_name="net")

    # fmt: off

    # --- seed: Retry Policies / Fixed Delay Retry
    from toolvisor.policies import FixedRetryPolicy

    spec.retry_policy = FixedRetryPolicy(
        max_attempts=3,         # Total attempts (including first)
        delay_seconds=2.0,      # Wait 2 seconds between retries
        jitter=0.5              # ±0.5 seconds random jitter
    )

    # Timeline:
    # Attempt 1: Immediate
    # Fails -> Wait 2 seconds
    # Attempt 2: Execute
    # Fails -> Wait 2 seconds
    # Attempt 3: Execute
    # If fails -> Raise exception
    # --- end seed
    # fmt: on

    error = ConnectionError("blip")
    tool = AttemptRecorder(FlakyTool(failure_rate=1.0, error=lambda: error))
    start = trio.current_time()
    with pytest.raises(ConnectionError) as info:
        await _executor(spec, tool).execute({})
    assert info.value is error  # the tool's own exception
    assert tool.attempts == 3
    assert tool.times[0] == start  # attempt 1: immediate
    for gap in tool.gaps():
        assert 1.5 <= gap <= 2.5  # 2 s +- 0.5 s jitter

    # Succeeds on attempt 3 -> its value, after two waits.
    tool = AttemptRecorder(FlakyTool([error, error]))
    assert await _executor(spec, tool).execute({}) == {"status": "success"}
    assert tool.attempts == 3


async def test_exponential_backoff(autojump_clock: trio.testing.MockClock) -> None:
    spec = toolvisor.FunctionToolSpec(id="api-v1", tool_name="api")

    # fmt: off

    # --- seed: Retry Policies / Exponential Backoff
    from toolvisor.policies import ExponentialBackoffRetryPolicy

    spec.retry_policy = ExponentialBackoffRetryPolicy(
        max_attempts=5,
        base_delay=1.0,        # Start with 1 second
        max_delay=30.0,        # Cap at 30 seconds
        multiplier=2.0,        # Double each time
        jitter=0.1             # 10% jitter
    )

    # Timeline:
    # Attempt 1: Immediate
    # Fails -> Wait 1 second
    # Attempt 2: Execute
    # Fails -> Wait 2 seconds
    # Attempt 3: Execute
    # Fails -> Wait 4 seconds
    # Attempt 4: Execute
    # Fails -> Wait 8 seconds
    # Attempt 5: Execute
    # --- end seed
    # fmt: on

    tool = AttemptRecorder(_always_fail)
    with pytest.raises(ConnectionError):
        await _executor(spec, tool).execute({})
    assert tool.attempts == 5
    for gap, nominal in zip(tool.gaps(), [1.0, 2.0, 4.0, 8.0], strict=True):
        assert nominal * 0.9 <= gap <= nominal * 1.1

    # The schedule itself, without jitter: exactly 1, 2, 4, 8 s.
    exact = ExponentialBackoffRetryPolicy(
        max_attempts=5, base_delay=1.0, max_delay=30.0, multiplier=2.0, jitter=0.0
    )
    spec.retry_policy = exact
    tool = AttemptRecorder(_always_fail)
    with pytest.raises(ConnectionError):
        await _executor(spec, tool).execute({})
    assert tool.gaps() == pytest.approx([1.0, 2.0, 4.0, 8.0])
    assert tool.offsets() == pytest.approx([0.0, 1.0, 3.0, 7.0, 15.0])


async def test_custom_retry_logic(autojump_clock: trio.testing.MockClock) -> None:
    spec = toolvisor.FunctionToolSpec(id="rl-v1", tool_name="rate_limited")

    # fmt: off

    # --- seed: Retry Policies / Custom Retry Logic (asyncio.sleep -> trio.sleep)
    from toolvisor.policies import CustomRetryPolicy

    async def my_retry_logic(func, attempt, last_exception):  # type: ignore[no-untyped-def]
        """Custom retry with rate limit awareness"""
        if attempt >= 5:
            raise last_exception

        # Special handling for rate limits
        if isinstance(last_exception, RateLimitError):
            retry_after = last_exception.retry_after or 60
            await trio.sleep(retry_after)
        else:
            # Exponential backoff for other errors
            await trio.sleep(2 ** attempt)

        return await func()

    spec.retry_policy = CustomRetryPolicy(my_retry_logic)
    # --- end seed
    # fmt: on

    # A rate limit asking for 3 s, then a timeout (2**2 = 4 s), then success.
    tool = AttemptRecorder(FlakyTool([RateLimitError(retry_after=3), TimeoutError("slow")]))
    assert await _executor(spec, tool).execute({}) == {"status": "success"}
    assert tool.gaps() == pytest.approx([3.0, 4.0])

    # A rate limit without retry_after waits 60 s.
    tool = AttemptRecorder(FlakyTool([RateLimitError(retry_after=None)]))
    assert await _executor(spec, tool).execute({}) == {"status": "success"}
    assert tool.gaps() == pytest.approx([60.0])

    # Always failing: gives up after attempt 5 with the last exception; 2, 4, 8, 16 s.
    tool = AttemptRecorder(_always_fail)
    with pytest.raises(ConnectionError):
        await _executor(spec, tool).execute({})
    assert tool.gaps() == pytest.approx([2.0, 4.0, 8.0, 16.0])


# =========================================================================== complete example


class _PaymentGateway:
    """The seed's undefined ``payment_gateway``: fails as scripted, counts charges."""

    def __init__(self, failures: list[BaseException] | None = None) -> None:
        self.failures = list(failures or [])
        self.charges: list[str] = []

    async def charge(self, transaction_id: str, amount: float) -> dict[str, str]:
        await trio.sleep(0.05)
        if self.failures:
            raise self.failures.pop(0)
        self.charges.append(transaction_id)
        return {"confirmation_code": f"conf-{transaction_id}"}


async def test_payment_processing_with_full_resilience(
    autojump_clock: trio.testing.MockClock,
) -> None:
    payment_gateway = _PaymentGateway([ConnectionError("reset"), ConnectionError("reset")])
    ctx = ExecutionContext(tenant_id="shop-1", request_id="req-1")

    # fmt: off

    # --- seed: Complete Example / Payment Processing with Full Resilience
    from toolvisor.policies import ExponentialBackoffRetryPolicy, StandardCircuitBreakerPolicy
    from toolvisor.policies.idempotency import FieldBasedIdempotencyKeyGenerator
    from toolvisor.spec import FunctionToolSpec, NumericParameter, StringParameter, ToolType

    # Define payment function
    async def process_payment(args):  # type: ignore[no-untyped-def]
        transaction_id = args['transaction_id']
        amount = args['amount']

        # Call payment gateway
        result = await payment_gateway.charge(transaction_id, amount)

        return {
            'transaction_id': transaction_id,
            'status': 'success',
            'confirmation': result['confirmation_code']
        }

    # Create tool spec with ALL policies
    spec = FunctionToolSpec(
        id="payment-processor-v1",
        tool_name="process_payment",
        description="Process payment with full resilience",
        tool_type=ToolType.FUNCTION,
        parameters=[
            StringParameter(name="transaction_id", required=True),
            NumericParameter(name="amount", required=True),
            StringParameter(name="currency", required=True)
        ],
        timeout_s=30
    )

    # 1. Idempotency - prevent duplicate charges
    spec.idempotency.enabled = True
    spec.idempotency.persist_result = True
    spec.idempotency.ttl_s = 86400  # 24 hours
    spec.idempotency.key_fields = ['transaction_id']
    spec.idempotency_key_generator = FieldBasedIdempotencyKeyGenerator()

    # 2. Circuit Breaker - prevent cascading failures
    spec.circuit_breaker_policy = StandardCircuitBreakerPolicy(
        failure_threshold=5,
        recovery_timeout=60  # 1 minute before retry
    )

    # 3. Retry - handle transient failures
    spec.retry_policy = ExponentialBackoffRetryPolicy(
        max_attempts=3,
        base_delay=1.0,
        max_delay=10.0
    )

    # Create executor
    from toolvisor import FunctionToolExecutor
    executor = FunctionToolExecutor(spec, process_payment)

    # Execute with full resilience
    result = await executor.execute({
        'transaction_id': 'tx-12345',
        'amount': 99.99,
        'currency': 'USD'
    }, ctx)

    # What happens:
    # 1. Check idempotency cache (tx-12345 already processed?)
    # 2. If not cached, check circuit breaker (is payment gateway healthy?)
    # 3. Execute with retry policy (handle transient failures)
    # 4. Cache result for 24 hours
    # --- end seed
    # fmt: on

    # 3. Two transient failures were retried (waits ~1 s and ~2 s), the third attempt paid.
    assert result == {
        "transaction_id": "tx-12345",
        "status": "success",
        "confirmation": "conf-tx-12345",
    }
    assert payment_gateway.charges == ["tx-12345"]
    assert executor.stats().retries == 2
    assert 0.15 + 0.9 + 1.8 <= trio.current_time() <= 0.15 + 1.1 + 2.2

    # 1. + 4. The same transaction again: the cached result, no second charge.
    args = {"transaction_id": "tx-12345", "amount": 99.99, "currency": "USD"}
    assert await executor.execute(args, ctx) == result
    await trio.sleep(86400 - 60)  # still within 24 hours
    assert await executor.execute(args, ctx) == result
    assert payment_gateway.charges == ["tx-12345"]
    assert executor.stats().cache_hits == 2
    # After 24 hours the record has expired: it is executed again.
    await trio.sleep(120)
    assert await executor.execute(args, ctx) == result
    assert payment_gateway.charges == ["tx-12345", "tx-12345"]

    # 2. An unhealthy gateway: the breaker opens after 5 failed attempts, then new
    # payments fail immediately without reaching the gateway.
    payment_gateway.failures = [ConnectionError("down")] * 10
    with pytest.raises(ConnectionError):
        await executor.execute({**args, "transaction_id": "tx-2"}, ctx)  # 3 attempts
    with pytest.raises(ConnectionError):
        await executor.execute({**args, "transaction_id": "tx-3"}, ctx)  # 2 more: opens
    assert executor.get_circuit_state() == "open"
    before, remaining = trio.current_time(), len(payment_gateway.failures)
    with pytest.raises(CircuitOpenError):
        await executor.execute({**args, "transaction_id": "tx-4"}, ctx)
    assert trio.current_time() == before
    assert len(payment_gateway.failures) == remaining  # the gateway was not called


# =========================================================================== combining


async def test_external_api_with_rate_limits(autojump_clock: trio.testing.MockClock) -> None:
    from toolvisor.policies import AdaptiveCircuitBreakerPolicy, ExponentialBackoffRetryPolicy
    from toolvisor.spec import FunctionToolSpec

    # fmt: off

    # --- seed: Combining Policies / External API with Rate Limits ((...) filled in)
    # API that rate limits and occasionally times out
    spec = FunctionToolSpec(id="partner-api-v1", tool_name="partner_api")

    # Circuit breaker for API health
    spec.circuit_breaker_policy = AdaptiveCircuitBreakerPolicy(
        base_threshold=10,      # More tolerant for external API
        max_threshold=50,
        error_rate_threshold=0.3  # 30% error rate
    )

    # Exponential backoff for rate limits
    spec.retry_policy = ExponentialBackoffRetryPolicy(
        max_attempts=5,
        base_delay=2.0,
        max_delay=60.0  # Wait up to 1 minute
    )

    # Result:
    # - Retries with backoff for transient failures
    # - Circuit opens if API consistently failing
    # - Self-adapts to API health patterns
    # --- end seed
    # fmt: on

    # Retries with backoff: a rate limit (retry_after 5 s, longer than the 2 s backoff)
    # and a timeout, then success.
    tool = AttemptRecorder(FlakyTool([RateLimitError(retry_after=5.0), TimeoutError("slow")]))
    executor = _executor(spec, tool)
    assert await executor.execute({}) == {"status": "success"}
    first, second = tool.gaps()
    assert first == pytest.approx(5.0)  # retry_after wins over the ~2 s backoff
    assert 3.6 <= second <= 4.4  # 2 * 2**1, +- 10 %

    # Consistently failing: the error rate passes 30 %, the threshold drops to 10 and
    # the circuit opens; calls then fail fast.
    spec.tool_name = "partner_api_down"
    failing = AttemptRecorder(_always_fail)
    executor = _executor(spec, failing)
    with pytest.raises(ConnectionError):
        await executor.execute({})  # 5 attempts
    with pytest.raises(ConnectionError):
        await executor.execute({})  # attempts 6..10: the 10th opens it
    assert failing.attempts == 10
    with pytest.raises(CircuitOpenError):
        await executor.execute({})
    assert failing.attempts == 10


async def test_database_operations(autojump_clock: trio.testing.MockClock) -> None:
    from toolvisor.policies import FixedRetryPolicy, StandardCircuitBreakerPolicy
    from toolvisor.spec import DbToolSpec, StringParameter

    # fmt: off

    # --- seed: Combining Policies / Database Operations ((...) filled in)
    # Database with connection pooling
    spec = DbToolSpec(
        id="orders-db-v1",
        tool_name="insert_order",
        parameters=[StringParameter(name="order_id", required=True)],
    )

    # Circuit breaker for connection pool
    spec.circuit_breaker_policy = StandardCircuitBreakerPolicy(
        failure_threshold=3,    # Fail fast for DB
        recovery_timeout=15     # Quick recovery check
    )

    # Fixed retry for connection issues
    spec.retry_policy = FixedRetryPolicy(
        max_attempts=2,         # One retry only
        delay_seconds=0.5       # Quick retry
    )

    # Idempotency for duplicate prevention
    spec.idempotency.enabled = True
    spec.idempotency.key_fields = ['order_id']
    # --- end seed
    # fmt: on

    assert spec.tool_type == toolvisor.ToolType.DB
    writes: list[str] = []
    failures: list[Exception] = []

    async def insert_order(args: dict[str, Any]) -> dict[str, str]:
        await trio.sleep(0.01)
        if failures:
            raise failures.pop(0)
        writes.append(args["order_id"])
        return {"order_id": args["order_id"]}

    recorder = AttemptRecorder(insert_order)
    async with toolvisor.open_supervisor() as sup:
        await sup.spawn(spec, recorder)

        # One retry only, 0.5 s later.
        failures.append(ConnectionError("pool exhausted"))
        assert await sup.execute("insert_order", {"order_id": "o-1"}) == {"order_id": "o-1"}
        assert recorder.gaps() == [pytest.approx(0.51)]

        # Duplicate prevention: the same order_id is written once.
        assert await sup.execute("insert_order", {"order_id": "o-1"}) == {"order_id": "o-1"}
        assert writes == ["o-1"]
        assert sup.stats("insert_order").cache_hits == 1

        # Fail fast: 3 failed attempts open the breaker.
        failures.extend([ConnectionError("down")] * 3)
        with pytest.raises(ConnectionError):
            await sup.execute("insert_order", {"order_id": "o-2"})  # attempts 1, 2
        with pytest.raises(ConnectionError):
            await sup.execute("insert_order", {"order_id": "o-3"})  # attempt 3 opens it
        assert sup.stats("insert_order").breaker_state == "open"
        # Quick recovery check: half-open after 15 s, one success closes it.
        await trio.sleep(15)
        assert sup.stats("insert_order").breaker_state == "half_open"
        assert await sup.execute("insert_order", {"order_id": "o-4"}) == {"order_id": "o-4"}
        assert sup.stats("insert_order").breaker_state == "closed"


# =========================================================================== factories


async def test_using_factories() -> None:
    spec = toolvisor.FunctionToolSpec(id="f-v1", tool_name="factory_made")

    # fmt: off

    # --- seed: Factory Pattern / Using Factories
    from toolvisor.policies import CircuitBreakerPolicyFactory, RetryPolicyFactory

    # Get built-in policies by name
    circuit_breaker = CircuitBreakerPolicyFactory.get_policy('standard')
    retry = RetryPolicyFactory.get_policy('exponential')

    spec.circuit_breaker_policy = circuit_breaker
    spec.retry_policy = retry
    # --- end seed
    # fmt: on

    assert isinstance(spec.circuit_breaker_policy, toolvisor.StandardCircuitBreakerPolicy)
    assert isinstance(spec.retry_policy, toolvisor.ExponentialBackoffRetryPolicy)
    executor = _executor(spec, FlakyTool())
    assert await executor.execute({}) == {"status": "success"}


_tenant: contextvars.ContextVar[str] = contextvars.ContextVar("tenant", default="acme")


def get_current_tenant() -> str:
    """The seed leaves it undefined; a context variable is what an app would use."""
    return _tenant.get()


async def test_register_custom_policies(autojump_clock: trio.testing.MockClock) -> None:
    spec = toolvisor.FunctionToolSpec(id="t-v1", tool_name="tenant_tool")

    # fmt: off

    # --- seed: Factory Pattern / Register Custom Policies
    from toolvisor.policies import CircuitBreakerPolicyFactory, ICircuitBreakerPolicy

    class TenantAwareCircuitBreaker(ICircuitBreakerPolicy):
        """Circuit breaker that tracks state per tenant"""

        async def execute_with_breaker(self, func, tool_name):  # type: ignore[no-untyped-def]
            tenant_id = get_current_tenant()
            key = f"{tool_name}:{tenant_id}"  # noqa: F841
            # Your logic
            pass  # noqa: PIE790

        def get_state(self, tool_name):  # type: ignore[no-untyped-def]
            return 'closed'

        def reset(self, tool_name):  # type: ignore[no-untyped-def]
            pass

    # Register it
    CircuitBreakerPolicyFactory.register(
        'tenant_aware',
        TenantAwareCircuitBreaker()
    )

    # Use it
    policy = CircuitBreakerPolicyFactory.get_policy('tenant_aware')
    spec.circuit_breaker_policy = policy
    # --- end seed
    # fmt: on

    try:
        assert isinstance(policy, TenantAwareCircuitBreaker)
        assert "tenant_aware" in CircuitBreakerPolicyFactory.available()
        # The seed's stub runs (its "logic" is `pass`, so the call's value is None)
        # and a supervisor reads its string state.
        async with toolvisor.open_supervisor() as sup:
            await sup.spawn(spec, FlakyTool())
            assert await sup.execute("tenant_tool", {}) is None
            assert sup.stats("tenant_tool").breaker_state == "closed"
    finally:
        CircuitBreakerPolicyFactory.unregister("tenant_aware")


async def test_register_custom_policies_with_logic(autojump_clock: trio.testing.MockClock) -> None:
    """The seed's stub with its "# Your logic" filled in: one breaker per tenant."""
    from toolvisor.policies import (
        CircuitBreakerPolicyFactory,
        ICircuitBreakerPolicy,
        StandardCircuitBreakerPolicy,
    )

    class TenantAwareCircuitBreaker(ICircuitBreakerPolicy):
        def __init__(self) -> None:
            self.inner = StandardCircuitBreakerPolicy(failure_threshold=2, recovery_timeout=10)

        async def execute_with_breaker(self, func, tool_name):  # type: ignore[no-untyped-def]
            key = f"{tool_name}:{get_current_tenant()}"
            return await self.inner.execute_with_breaker(func, key)

        def get_state(self, tool_name):  # type: ignore[no-untyped-def]
            return self.inner.get_state(f"{tool_name}:{get_current_tenant()}")

        def reset(self, tool_name):  # type: ignore[no-untyped-def]
            self.inner.reset(f"{tool_name}:{get_current_tenant()}")

    CircuitBreakerPolicyFactory.register("tenant_aware_real", TenantAwareCircuitBreaker)
    try:
        spec = toolvisor.FunctionToolSpec(id="t-v2", tool_name="tenant_tool")
        spec.circuit_breaker_policy = CircuitBreakerPolicyFactory.get_policy("tenant_aware_real")
        executor = _executor(spec, _always_fail)
        token = _tenant.set("noisy")
        try:
            with pytest.raises(ConnectionError):
                await executor.execute({})
            with pytest.raises(ConnectionError):
                await executor.execute({})
        finally:
            _tenant.reset(token)
        # The other tenant's breaker is still closed.
        assert spec.circuit_breaker_policy.get_state("tenant_tool") == "closed"
        with pytest.raises(ConnectionError):
            await executor.execute({})
    finally:
        CircuitBreakerPolicyFactory.unregister("tenant_aware_real")


# =========================================================================== best practices


async def test_best_practices_fragments() -> None:
    from toolvisor.policies import (
        AdaptiveCircuitBreakerPolicy,
        ExponentialBackoffRetryPolicy,
        FixedRetryPolicy,
        StandardCircuitBreakerPolicy,
    )

    # fmt: off

    # --- seed: Best Practices / 1. Choose Appropriate Policies
    # Payment processing
    circuit_breaker_policy=StandardCircuitBreakerPolicy()  # Strict
    retry_policy=ExponentialBackoffRetryPolicy()          # Persistent

    # Read-only queries
    circuit_breaker_policy=AdaptiveCircuitBreakerPolicy()  # Flexible
    retry_policy=FixedRetryPolicy(max_attempts=2)         # Quick retry
    # --- end seed
    # fmt: on
    spec = toolvisor.FunctionToolSpec(
        id="q-v1",
        tool_name="query",
        circuit_breaker_policy=circuit_breaker_policy,
        retry_policy=retry_policy,
    )
    assert spec.effective_retry_policy() is retry_policy

    # fmt: off

    # --- seed: Best Practices / 2. Configure Reasonable Timeouts
    # Don't retry forever
    retry_policy=ExponentialBackoffRetryPolicy(
        max_attempts=5,     # Reasonable limit
        max_delay=30.0      # Cap delays
    )
    # --- end seed
    # fmt: on
    assert retry_policy.max_attempts == 5

    # fmt: off

    # --- seed: Best Practices / 3. Match Policies to Service Characteristics
    # Fast, reliable service
    failure_threshold=10    # More tolerant
    max_attempts=2          # Few retries

    # Slow, flaky service
    failure_threshold=20    # Very tolerant
    max_attempts=5          # More retries
    # --- end seed
    # fmt: on
    assert StandardCircuitBreakerPolicy(failure_threshold=failure_threshold)
    assert FixedRetryPolicy(max_attempts=max_attempts)


async def test_test_your_policies(
    autojump_clock: trio.testing.MockClock, seeded_random: None
) -> None:
    # fmt: off
    # --- seed: Best Practices / 4. Test Your Policies
    # Simulate failures to verify policies work
    async def failing_function(args):  # type: ignore[no-untyped-def]
        if random.random() < 0.7:  # 70% failure rate
            raise TimeoutError("Simulated timeout")
        return {"status": "success"}

    # Verify circuit breaker opens
    # Verify retries happen with correct delays
    # --- end seed
    # fmt: on

    spec = toolvisor.FunctionToolSpec(id="flaky-v1", tool_name="flaky", timeout_s=30)
    spec.circuit_breaker_policy = toolvisor.StandardCircuitBreakerPolicy(
        failure_threshold=5, recovery_timeout=60
    )
    retry = toolvisor.ExponentialBackoffRetryPolicy(
        max_attempts=3, base_delay=1.0, max_delay=10.0, jitter=0.1
    )
    spec.retry_policy = retry
    tool = AttemptRecorder(failing_function)

    async with toolvisor.open_supervisor() as sup:
        log = EventLog.attach(sup)
        await sup.spawn(spec, tool)
        results = []
        for _ in range(20):
            results.append(await sup.execute_many([("flaky", {})]))
            if sup.stats("flaky").breaker_state == "open":
                break
        stats = sup.stats("flaky")

    # Verify circuit breaker opens.
    assert stats.breaker_state == "open"
    transitions = log.of_type(BreakerTransition, "flaky")
    assert [(t.old, t.new) for t in transitions][-1] == ("closed", "open")
    # The call whose failure opened it ends with the tool's own error, noted as such.
    last = results[-1][0].error
    assert isinstance(last, TimeoutError) and not isinstance(last, CircuitOpenError)
    assert any("breaker of tool 'flaky' opened" in note for note in last.__notes__)

    # Verify retries happen with correct delays: each RetryScheduled delay follows the
    # policy (1 s then 2 s, +- 10 % jitter) and the next attempt starts exactly then.
    retries = log.of_type(RetryScheduled, "flaky")
    assert retries and stats.retries == len(retries)
    for event in retries:
        nominal = 1.0 * 2.0 ** (event.attempt - 1)
        assert nominal * 0.9 <= event.delay <= nominal * 1.1
        assert any(abs(t - (event.at + event.delay)) < 1e-9 for t in tool.times)
    assert all(e is None or isinstance(e, TimeoutError) for e in tool.errors)
    # The 70 % is seeded: the same outcomes every run.
    assert stats.calls == len(results)


# =========================================================================== migration


def _old_way(spec: toolvisor.ToolSpec) -> None:
    from toolvisor.spec import CircuitBreakerConfig, RetryConfig

    # fmt: off

    # --- seed: Migration / Old Way (Config Objects)
    spec.retry = RetryConfig(
        max_attempts=3,
        base_delay_s=1.0,
        max_delay_s=10.0
    )
    spec.circuit_breaker = CircuitBreakerConfig(
        enabled=True,
        failure_threshold=5,
        recovery_timeout_s=30
    )
    # --- end seed
    # fmt: on


def _new_way(spec: toolvisor.ToolSpec) -> None:
    from toolvisor.policies import ExponentialBackoffRetryPolicy, StandardCircuitBreakerPolicy

    # fmt: off

    # --- seed: Migration / New Way (Pluggable Policies)
    spec.retry_policy = ExponentialBackoffRetryPolicy(
        max_attempts=3,
        base_delay=1.0,
        max_delay=10.0
    )
    spec.circuit_breaker_policy = StandardCircuitBreakerPolicy(
        failure_threshold=5,
        recovery_timeout=30
    )
    # --- end seed
    # fmt: on


@pytest.mark.parametrize("configure", [_old_way, _new_way], ids=["old-way", "new-way"])
async def test_migration_both_work(autojump_clock: trio.testing.MockClock, configure: Any) -> None:
    """ "Both work!": the old config objects and the new policies behave the same."""
    spec = toolvisor.FunctionToolSpec(id="m-v1", tool_name="migrated")
    configure(spec)
    tool = AttemptRecorder(_always_fail)
    executor = _executor(spec, tool)

    # Retry: 3 attempts, ~1 s then ~2 s apart.
    with pytest.raises(ConnectionError):
        await executor.execute({})
    assert tool.attempts == 3
    for gap, nominal in zip(tool.gaps(), [1.0, 2.0], strict=True):
        assert nominal * 0.9 <= gap <= nominal * 1.1
    # Breaker: the 5th consecutive failed attempt opens it; open for 30 s.
    with pytest.raises(ConnectionError):
        await executor.execute({})
    assert tool.attempts == 5
    assert executor.get_circuit_state() == "open"
    await trio.sleep(30)
    assert executor.get_circuit_state() == "half_open"


async def test_policy_wins_over_legacy_config(autojump_clock: trio.testing.MockClock) -> None:
    """Both set: the explicitly set policy wins."""
    spec = toolvisor.FunctionToolSpec(id="m-v2", tool_name="both")
    _old_way(spec)
    spec.retry_policy = toolvisor.NoRetryPolicy()
    tool = AttemptRecorder(_always_fail)
    with pytest.raises(ConnectionError):
        await _executor(spec, tool).execute({})
    assert tool.attempts == 1
