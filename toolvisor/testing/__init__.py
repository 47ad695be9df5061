"""Helpers for testing your own tools and policies (the seed's "Test Your Policies").

Everything here runs on trio's clock, so under ``trio.testing.MockClock(autojump_threshold=0)``
(pytest-trio's ``autojump_clock`` fixture) a test that "waits" minutes of retries and
breaker recoveries finishes at once, with exact times.

* :class:`FlakyTool`: a tool function that fails as you script it (a list of outcomes)
  or at a seeded random rate, with latency and rate-limit errors; it counts its calls.
* :class:`AttemptRecorder`: wraps any tool function and records the trio time of each
  attempt (``.times``, ``.gaps()``), to check a retry schedule.
* :class:`RateLimitError`: ``toolvisor.RateLimitError`` (re-exported here), an exception
  with ``retry_after`` (seconds), which the built-in retry policies honour as a minimum wait.
* :class:`EventLog`: collects a supervisor's events (retries, breaker transitions).
* pytest fixtures: ``supervisor`` (an open supervisor, closed after the test) and
  :func:`make_supervisor_fixture` to build your own. Import them into your
  ``conftest.py`` (pytest finds fixtures imported there)::

      # conftest.py
      from toolvisor.testing import supervisor  # noqa: F401  (a pytest fixture)

  (or list ``"toolvisor.testing"`` in ``pytest_plugins``). They need pytest-trio with
  ``trio_mode = true``; pytest itself is imported only when you use them.

Example test (pytest-trio, ``trio_mode = true``)::

    import toolvisor
    from toolvisor.testing import AttemptRecorder, FlakyTool, supervisor  # noqa: F401

    async def test_retries_follow_the_backoff(supervisor, autojump_clock):
        spec = toolvisor.FunctionToolSpec(id="api-v1", tool_name="api")
        spec.retry_policy = toolvisor.ExponentialBackoffRetryPolicy(
            max_attempts=4, base_delay=1.0, jitter=0.0
        )
        tool = AttemptRecorder(FlakyTool([TimeoutError(), TimeoutError(), TimeoutError()]))
        await supervisor.spawn(spec, tool)

        assert await supervisor.execute("api", {}) == {"status": "success"}
        assert tool.gaps() == [1.0, 2.0, 4.0]  # exact: MockClock
        assert supervisor.stats("api").retries == 3
"""

from __future__ import annotations

import math
import random
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import attrs
import trio

from ..actors import sweeper
from ..actors.pipeline import make_invoker
from ..errors import RateLimitError
from ..events import Event
from ..spec import ExecutionContext
from ..supervisor import Supervisor, open_supervisor

__all__ = [
    "AttemptRecorder",
    "Delay",
    "EventLog",
    "FlakyTool",
    "RateLimitError",
    "make_supervisor_fixture",
    "open_test_supervisor",
    "settle",
]

_E = TypeVar("_E", bound=Event)

_NO_CONTEXT = ExecutionContext()


@attrs.frozen
class Delay:
    """A scripted step of :class:`FlakyTool` that sleeps ``seconds`` first, then does ``then``.

    ``then`` is any other script step (an exception to raise or a value to return);
    ``Delay(40)`` alone sleeps and then returns the tool's ``result``. Use it to make an
    attempt run past the spec's ``timeout_s``.
    """

    seconds: float
    then: object = None


def _default_error() -> Exception:
    return TimeoutError("simulated timeout")


class FlakyTool:
    """A tool function that fails on purpose: scripted, or at a seeded random rate.

    Each call takes the next step of ``script``; once the script is used up (or without
    one) each call fails with probability ``failure_rate`` (raising ``error()``), else is
    rate limited with probability ``rate_limit_rate`` (``RateLimitError(retry_after=...)``),
    else succeeds with ``result``. ``latency`` seconds of ``trio.sleep`` come first.

    Script steps: an exception instance (raised), an exception class (instantiated and
    raised), a :class:`Delay` (sleep, then its ``then`` step), or any other value (returned
    as the result).

    Args:
        script: steps taken in order, one per call.
        failure_rate: probability in [0, 1] that an unscripted call raises ``error()``.
        rate_limit_rate: probability in [0, 1] that an unscripted call is rate limited.
        retry_after: the ``retry_after`` of the rate-limit errors.
        error: makes the exception of a random failure (default: ``TimeoutError``).
        latency: seconds each call sleeps first: a number, or ``(low, high)`` drawn
            uniformly from the tool's random generator.
        result: the value of a success, or a function of the call's arguments making it.
        seed: seeds the tool's own ``random.Random`` (same seed, same failures).

    Attributes:
        calls: calls made so far.
        successes / failures: calls that returned / raised.
        times: trio time at which each call started.
        args: the arguments of each call.

    Example (the seed's 70 % failing tool)::

        tool = FlakyTool(failure_rate=0.7, seed=42)
        await sup.spawn(spec, tool)
    """

    def __init__(
        self,
        script: Iterable[object] = (),
        *,
        failure_rate: float = 0.0,
        rate_limit_rate: float = 0.0,
        retry_after: float | None = 1.0,
        error: Callable[[], BaseException] = _default_error,
        latency: float | tuple[float, float] = 0.0,
        result: object = None,
        seed: int | None = 0,
    ) -> None:
        for name, rate in (("failure_rate", failure_rate), ("rate_limit_rate", rate_limit_rate)):
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"{name} must be within [0, 1], got {rate!r}")
        if failure_rate + rate_limit_rate > 1.0:
            raise ValueError("failure_rate + rate_limit_rate must not exceed 1")
        low, high = latency if isinstance(latency, tuple) else (latency, latency)
        if not (0.0 <= low <= high < math.inf):
            raise ValueError(
                f"latency must be >= 0 seconds (or a (low, high) range), got {latency!r}"
            )
        self.script: list[object] = list(script)
        self.failure_rate = failure_rate
        self.rate_limit_rate = rate_limit_rate
        self.retry_after = retry_after
        self.error = error
        self.latency = (float(low), float(high))
        self.result = {"status": "success"} if result is None else result
        self.rng = random.Random(seed)
        self.calls = 0
        self.successes = 0
        self.failures = 0
        self.times: list[float] = []
        self.args: list[Mapping[str, Any]] = []

    async def __call__(self, args: Mapping[str, Any]) -> Any:
        """Run one call: sleep the latency, then take the next step."""
        self.calls += 1
        self.times.append(trio.current_time())
        self.args.append(args)
        step = self._next_step()
        low, high = self.latency
        if high > 0:
            await trio.sleep(low if low == high else self.rng.uniform(low, high))
        while isinstance(step, Delay):
            await trio.sleep(step.seconds)
            step = step.then
        if isinstance(step, type) and issubclass(step, BaseException):
            step = step()
        if isinstance(step, BaseException):
            self.failures += 1
            raise step
        self.successes += 1
        if step is None:
            return self.result(args) if callable(self.result) else self.result
        return step

    def _next_step(self) -> object:
        if self.calls <= len(self.script):
            return self.script[self.calls - 1]
        draw = self.rng.random()
        if draw < self.failure_rate:
            return self.error()
        if draw < self.failure_rate + self.rate_limit_rate:
            return RateLimitError(retry_after=self.retry_after)
        return None

    def reset(self) -> None:
        """Forget the calls counted so far (the script starts over)."""
        self.calls = self.successes = self.failures = 0
        self.times.clear()
        self.args.clear()


class AttemptRecorder:
    """Wraps a tool function and records the trio time of each attempt.

    Use it as the tool function (``await sup.spawn(spec, AttemptRecorder(fn))``); under
    MockClock the times are exact, so a retry schedule can be asserted with ``==``.

    Attributes:
        times: trio time at which each attempt started.
        errors: the exception of each attempt, or None for a success.
    """

    def __init__(self, fn: Callable[..., Any], *, name: str = "recorded") -> None:
        self.fn = fn
        self._invoke = make_invoker(fn, name)
        self.times: list[float] = []
        self.errors: list[BaseException | None] = []

    @property
    def attempts(self) -> int:
        """Attempts recorded so far."""
        return len(self.times)

    async def __call__(self, args: Mapping[str, Any], ctx: ExecutionContext = _NO_CONTEXT) -> Any:
        """Record the time, then run the wrapped function."""
        self.times.append(trio.current_time())
        try:
            value = await self._invoke(args, ctx)
        except Exception as exc:
            self.errors.append(exc)
            raise
        self.errors.append(None)
        return value

    def bind(self, args: Mapping[str, Any] | None = None) -> Callable[[], Any]:
        """A zero-argument attempt function, to drive a policy directly.

        Example::

            await policy.execute(recorder.bind({"q": "x"}))
        """
        bound: Mapping[str, Any] = {} if args is None else args

        async def attempt() -> Any:
            return await self(bound)

        return attempt

    def gaps(self) -> list[float]:
        """Seconds between consecutive attempts (the waits the retry policy chose)."""
        return [b - a for a, b in zip(self.times, self.times[1:], strict=False)]

    def offsets(self) -> list[float]:
        """Each attempt's time relative to the first (``[0.0, 1.0, 3.0, ...]``)."""
        return [t - self.times[0] for t in self.times] if self.times else []


class EventLog:
    """Collects a supervisor's events, for assertions.

    Example::

        log = EventLog.attach(sup)
        await sup.execute("pay", args)  # calls that trip and close the breaker
        assert [e.new for e in log.of_type(BreakerTransition)] == ["open", "half_open"]
        log.detach()
    """

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._unsubscribe: Callable[[], None] | None = None

    @classmethod
    def attach(cls, supervisor: Supervisor) -> EventLog:
        """A log subscribed to ``supervisor`` (``detach()`` to stop)."""
        log = cls()
        log._unsubscribe = supervisor.subscribe(log)
        return log

    def __call__(self, event: Event) -> None:
        """Record ``event`` (the log is itself a subscriber callback)."""
        self.events.append(event)

    def of_type(self, kind: type[_E], tool: str | None = None) -> list[_E]:
        """The events of class ``kind`` (of ``tool`` only, if given), in order."""
        return [
            e
            for e in self.events
            if isinstance(e, kind) and (tool is None or getattr(e, "tool", None) == tool)
        ]

    def detach(self) -> None:
        """Unsubscribe from the supervisor."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None


async def settle() -> None:
    """Wait until every task is blocked, with the cleanup toolvisor defers done.

    ``trio.testing.wait_all_tasks_blocked()``, then the cleanup of attempts whose callers
    were answered at their timeout, then that wait again. toolvisor cancels those
    attempts (and the breaker records them) once the program is idle, so that a timeout
    storm's answers do not wait behind that cleanup; a test that checks the breaker or
    the tool's own cleanup right after a timeout awaits this first. It does not move the
    clock.
    """
    import trio.testing  # here: it imports pytest, which only tests have

    await trio.testing.wait_all_tasks_blocked()
    sweeper.flush()
    await trio.testing.wait_all_tasks_blocked()


@asynccontextmanager
async def open_test_supervisor(**kwargs: Any) -> AsyncIterator[Supervisor]:
    """``open_supervisor(**kwargs)`` with test defaults: ``grace_s=0`` unless given.

    A test ends at once instead of draining unfinished calls for 10 s (which costs
    nothing under MockClock, but real seconds otherwise).
    """
    kwargs.setdefault("grace_s", 0.0)
    async with open_supervisor(**kwargs) as sup:
        yield sup


def make_supervisor_fixture(
    *, name: str = "supervisor", **open_kwargs: Any
) -> Callable[..., AsyncIterator[Supervisor]]:
    """Build a pytest fixture that yields an open supervisor and closes it after the test.

    ``open_kwargs`` go to :func:`open_test_supervisor`; a callable value is called per
    test, so each test gets a fresh store::

        # conftest.py
        from toolvisor import SQLiteStore
        from toolvisor.testing import make_supervisor_fixture

        sqlite_supervisor = make_supervisor_fixture(
            name="sqlite_supervisor",
            idempotency_store=lambda: SQLiteStore("test-idem.db"),
        )

    The fixture is a pytest-trio async fixture: use it from ``async def`` tests.
    """
    import pytest  # only needed by those who build fixtures

    async def fixture() -> AsyncIterator[Supervisor]:
        kwargs = {k: (v() if callable(v) else v) for k, v in open_kwargs.items()}
        async with open_test_supervisor(**kwargs) as sup:
            yield sup
        if callable(open_kwargs.get("idempotency_store")):
            await kwargs["idempotency_store"].aclose()  # made for this test: ours to close

    fixture.__name__ = name
    fixture.__doc__ = f"An open toolvisor Supervisor ({name}), closed after the test."
    made: Callable[..., AsyncIterator[Supervisor]] = pytest.fixture(name=name)(fixture)
    return made


_LAZY_FIXTURES: dict[str, Callable[[], Any]] = {
    "supervisor": lambda: make_supervisor_fixture(name="supervisor"),
}
_made: dict[str, Any] = {}


def __getattr__(attr: str) -> Any:
    """Build the ready-made fixtures (``supervisor``) on first import, importing pytest."""
    factory = _LAZY_FIXTURES.get(attr)
    if factory is None:
        raise AttributeError(f"module {__name__!r} has no attribute {attr!r}")
    if attr not in _made:
        _made[attr] = factory()
    return _made[attr]


def __dir__() -> list[str]:
    # pytest finds fixtures through dir(): `pytest_plugins = ["toolvisor.testing"]` works.
    return sorted([*globals(), *_LAZY_FIXTURES])
