"""Circuit-breaker policies: Standard (pybreaker), Adaptive and NoOp.

State machine of one tool's breaker (Standard and Adaptive)::

    CLOSED --(threshold consecutive failures)--> OPEN
    OPEN --(recovery_timeout elapsed on trio's clock)--> HALF_OPEN
    HALF_OPEN --(success_threshold consecutive trial successes)--> CLOSED
    HALF_OPEN --(one trial failure)--> OPEN (for a new recovery_timeout)

* While open, calls fail at once with ``CircuitOpenError(tool, retry_after)``, where
  ``retry_after = opened_at + recovery_timeout - now``; the tool is not run.
* Half-open admits at most ``half_open_max_calls`` trial calls at once; the others fail
  with ``CircuitOpenError(retry_after=0)``.
* The call whose failure opens the breaker raises ``CircuitOpenError`` chained ``from``
  the tool's exception, so a retry loop stops at once.
* Exceptions matching ``exclude`` (types or predicates) count as successes (pybreaker's
  meaning) and are re-raised unchanged.
* ``trio.Cancelled`` and other ``BaseException`` s are never counted.
* An outcome arriving after the state moved on (the call was admitted before a
  transition or a ``reset()``) is not recorded.

Fleet-wide (``shared=RedisShared(url, name)``): each process also publishes its
outcomes per tool to Redis (successes and failures per tenth of ``fleet_window_s``) and
reads back the fleet's totals over the window; a process's closed breaker opens when the
fleet made at least ``fleet_min_calls`` calls there and at least ``fleet_error_rate`` of
them failed (counted since this breaker last closed). Each process decides for itself
from the counts: no process can set another's state, and with Redis unreachable each
breaker goes on by its own rule alone.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Awaitable, Callable
from fractions import Fraction
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import attrs
import pybreaker

from toolvisor.policies._breaker_core import (
    CircuitState,
    ExcludeRule,
    ICircuitBreakerPolicy,
    _check_fleet_rate,
    _check_fleet_window,
    _Circuit,
    _convert_exclude,
    _finite_ge_0,
    _PybreakerPolicy,
    _validate_exclude,
)
from toolvisor.policies._keywords import suggest_keywords
from toolvisor.policies._shared_field import check_shared

if TYPE_CHECKING:
    from toolvisor.shared._redis import RedisShared, _BreakerMember

__all__ = [
    "AdaptiveCircuitBreakerPolicy",
    "CircuitState",
    "ExcludeRule",
    "ICircuitBreakerPolicy",
    "NoOpCircuitBreakerPolicy",
    "StandardCircuitBreakerPolicy",
]

T = TypeVar("T")

_at_least_1 = [attrs.validators.instance_of(int), attrs.validators.ge(1)]


def _to_listeners(
    listeners: tuple[pybreaker.CircuitBreakerListener, ...]
    | list[pybreaker.CircuitBreakerListener],
) -> tuple[pybreaker.CircuitBreakerListener, ...]:
    return tuple(listeners)


@suggest_keywords
@attrs.define(slots=True, eq=False)
class StandardCircuitBreakerPolicy(_PybreakerPolicy):
    """Open after ``failure_threshold`` consecutive failures; built on ``pybreaker``.

    One ``pybreaker.CircuitBreaker`` per tool name keeps the consecutive-failure counter,
    the half-open success counter, the ``exclude`` rules and the ``listeners``; it is made
    on the first outcome that must be recorded (until then the breaker is closed with
    nothing counted). The open timeout runs on trio's clock (see the module docstring).

    Timeline with ``failure_threshold=2, recovery_timeout=30``: failures at t=0 and t=1
    (the second raises ``CircuitOpenError`` from the tool's error); calls at t<31 fail
    fast with ``retry_after = 31 - t``; at t>=31 one trial call runs; its success closes
    the breaker, its failure reopens it until t+30.

    Args:
        failure_threshold: consecutive failures that open the breaker (>= 1).
        recovery_timeout: seconds open before half-open (>= 0).
        success_threshold: consecutive trial successes that close it (>= 1).
        half_open_max_calls: trial calls admitted at once while half-open (>= 1).
        exclude: exception types or predicates counted as successes (and re-raised).
        listeners: ``pybreaker.CircuitBreakerListener`` s added to every tool's breaker.
        shared: a :class:`~toolvisor.RedisShared`: also open on the fleet's failure rate
            (see the module docstring).
        fleet_error_rate: the fleet's failures over calls in the window that open it.
        fleet_min_calls: the fleet's calls in the window below which its rate is ignored.
        fleet_window_s: the window of the fleet's counts, in seconds.

    Example::

        policy = StandardCircuitBreakerPolicy(failure_threshold=5, recovery_timeout=60)
        value = await policy.execute_with_breaker(lambda: charge(card), "process_payment")
        policy.get_state("process_payment") == "closed"
    """

    failure_threshold: int = attrs.field(default=5, validator=_at_least_1)
    recovery_timeout: float = attrs.field(default=30, validator=_finite_ge_0)
    success_threshold: int = attrs.field(default=1, validator=_at_least_1)
    half_open_max_calls: int = attrs.field(default=1, validator=_at_least_1)
    exclude: tuple[ExcludeRule, ...] = attrs.field(
        default=(), converter=_convert_exclude, validator=_validate_exclude
    )
    listeners: tuple[pybreaker.CircuitBreakerListener, ...] = attrs.field(
        default=(), converter=_to_listeners, kw_only=True, repr=False
    )
    # Shown in the repr only when shared (see _with_fleet_repr).
    shared: RedisShared | None = attrs.field(
        default=None, kw_only=True, validator=check_shared(), repr=False
    )
    fleet_error_rate: float = attrs.field(
        default=0.5, kw_only=True, validator=_check_fleet_rate, repr=False
    )
    fleet_min_calls: int = attrs.field(default=20, kw_only=True, validator=_at_least_1, repr=False)
    fleet_window_s: float = attrs.field(
        default=10.0, kw_only=True, validator=_check_fleet_window, repr=False
    )
    _circuits: dict[str, _Circuit] = attrs.field(init=False, factory=dict, repr=False)
    _fleet: _BreakerMember | None = attrs.field(init=False, default=None, repr=False)

    def _initial_fail_max(self) -> int:
        return self.failure_threshold


@suggest_keywords
@attrs.define(slots=True, eq=False)
class AdaptiveCircuitBreakerPolicy(_PybreakerPolicy):
    """Open after consecutive failures reach a threshold that adapts to the error rate.

    Each tool keeps the outcomes of its last ``window_size`` recorded calls (excluded
    errors count as successes, half-open trials count too). With ``f`` failures among
    ``n`` outcomes, ``r = f / n`` (0 while the window is empty) and::

        threshold = base_threshold                                  if r >= error_rate_threshold
        threshold = round_half_up(max_threshold
                    - (max_threshold - base_threshold) * r / error_rate_threshold)  otherwise

    computed exactly (``fractions.Fraction``), so ``max_threshold`` at r = 0, falling
    linearly to ``base_threshold`` as r reaches ``error_rate_threshold``. A failure is
    added to the window first, then the threshold is computed, then the breaker opens if
    the consecutive failures reach it. Open and half-open behave exactly as in
    :class:`StandardCircuitBreakerPolicy` (same code, same pybreaker counters). The window
    survives state changes and is cleared by ``reset()``.

    Example: ``base_threshold=5, max_threshold=20, error_rate_threshold=0.5``: a healthy
    tool tolerates 20 consecutive failures; with 10 % errors in the window the threshold
    is round_half_up(20 - 15 * 0.2) = 17; at 50 % errors or more it is 5::

        policy = AdaptiveCircuitBreakerPolicy(base_threshold=5, max_threshold=20)
        await policy.execute_with_breaker(fetch, "search_api")
        policy.current_threshold("search_api")  # 20 while healthy
    """

    _OBSERVES: ClassVar[bool] = True

    base_threshold: int = attrs.field(default=5, validator=_at_least_1)
    max_threshold: int = attrs.field(default=20, validator=_at_least_1)
    error_rate_threshold: float = attrs.field(default=0.5)
    window_size: int = attrs.field(default=100, validator=_at_least_1)
    recovery_timeout: float = attrs.field(default=30, validator=_finite_ge_0)
    success_threshold: int = attrs.field(default=1, validator=_at_least_1)
    half_open_max_calls: int = attrs.field(default=1, validator=_at_least_1)
    exclude: tuple[ExcludeRule, ...] = attrs.field(
        default=(), converter=_convert_exclude, validator=_validate_exclude
    )
    listeners: tuple[pybreaker.CircuitBreakerListener, ...] = attrs.field(
        default=(), converter=_to_listeners, kw_only=True, repr=False
    )
    # Shown in the repr only when shared (see _with_fleet_repr).
    shared: RedisShared | None = attrs.field(
        default=None, kw_only=True, validator=check_shared(), repr=False
    )
    fleet_error_rate: float = attrs.field(
        default=0.5, kw_only=True, validator=_check_fleet_rate, repr=False
    )
    fleet_min_calls: int = attrs.field(default=20, kw_only=True, validator=_at_least_1, repr=False)
    fleet_window_s: float = attrs.field(
        default=10.0, kw_only=True, validator=_check_fleet_window, repr=False
    )
    _circuits: dict[str, _Circuit] = attrs.field(init=False, factory=dict, repr=False)
    _fleet: _BreakerMember | None = attrs.field(init=False, default=None, repr=False)

    @max_threshold.validator
    def _check_max(self, attribute: attrs.Attribute[Any], value: int) -> None:
        if value < self.base_threshold:
            raise ValueError(
                f"'max_threshold' ({value}) must be >= 'base_threshold' ({self.base_threshold})"
            )

    @error_rate_threshold.validator
    def _check_rate(self, attribute: attrs.Attribute[Any], value: float) -> None:
        if not (isinstance(value, int | float) and 0 < value <= 1):
            raise ValueError(f"'error_rate_threshold' must be in (0, 1], got {value!r}")

    def current_threshold(self, tool_name: str) -> int:
        """The consecutive failures that would open ``tool_name``'s breaker now."""
        circuit = self._circuits.get(tool_name)
        if circuit is None:
            return self.max_threshold
        return self._threshold(circuit)

    def error_rate(self, tool_name: str) -> float:
        """Failures over outcomes in ``tool_name``'s window (0.0 when it is empty)."""
        circuit = self._circuits.get(tool_name)
        if circuit is None or not circuit.window:
            return 0.0
        return circuit.window_failures / len(circuit.window)

    def _threshold(self, circuit: _Circuit) -> int:
        failures = circuit.window_failures
        if not failures:
            return self.max_threshold
        rate = Fraction(failures, len(circuit.window or ()))
        limit = Fraction(self.error_rate_threshold)
        if rate >= limit:
            return self.base_threshold
        span = self.max_threshold - self.base_threshold
        return math.floor(self.max_threshold - span * rate / limit + Fraction(1, 2))

    def _initial_fail_max(self) -> int:
        return self.max_threshold

    def _observe(self, circuit: _Circuit, exc: Exception | None) -> None:
        failed = exc is not None and circuit.breaker.is_system_error(exc)
        window = circuit.window
        if window is None:
            window = circuit.window = deque()
        if len(window) >= self.window_size:
            circuit.window_failures -= window.popleft()
        window.append(failed)
        circuit.window_failures += failed
        if failed:
            circuit.breaker.fail_max = self._threshold(circuit)


def _with_fleet_repr(cls: type[_PybreakerPolicy]) -> None:
    """Policies without ``shared`` keep their repr; shared ones add the fleet's fields."""
    plain = cls.__repr__

    def fleet_repr(self: _PybreakerPolicy) -> str:
        text = plain(self)
        if self.shared is None:
            return text
        return (
            f"{text[:-1]}, shared={self.shared!r}, fleet_error_rate={self.fleet_error_rate!r}, "
            f"fleet_min_calls={self.fleet_min_calls!r}, fleet_window_s={self.fleet_window_s!r})"
        )

    cls.__repr__ = fleet_repr  # type: ignore[method-assign,assignment]


_with_fleet_repr(StandardCircuitBreakerPolicy)
_with_fleet_repr(AdaptiveCircuitBreakerPolicy)


@attrs.define(slots=True)
class NoOpCircuitBreakerPolicy:
    """A breaker that is always closed and adds nothing: it just awaits ``func()``.

    Example::

        spec.circuit_breaker_policy = NoOpCircuitBreakerPolicy()  # development, tests
    """

    async def execute_with_breaker(self, func: Callable[[], Awaitable[T]], tool_name: str) -> T:
        """Return ``await func()``."""
        return await func()

    def get_state(self, tool_name: str) -> CircuitState:
        """Always ``CircuitState.CLOSED``."""
        return CircuitState.CLOSED

    def reset(self, tool_name: str) -> None:
        """Nothing to reset."""

    def retry_after(self, tool_name: str) -> float | None:
        """Always None: every call is admitted."""
        return None
