"""Circuit-breaker policies through their public API, on trio's mock clock."""

from __future__ import annotations

import abc
import math
import traceback
from collections.abc import Awaitable, Callable
from typing import Any

import pybreaker
import pytest
import trio
import trio.testing

from toolvisor.errors import CircuitOpenError
from toolvisor.policies import (
    AdaptiveCircuitBreakerPolicy,
    CircuitState,
    FixedRetryPolicy,
    ICircuitBreakerPolicy,
    NoOpCircuitBreakerPolicy,
    StandardCircuitBreakerPolicy,
)

TOOL = "process_payment"


class BoomError(Exception):
    pass


class DeclinedError(Exception):
    """A business error the breaker must not count."""


async def ok() -> str:
    return "ok"


async def boom() -> str:
    raise BoomError("gateway down")


async def call(
    policy: ICircuitBreakerPolicy, func: Callable[[], Awaitable[str]], tool: str = TOOL
) -> Any:
    """Return the value, or the exception raised."""
    try:
        return await policy.execute_with_breaker(func, tool)
    except Exception as exc:
        return exc


async def test_open_half_open_close_with_30s_recovery(
    autojump_clock: trio.testing.MockClock,
) -> None:
    policy = StandardCircuitBreakerPolicy(failure_threshold=3, recovery_timeout=30)
    start = trio.current_time()
    for _ in range(2):
        assert isinstance(await call(policy, boom), BoomError)
        assert policy.get_state(TOOL) == "closed"
    tripped = await call(policy, boom)
    assert isinstance(tripped, CircuitOpenError)
    assert isinstance(tripped.__cause__, BoomError)
    assert tripped.retry_after == 30
    assert policy.get_state(TOOL) is CircuitState.OPEN

    ran = False

    async def spy() -> str:
        nonlocal ran
        ran = True
        return "ok"

    await trio.sleep(10)
    rejected = await call(policy, spy)
    assert isinstance(rejected, CircuitOpenError)
    assert rejected.retry_after == pytest.approx(20)
    assert policy.retry_after(TOOL) == pytest.approx(20)
    assert not ran

    await trio.sleep(20)
    assert policy.get_state(TOOL) == "half_open"  # a pure read: nothing moved yet
    assert policy.retry_after(TOOL) is None  # due: the next call is a trial
    assert await call(policy, spy) == "ok"
    assert ran
    assert policy.get_state(TOOL) == "closed"
    assert policy.failure_count(TOOL) == 0
    assert trio.current_time() - start == pytest.approx(30)


async def test_trial_failure_reopens_for_a_new_recovery_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    policy = StandardCircuitBreakerPolicy(failure_threshold=1, recovery_timeout=30)
    assert isinstance(await call(policy, boom), CircuitOpenError)
    await trio.sleep(30)
    reopened = await call(policy, boom)
    assert isinstance(reopened, CircuitOpenError)
    assert isinstance(reopened.__cause__, BoomError)
    assert policy.get_state(TOOL) == "open"
    assert policy.retry_after(TOOL) == 30
    await trio.sleep(29)
    assert isinstance(await call(policy, ok), CircuitOpenError)
    await trio.sleep(1)
    assert await call(policy, ok) == "ok"


async def test_success_threshold_needs_consecutive_trial_successes(
    autojump_clock: trio.testing.MockClock,
) -> None:
    policy = StandardCircuitBreakerPolicy(
        failure_threshold=1, recovery_timeout=5, success_threshold=2
    )
    await call(policy, boom)
    await trio.sleep(5)
    assert await call(policy, ok) == "ok"
    assert policy.get_state(TOOL) == "half_open"
    assert policy.success_count(TOOL) == 1
    assert await call(policy, ok) == "ok"
    assert policy.get_state(TOOL) == "closed"


async def test_half_open_admits_at_most_half_open_max_calls(
    autojump_clock: trio.testing.MockClock,
) -> None:
    policy = StandardCircuitBreakerPolicy(
        failure_threshold=1, recovery_timeout=1, half_open_max_calls=2, success_threshold=2
    )
    await call(policy, boom)
    await trio.sleep(1)
    release = trio.Event()
    results: list[Any] = []

    async def slow() -> str:
        await release.wait()
        return "slow"

    async def run() -> None:
        results.append(await call(policy, slow))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run)
        nursery.start_soon(run)
        await trio.testing.wait_all_tasks_blocked()
        third = await call(policy, ok)
        assert isinstance(third, CircuitOpenError)
        assert third.retry_after == 0
        release.set()
    assert results == ["slow", "slow"]
    assert policy.get_state(TOOL) == "closed"


async def test_cancelled_trial_gives_its_slot_back_and_is_not_counted(
    autojump_clock: trio.testing.MockClock,
) -> None:
    policy = StandardCircuitBreakerPolicy(failure_threshold=1, recovery_timeout=1)
    await call(policy, boom)
    await trio.sleep(1)
    with trio.move_on_after(5) as scope:
        await policy.execute_with_breaker(trio.sleep_forever, TOOL)
    assert scope.cancelled_caught
    assert policy.get_state(TOOL) == "half_open"
    assert policy.failure_count(TOOL) == 1
    assert await call(policy, ok) == "ok"  # the slot is free again
    assert policy.get_state(TOOL) == "closed"


async def test_cancellation_is_never_a_failure(autojump_clock: trio.testing.MockClock) -> None:
    policy = StandardCircuitBreakerPolicy(failure_threshold=1)
    for _ in range(3):
        with trio.move_on_after(1):
            await policy.execute_with_breaker(trio.sleep_forever, TOOL)
    assert policy.get_state(TOOL) == "closed"
    assert policy.failure_count(TOOL) == 0


async def test_other_base_exceptions_pass_through_uncounted() -> None:
    policy = StandardCircuitBreakerPolicy(failure_threshold=1)

    async def interrupt() -> str:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        await policy.execute_with_breaker(interrupt, TOOL)
    assert policy.get_state(TOOL) == "closed"


async def test_late_failure_after_the_breaker_opened_is_not_recorded(
    autojump_clock: trio.testing.MockClock,
) -> None:
    policy = StandardCircuitBreakerPolicy(failure_threshold=1, recovery_timeout=30)
    started = trio.Event()
    late: list[Any] = []

    async def slow_boom() -> str:
        started.set()
        await trio.sleep(10)
        raise BoomError("late")

    async def run_late() -> None:
        late.append(await call(policy, slow_boom))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run_late)
        await started.wait()
        assert isinstance(await call(policy, boom), CircuitOpenError)  # opens at t0
    # The late failure is re-raised as itself but changes nothing.
    assert isinstance(late[0], BoomError)
    assert policy.failure_count(TOOL) == 1
    assert policy.retry_after(TOOL) == pytest.approx(20)


async def test_results_admitted_before_reset_are_ignored(
    autojump_clock: trio.testing.MockClock,
) -> None:
    policy = StandardCircuitBreakerPolicy(failure_threshold=2)
    started = trio.Event()

    async def slow_boom() -> str:
        started.set()
        await trio.sleep(1)
        raise BoomError

    async with trio.open_nursery() as nursery:
        nursery.start_soon(call, policy, slow_boom)
        await started.wait()
        await call(policy, boom)
        assert policy.failure_count(TOOL) == 1
        policy.reset(TOOL)
    assert policy.failure_count(TOOL) == 0
    assert policy.get_state(TOOL) == "closed"


async def test_reset_closes_an_open_breaker(autojump_clock: trio.testing.MockClock) -> None:
    policy = StandardCircuitBreakerPolicy(failure_threshold=1)
    await call(policy, boom)
    assert policy.get_state(TOOL) == "open"
    policy.reset(TOOL)
    assert policy.get_state(TOOL) == "closed"
    assert policy.retry_after(TOOL) is None
    assert await call(policy, ok) == "ok"
    policy.reset("never-used")  # unknown tools are fine


@pytest.mark.parametrize(
    "exclude",
    [
        [DeclinedError],
        [lambda exc: isinstance(exc, DeclinedError)],
        (DeclinedError, KeyError),
    ],
)
async def test_excluded_errors_count_as_successes_and_are_reraised(exclude: Any) -> None:
    policy = StandardCircuitBreakerPolicy(failure_threshold=2, exclude=exclude)

    async def declined() -> str:
        raise DeclinedError("card declined")

    await call(policy, boom)
    assert policy.failure_count(TOOL) == 1
    error = await call(policy, declined)
    assert type(error) is DeclinedError
    assert policy.failure_count(TOOL) == 0  # a success resets the streak
    await call(policy, boom)
    assert policy.get_state(TOOL) == "closed"


async def test_exclude_accepts_classes_with_a_metaclass() -> None:
    class OddError(Exception, metaclass=abc.ABCMeta):
        pass

    async def odd() -> str:
        raise OddError

    policy = StandardCircuitBreakerPolicy(failure_threshold=1, exclude=[OddError])
    assert isinstance(await call(policy, odd), OddError)
    assert policy.get_state(TOOL) == "closed"


async def test_the_tools_error_keeps_its_own_traceback() -> None:
    policy = StandardCircuitBreakerPolicy(failure_threshold=5)
    error = await call(policy, boom)
    frames = [frame.filename for frame in traceback.extract_tb(error.__traceback__)]
    assert not any("pybreaker" in name for name in frames)


async def test_tools_are_isolated() -> None:
    policy = StandardCircuitBreakerPolicy(failure_threshold=1)
    await call(policy, boom, "a")
    assert policy.get_state("a") == "open"
    assert policy.get_state("b") == "closed"
    assert await call(policy, ok, "b") == "ok"


async def test_listeners_see_pybreaker_transitions(
    autojump_clock: trio.testing.MockClock,
) -> None:
    seen: list[tuple[str, str]] = []

    class Recorder(pybreaker.CircuitBreakerListener):
        def state_change(
            self,
            cb: pybreaker.CircuitBreaker,
            old_state: pybreaker.CircuitBreakerState | None,
            new_state: pybreaker.CircuitBreakerState,
        ) -> None:
            seen.append((old_state.name if old_state else "", new_state.name))

    policy = StandardCircuitBreakerPolicy(
        failure_threshold=1, recovery_timeout=1, listeners=[Recorder()]
    )
    await call(policy, boom)
    await trio.sleep(1)
    await call(policy, ok)
    assert seen == [("closed", "open"), ("open", "half-open"), ("half-open", "closed")]


async def test_listeners_see_every_outcome_from_the_first_call() -> None:
    # pybreaker's objects are made lazily; a listener must still see each call.
    outcomes: list[str] = []

    class Recorder(pybreaker.CircuitBreakerListener):
        def success(self, cb: pybreaker.CircuitBreaker) -> None:
            outcomes.append("success")

        def failure(self, cb: pybreaker.CircuitBreaker, exc: BaseException) -> None:
            outcomes.append("failure")

    policy = StandardCircuitBreakerPolicy(failure_threshold=5, listeners=[Recorder()])
    await call(policy, ok)
    await call(policy, boom)
    await call(policy, ok)
    assert outcomes == ["success", "failure", "success"]
    assert policy.failure_count(TOOL) == 0


def test_get_state_outside_trio_reports_the_recorded_state() -> None:
    policy = StandardCircuitBreakerPolicy(failure_threshold=1, recovery_timeout=30)
    trio.run(call, policy, boom)
    assert policy.get_state(TOOL) == "open"
    assert policy.retry_after(TOOL) == 30


# -- Adaptive ----------------------------------------------------------------------------


async def test_adaptive_healthy_tool_tolerates_max_threshold() -> None:
    policy = AdaptiveCircuitBreakerPolicy(base_threshold=2, max_threshold=4, window_size=100)
    for _ in range(96):
        assert await call(policy, ok) == "ok"
    assert policy.current_threshold(TOOL) == 4
    # Each failure raises the error rate; with 2 % to 4 % errors the threshold stays 4.
    for _ in range(3):
        assert isinstance(await call(policy, boom), BoomError)
    assert policy.get_state(TOOL) == "closed"
    assert isinstance(await call(policy, boom), CircuitOpenError)


@pytest.mark.parametrize(
    ("outcomes", "expected"),
    [
        ("ssssssssss", 20),  # r = 0
        ("fsssssssss", 17),  # r = 0.1: 20 - 15 * 0.2 = 17
        ("f" + "s" * 19, 19),  # r = 0.05: 20 - 1.5 = 18.5 -> 19 (half up)
        ("fsfsfsssss", 11),  # r = 0.3: 20 - 15 * 0.6 = 11
        ("fsfsfsfsfs", 5),  # r = 0.5 = error_rate_threshold
        ("ffsffsffff", 5),  # r = 0.8 > error_rate_threshold
    ],
)
async def test_adaptive_threshold_formula(outcomes: str, expected: int) -> None:
    policy = AdaptiveCircuitBreakerPolicy(
        base_threshold=5, max_threshold=20, error_rate_threshold=0.5, window_size=100
    )
    for outcome in outcomes:
        await call(policy, boom if outcome == "f" else ok)
    assert policy.get_state(TOOL) == "closed"  # streaks stay below base_threshold
    assert policy.error_rate(TOOL) == pytest.approx(outcomes.count("f") / len(outcomes))
    assert policy.current_threshold(TOOL) == expected


async def test_adaptive_unhealthy_window_opens_at_base_threshold(
    autojump_clock: trio.testing.MockClock,
) -> None:
    policy = AdaptiveCircuitBreakerPolicy(
        base_threshold=2,
        max_threshold=10,
        error_rate_threshold=0.5,
        window_size=4,
        recovery_timeout=30,
    )
    await call(policy, ok)
    await call(policy, boom)  # window [ok, boom]: r = 0.5 -> threshold 2
    tripped = await call(policy, boom)
    assert isinstance(tripped, CircuitOpenError)
    assert policy.retry_after(TOOL) == 30
    await trio.sleep(30)
    assert policy.get_state(TOOL) == "half_open"
    assert await call(policy, ok) == "ok"
    assert policy.get_state(TOOL) == "closed"
    policy.reset(TOOL)
    assert policy.current_threshold(TOOL) == 10
    assert policy.error_rate(TOOL) == 0


async def test_adaptive_window_forgets_old_outcomes() -> None:
    policy = AdaptiveCircuitBreakerPolicy(base_threshold=2, max_threshold=3, window_size=2)
    await call(policy, boom)
    await call(policy, ok)
    await call(policy, ok)
    assert policy.error_rate(TOOL) == 0
    assert policy.current_threshold(TOOL) == 3


# -- NoOp, protocol, construction --------------------------------------------------------


async def test_noop_just_awaits() -> None:
    policy = NoOpCircuitBreakerPolicy()
    for _ in range(10):
        assert isinstance(await call(policy, boom), BoomError)
    assert await call(policy, ok) == "ok"
    assert policy.get_state(TOOL) == "closed"
    assert policy.retry_after(TOOL) is None
    policy.reset(TOOL)


@pytest.mark.parametrize(
    "policy",
    [StandardCircuitBreakerPolicy(), AdaptiveCircuitBreakerPolicy(), NoOpCircuitBreakerPolicy()],
)
def test_builtins_satisfy_the_protocol(policy: object) -> None:
    assert isinstance(policy, ICircuitBreakerPolicy)


def test_circuit_state_is_a_str_enum() -> None:
    values: list[str] = ["closed", "open", "half_open"]
    assert list(CircuitState) == values
    assert isinstance(CircuitState.OPEN, str)
    assert CircuitState("open") is CircuitState.OPEN
    assert f"{CircuitState.OPEN}" == "open"


@pytest.mark.parametrize(
    ("cls", "kwargs", "name"),
    [
        (StandardCircuitBreakerPolicy, {"failure_threshold": 0}, "failure_threshold"),
        (StandardCircuitBreakerPolicy, {"recovery_timeout": -1}, "recovery_timeout"),
        (StandardCircuitBreakerPolicy, {"recovery_timeout": math.nan}, "recovery_timeout"),
        (StandardCircuitBreakerPolicy, {"success_threshold": 0}, "success_threshold"),
        (StandardCircuitBreakerPolicy, {"half_open_max_calls": 0}, "half_open_max_calls"),
        (AdaptiveCircuitBreakerPolicy, {"base_threshold": 0}, "base_threshold"),
        (AdaptiveCircuitBreakerPolicy, {"max_threshold": 0}, "max_threshold"),
        (AdaptiveCircuitBreakerPolicy, {"base_threshold": 6, "max_threshold": 5}, "max_threshold"),
        (AdaptiveCircuitBreakerPolicy, {"error_rate_threshold": 0}, "error_rate_threshold"),
        (AdaptiveCircuitBreakerPolicy, {"error_rate_threshold": 1.5}, "error_rate_threshold"),
        (AdaptiveCircuitBreakerPolicy, {"window_size": 0}, "window_size"),
        (AdaptiveCircuitBreakerPolicy, {"recovery_timeout": -0.1}, "recovery_timeout"),
        (AdaptiveCircuitBreakerPolicy, {"half_open_max_calls": 0}, "half_open_max_calls"),
        (AdaptiveCircuitBreakerPolicy, {"success_threshold": 0}, "success_threshold"),
    ],
)
def test_invalid_arguments_name_the_argument(cls: Any, kwargs: dict[str, Any], name: str) -> None:
    with pytest.raises(ValueError, match=name):
        cls(**kwargs)


@pytest.mark.parametrize("bad", [["not a rule"], [int], [3]])
def test_exclude_rejects_non_rules(bad: list[Any]) -> None:
    with pytest.raises(TypeError, match="exclude"):
        StandardCircuitBreakerPolicy(exclude=bad)


def test_reprs_are_readable() -> None:
    assert repr(StandardCircuitBreakerPolicy(failure_threshold=3)) == (
        "StandardCircuitBreakerPolicy(failure_threshold=3, recovery_timeout=30, "
        "success_threshold=1, half_open_max_calls=1, exclude=())"
    )
    assert repr(AdaptiveCircuitBreakerPolicy()).startswith(
        "AdaptiveCircuitBreakerPolicy(base_threshold=5, max_threshold=20, "
        "error_rate_threshold=0.5, window_size=100"
    )
    assert repr(NoOpCircuitBreakerPolicy()) == "NoOpCircuitBreakerPolicy()"


async def test_a_retry_loop_stops_when_its_failure_trips_the_breaker(
    autojump_clock: trio.testing.MockClock,
) -> None:
    breaker = StandardCircuitBreakerPolicy(failure_threshold=2)
    retry = FixedRetryPolicy(max_attempts=5, delay_seconds=1)
    attempts = 0

    async def tool() -> str:
        nonlocal attempts
        attempts += 1
        raise BoomError

    with pytest.raises(CircuitOpenError) as info:
        await retry.execute(lambda: breaker.execute_with_breaker(tool, TOOL))
    assert attempts == 2
    assert isinstance(info.value.__cause__, BoomError)


async def test_retry_after_reads_what_admission_would_decide(
    autojump_clock: trio.testing.MockClock,
) -> None:
    policy = StandardCircuitBreakerPolicy(
        failure_threshold=1, recovery_timeout=10, half_open_max_calls=1
    )
    assert policy.retry_after(TOOL) is None  # closed: admitted
    await call(policy, boom)
    assert policy.retry_after(TOOL) == pytest.approx(10)  # open: seconds to half-open
    await trio.sleep(10)
    assert policy.retry_after(TOOL) is None  # due: the next call is the trial
    trial_started, release = trio.Event(), trio.Event()

    async def slow_trial() -> str:
        trial_started.set()
        await release.wait()
        return "ok"

    async with trio.open_nursery() as nursery:
        nursery.start_soon(call, policy, slow_trial)
        await trial_started.wait()
        assert policy.retry_after(TOOL) == 0  # half-open, its one trial slot busy
        assert isinstance(await call(policy, ok), CircuitOpenError)
        release.set()
    assert policy.retry_after(TOOL) is None  # the trial closed it
