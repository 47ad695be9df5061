"""Retry policies: NoRetry, Fixed, ExponentialBackoff and Custom.

A policy's ``execute(func, *, deadline, on_retry)`` runs ``func()`` (one attempt) until it
succeeds or the policy gives up, sleeping on trio's clock between attempts. The built-ins
split the decision from the I/O (as tenacity does): :meth:`next_delay` is the schedule,
testable without running anything, and one shared loop does the sleeping.

Rules common to the built-ins:

* ``max_attempts`` counts every attempt, the first included.
* ``ValidationError``, ``CircuitOpenError``, ``IdempotencyConflictError`` and
  ``IdempotencyOutcomeUnknownError`` are never retried; ``retry_on`` (exception types, or
  a predicate) decides for the rest (default: any ``Exception``). Programming errors
  (``PROGRAMMING_ERRORS``: NameError, TypeError, AttributeError, AssertionError,
  NotImplementedError, ImportError) are retried only when ``retry_on`` names them (or
  its predicate says so): a bug does not get better with backoff.
* An exception with a numeric, finite ``retry_after`` attribute (seconds, e.g. a rate
  limit) makes the wait at least that long, even past ``max_delay``.
* A wait that would end at or past ``deadline`` (absolute trio time) is not slept: the
  last error is re-raised at once.
* Only ``Exception`` is caught: ``trio.Cancelled`` and other ``BaseException`` s go
  straight through.
* Jitter comes from ``rng`` (a ``random.Random``), by default :data:`DEFAULT_RNG`
  (register it with ``hypothesis.register_random`` in property tests).
"""

from __future__ import annotations

import abc
import math
import random
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Protocol, TypeVar, cast, runtime_checkable

import attrs
import trio

from toolvisor.errors import (
    CircuitOpenError,
    IdempotencyConflictError,
    IdempotencyOutcomeUnknownError,
    ValidationError,
)
from toolvisor.policies._keywords import suggest_keywords

__all__ = [
    "DEFAULT_RNG",
    "NEVER_RETRIED",
    "PROGRAMMING_ERRORS",
    "CustomRetryFn",
    "CustomRetryPolicy",
    "ExponentialBackoffRetryPolicy",
    "FixedRetryPolicy",
    "IRetryPolicy",
    "NoRetryPolicy",
    "OnRetry",
    "RetryOn",
]

T = TypeVar("T")

DEFAULT_RNG = random.Random()
"""The jitter source of policies built without ``rng=``."""

NEVER_RETRIED: tuple[type[Exception], ...] = (
    ValidationError,
    CircuitOpenError,
    IdempotencyConflictError,
    IdempotencyOutcomeUnknownError,
)
"""toolvisor's own errors that no policy retries."""

PROGRAMMING_ERRORS: tuple[type[Exception], ...] = (
    NameError,
    TypeError,
    AttributeError,
    AssertionError,
    NotImplementedError,
    ImportError,
)
"""Bugs, not outages: the built-ins retry them only when ``retry_on`` names them."""

RetryOn = tuple[type[BaseException], ...] | Callable[[BaseException], bool]
"""Which exceptions are retryable: a tuple of types, or a predicate."""

OnRetry = Callable[[int, float, BaseException], None]
"""``on_retry(failed_attempt_number, delay_s, exc)``, called just before each wait."""

CustomRetryFn = Callable[[Callable[[], Awaitable[Any]], int, Exception], Awaitable[Any]]
"""``async fn(func, attempt, last_exception)`` of :class:`CustomRetryPolicy`."""


@runtime_checkable
class IRetryPolicy(Protocol):
    """What the tool actor needs from a retry policy."""

    async def execute(
        self,
        func: Callable[[], Awaitable[T]],
        *,
        deadline: float = math.inf,
        on_retry: OnRetry | None = None,
    ) -> T:
        """Run ``func()`` (one attempt) until success or giving up; return its value.

        Args:
            func: runs one attempt.
            deadline: absolute trio time; no wait ending at or past it is slept.
            on_retry: ``on_retry(failed_attempt_number, delay_s, exc)`` before each wait.

        Raises:
            Exception: the last attempt's exception when the policy gives up.
        """


def _convert_retry_on(
    value: type[BaseException] | Iterable[type[BaseException]] | Callable[[BaseException], bool],
) -> RetryOn:
    if isinstance(value, type):
        return (value,)
    if isinstance(value, list | tuple | set | frozenset):
        return tuple(value)
    return cast(RetryOn, value)


def _validate_retry_on(_instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if isinstance(value, tuple):
        bad = [t for t in value if not (isinstance(t, type) and issubclass(t, BaseException))]
        if bad:
            raise TypeError(f"{attribute.name!r} takes exception types; got {bad!r}")
    elif not callable(value):
        raise TypeError(
            f"{attribute.name!r} takes exception types or a predicate (exception -> bool), "
            f"got {value!r}"
        )


def _non_negative(_instance: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if not (isinstance(value, int | float) and 0 <= value < math.inf):
        raise ValueError(f"{attribute.name!r} must be a finite number >= 0, got {value!r}")


_max_attempts_validator = [attrs.validators.instance_of(int), attrs.validators.ge(1)]


def _retry_after(exc: BaseException) -> float:
    """The ``retry_after`` floor an exception asks for (0 when absent or unusable)."""
    value = getattr(exc, "retry_after", None)
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return 0.0


class _ScheduledRetryPolicy(abc.ABC):
    """The base of the built-ins: the pure schedule and the one ``execute`` loop."""

    __slots__ = ()

    max_attempts: int
    retry_on: RetryOn
    rng: random.Random | None

    @abc.abstractmethod
    def _wait(self, attempt: int) -> float:
        """The (jittered) wait after failed attempt ``attempt``, before the floors."""

    def _random(self) -> random.Random:
        return DEFAULT_RNG if self.rng is None else self.rng

    def is_retryable(self, exc: BaseException) -> bool:
        """Whether ``exc`` may be retried (ignoring the attempt count)."""
        if isinstance(exc, NEVER_RETRIED) or not isinstance(exc, Exception):
            return False
        retry_on = self.retry_on
        if not isinstance(retry_on, tuple):
            return bool(retry_on(exc))  # the user's predicate decides everything
        if not isinstance(exc, retry_on):
            return False
        if isinstance(exc, PROGRAMMING_ERRORS):
            # A bug is retried only if retry_on names its kind (TypeError, ...), not
            # when it merely falls under a broad class such as Exception.
            return any(
                isinstance(exc, kind)
                for kind in retry_on
                if isinstance(kind, type) and issubclass(kind, PROGRAMMING_ERRORS)
            )
        return True

    def next_delay(self, attempt: int, exc: BaseException) -> float | None:
        """Seconds to wait after failed attempt ``attempt`` (1-based), or None to give up.

        None when ``attempt >= max_attempts`` or ``exc`` is not retryable; otherwise the
        policy's formula, raised to ``exc.retry_after`` if that is larger.
        """
        if attempt >= self.max_attempts or not self.is_retryable(exc):
            return None
        return max(self._wait(attempt), _retry_after(exc))

    async def execute(
        self,
        func: Callable[[], Awaitable[T]],
        *,
        deadline: float = math.inf,
        on_retry: OnRetry | None = None,
    ) -> T:
        """Run ``func()`` following :meth:`next_delay`; see the module docstring for rules."""
        attempt = 1
        while True:
            try:
                return await func()
            except Exception as exc:
                delay = self.next_delay(attempt, exc)
                if delay is None or trio.current_time() + delay >= deadline:
                    raise
                if on_retry is not None:
                    on_retry(attempt, delay, exc)
            # Sleep outside the except block: the next attempt's error must not carry
            # this one as its __context__.
            await trio.sleep(delay)
            attempt += 1


@attrs.define(slots=True)
class NoRetryPolicy(_ScheduledRetryPolicy):
    """One attempt, no retry: the default when nothing is configured.

    Example::

        spec.retry_policy = NoRetryPolicy()
        await NoRetryPolicy().execute(lambda: fetch(url))  # == await fetch(url)
    """

    max_attempts: int = attrs.field(default=1, init=False, repr=False)
    retry_on: RetryOn = attrs.field(default=(), init=False, repr=False)
    rng: random.Random | None = attrs.field(default=None, init=False, repr=False)

    def _wait(self, attempt: int) -> float:
        return 0.0

    async def execute(
        self,
        func: Callable[[], Awaitable[T]],
        *,
        deadline: float = math.inf,
        on_retry: OnRetry | None = None,
    ) -> T:
        """Return ``await func()``."""
        return await func()


@suggest_keywords
@attrs.define(slots=True)
class FixedRetryPolicy(_ScheduledRetryPolicy):
    """Wait a fixed delay, with optional additive jitter, between attempts.

    Wait after each failed attempt::

        wait = max(0, delay_seconds + U(-jitter, +jitter))

    then at least ``exc.retry_after``. Timeline of ``FixedRetryPolicy(max_attempts=3,
    delay_seconds=2.0)``: attempt 1 at t=0, attempt 2 at t=2, attempt 3 at t=4, then the
    last error is raised.

    Example::

        spec.retry_policy = FixedRetryPolicy(max_attempts=3, delay_seconds=2.0, jitter=0.5)
        value = await spec.retry_policy.execute(lambda: query(db), deadline=deadline)
    """

    max_attempts: int = attrs.field(default=3, validator=_max_attempts_validator)
    delay_seconds: float = attrs.field(default=1.0, validator=_non_negative)
    jitter: float = attrs.field(default=0.0, validator=_non_negative)
    retry_on: RetryOn = attrs.field(
        default=(Exception,), converter=_convert_retry_on, validator=_validate_retry_on
    )
    rng: random.Random | None = attrs.field(default=None, repr=False)

    def _wait(self, attempt: int) -> float:
        if not self.jitter:
            return float(self.delay_seconds)
        noise = self._random().uniform(-self.jitter, self.jitter)
        return max(0.0, self.delay_seconds + noise)


@suggest_keywords
@attrs.define(slots=True)
class ExponentialBackoffRetryPolicy(_ScheduledRetryPolicy):
    """Wait exponentially longer after each failed attempt, capped, with relative jitter.

    Wait after the n-th failed attempt (n = 1, 2, ...)::

        raw  = min(max_delay, base_delay * multiplier ** (n - 1))
        wait = clamp(raw * (1 + U(-jitter, +jitter)), 0, max_delay)

    then at least ``exc.retry_after``. Without jitter the defaults wait 1, 2, 4, 8 s:
    attempts at t = 0, 1, 3, 7, 15, then the last error is raised.

    Example::

        spec.retry_policy = ExponentialBackoffRetryPolicy(
            max_attempts=3, base_delay=1.0, max_delay=10.0
        )
        policy.next_delay(2, TimeoutError())  # ~2.0 (+-10 %)
    """

    max_attempts: int = attrs.field(default=5, validator=_max_attempts_validator)
    base_delay: float = attrs.field(default=1.0, validator=_non_negative)
    max_delay: float = attrs.field(default=30.0, validator=_non_negative)
    multiplier: float = attrs.field(default=2.0)
    jitter: float = attrs.field(default=0.1)
    retry_on: RetryOn = attrs.field(
        default=(Exception,), converter=_convert_retry_on, validator=_validate_retry_on
    )
    rng: random.Random | None = attrs.field(default=None, repr=False)

    @multiplier.validator
    def _check_multiplier(self, attribute: attrs.Attribute[Any], value: float) -> None:
        if not (isinstance(value, int | float) and 1 <= value < math.inf):
            raise ValueError(f"'multiplier' must be a finite number >= 1, got {value!r}")

    @jitter.validator
    def _check_jitter(self, attribute: attrs.Attribute[Any], value: float) -> None:
        if not (isinstance(value, int | float) and 0 <= value <= 1):
            raise ValueError(f"'jitter' must be in [0, 1], got {value!r}")

    def _wait(self, attempt: int) -> float:
        try:
            raw = self.base_delay * self.multiplier ** (attempt - 1)
        except OverflowError:
            raw = math.inf
        raw = min(self.max_delay, raw)
        if self.jitter:
            raw *= 1 + self._random().uniform(-self.jitter, self.jitter)
        return float(min(self.max_delay, max(0.0, raw)))


@attrs.define(slots=True)
class CustomRetryPolicy:
    """Retry as a user function decides.

    After failed attempt n (1-based) the policy awaits ``fn(func, n, last_exception)``.
    ``fn`` sleeps as it likes, then either returns a value (the call succeeds with it),
    raises (the call gives up with that exception) or awaits ``func()`` again: that is
    attempt n+1, whose failure calls ``fn`` again with n+1, so ``return await func()``
    in ``fn`` returns the final outcome of the chain. ``ValidationError``,
    ``CircuitOpenError`` and ``IdempotencyConflictError`` propagate without calling
    ``fn``. ``on_retry(n, waited_s, last_exception)`` is called when ``fn`` starts attempt
    n+1, with the trio time since attempt n failed. An attempt ``fn`` starts at or past
    ``deadline`` is not run: ``last_exception`` is raised in ``fn`` instead.

    Example (the seed's rate-limit rule)::

        async def my_retry_logic(func, attempt, last_exception):
            if attempt >= 5:
                raise last_exception
            if isinstance(last_exception, RateLimitError):
                await trio.sleep(last_exception.retry_after or 60)
            else:
                await trio.sleep(2**attempt)
            return await func()

        spec.retry_policy = CustomRetryPolicy(my_retry_logic)
    """

    fn: CustomRetryFn = attrs.field(validator=attrs.validators.is_callable())

    async def execute(
        self,
        func: Callable[[], Awaitable[T]],
        *,
        deadline: float = math.inf,
        on_retry: OnRetry | None = None,
    ) -> T:
        """Run ``func()``, then hand each failure to ``fn`` (see the class docstring)."""
        chain = _CustomChain(self.fn, func, deadline, on_retry)
        return cast(T, await chain.attempt())


@attrs.define(slots=True, eq=False)
class _CustomChain:
    """The attempts of one ``CustomRetryPolicy.execute`` call."""

    fn: CustomRetryFn
    func: Callable[[], Awaitable[Any]]
    deadline: float
    on_retry: OnRetry | None
    attempts: int = 0
    failed_at: float = 0.0
    last_exc: Exception | None = None

    async def attempt(self) -> Any:
        last = self.last_exc
        if last is not None:
            if trio.current_time() >= self.deadline:
                raise last
            if self.on_retry is not None:
                self.on_retry(self.attempts, trio.current_time() - self.failed_at, last)
        self.attempts += 1
        number = self.attempts
        try:
            return await self.func()
        except NEVER_RETRIED:
            raise
        except Exception as exc:
            self.failed_at = trio.current_time()
            self.last_exc = failure = exc
        # fn runs outside the except block so the next error does not chain to this one.
        return await self.fn(self.attempt, number, failure)
