"""Factories that build policies by name and hold user-registered ones.

The built-in names always make a new instance, passing ``**overrides`` to the
constructor. User registrations are process-global (like the seed's factories), so
:meth:`reset` drops them all, e.g. between tests.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, Generic, TypeVar, cast

from toolvisor.errors import PolicyNotFoundError
from toolvisor.policies.circuit_breaker import (
    AdaptiveCircuitBreakerPolicy,
    ICircuitBreakerPolicy,
    NoOpCircuitBreakerPolicy,
    StandardCircuitBreakerPolicy,
)
from toolvisor.policies.retry import (
    ExponentialBackoffRetryPolicy,
    FixedRetryPolicy,
    IRetryPolicy,
    NoRetryPolicy,
)

__all__ = ["CircuitBreakerPolicyFactory", "RetryPolicyFactory"]

P = TypeVar("P")


class _PolicyFactory(Generic[P]):
    """Name -> policy registry shared by both factories; subclasses set the class vars."""

    _kind: ClassVar[str]
    _protocol: ClassVar[type]
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
                    f"{made!r}, which is not a {cls._protocol.__name__}"
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
                f"cannot register {policy!r} as {cls._kind} policy {name!r}: expected a "
                f"{cls._protocol.__name__} or a zero-argument callable returning one"
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
