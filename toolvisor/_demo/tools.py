"""The demo's tools: the seed's payment processor and two others, with their specs.

The policies are the seed's, with every duration scaled down about tenfold so that
breakers recover and retries finish within a demo of a few seconds (the seed's values
are in the comments).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from ..errors import RateLimitError
from ..policies import (
    AdaptiveCircuitBreakerPolicy,
    AdaptiveConcurrency,
    ExponentialBackoffRetryPolicy,
    FieldBasedIdempotencyKeyGenerator,
    FixedRetryPolicy,
    RateLimit,
    StandardCircuitBreakerPolicy,
)
from ..spec import (
    DbToolSpec,
    ExecutionContext,
    FunctionToolSpec,
    HttpToolSpec,
    IntegerParameter,
    NumericParameter,
    StringParameter,
    ToolSpec,
    ToolType,
)
from .backends import Database, PaymentGateway, SearchApi

__all__ = ["Backends", "DemoTool", "build_tools", "payment_args"]

PAYMENT = "process_payment"
SEARCH = "search_catalog"
ORDERS = "record_order"


@attrs.frozen
class DemoTool:
    """A tool of the demo: its spec, its function, its back end and its call stream."""

    spec: ToolSpec
    fn: Callable[..., Any]
    policies: str  # the policies in words (the live view's legend, wide terminals)
    policies_short: str  # the same in at most 62 characters (80-column terminals)
    rate: float  # calls per second sent to it
    timeout: float  # each call's overall deadline (seconds)
    make_args: Callable[[int], Mapping[str, Any]]
    backend_state: Callable[[], str]
    backend_attempts: Callable[[], int]
    opens_after: Callable[[], int | None]  # consecutive failures that open the breaker now
    error_rate: Callable[[], float | None] = lambda: None  # the adaptive breaker's window


@attrs.frozen
class Backends:
    """The simulated back ends, one per tool."""

    gateway: PaymentGateway
    api: SearchApi
    db: Database


def payment_args(seed: int, index: int) -> dict[str, Any]:
    """The arguments of payment ``index``: the same for a given seed on every run.

    Resending a transaction id with other arguments would be an idempotency conflict,
    so the amount and currency are derived from the id, never from the run.
    """
    rng = random.Random(f"payment:{seed}:{index}")
    return {
        "transaction_id": f"tx-{seed}-{index:05d}",
        "amount": round(rng.uniform(5, 500), 2),
        "currency": rng.choice(["USD", "EUR"]),
    }


def payment_spec() -> FunctionToolSpec:
    """The seed's "Payment Processing with Full Resilience" spec, durations scaled."""
    spec = FunctionToolSpec(
        id="payment-processor-v1",
        tool_name=PAYMENT,
        description="Process payment with full resilience",
        tool_type=ToolType.FUNCTION,
        parameters=[
            StringParameter(name="transaction_id", required=True),
            NumericParameter(name="amount", required=True, minimum=0),
            StringParameter(name="currency", required=True, enum=["USD", "EUR"]),
        ],
        timeout_s=1.0,  # seed: 30
    )
    spec.idempotency.enabled = True
    spec.idempotency.persist_result = True
    spec.idempotency.ttl_s = 86400
    spec.idempotency.key_fields = ["transaction_id"]
    spec.idempotency_key_generator = FieldBasedIdempotencyKeyGenerator()
    spec.circuit_breaker_policy = StandardCircuitBreakerPolicy(
        failure_threshold=5,
        recovery_timeout=1.5,  # seed: 60
    )
    spec.retry_policy = ExponentialBackoffRetryPolicy(
        max_attempts=3,
        base_delay=0.1,  # seed: 1.0
        max_delay=1.0,  # seed: 10.0
        rng=random.Random(1),
    )
    return spec


def search_spec() -> HttpToolSpec:
    """The seed's "External API with Rate Limits" use case, durations scaled."""
    spec = HttpToolSpec(
        id="catalog-search-v2",
        tool_name=SEARCH,
        description="Search the product catalog of an external partner API",
        parameters=[StringParameter(name="query", required=True, min_length=1)],
        timeout_s=0.5,
    )
    spec.circuit_breaker_policy = AdaptiveCircuitBreakerPolicy(
        base_threshold=3,  # seed: 10 (fewer calls in a demo)
        max_threshold=8,  # seed: 50
        error_rate_threshold=0.3,
        window_size=40,
        recovery_timeout=1.0,
        # A 429 says "too fast", not "unhealthy": the retry policy waits it out (it
        # honours retry_after) and the breaker does not count it.
        exclude=[RateLimitError],
    )
    spec.retry_policy = ExponentialBackoffRetryPolicy(
        max_attempts=4,  # seed: 5
        base_delay=0.2,  # seed: 2.0
        max_delay=1.0,  # seed: 60.0
        rng=random.Random(2),
    )
    # The partner's own token bucket, kept on this side: calls wait for a token (up to
    # 1 s of their 2 s) instead of being answered 429.
    spec.rate_limit = RateLimit(SearchApi.RATE, burst=SearchApi.BURST, max_wait_s=1.0)
    return spec


def orders_spec() -> DbToolSpec:
    """The seed's "Database Operations" use case, durations scaled."""
    spec = DbToolSpec(
        id="orders-db-v1",
        tool_name=ORDERS,
        description="Insert an order into the orders database",
        parameters=[
            StringParameter(name="order_id", required=True),
            StringParameter(name="sku", required=True),
            IntegerParameter(name="quantity", required=True, minimum=1),
        ],
        timeout_s=0.5,
        # The database's pool of 4 connections; each timeout halves the limit (a failover
        # shows it), each success with half of it in use adds one back.
        max_concurrency=AdaptiveConcurrency(
            initial=4, min_limit=1, max_limit=8, algorithm="aimd", backoff_ratio=0.5
        ),
    )
    spec.circuit_breaker_policy = StandardCircuitBreakerPolicy(
        failure_threshold=3,
        recovery_timeout=1.0,  # seed: 15
    )
    spec.retry_policy = FixedRetryPolicy(max_attempts=2, delay_seconds=0.05)  # seed: 0.5
    spec.idempotency.enabled = True
    spec.idempotency.key_fields = ["order_id"]
    return spec


def build_tools(backends: Backends, seed: int) -> list[DemoTool]:
    """The demo's three tools, wired to their back ends."""
    gateway, api, db = backends.gateway, backends.api, backends.db
    payment, search, orders = payment_spec(), search_spec(), orders_spec()
    payment_breaker = payment.circuit_breaker_policy
    search_breaker = search.circuit_breaker_policy
    orders_breaker = orders.circuit_breaker_policy
    assert isinstance(payment_breaker, StandardCircuitBreakerPolicy)
    assert isinstance(search_breaker, AdaptiveCircuitBreakerPolicy)
    assert isinstance(orders_breaker, StandardCircuitBreakerPolicy)

    async def process_payment(args: Mapping[str, Any], ctx: ExecutionContext) -> dict[str, Any]:
        transaction_id = args["transaction_id"]
        # The call's idempotency key goes to the gateway, as an Idempotency-Key header would.
        confirmation = await gateway.charge(transaction_id, args["amount"], ctx.idempotency_key)
        return {
            "transaction_id": transaction_id,
            "status": "success",
            "confirmation": confirmation,
        }

    async def search_catalog(args: Mapping[str, Any]) -> list[str]:
        return await api.search(args["query"])

    async def record_order(args: Mapping[str, Any]) -> dict[str, Any]:
        row = await db.insert_order(args["order_id"], args["sku"], args["quantity"])
        return {"order_id": args["order_id"], "row": row}

    words = ["lamp", "desk", "chair", "cable", "mug", "plant", "shelf", "rug"]

    def search_args(i: int) -> Mapping[str, Any]:
        return {"query": words[(i * 7 + seed) % len(words)]}

    def order_args(i: int) -> Mapping[str, Any]:
        rng = random.Random(f"order:{seed}:{i}")
        return {
            "order_id": f"ord-{seed}-{i:05d}",
            "sku": f"sku-{rng.randrange(100, 999)}",
            "quantity": rng.randrange(1, 5),
        }

    return [
        DemoTool(
            spec=payment,
            fn=process_payment,
            policies=(
                "idempotent on transaction_id (SQLite, 24 h); Standard breaker: opens after 5 "
                "failures in a row, trial call after 1.5 s; exponential retry: 3 attempts"
            ),
            policies_short="idempotent (SQLite); Standard(5, 1.5 s); Exponential(3)",
            rate=6.0,
            timeout=2.0,
            make_args=lambda i: payment_args(seed, i),
            backend_state=gateway.state,
            backend_attempts=lambda: gateway.attempts,
            opens_after=lambda: payment_breaker.failure_threshold,
        ),
        DemoTool(
            spec=search,
            fn=search_catalog,
            policies=(
                "Adaptive breaker: opens after 8 failures in a row while healthy, down to 3 "
                "at 30 % errors, 429s not counted; exponential retry: 4 attempts, waits at "
                "least retry_after; rate limit: the API's own 6/s, bursts of 4"
            ),
            policies_short="Adaptive(8 to 3); Exponential(4); RateLimit(6/s, burst 4)",
            rate=5.0,
            timeout=2.0,
            make_args=search_args,
            backend_state=api.state,
            backend_attempts=lambda: api.attempts,
            opens_after=lambda: search_breaker.current_threshold(SEARCH),
            error_rate=lambda: search_breaker.error_rate(SEARCH),
        ),
        DemoTool(
            spec=orders,
            fn=record_order,
            policies=(
                "idempotent on order_id (memory); Standard breaker: opens after 3 failures in "
                "a row, trial call after 1 s; fixed retry: 2 attempts, 50 ms apart; adaptive "
                "concurrency (aimd): 4, halved at each timeout, within 1-8"
            ),
            policies_short="idempotent; Standard(3, 1 s); Fixed(2, 50 ms); AIMD(4 in 1-8)",
            rate=5.0,
            timeout=1.0,
            make_args=order_args,
            backend_state=db.state,
            backend_attempts=lambda: db.attempts,
            opens_after=lambda: orders_breaker.failure_threshold,
        ),
    ]
