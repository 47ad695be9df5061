"""Chaos strategies: faults, latency and made-up outcomes injected into attempts.

Public as ``toolvisor.testing.chaos``; here so that ``toolvisor.spec`` can name the
protocol without importing the testing toolkit.
"""

from __future__ import annotations

import math
import random
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, runtime_checkable

import attrs
import trio

__all__ = ["ChaosFault", "ChaosLatency", "ChaosOutcome", "ChaosStrategy"]

Attempt = Callable[[], Awaitable[Any]]


@runtime_checkable
class ChaosStrategy(Protocol):
    """What ``spec.chaos`` holds: something that wraps one attempt of the tool."""

    async def around(self, attempt: Attempt) -> Any:
        """Run ``attempt()`` (the tool), or not, and return its value or raise."""


def _rate(_instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise ValueError(
            f"{type(_instance).__name__}: {attribute.name!r} must be a number in [0, 1] "
            f"(the share of attempts hit), got {value!r}"
        )


def _rng(_instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, random.Random):
        raise ValueError(
            f"{type(_instance).__name__}: {attribute.name!r} must be a random.Random "
            f"(seed it for a reproducible run), got {value!r}"
        )


def _error(_instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    ok = isinstance(value, Exception) or (isinstance(value, type) and issubclass(value, Exception))
    if not ok:
        raise ValueError(
            f"ChaosFault: {attribute.name!r} must be an Exception instance or class, got {value!r}"
        )


def _delay(_instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < math.inf:
        raise ValueError(
            f"ChaosLatency: {attribute.name!r} must be a finite number of seconds >= 0, "
            f"got {value!r}"
        )


@attrs.define(slots=True, eq=False)
class _Chaos:
    rate: float = attrs.field(validator=_rate)
    rng: random.Random = attrs.field(
        factory=random.Random, kw_only=True, validator=_rng, repr=False
    )
    enabled: bool = attrs.field(default=True, kw_only=True)

    def hits(self) -> bool:
        """Whether this attempt is hit (``enabled`` and a draw below ``rate``)."""
        return self.enabled and self.rate > 0 and self.rng.random() < self.rate


@attrs.define(slots=True, eq=False)
class ChaosFault(_Chaos):
    """A share ``rate`` of attempts fail with ``error`` instead of running the tool.

    An injected fault is that attempt's failure: the breaker records it and the retry
    policy may retry it. ``error`` is an exception instance (raised as it is) or class
    (instantiated with a message per attempt).

    Example::

        spec.chaos = [ChaosFault(0.3, ConnectionError, rng=random.Random(7))]
    """

    error: Exception | type[Exception] = attrs.field(validator=_error)

    async def around(self, attempt: Attempt) -> Any:
        """Raise ``error`` when hit, else run the attempt."""
        if self.hits():
            error = self.error
            if isinstance(error, type):
                raise error("toolvisor chaos: injected fault")
            raise error
        return await attempt()


@attrs.define(slots=True, eq=False)
class ChaosLatency(_Chaos):
    """A share ``rate`` of attempts wait ``delay`` seconds before the tool runs.

    The wait is inside the attempt: it counts against ``timeout_s`` and the deadline.

    Example::

        spec.chaos = [ChaosLatency(0.1, 2.0, rng=random.Random(7))]
    """

    delay: float = attrs.field(validator=_delay)

    async def around(self, attempt: Attempt) -> Any:
        """Sleep ``delay`` (trio's clock) when hit, then run the attempt."""
        if self.hits():
            await trio.sleep(self.delay)
        return await attempt()


@attrs.define(slots=True, eq=False)
class ChaosOutcome(_Chaos):
    """A share ``rate`` of attempts return ``value`` without running the tool.

    Example::

        spec.chaos = [ChaosOutcome(0.05, {"status": "stale"}, rng=random.Random(7))]
    """

    value: Any = attrs.field()

    async def around(self, attempt: Attempt) -> Any:
        """Return ``value`` when hit, else run the attempt."""
        if self.hits():
            return self.value
        return await attempt()


async def run_with_chaos(chaos: tuple[ChaosStrategy, ...], attempt: Attempt) -> Any:
    """Run ``attempt`` inside every strategy of ``chaos``, the first outermost."""
    run = attempt
    for strategy in reversed(chaos):
        run = _bind(strategy, run)
    return await run()


def _bind(strategy: ChaosStrategy, inner: Attempt) -> Attempt:
    def run() -> Awaitable[Any]:
        return strategy.around(inner)

    return run
