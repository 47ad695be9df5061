"""``toolvisor.policies`` re-exports every public name of its modules, once."""

from __future__ import annotations

import importlib

import pytest

import toolvisor.policies as policies

MODULES = ["circuit_breaker", "retry", "factory", "idempotency", "rate_limit", "fallback"]


def test_all_names_resolve() -> None:
    assert len(set(policies.__all__)) == len(policies.__all__)
    for name in policies.__all__:
        assert hasattr(policies, name), name


@pytest.mark.parametrize("module", MODULES)
def test_every_module_export_is_reexported(module: str) -> None:
    mod = importlib.import_module(f"toolvisor.policies.{module}")
    for name in mod.__all__:
        assert name in policies.__all__, f"{module}.{name}"
        assert getattr(policies, name) is getattr(mod, name)


@pytest.mark.parametrize(
    "name",
    [
        "StandardCircuitBreakerPolicy",
        "AdaptiveCircuitBreakerPolicy",
        "NoOpCircuitBreakerPolicy",
        "NoRetryPolicy",
        "FixedRetryPolicy",
        "ExponentialBackoffRetryPolicy",
        "CustomRetryPolicy",
        "CircuitBreakerPolicyFactory",
        "RetryPolicyFactory",
        "RetryBudget",
        "FallbackPolicy",
        "StrategyFactory",
        "RateLimit",
        "FieldBasedIdempotencyKeyGenerator",
        "HashIdempotencyKeyGenerator",
        "default_key_generator",
    ],
)
def test_public_classes_have_docstrings_with_examples(name: str) -> None:
    doc = getattr(policies, name).__doc__ or ""
    assert "Example" in doc
