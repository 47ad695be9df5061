"""Factories that build policies by name and hold user-registered ones.

The built-in names always make a new instance, passing ``**overrides`` to the
constructor (an option it does not have is refused, naming the options it has). User
registrations are process-global (like the seed's factories), so :meth:`reset` drops
them all, e.g. between tests.

:class:`StrategyFactory` names the spec's strategies by the spec field they go in
(``"retry_budget"``, ``"rate_limit"``, ``"fallback"``), and
:meth:`StrategyFactory.from_config` turns a configuration (``{"rate_limit": {"rate":
10}}``) into those fields, for a spec or ``Supervisor.reconfigure``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Generic, TypeVar, cast

from toolvisor.errors import PolicyNotFoundError
from toolvisor.policies.budget import RetryBudget
from toolvisor.policies.circuit_breaker import (
    AdaptiveCircuitBreakerPolicy,
    ICircuitBreakerPolicy,
    NoOpCircuitBreakerPolicy,
    StandardCircuitBreakerPolicy,
)
from toolvisor.policies.concurrency import AdaptiveConcurrency
from toolvisor.policies.fallback import FallbackPolicy
from toolvisor.policies.hedging import HedgingPolicy
from toolvisor.policies.rate_limit import RateLimit
from toolvisor.policies.retry import (
    ExponentialBackoffRetryPolicy,
    FixedRetryPolicy,
    IRetryPolicy,
    NoRetryPolicy,
)

__all__ = ["CircuitBreakerPolicyFactory", "RetryPolicyFactory", "StrategyFactory"]

P = TypeVar("P")


class _PolicyFactory(Generic[P]):
    """Name -> policy registry shared by both factories; subclasses set the class vars."""

    _kind: ClassVar[str]
    _protocol: ClassVar[type | tuple[type, ...]]
    _builtins: ClassVar[dict[str, Callable[..., Any]]]
    _registered: ClassVar[dict[str, Any]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._registered = {}

    @classmethod
    def get_policy(cls, name: str, **overrides: Any) -> P:
        """Return the policy registered under ``name``.

        Built-in names make a new instance with ``overrides`` as constructor arguments.
        A registered instance is returned itself (overrides are refused with TypeError);
        a registered zero-argument callable is called.

        Raises:
            PolicyNotFoundError: no policy has that name (the message lists the known ones).
            TypeError: overrides given for a registered policy, or a bad override.
        """
        builtin = cls._builtins.get(name)
        if builtin is not None:
            _check_options(cls._kind, name, builtin, overrides)
            policy: P = builtin(**overrides)
            return policy
        try:
            entry = cls._registered[name]
        except KeyError:
            raise PolicyNotFoundError(name, cls.available()) from None
        if overrides:
            raise TypeError(
                f"{cls._kind} policy {name!r} is a registered policy and takes no "
                f"overrides (got {', '.join(sorted(overrides))}); register a differently "
                "configured policy under another name instead"
            )
        if isinstance(entry, type) or not isinstance(entry, cls._protocol):
            made = entry()
            if not isinstance(made, cls._protocol):
                raise TypeError(
                    f"the factory registered as {cls._kind} policy {name!r} returned "
                    f"{made!r}, which is not {cls._expected()}"
                )
            entry = made
        return cast(P, entry)

    @classmethod
    def register(cls, name: str, policy: P | Callable[[], P], *, replace: bool = False) -> None:
        """Register ``policy`` (an instance, or a zero-argument callable making one).

        Raises:
            ValueError: ``name`` is a built-in, or already registered and not ``replace``.
            TypeError: ``policy`` is neither a policy nor a callable.
        """
        if not isinstance(name, str) or not name:
            raise TypeError(f"policy names are non-empty strings, got {name!r}")
        if name in cls._builtins:
            raise ValueError(f"{name!r} is a built-in {cls._kind} policy; choose another name")
        if name in cls._registered and not replace:
            raise ValueError(
                f"{cls._kind} policy {name!r} is already registered; pass replace=True "
                "or unregister() it first"
            )
        is_instance = not isinstance(policy, type) and isinstance(policy, cls._protocol)
        if not is_instance and not callable(policy):
            raise TypeError(
                f"cannot register {policy!r} as {cls._kind} policy {name!r}: expected "
                f"{cls._expected()} or a zero-argument callable returning one"
            )
        cls._registered[name] = policy

    @classmethod
    def unregister(cls, name: str) -> None:
        """Remove a user registration.

        Raises:
            ValueError: ``name`` is a built-in.
            PolicyNotFoundError: nothing is registered under ``name``.
        """
        if name in cls._builtins:
            raise ValueError(f"{name!r} is a built-in {cls._kind} policy and stays")
        if cls._registered.pop(name, None) is None:
            raise PolicyNotFoundError(name, cls.available())

    @classmethod
    def available(cls) -> list[str]:
        """Every known name, built-ins first, then registrations, each sorted."""
        return sorted(cls._builtins) + sorted(cls._registered)

    @classmethod
    def reset(cls) -> None:
        """Drop every user registration (built-ins stay)."""
        cls._registered.clear()

    @classmethod
    def _expected(cls) -> str:
        """What this factory's policies are, for messages ("a RetryBudget or a ...")."""
        kinds = cls._protocol if isinstance(cls._protocol, tuple) else (cls._protocol,)
        return " or ".join(f"a {kind.__name__}" for kind in kinds)


def _check_options(
    kind: str, name: str, builtin: Callable[..., Any], overrides: Mapping[str, Any]
) -> None:
    """Refuse an option the built-in's constructor does not take, naming the ones it does."""
    try:
        params = inspect.signature(builtin).parameters.values()
    except (TypeError, ValueError):
        return
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return
    options = [p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]
    unknown = sorted(set(overrides) - set(options))
    if unknown:
        raise TypeError(
            f"{kind} policy {name!r} has no option {unknown[0]!r}; its options: "
            f"{', '.join(options) or 'none'}"
        )


class CircuitBreakerPolicyFactory(_PolicyFactory[ICircuitBreakerPolicy]):
    """Circuit-breaker policies by name: ``"standard"``, ``"adaptive"``, ``"noop"``, yours.

    Example::

        breaker = CircuitBreakerPolicyFactory.get_policy("standard", failure_threshold=3)
        CircuitBreakerPolicyFactory.register("tenant_aware", TenantAwareCircuitBreaker())
        policy = CircuitBreakerPolicyFactory.get_policy("tenant_aware")
        CircuitBreakerPolicyFactory.available()
        # ['adaptive', 'noop', 'standard', 'tenant_aware']
    """

    _kind = "circuit-breaker"
    _protocol = ICircuitBreakerPolicy
    _builtins = {
        "standard": StandardCircuitBreakerPolicy,
        "adaptive": AdaptiveCircuitBreakerPolicy,
        "noop": NoOpCircuitBreakerPolicy,
    }


class RetryPolicyFactory(_PolicyFactory[IRetryPolicy]):
    """Retry policies by name: ``"none"``, ``"fixed"``, ``"exponential"``, yours.

    Example::

        retry = RetryPolicyFactory.get_policy("exponential", max_attempts=3, max_delay=10.0)
        RetryPolicyFactory.register("patient", lambda: FixedRetryPolicy(max_attempts=10))
        RetryPolicyFactory.get_policy("patient")  # a new FixedRetryPolicy each time
    """

    _kind = "retry"
    _protocol = IRetryPolicy
    _builtins = {
        "none": NoRetryPolicy,
        "fixed": FixedRetryPolicy,
        "exponential": ExponentialBackoffRetryPolicy,
    }


class StrategyFactory(_PolicyFactory[Any]):
    """The spec's strategies by the field they go in: ``"retry_budget"``, ``"rate_limit"``,
    ``"fallback"``, ``"hedging"``, ``"max_concurrency"`` (an ``AdaptiveConcurrency``), and
    yours.

    A built-in name makes a new instance with the overrides as its options (a new budget
    or bucket, with its own state). A registered *instance* is returned itself: every
    spec that asks for it shares it, which for a ``RetryBudget`` or a ``RateLimit`` means
    one shared budget or bucket (a service's quota, by name). A registered zero-argument
    callable makes a new one each time.

    Example::

        budget = StrategyFactory.get_policy("retry_budget", ratio=0.1)
        StrategyFactory.register("partner_quota", RateLimit(100, per_s=60.0))
        StrategyFactory.get_policy("partner_quota")  # the same bucket every time
        fields = StrategyFactory.from_config(
            {"rate_limit": "partner_quota", "fallback": {"value": []}}
        )
        spec = FunctionToolSpec(id="partner-v1", tool_name="partner", **fields)
    """

    _kind = "strategy"
    _protocol = (RetryBudget, RateLimit, FallbackPolicy, HedgingPolicy, AdaptiveConcurrency)
    _builtins = {
        "retry_budget": RetryBudget,
        "rate_limit": RateLimit,
        "fallback": FallbackPolicy,
        "hedging": HedgingPolicy,
        # spec.max_concurrency also takes a plain int (a fixed bulkhead): give it as such
        "max_concurrency": AdaptiveConcurrency,
    }

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> dict[str, Any]:
        """The spec fields ``config`` describes, built: ``{field: strategy or None}``.

        Each key is a strategy field (a built-in name); its value is a mapping of the
        strategy's options (a new instance), the name of a registered strategy of that
        kind, or None (no such strategy). Pass the result to a spec's constructor or to
        ``Supervisor.reconfigure(tool, **fields)``.

        Raises:
            ValueError: a key that is not a strategy field (naming it and the known ones),
                or a bad option value (the strategy's own error, naming the option).
            TypeError: an unknown option, a value that is neither a mapping, a name nor
                None, or a registered name of another kind (each naming the field).
            PolicyNotFoundError: a name nothing is registered under.
        """
        if not isinstance(config, Mapping):
            raise TypeError(f"a strategy config is a mapping of fields, got {config!r:.200}")
        made: dict[str, Any] = {}
        for field, options in config.items():
            kind = cls._builtins.get(field)
            if kind is None:
                raise ValueError(
                    f"strategy config: {field!r} is not a strategy field; the fields: "
                    f"{', '.join(sorted(cls._builtins))}"
                )
            if options is None:
                made[field] = None
            elif isinstance(options, str):
                policy = cls.get_policy(options)
                if not isinstance(policy, kind):  # type: ignore[arg-type]
                    raise TypeError(
                        f"strategy config: {field!r} names {options!r}, which is a "
                        f"{type(policy).__name__}, not a {kind.__name__}"
                    )
                made[field] = policy
            elif isinstance(options, Mapping):
                if not all(isinstance(k, str) for k in options):
                    raise TypeError(f"strategy config: {field!r} options must have str names")
                made[field] = cls.get_policy(field, **options)
            else:
                raise TypeError(
                    f"strategy config: {field!r} must be a mapping of options, the name of "
                    f"a registered strategy, or None, got {options!r:.200}"
                )
        return made
