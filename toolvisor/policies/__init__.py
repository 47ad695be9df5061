"""Pluggable resilience policies: circuit breakers, retries, idempotency keys, factories,
and the strategies beyond them (retry budgets, rate limits, fallbacks, adaptive
concurrency, hedging).

Policies are configuration plus behaviour, free of I/O and actors; all timing is on
trio's clock.
"""

from toolvisor.policies.budget import RetryBudget as RetryBudget
from toolvisor.policies.circuit_breaker import (
    AdaptiveCircuitBreakerPolicy as AdaptiveCircuitBreakerPolicy,
)
from toolvisor.policies.circuit_breaker import CircuitState as CircuitState
from toolvisor.policies.circuit_breaker import ExcludeRule as ExcludeRule
from toolvisor.policies.circuit_breaker import ICircuitBreakerPolicy as ICircuitBreakerPolicy
from toolvisor.policies.circuit_breaker import (
    NoOpCircuitBreakerPolicy as NoOpCircuitBreakerPolicy,
)
from toolvisor.policies.circuit_breaker import (
    StandardCircuitBreakerPolicy as StandardCircuitBreakerPolicy,
)
from toolvisor.policies.concurrency import AdaptiveConcurrency as AdaptiveConcurrency
from toolvisor.policies.factory import CircuitBreakerPolicyFactory as CircuitBreakerPolicyFactory
from toolvisor.policies.factory import RetryPolicyFactory as RetryPolicyFactory
from toolvisor.policies.factory import StrategyFactory as StrategyFactory
from toolvisor.policies.fallback import FallbackPolicy as FallbackPolicy
from toolvisor.policies.hedging import HedgeSchedule as HedgeSchedule
from toolvisor.policies.hedging import HedgingPolicy as HedgingPolicy
from toolvisor.policies.idempotency import (
    FieldBasedIdempotencyKeyGenerator as FieldBasedIdempotencyKeyGenerator,
)
from toolvisor.policies.idempotency import (
    HashIdempotencyKeyGenerator as HashIdempotencyKeyGenerator,
)
from toolvisor.policies.idempotency import IIdempotencyKeyGenerator as IIdempotencyKeyGenerator
from toolvisor.policies.idempotency import canonical_json as canonical_json
from toolvisor.policies.idempotency import default_key_generator as default_key_generator
from toolvisor.policies.idempotency import fingerprint as fingerprint
from toolvisor.policies.idempotency import generator_takes_ctx as generator_takes_ctx
from toolvisor.policies.rate_limit import RateLimit as RateLimit
from toolvisor.policies.retry import DEFAULT_RNG as DEFAULT_RNG
from toolvisor.policies.retry import NEVER_RETRIED as NEVER_RETRIED
from toolvisor.policies.retry import PROGRAMMING_ERRORS as PROGRAMMING_ERRORS
from toolvisor.policies.retry import CustomRetryFn as CustomRetryFn
from toolvisor.policies.retry import CustomRetryPolicy as CustomRetryPolicy
from toolvisor.policies.retry import (
    ExponentialBackoffRetryPolicy as ExponentialBackoffRetryPolicy,
)
from toolvisor.policies.retry import FixedRetryPolicy as FixedRetryPolicy
from toolvisor.policies.retry import IRetryPolicy as IRetryPolicy
from toolvisor.policies.retry import NoRetryPolicy as NoRetryPolicy
from toolvisor.policies.retry import OnRetry as OnRetry
from toolvisor.policies.retry import RetryOn as RetryOn
from toolvisor.shared import RedisShared as RedisShared

__all__ = [
    "DEFAULT_RNG",
    "NEVER_RETRIED",
    "PROGRAMMING_ERRORS",
    "AdaptiveCircuitBreakerPolicy",
    "AdaptiveConcurrency",
    "CircuitBreakerPolicyFactory",
    "CircuitState",
    "CustomRetryFn",
    "CustomRetryPolicy",
    "ExcludeRule",
    "ExponentialBackoffRetryPolicy",
    "FallbackPolicy",
    "FieldBasedIdempotencyKeyGenerator",
    "FixedRetryPolicy",
    "HashIdempotencyKeyGenerator",
    "HedgeSchedule",
    "HedgingPolicy",
    "ICircuitBreakerPolicy",
    "IIdempotencyKeyGenerator",
    "IRetryPolicy",
    "NoOpCircuitBreakerPolicy",
    "NoRetryPolicy",
    "OnRetry",
    "RateLimit",
    "RedisShared",
    "RetryBudget",
    "RetryOn",
    "RetryPolicyFactory",
    "StandardCircuitBreakerPolicy",
    "StrategyFactory",
    "canonical_json",
    "default_key_generator",
    "fingerprint",
    "generator_takes_ctx",
]
