"""StrategyFactory: the spec's strategies by field name, from options or a config."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import toolvisor as tv
from toolvisor.errors import PolicyNotFoundError
from toolvisor.policies import (
    FallbackPolicy,
    RateLimit,
    RetryBudget,
    RetryPolicyFactory,
    StrategyFactory,
)


@pytest.fixture(autouse=True)
def _clean_registry() -> Iterator[None]:
    StrategyFactory.reset()
    yield
    StrategyFactory.reset()


def test_builtins_are_the_spec_fields_and_make_new_instances() -> None:
    assert StrategyFactory.available()[:5] == [
        "fallback",
        "hedging",
        "max_concurrency",
        "rate_limit",
        "retry_budget",
    ]
    budget = StrategyFactory.get_policy("retry_budget", ratio=0.1)
    assert isinstance(budget, RetryBudget) and budget.ratio == 0.1
    assert StrategyFactory.get_policy("retry_budget") is not StrategyFactory.get_policy(
        "retry_budget"
    )
    limit = StrategyFactory.get_policy("rate_limit", rate=10, burst=20, max_wait_s=0.5)
    assert isinstance(limit, RateLimit) and (limit.rate, limit.capacity) == (10, 20.0)
    fallback = StrategyFactory.get_policy("fallback", value=[], on=(tv.CircuitOpenError,))
    assert fallback == FallbackPolicy(value=[], on=(tv.CircuitOpenError,))


@pytest.mark.parametrize(
    ("name", "options", "error", "message"),
    [
        (
            "rate_limit",
            {"rat": 10},
            TypeError,
            "'rate_limit' has no option 'rat'; its options: rate, per_s, burst, max_wait_s",
        ),
        ("retry_budget", {"ratio": -1}, ValueError, "RetryBudget: 'ratio' must be"),
        ("rate_limit", {"rate": 0}, ValueError, "RateLimit: 'rate' must be a finite number > 0"),
        ("fallback", {}, TypeError, "exactly one of 'value'"),
        ("fallback", {"value": 1, "on": (KeyboardInterrupt,)}, TypeError, "'on' holds"),
    ],
)
def test_bad_options_name_the_field(
    name: str, options: dict[str, object], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message.replace("(", r"\(")):
        StrategyFactory.get_policy(name, **options)


def test_the_policy_factories_name_unknown_options_too() -> None:
    with pytest.raises(TypeError, match="retry policy 'fixed' has no option 'attempts'"):
        RetryPolicyFactory.get_policy("fixed", attempts=3)


def test_a_registered_instance_is_one_shared_bucket() -> None:
    quota = RateLimit(100, per_s=60.0)
    StrategyFactory.register("partner_quota", quota)
    assert StrategyFactory.get_policy("partner_quota") is quota
    StrategyFactory.register("fresh_budget", lambda: RetryBudget(ratio=0.3))
    first = StrategyFactory.get_policy("fresh_budget")
    assert isinstance(first, RetryBudget) and first is not StrategyFactory.get_policy(
        "fresh_budget"
    )
    assert "partner_quota" in StrategyFactory.available()
    with pytest.raises(TypeError, match="a RetryBudget or a RateLimit or a FallbackPolicy"):
        StrategyFactory.register("wrong", 42)
    with pytest.raises(ValueError, match="'rate_limit' is a built-in strategy policy"):
        StrategyFactory.register("rate_limit", quota)
    with pytest.raises(PolicyNotFoundError):
        StrategyFactory.get_policy("nothing_here")


def test_from_config_builds_the_spec_fields() -> None:
    quota = RateLimit(5)
    StrategyFactory.register("partner_quota", quota)
    fields = StrategyFactory.from_config(
        {
            "retry_budget": {"ratio": 0.1, "min_retries_per_s": 1.0},
            "rate_limit": "partner_quota",
            "fallback": None,
        }
    )
    assert set(fields) == {"retry_budget", "rate_limit", "fallback"}
    assert fields["rate_limit"] is quota and fields["fallback"] is None
    spec = tv.FunctionToolSpec(id="partner-v1", tool_name="partner", **fields)
    assert spec.retry_budget is fields["retry_budget"] and spec.retry_budget.ratio == 0.1
    assert StrategyFactory.from_config({}) == {}


@pytest.mark.parametrize(
    ("config", "error", "message"),
    [
        (
            {"budget": {}},
            ValueError,
            "'budget' is not a strategy field; the fields: fallback, hedging, max_concurrency, "
            "rate_limit, retry_budget",
        ),
        ({"rate_limit": 10}, TypeError, "'rate_limit' must be a mapping of options"),
        ({"rate_limit": {"rate": 10, "size": 2}}, TypeError, "has no option 'size'"),
        (
            {"retry_budget": "partner_quota"},
            TypeError,
            "'retry_budget' names 'partner_quota', which is a RateLimit, not a RetryBudget",
        ),
        ({"fallback": "missing"}, PolicyNotFoundError, "missing"),
        (["rate_limit"], TypeError, "a strategy config is a mapping"),
    ],
)
def test_from_config_errors_name_the_field(
    config: object, error: type[Exception], message: str
) -> None:
    StrategyFactory.register("partner_quota", RateLimit(5))
    with pytest.raises(error, match=message):
        StrategyFactory.from_config(config)  # type: ignore[arg-type]
