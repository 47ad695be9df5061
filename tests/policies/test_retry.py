"""Retry policies: the pure schedules (properties) and the execute loops on MockClock."""

from __future__ import annotations

import math
import random
from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from toolvisor.errors import (
    CircuitOpenError,
    FieldError,
    IdempotencyConflictError,
    ValidationError,
)
from toolvisor.policies import (
    CustomRetryPolicy,
    ExponentialBackoffRetryPolicy,
    FixedRetryPolicy,
    IRetryPolicy,
    NoRetryPolicy,
)

finite = st.floats(0, 1e4, allow_nan=False)


class FlakyError(Exception):
    pass


class RateLimitedError(Exception):
    def __init__(self, retry_after: Any) -> None:
        super().__init__("slow down")
        self.retry_after = retry_after


NEVER = [
    ValidationError([FieldError("/x", "bad")]),
    CircuitOpenError("t", 3.0),
    IdempotencyConflictError("k"),
]


class Recorder:
    """A tool failing ``failures`` times, recording the trio time of each attempt."""

    def __init__(self, failures: int = 10**9, error: Exception | None = None) -> None:
        self.failures = failures
        self.error = error or FlakyError("transient")
        self.times: list[float] = []

    async def __call__(self) -> str:
        self.times.append(trio.current_time())
        if len(self.times) <= self.failures:
            raise self.error
        return "done"


# -- schedules (pure) ---------------------------------------------------------------------


def test_fixed_seed_timeline_waits_2s_twice() -> None:
    policy = FixedRetryPolicy(max_attempts=3, delay_seconds=2.0)
    assert [policy.next_delay(n, FlakyError()) for n in (1, 2, 3)] == [2.0, 2.0, None]


def test_exponential_seed_timeline_1_2_4_8() -> None:
    policy = ExponentialBackoffRetryPolicy(max_attempts=5, jitter=0.0)
    assert [policy.next_delay(n, FlakyError()) for n in range(1, 6)] == [1, 2, 4, 8, None]


def test_no_retry_gives_up_at_once() -> None:
    assert NoRetryPolicy().next_delay(1, FlakyError()) is None


@given(
    delay=finite,
    jitter=finite,
    attempt=st.integers(1, 20),
    seed=st.integers(0, 2**32),
)
def test_fixed_jitter_bounds(delay: float, jitter: float, attempt: int, seed: int) -> None:
    policy = FixedRetryPolicy(
        max_attempts=21, delay_seconds=delay, jitter=jitter, rng=random.Random(seed)
    )
    wait = policy.next_delay(attempt, FlakyError())
    assert wait is not None
    assert max(0.0, delay - jitter) <= wait <= delay + jitter


@given(
    base=st.floats(0, 100),
    cap=st.floats(0, 1000),
    multiplier=st.floats(1, 10),
    jitter=st.floats(0, 1),
    attempt=st.integers(1, 2000),
)
def test_exponential_jitter_bounds_use_the_default_rng(
    base: float, cap: float, multiplier: float, jitter: float, attempt: int
) -> None:
    policy = ExponentialBackoffRetryPolicy(
        max_attempts=2001, base_delay=base, max_delay=cap, multiplier=multiplier, jitter=jitter
    )
    wait = policy.next_delay(attempt, FlakyError())
    assert wait is not None
    try:
        raw = min(cap, base * multiplier ** (attempt - 1))
    except OverflowError:
        raw = cap
    assert 0 <= wait <= cap
    assert raw * (1 - jitter) * (1 - 1e-12) <= wait <= min(cap, raw * (1 + jitter) * (1 + 1e-12))


@given(
    base=st.floats(0, 100),
    cap=st.floats(0, 1000),
    multiplier=st.floats(1, 10),
)
def test_exponential_without_jitter_is_monotone_and_capped(
    base: float, cap: float, multiplier: float
) -> None:
    policy = ExponentialBackoffRetryPolicy(
        max_attempts=100, base_delay=base, max_delay=cap, multiplier=multiplier, jitter=0
    )
    waits = [policy.next_delay(n, FlakyError()) for n in range(1, 100)]
    assert all(w is not None and w <= cap for w in waits)
    assert waits == sorted(waits)  # type: ignore[type-var]
    assert policy.next_delay(100, FlakyError()) is None


def test_the_injected_rng_drives_the_jitter() -> None:
    def schedule(seed: int) -> list[float | None]:
        policy = ExponentialBackoffRetryPolicy(jitter=0.5, rng=random.Random(seed))
        return [policy.next_delay(n, FlakyError()) for n in range(1, 5)]

    assert schedule(1) == schedule(1)
    assert schedule(1) != schedule(2)


@given(max_attempts=st.integers(1, 30))
def test_max_attempts_counts_the_first(max_attempts: int) -> None:
    for policy in (
        FixedRetryPolicy(max_attempts=max_attempts),
        ExponentialBackoffRetryPolicy(max_attempts=max_attempts),
    ):
        allowed = [n for n in range(1, 40) if policy.next_delay(n, FlakyError()) is not None]
        assert allowed == list(range(1, max_attempts))


@given(retry_after=st.floats(0, 1e6), jitter=st.floats(0, 1))
def test_retry_after_is_a_floor(retry_after: float, jitter: float) -> None:
    for policy in (
        FixedRetryPolicy(delay_seconds=1.0),
        ExponentialBackoffRetryPolicy(max_delay=5.0, jitter=jitter),
    ):
        wait = policy.next_delay(1, RateLimitedError(retry_after))
        assert wait is not None
        assert wait >= retry_after
        assert wait == max(retry_after, wait)


@pytest.mark.parametrize("odd", [None, "5", math.nan, math.inf, True, -3])
def test_unusable_retry_after_is_ignored(odd: Any) -> None:
    policy = FixedRetryPolicy(delay_seconds=1.0)
    assert policy.next_delay(1, RateLimitedError(odd)) == 1.0


@pytest.mark.parametrize("error", NEVER, ids=lambda e: type(e).__name__)
@pytest.mark.parametrize(
    "policy",
    [FixedRetryPolicy(retry_on=lambda e: True), ExponentialBackoffRetryPolicy(), NoRetryPolicy()],
    ids=lambda policy: type(policy).__name__,
)
def test_toolvisor_errors_are_never_retried(policy: Any, error: Exception) -> None:
    assert policy.next_delay(1, error) is None


def test_retry_on_types_and_predicates() -> None:
    by_type = FixedRetryPolicy(retry_on=(TimeoutError, ConnectionError))
    assert by_type.next_delay(1, TimeoutError()) == 1.0
    assert by_type.next_delay(1, ValueError()) is None
    single = FixedRetryPolicy(retry_on=TimeoutError)
    assert single.retry_on == (TimeoutError,)
    by_predicate = FixedRetryPolicy(retry_on=lambda e: "retry" in str(e))
    assert by_predicate.next_delay(1, ValueError("please retry")) == 1.0
    assert by_predicate.next_delay(1, ValueError("fatal")) is None


# -- execute loops (MockClock) -------------------------------------------------------------


async def test_fixed_loop_attempt_times(autojump_clock: trio.testing.MockClock) -> None:
    tool = Recorder()
    start = trio.current_time()
    with pytest.raises(FlakyError):
        await FixedRetryPolicy(max_attempts=3, delay_seconds=2.0).execute(tool)
    assert [t - start for t in tool.times] == [0, 2, 4]


async def test_exponential_loop_attempt_times(autojump_clock: trio.testing.MockClock) -> None:
    tool = Recorder()
    start = trio.current_time()
    calls: list[tuple[int, float, str]] = []
    with pytest.raises(FlakyError) as info:
        await ExponentialBackoffRetryPolicy(jitter=0).execute(
            tool, on_retry=lambda n, d, e: calls.append((n, d, str(e)))
        )
    assert info.value is tool.error
    assert [t - start for t in tool.times] == [0, 1, 3, 7, 15]
    assert calls == [
        (1, 1, "transient"),
        (2, 2, "transient"),
        (3, 4, "transient"),
        (4, 8, "transient"),
    ]


async def test_success_after_retries_returns_the_value(
    autojump_clock: trio.testing.MockClock,
) -> None:
    tool = Recorder(failures=2)
    assert await ExponentialBackoffRetryPolicy(jitter=0).execute(tool) == "done"
    assert len(tool.times) == 3


async def test_the_next_error_does_not_chain_to_the_previous(
    autojump_clock: trio.testing.MockClock,
) -> None:
    errors = iter([FlakyError("one"), FlakyError("two")])

    async def tool() -> str:
        raise next(errors)

    with pytest.raises(FlakyError, match="two") as info:
        await FixedRetryPolicy(max_attempts=2).execute(tool)
    assert info.value.__context__ is None


async def test_retry_after_floor_in_the_loop(autojump_clock: trio.testing.MockClock) -> None:
    tool = Recorder(failures=1, error=RateLimitedError(12.5))
    start = trio.current_time()
    assert await ExponentialBackoffRetryPolicy(max_delay=2.0).execute(tool) == "done"
    assert tool.times[1] - start == 12.5


async def test_a_wait_past_the_deadline_is_not_slept(
    autojump_clock: trio.testing.MockClock,
) -> None:
    tool = Recorder()
    start = trio.current_time()
    deadline = start + 5
    with pytest.raises(FlakyError):
        await ExponentialBackoffRetryPolicy(jitter=0).execute(tool, deadline=deadline)
    # 0, 1, 3 fit; the 4 s wait after t=3 would end at 7 > 5: raised at t=3 at once.
    assert [t - start for t in tool.times] == [0, 1, 3]
    assert trio.current_time() - start == 3


async def test_a_wait_ending_exactly_at_the_deadline_is_not_slept(
    autojump_clock: trio.testing.MockClock,
) -> None:
    tool = Recorder()
    start = trio.current_time()
    with pytest.raises(FlakyError):
        await FixedRetryPolicy(max_attempts=5, delay_seconds=2).execute(tool, deadline=start + 4)
    assert [t - start for t in tool.times] == [0, 2]


@pytest.mark.parametrize("error", NEVER, ids=lambda e: type(e).__name__)
async def test_toolvisor_errors_stop_the_loop(error: Exception) -> None:
    tool = Recorder(error=error)
    with pytest.raises(type(error)):
        await FixedRetryPolicy(max_attempts=5, retry_on=lambda e: True).execute(tool)
    assert len(tool.times) == 1


async def test_cancelled_is_not_caught(autojump_clock: trio.testing.MockClock) -> None:
    attempts = 0

    async def hang() -> None:
        nonlocal attempts
        attempts += 1
        await trio.sleep_forever()

    for policy in (FixedRetryPolicy(max_attempts=5), ExponentialBackoffRetryPolicy()):
        attempts = 0
        with trio.move_on_after(1) as scope:
            await policy.execute(hang)
        assert scope.cancelled_caught
        assert attempts == 1


async def test_base_exceptions_are_not_retried() -> None:
    tool = Recorder(error=KeyboardInterrupt())  # type: ignore[arg-type]
    with pytest.raises(KeyboardInterrupt):
        await FixedRetryPolicy(max_attempts=5, delay_seconds=0).execute(tool)
    assert len(tool.times) == 1


async def test_no_retry_runs_once() -> None:
    tool = Recorder()
    with pytest.raises(FlakyError):
        await NoRetryPolicy().execute(tool)
    assert len(tool.times) == 1
    assert await NoRetryPolicy().execute(Recorder(failures=0)) == "done"


# -- CustomRetryPolicy --------------------------------------------------------------------


async def test_custom_chain_counts_attempts_and_returns_the_final_outcome(
    autojump_clock: trio.testing.MockClock,
) -> None:
    seen: list[tuple[int, str]] = []
    hooks: list[tuple[int, float]] = []

    async def fn(func: Any, attempt: int, last: Exception) -> Any:
        seen.append((attempt, str(last)))
        await trio.sleep(attempt)
        return await func()

    tool = Recorder(failures=3)
    start = trio.current_time()
    result = await CustomRetryPolicy(fn).execute(
        tool, on_retry=lambda n, d, e: hooks.append((n, d))
    )
    assert result == "done"
    assert seen == [(1, "transient"), (2, "transient"), (3, "transient")]
    assert [t - start for t in tool.times] == [0, 1, 3, 6]
    assert hooks == [(1, 1), (2, 2), (3, 3)]


async def test_custom_fn_raising_gives_up() -> None:
    async def fn(func: Any, attempt: int, last: Exception) -> Any:
        if attempt >= 2:
            raise last
        return await func()

    tool = Recorder()
    with pytest.raises(FlakyError):
        await CustomRetryPolicy(fn).execute(tool)
    assert len(tool.times) == 2


async def test_custom_fn_returning_a_value_succeeds() -> None:
    async def fallback(func: Any, attempt: int, last: Exception) -> Any:
        return "cached"

    assert await CustomRetryPolicy(fallback).execute(Recorder()) == "cached"


@pytest.mark.parametrize("error", NEVER, ids=lambda e: type(e).__name__)
async def test_custom_never_sees_toolvisor_errors(error: Exception) -> None:
    called = False

    async def fn(func: Any, attempt: int, last: Exception) -> Any:
        nonlocal called
        called = True
        return await func()

    with pytest.raises(type(error)):
        await CustomRetryPolicy(fn).execute(Recorder(error=error))
    assert not called


async def test_custom_does_not_start_an_attempt_past_the_deadline(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def fn(func: Any, attempt: int, last: Exception) -> Any:
        await trio.sleep(10)
        return await func()

    tool = Recorder()
    with pytest.raises(FlakyError):
        await CustomRetryPolicy(fn).execute(tool, deadline=trio.current_time() + 5)
    assert len(tool.times) == 1


async def test_custom_cancelled_is_not_caught(autojump_clock: trio.testing.MockClock) -> None:
    async def fn(func: Any, attempt: int, last: Exception) -> Any:
        raise AssertionError("fn must not run")

    with trio.move_on_after(1) as scope:
        await CustomRetryPolicy(fn).execute(trio.sleep_forever)
    assert scope.cancelled_caught


# -- construction ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "policy",
    [
        NoRetryPolicy(),
        FixedRetryPolicy(),
        ExponentialBackoffRetryPolicy(),
        CustomRetryPolicy(lambda f, n, e: f()),
    ],
    ids=lambda policy: type(policy).__name__,
)
def test_builtins_satisfy_the_protocol(policy: object) -> None:
    assert isinstance(policy, IRetryPolicy)


@pytest.mark.parametrize(
    ("cls", "kwargs", "name"),
    [
        (FixedRetryPolicy, {"max_attempts": 0}, "max_attempts"),
        (FixedRetryPolicy, {"delay_seconds": -1}, "delay_seconds"),
        (FixedRetryPolicy, {"delay_seconds": math.inf}, "delay_seconds"),
        (FixedRetryPolicy, {"jitter": -0.1}, "jitter"),
        (ExponentialBackoffRetryPolicy, {"max_attempts": 0}, "max_attempts"),
        (ExponentialBackoffRetryPolicy, {"base_delay": -1}, "base_delay"),
        (ExponentialBackoffRetryPolicy, {"max_delay": math.nan}, "max_delay"),
        (ExponentialBackoffRetryPolicy, {"multiplier": 0.5}, "multiplier"),
        (ExponentialBackoffRetryPolicy, {"jitter": 1.5}, "jitter"),
        (ExponentialBackoffRetryPolicy, {"jitter": -0.1}, "jitter"),
    ],
)
def test_invalid_arguments_name_the_argument(cls: Any, kwargs: dict[str, Any], name: str) -> None:
    with pytest.raises(ValueError, match=name):
        cls(**kwargs)


@pytest.mark.parametrize("bad", [(int,), ("x",), 3])
def test_retry_on_rejects_non_exceptions(bad: Any) -> None:
    with pytest.raises(TypeError, match="retry_on"):
        FixedRetryPolicy(retry_on=bad)


def test_custom_requires_a_callable() -> None:
    with pytest.raises(TypeError):
        CustomRetryPolicy("not callable")  # type: ignore[arg-type]


def test_reprs_are_readable() -> None:
    assert repr(NoRetryPolicy()) == "NoRetryPolicy()"
    assert repr(FixedRetryPolicy(max_attempts=3, delay_seconds=2.0)) == (
        "FixedRetryPolicy(max_attempts=3, delay_seconds=2.0, jitter=0.0, "
        "retry_on=(<class 'Exception'>,))"
    )
    assert repr(ExponentialBackoffRetryPolicy()).startswith(
        "ExponentialBackoffRetryPolicy(max_attempts=5, base_delay=1.0, max_delay=30.0, "
        "multiplier=2.0, jitter=0.1"
    )


@settings(max_examples=50, deadline=None)
@given(
    base=st.floats(0, 20),
    multiplier=st.floats(1, 4),
    jitter=st.floats(0, 1),
    max_attempts=st.integers(1, 8),
    budget=st.floats(0, 200),
    seed=st.integers(0, 2**32),
)
def test_loop_never_sleeps_past_the_deadline(
    base: float, multiplier: float, jitter: float, max_attempts: int, budget: float, seed: int
) -> None:
    """Every wait slept ends before the deadline; the loop ends with the tool's error."""
    policy = ExponentialBackoffRetryPolicy(
        max_attempts=max_attempts,
        base_delay=base,
        max_delay=60,
        multiplier=multiplier,
        jitter=jitter,
        rng=random.Random(seed),
    )

    async def main() -> None:
        tool = Recorder()
        deadline = trio.current_time() + budget
        waits: list[tuple[float, float]] = []

        def on_retry(attempt: int, delay: float, exc: BaseException) -> None:
            assert exc is tool.error
            waits.append((trio.current_time(), delay))

        with pytest.raises(FlakyError):
            await policy.execute(tool, deadline=deadline, on_retry=on_retry)
        assert all(now + delay < deadline for now, delay in waits)
        assert len(tool.times) == len(waits) + 1 <= max_attempts
        for (now, delay), started in zip(waits, tool.times[1:], strict=True):
            assert started == now + delay

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


@pytest.mark.parametrize(
    "bug", [NameError, TypeError, AttributeError, AssertionError, NotImplementedError, ImportError]
)
async def test_programming_errors_are_not_retried_unless_retry_on_names_them(
    bug: type[Exception], autojump_clock: trio.testing.MockClock
) -> None:
    attempts = 0

    async def buggy() -> str:
        nonlocal attempts
        attempts += 1
        raise bug("a bug, not an outage")

    with pytest.raises(bug):
        await FixedRetryPolicy(max_attempts=3, delay_seconds=1).execute(buggy)
    assert attempts == 1  # Exception (the default retry_on) does not name it
    attempts = 0
    with pytest.raises(bug):
        await FixedRetryPolicy(max_attempts=3, delay_seconds=1, retry_on=(bug,)).execute(buggy)
    assert attempts == 3  # named: retried
    attempts = 0
    with pytest.raises(bug):
        await ExponentialBackoffRetryPolicy(
            max_attempts=3, base_delay=1, retry_on=lambda exc: True
        ).execute(buggy)
    assert attempts == 3  # a predicate decides everything
