"""The circuit-breaker machinery shared by the Standard and Adaptive policies.

One :class:`pybreaker.CircuitBreaker` per tool keeps the counters, the state, the
``success_threshold``, the ``exclude`` rules and the listeners. pybreaker knows nothing of
trio, so this module adds what it lacks, on trio's clock:

* the open timeout: pybreaker is given a reset timeout it never reaches and this module
  keeps ``opened_at`` on ``trio.current_time()``, moving the breaker to half-open itself
  once ``recovery_timeout`` has elapsed;
* trial slots: half-open admits at most ``half_open_max_calls`` calls at once;
* epochs: every state change (and every ``reset()``) starts a new epoch, and an outcome
  is recorded only if it arrives in the epoch its call was admitted in. A call started
  while closed that fails after the breaker opened, or a success arriving after
  ``reset()``, changes nothing.

The tool is never awaited inside pybreaker: the policy awaits it, catching only
``Exception``, and replays the outcome synchronously through ``breaker.call()``.
Cancellation and other ``BaseException`` s are neither counted nor recorded; they only give
back the trial slot they held.

The circuit object of each tool owns the rules; its admission and recording steps are
synchronous and take ``now`` explicitly.
"""

from __future__ import annotations

import abc
import enum
import math
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypeVar, runtime_checkable

import attrs
import pybreaker
import trio

from toolvisor.errors import CircuitOpenError

if TYPE_CHECKING:
    from toolvisor.shared._leases import FleetCounts
    from toolvisor.shared._redis import RedisShared, _BreakerMember

__all__ = ["CircuitState", "ExcludeRule", "ICircuitBreakerPolicy"]

T = TypeVar("T")

ExcludeRule = type[BaseException] | Callable[[BaseException], bool]
"""An ``exclude`` entry: an exception type, or a predicate on the exception."""

# pybreaker's own timeout reads datetime.now(); it must never fire. 10**9 s (~31 years)
# stays well inside datetime's range when pybreaker adds it to "now".
_NEVER = 1e9


class CircuitState(enum.StrEnum):
    """The state of one tool's circuit breaker; a ``str`` (``state == "closed"`` holds)."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


_FROM_PYBREAKER = {
    pybreaker.STATE_CLOSED: CircuitState.CLOSED,
    pybreaker.STATE_OPEN: CircuitState.OPEN,
    pybreaker.STATE_HALF_OPEN: CircuitState.HALF_OPEN,
}


@runtime_checkable
class ICircuitBreakerPolicy(Protocol):
    """What the tool actor needs from a circuit breaker.

    State is kept per ``tool_name``; one policy instance may serve several tools.
    Implement it structurally or subclass it as a plain base class::

        class AlwaysClosed(ICircuitBreakerPolicy):
            async def execute_with_breaker(self, func, tool_name):
                return await func()

            def get_state(self, tool_name):
                return "closed"

            def reset(self, tool_name):
                pass

    Optional: ``retry_after(tool_name) -> float | None``, a pure read of whether a call
    would be admitted now (None) or how many seconds until one may be (0 when half-open
    with every trial slot busy). A breaker that has it lets the supervisor refuse calls
    in the caller's task, without sending them to the actor; one without it keeps
    working, every call then reaching ``execute_with_breaker``.
    """

    async def execute_with_breaker(self, func: Callable[[], Awaitable[T]], tool_name: str) -> T:
        """Run ``func()`` once if the breaker admits it, record its outcome, return its value.

        Raises:
            CircuitOpenError: the breaker did not admit the call (``func`` was not run), or
                this call's failure opened it (chained ``from`` the tool's exception).
        """

    def get_state(self, tool_name: str) -> CircuitState:
        """Return the breaker state of ``tool_name`` (a pure read)."""

    def reset(self, tool_name: str) -> None:
        """Close the breaker of ``tool_name`` and clear its counters."""


@attrs.frozen
class _InstanceOf:
    """An exclusion predicate for exception classes pybreaker cannot check itself.

    pybreaker treats an exclusion as a type only if ``type(exclusion) is type``; classes
    with another metaclass (trio's errors, ABCs) would be *called* as a predicate.
    """

    cls: type[BaseException]

    def __call__(self, exc: BaseException) -> bool:
        return isinstance(exc, self.cls)


def _to_pybreaker_rule(rule: ExcludeRule) -> ExcludeRule:
    if isinstance(rule, type) and type(rule) is not type:
        return _InstanceOf(rule)
    return rule


def _convert_exclude(rules: Sequence[ExcludeRule]) -> tuple[ExcludeRule, ...]:
    return tuple(rules)


def _validate_exclude(_instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    assert isinstance(value, tuple)
    for rule in value:
        is_exc_type = isinstance(rule, type) and issubclass(rule, BaseException)
        if not is_exc_type and (isinstance(rule, type) or not callable(rule)):
            raise TypeError(
                f"{attribute.name!r} takes exception types or predicates "
                f"(exception -> bool), got {rule!r}"
            )


def _finite_ge_0(_instance: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if not value >= 0:  # also rejects NaN
        raise ValueError(f"{attribute.name!r} must be >= 0 seconds, got {value!r}")


def _check_fleet_rate(_instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 1:
        raise ValueError(f"{attribute.name!r} must be a number in (0, 1], got {value!r}")


def _check_fleet_window(_instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.01 <= value <= 3600:
        raise ValueError(
            f"{attribute.name!r} must be a number of seconds in [0.01, 3600], got {value!r}"
        )


def _raise(exc: Exception) -> None:
    raise exc


def _succeed() -> None:
    return None


@attrs.define(slots=True, eq=False)
class _Circuit:
    """The breaker of one tool: pybreaker's counters and state plus trio-clock bookkeeping.

    The circuit owns its rules (admission, recording, epochs, trial slots); its policy
    holds the configuration they read. pybreaker's objects are made on the first outcome
    that must be recorded (a failure, or any outcome with listeners or an adaptive
    window): until then the breaker is closed with no failure counted, and a tool that
    never fails (or an idle one) costs only this object.
    """

    policy: _PybreakerPolicy = attrs.field(repr=False)
    tool_name: str
    # No listener to notify and no window to update (fixed when the circuit is made).
    quiet: bool
    # Closed, no failure counted, and quiet: admission admits, and a success changes
    # nothing. Kept in step with pybreaker's state by every method that changes it.
    clean: bool
    epoch: int = 0
    opened_at: float = -math.inf
    trials: int = 0
    # Adaptive only: recorded outcomes (True = failure), made on the first one, and how
    # many of them are failures.
    window: deque[bool] | None = None
    window_failures: int = 0
    # Shared policies only: this tool's outcomes for the fleet, and the fleet's totals.
    fleet: FleetCounts | None = None
    _breaker: pybreaker.CircuitBreaker | None = attrs.field(default=None, init=False)
    _storage: pybreaker.CircuitMemoryStorage | None = attrs.field(default=None, init=False)

    @property
    def breaker(self) -> pybreaker.CircuitBreaker:
        """pybreaker's breaker of this tool (made on first use)."""
        breaker = self._breaker
        if breaker is None:
            self._storage = pybreaker.CircuitMemoryStorage(pybreaker.STATE_CLOSED)
            breaker = self._breaker = self.policy._new_pybreaker(self.tool_name, self._storage)
        return breaker

    @property
    def state(self) -> str:
        """pybreaker's state name (``pybreaker.STATE_*``)."""
        storage = self._storage
        return pybreaker.STATE_CLOSED if storage is None else storage.state

    @property
    def counter(self) -> int:
        """pybreaker's count of consecutive failures."""
        storage = self._storage
        return 0 if storage is None else storage.counter

    @property
    def success_counter(self) -> int:
        """pybreaker's count of consecutive half-open trial successes."""
        storage = self._storage
        return 0 if storage is None else storage.success_counter

    # -- reading -----------------------------------------------------------------------

    def state_at(self, now: float | None) -> CircuitState:
        """The state as callers see it: open past ``recovery_timeout`` reads half-open."""
        state = _FROM_PYBREAKER[self.state]
        if (
            state is CircuitState.OPEN
            and now is not None
            and now >= self.opened_at + self.policy.recovery_timeout
        ):
            return CircuitState.HALF_OPEN
        return state

    def retry_after_at(self, now: float | None) -> float | None:
        """None if a call would be admitted at ``now``, else the seconds until one may be.

        Reads what ``admit`` would decide without changing anything: open, the seconds
        until half-open (the whole ``recovery_timeout`` outside a trio run); half-open
        with every trial slot busy, 0.
        """
        state = self.state
        if state == pybreaker.STATE_CLOSED:
            return None
        if state == pybreaker.STATE_OPEN:
            if now is None:
                return float(self.policy.recovery_timeout)
            wait = self.opened_at + self.policy.recovery_timeout - now
            return wait if wait > 0 else None  # due: the next call is a trial
        return 0.0 if self.trials >= self.policy.half_open_max_calls else None

    # -- the state machine ---------------------------------------------------------------

    def admit(self, now: float | None = None) -> int:
        """Admit one call or raise CircuitOpenError; return the epoch it was admitted in."""
        state = self.state
        if state == pybreaker.STATE_CLOSED:
            return self.epoch
        if now is None:
            now = trio.current_time()
        policy = self.policy
        if state == pybreaker.STATE_OPEN:
            wait = self.opened_at + policy.recovery_timeout - now
            if wait > 0:
                raise CircuitOpenError(self.tool_name, wait)
            self.breaker.half_open()
            self._new_epoch()
            self.clean = False
        if self.trials >= policy.half_open_max_calls:
            raise CircuitOpenError(self.tool_name, 0.0)
        self.trials += 1
        return self.epoch

    def abandon(self, epoch: int) -> None:
        """Give back the trial slot of a call that ended without an outcome (cancelled)."""
        if epoch == self.epoch and self.state == pybreaker.STATE_HALF_OPEN:
            self.trials -= 1

    def record_success(self, epoch: int, now: float | None = None) -> None:
        """Record a success of a call admitted in ``epoch`` (ignored if the epoch is over)."""
        if epoch != self.epoch or self.clean:
            return  # a clean circuit has nothing to record: pybreaker's counter is 0
        state = self.state
        policy = self.policy
        if policy._OBSERVES:
            policy._observe(self, None)
        if self.fleet is not None:
            self.fleet.count(failed=False)
        if state == pybreaker.STATE_HALF_OPEN:
            self.trials -= 1
        self.breaker.call(_succeed)
        if self.state != state:
            self._transitioned(now)
        self._refresh()

    def record_failure(
        self, epoch: int, exc: Exception, now: float | None = None
    ) -> CircuitOpenError | None:
        """Record ``exc`` (pybreaker decides whether it is excluded).

        Returns the CircuitOpenError to raise if this failure opened the breaker.
        """
        if epoch != self.epoch:
            return None
        state = self.state
        policy = self.policy
        if state == pybreaker.STATE_HALF_OPEN:
            self.trials -= 1
        if policy._OBSERVES:
            policy._observe(self, exc)
        if self.fleet is not None:
            self.fleet.count(failed=self.breaker.is_system_error(exc))
        traceback = exc.__traceback__
        try:
            self.breaker.call(_raise, exc)
        except pybreaker.CircuitBreakerError:
            pass  # the trip; seen through the state below
        except Exception as replayed:
            if replayed is not exc:
                raise
        finally:
            exc.__traceback__ = traceback  # hide pybreaker's frames from the tool's error
        self._refresh()
        if self.state == state:
            return None
        self._transitioned(now)
        if self.state == pybreaker.STATE_OPEN:
            return CircuitOpenError(self.tool_name, policy.recovery_timeout)
        return None

    def reset(self) -> None:
        """Close the breaker and clear its counters; outcomes of earlier calls are ignored."""
        storage = self._storage
        if storage is not None:
            if storage.state != pybreaker.STATE_CLOSED:
                self.breaker.close()
            storage.reset_counter()
            storage.reset_success_counter()
        if self.window is not None:
            self.window.clear()
        self.window_failures = 0
        self._new_epoch()
        self.opened_at = -math.inf
        self.clean = self.quiet
        if self.fleet is not None:
            now = _now()
            self.fleet.restart(-math.inf if now is None else now)

    def consider_fleet(self, now: float) -> None:
        """Open a closed breaker when the fleet's failure rate passes the threshold.

        Called with fresh fleet totals (after an exchange with Redis). Each process
        decides for its own breaker from the fleet's counts; none sets another's state.
        """
        fleet = self.fleet
        policy = self.policy
        if fleet is None or self.state != pybreaker.STATE_CLOSED:
            return
        calls = fleet.calls
        if calls < policy.fleet_min_calls or fleet.failures < policy.fleet_error_rate * calls:
            return
        self.breaker.open()
        self._transitioned(now)
        self.clean = False

    def _transitioned(self, now: float | None) -> None:
        self._new_epoch()
        state = self.state
        if state == pybreaker.STATE_OPEN:
            self.opened_at = trio.current_time() if now is None else now
        elif state == pybreaker.STATE_CLOSED and self.fleet is not None:
            self.fleet.restart(trio.current_time() if now is None else now)

    def _refresh(self) -> None:
        """Recompute ``clean`` after pybreaker's state or counter may have moved."""
        self.clean = self.quiet and self.state == pybreaker.STATE_CLOSED and not self.counter

    def _new_epoch(self) -> None:
        self.epoch += 1
        self.trials = 0


class _PybreakerPolicy(abc.ABC):
    """Base of Standard and Adaptive: configuration, and one circuit per tool.

    Subclasses are attrs classes that define the fields read here.
    """

    __slots__ = ()

    recovery_timeout: float
    success_threshold: int
    half_open_max_calls: int
    exclude: tuple[ExcludeRule, ...]
    listeners: tuple[pybreaker.CircuitBreakerListener, ...]
    shared: RedisShared | None
    fleet_error_rate: float
    fleet_min_calls: int
    fleet_window_s: float
    _circuits: dict[str, _Circuit]
    _fleet: _BreakerMember | None
    # Whether _observe() must see every recorded outcome (Adaptive's window).
    _OBSERVES: ClassVar[bool] = False

    def __attrs_post_init__(self) -> None:
        if self.shared is not None:
            # The subclasses' slot (this base declares none of its own).
            object.__setattr__(self, "_fleet", self.shared._breaker(self.fleet_window_s, self))

    # -- hooks -------------------------------------------------------------------------

    @abc.abstractmethod
    def _initial_fail_max(self) -> int:
        """The pybreaker ``fail_max`` a tool's new breaker starts with."""

    def _observe(self, circuit: _Circuit, exc: Exception | None) -> None:  # noqa: B027 - optional hook
        """See a recorded outcome before pybreaker does (Adaptive updates its window)."""

    # -- public API ----------------------------------------------------------------------

    async def execute_with_breaker(self, func: Callable[[], Awaitable[T]], tool_name: str) -> T:
        """Run ``func()`` through the breaker of ``tool_name``.

        Raises:
            CircuitOpenError: open (``retry_after`` = seconds until half-open), half-open
                with every trial slot busy (``retry_after`` = 0), or this call's failure
                opened the breaker (chained ``from`` the tool's exception).
            Exception: whatever ``func`` raised, unchanged, when it did not open the breaker.
        """
        circuit = self._circuits.get(tool_name)
        if circuit is None:
            circuit = self._circuit(tool_name)
        if circuit.fleet is not None:
            self._fleet.shared._use()  # type: ignore[union-attr] # fleet implies _fleet
        # A clean circuit is closed: admission would only return the epoch.
        epoch = circuit.epoch if circuit.clean else circuit.admit()
        try:
            value = await func()
        except Exception as exc:
            tripped = circuit.record_failure(epoch, exc)
            if tripped is not None:
                # This frame is on both errors' tracebacks: it must not keep them (a
                # reference cycle, freed only by the garbage collector).
                try:
                    raise tripped from exc
                finally:
                    del tripped
            raise
        except BaseException:
            circuit.abandon(epoch)
            raise
        if not circuit.clean:
            circuit.record_success(epoch)
        return value

    def get_state(self, tool_name: str) -> CircuitState:
        """Return the state of ``tool_name``'s breaker without changing anything.

        An open breaker whose ``recovery_timeout`` has elapsed on trio's clock reports
        ``HALF_OPEN``. Outside a trio run the recorded state is returned.
        """
        circuit = self._circuits.get(tool_name)
        if circuit is None or circuit.clean:
            return CircuitState.CLOSED  # closed with nothing counted: no clock to read
        return circuit.state_at(_now())

    def reset(self, tool_name: str) -> None:
        """Close ``tool_name``'s breaker and clear its counters.

        Outcomes of calls admitted before the reset are not recorded.
        """
        circuit = self._circuits.get(tool_name)
        if circuit is not None:
            circuit.reset()

    def retry_after(self, tool_name: str) -> float | None:
        """None if a call of ``tool_name`` would be admitted now, else the seconds to wait.

        Open: the seconds until half-open (the whole ``recovery_timeout`` outside a trio
        run). Half-open with every trial slot busy: 0. A pure read: callers use it to fail
        fast without admitting a call.
        """
        circuit = self._circuits.get(tool_name)
        if circuit is None or circuit.clean:
            return None  # decided without reading the clock: the supervisor asks every call
        return circuit.retry_after_at(_now())

    def failure_count(self, tool_name: str) -> int:
        """pybreaker's counter of consecutive failures of ``tool_name``."""
        circuit = self._circuits.get(tool_name)
        return 0 if circuit is None else circuit.counter

    def success_count(self, tool_name: str) -> int:
        """pybreaker's counter of consecutive half-open trial successes of ``tool_name``."""
        circuit = self._circuits.get(tool_name)
        return 0 if circuit is None else circuit.success_counter

    # -- internals -----------------------------------------------------------------------

    def _circuit(self, tool_name: str) -> _Circuit:
        circuit = self._circuits.get(tool_name)
        if circuit is None:
            fleet = self._fleet
            quiet = not self.listeners and not self._OBSERVES and fleet is None
            circuit = _Circuit(self, tool_name, quiet=quiet, clean=quiet)
            if fleet is not None:
                circuit.fleet = fleet.track(circuit)
            self._circuits[tool_name] = circuit
        return circuit

    def _new_pybreaker(
        self, tool_name: str, storage: pybreaker.CircuitMemoryStorage
    ) -> pybreaker.CircuitBreaker:
        """pybreaker's breaker for ``tool_name``, on ``storage`` (see ``_Circuit.breaker``)."""
        return pybreaker.CircuitBreaker(
            fail_max=self._initial_fail_max(),
            reset_timeout=_NEVER,
            success_threshold=self.success_threshold,
            exclude=[_to_pybreaker_rule(rule) for rule in self.exclude],
            listeners=self.listeners,
            state_storage=storage,
            name=tool_name,
            throw_new_error_on_trip=True,
        )


def _now() -> float | None:
    try:
        return trio.current_time()
    except RuntimeError:  # not inside trio.run
        return None
