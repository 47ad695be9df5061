"""One test per wrong behaviour that "one call, one path" fixes.

Each test is a user's view of one behaviour: the counters' invariant
``calls == successes + failures + rejected + cancelled``, attempts and retries that count
only attempts that ran, a tool's own error reaching its caller unwrapped, the timeout a
``ToolTimeoutError`` reports, fail-fast for user breakers, overlapping kills,
``execute_many`` with malformed entries, and faults that stay inside their tool.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest
import trio
import trio.testing

import toolvisor as tv

T = TypeVar("T")


def make_spec(name: str = "t", **kw: Any) -> tv.FunctionToolSpec:
    return tv.FunctionToolSpec(
        id=f"{name}-v1", tool_name=name, parameters=[tv.IntegerParameter(name="x")], **kw
    )


def assert_balanced(stats: tv.ToolStats) -> None:
    ended = stats.successes + stats.failures + stats.rejected + stats.cancelled
    assert stats.calls == ended, stats


class PaymentDeclinedError(Exception):
    """A tool's own failure, as a payment client would raise it."""


async def echo(args: dict[str, Any]) -> Any:
    return args["x"]


# ------------------------------------------------------------------ counters


async def test_calls_ending_in_tool_unavailable_are_counted_as_rejected(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with tv.open_supervisor(max_restarts=0) as sup:
        await sup.spawn(make_spec(), echo)
        assert await sup.execute("t", {"x": 1}) == 1
        await sup.kill("t")  # more crashes than max_restarts=0 allows: the tool failed
        for i in range(5):
            with pytest.raises(tv.ToolUnavailableError):
                await sup.execute("t", {"x": i})
        stats = sup.stats("t")
    assert (stats.calls, stats.successes, stats.rejected, stats.failures) == (6, 1, 5, 0)
    assert_balanced(stats)


# ------------------------------------------------------------------ attempts and retries


async def test_a_retry_the_breaker_refused_is_neither_an_attempt_nor_a_retry(
    autojump_clock: trio.testing.MockClock,
) -> None:
    runs: dict[int, int] = {}

    async def declines(args: dict[str, Any]) -> Any:
        runs[args["x"]] = runs.get(args["x"], 0) + 1
        await trio.sleep(0.1)
        raise PaymentDeclinedError(f"declined {args['x']}")

    spec = make_spec(max_concurrency=10)
    spec.retry_policy = tv.FixedRetryPolicy(max_attempts=2, delay_seconds=1.0)
    spec.circuit_breaker_policy = tv.StandardCircuitBreakerPolicy(
        failure_threshold=10, recovery_timeout=60
    )
    async with tv.open_supervisor() as sup:
        await sup.spawn(spec, declines)
        # Ten concurrent first attempts fail together and the tenth opens the breaker:
        # the nine retries scheduled meanwhile are refused, and did not run.
        results = await sup.execute_many([("t", {"x": i}) for i in range(10)])
        stats = sup.stats("t")
    assert sum(runs.values()) == 10
    assert [r.attempts for r in results] == [runs[i] for i in range(10)] == [1] * 10
    assert stats.retries == 0
    assert all(isinstance(r.error, PaymentDeclinedError) for r in results), results
    assert (stats.calls, stats.failures) == (10, 10)
    assert_balanced(stats)


async def test_a_call_that_timed_out_reports_the_attempt_that_ran(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def hangs(args: dict[str, Any]) -> Any:
        await trio.sleep_forever()

    async with tv.open_supervisor() as sup:
        await sup.spawn(make_spec(timeout_s=30), hangs)
        pending = await sup.submit("t", {"x": 1}, timeout=2)
        result = await pending.result()
        [batch] = await sup.execute_many([("t", {"x": 2})], timeout=2)
        stats = sup.stats("t")
    for r in (result, batch):
        assert isinstance(r.error, tv.ToolTimeoutError)
        assert r.error.scope == "call"
        assert r.attempts == 1
    assert (stats.calls, stats.failures, stats.timeouts, stats.retries) == (2, 2, 2, 0)
    assert_balanced(stats)


# ------------------------------------------------------------------ the tool's own error


async def test_the_failure_that_opens_the_breaker_raises_the_tools_own_error(
    autojump_clock: trio.testing.MockClock,
) -> None:
    ran = 0

    async def declines(args: dict[str, Any]) -> Any:
        nonlocal ran
        ran += 1
        raise PaymentDeclinedError("card declined")

    spec = make_spec()
    spec.circuit_breaker_policy = tv.StandardCircuitBreakerPolicy(
        failure_threshold=2, recovery_timeout=30
    )
    async with tv.open_supervisor() as sup:
        await sup.spawn(spec, declines)
        with pytest.raises(PaymentDeclinedError):
            await sup.execute("t", {"x": 1})
        try:
            await sup.execute("t", {"x": 2})  # this failure opens the breaker
        except PaymentDeclinedError as exc:
            notes = " ".join(getattr(exc, "__notes__", []))
        else:
            pytest.fail("the call that tripped the breaker did not raise the tool's error")
        assert ran == 2
        assert sup.stats("t").breaker_state == "open"
        with pytest.raises(tv.CircuitOpenError) as refused:
            await sup.execute("t", {"x": 3})  # the tool does not run for this one
        assert ran == 2
        assert refused.value.retry_after == pytest.approx(30)
        stats = sup.stats("t")
    assert "breaker" in notes and "opened" in notes
    assert (stats.calls, stats.failures, stats.rejected) == (3, 2, 1)
    assert_balanced(stats)


async def test_a_retry_stopped_by_the_breaker_raises_the_tools_last_error(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def declines(args: dict[str, Any]) -> Any:
        raise PaymentDeclinedError(f"declined {args['x']}")

    spec = make_spec()
    spec.retry_policy = tv.FixedRetryPolicy(max_attempts=5, delay_seconds=1.0)
    spec.circuit_breaker_policy = tv.StandardCircuitBreakerPolicy(
        failure_threshold=2, recovery_timeout=30
    )
    async with tv.open_supervisor() as sup:
        await sup.spawn(spec, declines)
        [result] = await sup.execute_many([("t", {"x": 7})])
    assert isinstance(result.error, PaymentDeclinedError)
    assert result.attempts == 2  # the second failure opened it: attempts 3..5 never ran
    assert any("breaker" in note for note in result.error.__notes__)


async def test_attempts_timed_out_together_raise_timeouts_not_circuit_open(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Two attempts that ran and timed out at once: the first timeout opens the breaker,
    the second call still ran its tool, so it must not read "the tool did not run"."""
    runs = 0

    async def hangs(args: dict[str, Any]) -> Any:
        nonlocal runs
        runs += 1
        await trio.sleep_forever()

    spec = make_spec(timeout_s=2, max_concurrency=2)
    spec.circuit_breaker_policy = tv.StandardCircuitBreakerPolicy(
        failure_threshold=1, recovery_timeout=30
    )
    async with tv.open_supervisor() as sup:
        await sup.spawn(spec, hangs)
        results = await sup.execute_many([("t", {"x": 1}), ("t", {"x": 2})])
        stats = sup.stats("t")
    assert runs == 2
    assert [r.attempts for r in results] == [1, 1]
    assert [type(r.error) for r in results] == [tv.ToolTimeoutError] * 2, results
    assert (stats.calls, stats.failures, stats.rejected) == (2, 2, 0)


# ------------------------------------------------------------------ ToolTimeoutError.timeout_s


async def test_a_waiting_duplicate_reports_its_own_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def slow(args: dict[str, Any]) -> Any:
        await trio.sleep(100)
        return args["x"]

    spec = make_spec(timeout_s=1000)
    spec.idempotency.enabled = True
    spec.idempotency.key_fields = ["x"]
    async with tv.open_supervisor() as sup:
        await sup.spawn(spec, slow)
        leader = await sup.submit("t", {"x": 1})
        await trio.sleep(1)
        with pytest.raises(tv.ToolTimeoutError) as info:
            await sup.execute("t", {"x": 1}, timeout=5)
        assert info.value.scope == "call"
        assert info.value.timeout_s == 5
        assert "5 s" in str(info.value)
        assert (await leader.result()).value == 1
        stats = sup.stats("t")
    assert (stats.calls, stats.successes, stats.failures, stats.timeouts) == (2, 1, 1, 1)
    assert_balanced(stats)


async def test_timeout_s_is_the_specs_for_an_attempt_and_the_callers_for_a_call(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def hangs(args: dict[str, Any]) -> Any:
        await trio.sleep_forever()

    async with tv.open_supervisor() as sup:
        await sup.spawn(make_spec(timeout_s=2), hangs)
        with pytest.raises(tv.ToolTimeoutError) as attempt:
            await sup.execute("t", {"x": 1})
        with pytest.raises(tv.ToolTimeoutError) as call:
            await sup.execute("t", {"x": 1}, timeout=0.5)
    assert (attempt.value.scope, attempt.value.timeout_s) == ("attempt", 2)
    assert (call.value.scope, call.value.timeout_s) == ("call", 0.5)

    executor = tv.FunctionToolExecutor(make_spec(timeout_s=2), hangs)
    with pytest.raises(tv.ToolTimeoutError) as attempt:
        await executor.execute({"x": 1})
    with pytest.raises(tv.ToolTimeoutError) as call:
        await executor.execute({"x": 1}, timeout=0.5)
    assert (attempt.value.scope, attempt.value.timeout_s) == ("attempt", 2)
    assert (call.value.scope, call.value.timeout_s) == ("call", 0.5)
    assert_balanced(executor.stats())


@pytest.mark.parametrize("timeout", [-1, 0, float("nan")])
async def test_executor_refuses_a_bad_timeout_like_the_supervisor(timeout: float) -> None:
    ran = 0

    async def counted(args: dict[str, Any]) -> Any:
        nonlocal ran
        ran += 1
        return 1

    executor = tv.FunctionToolExecutor(make_spec(), counted)
    with pytest.raises(ValueError, match="timeout"):
        await executor.execute({"x": 1}, timeout=timeout)
    async with tv.open_supervisor() as sup:
        await sup.spawn(make_spec(), counted)
        with pytest.raises(ValueError, match="timeout"):
            await sup.execute("t", {"x": 1}, timeout=timeout)
    assert ran == 0


# ------------------------------------------------------------------ user-written breakers


class CountingBreaker:
    """A user breaker (no toolvisor base class): open after one failure, for 10 s."""

    def __init__(self, *, with_retry_after: bool) -> None:
        self.open_until = -1.0
        self.entered = 0
        if with_retry_after:
            self.retry_after = self._retry_after

    async def execute_with_breaker(self, func: Callable[[], Awaitable[T]], tool_name: str) -> T:
        self.entered += 1
        now = trio.current_time()
        if now < self.open_until:
            raise tv.CircuitOpenError(tool_name, self.open_until - now)
        try:
            return await func()
        except Exception:
            self.open_until = now + 10
            raise

    def get_state(self, tool_name: str) -> str:
        return "open" if trio.current_time() < self.open_until else "closed"

    def reset(self, tool_name: str) -> None:
        self.open_until = -1.0

    def _retry_after(self, tool_name: str) -> float | None:
        now = trio.current_time()
        return self.open_until - now if now < self.open_until else None


@pytest.mark.parametrize("with_retry_after", [True, False])
async def test_a_user_breaker_fails_fast_in_the_caller_when_it_has_retry_after(
    autojump_clock: trio.testing.MockClock, with_retry_after: bool
) -> None:
    async def flaky(args: dict[str, Any]) -> Any:
        if args["x"] < 0:
            raise PaymentDeclinedError("declined")
        return args["x"]

    breaker = CountingBreaker(with_retry_after=with_retry_after)
    spec = make_spec()
    spec.circuit_breaker_policy = breaker  # type: ignore[assignment]
    async with tv.open_supervisor() as sup:
        await sup.spawn(spec, flaky)
        with pytest.raises(PaymentDeclinedError):
            await sup.execute("t", {"x": -1})
        entered = breaker.entered
        for _ in range(3):
            with pytest.raises(tv.CircuitOpenError):
                await sup.execute("t", {"x": 1})
        refused_inside = breaker.entered - entered
        await trio.sleep(11)
        assert await sup.execute("t", {"x": 2}) == 2
        stats = sup.stats("t")
    # With retry_after() the supervisor refuses in the caller's task: the breaker's
    # execute_with_breaker is not entered while it reports a wait. Without it, the breaker
    # refuses inside the actor: still a rejection, and still working.
    assert refused_inside == (0 if with_retry_after else 3)
    assert (stats.calls, stats.successes, stats.failures, stats.rejected) == (5, 1, 1, 3)
    assert_balanced(stats)


# ------------------------------------------------------------------ kill, stop


async def test_two_overlapping_kills_both_return(autojump_clock: trio.testing.MockClock) -> None:
    async def slow(args: dict[str, Any]) -> Any:
        await trio.sleep(5)
        return args["x"]

    returned: list[int] = []

    async def kill(n: int) -> None:
        await sup.kill("t")
        returned.append(n)

    async with tv.open_supervisor(max_restarts=100, within_s=1) as sup:
        await sup.spawn(make_spec(), slow)
        for _round in range(10):
            pending = await sup.submit("t", {"x": 1})
            with trio.fail_after(60):
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(kill, 1)
                    nursery.start_soon(kill, 2)
            await pending.result()
            await trio.sleep(2)
        assert await sup.execute("t", {"x": 3}) == 3
        assert sup.stats("t").restarts >= 10
        assert_balanced(sup.stats("t"))
    assert sorted(returned) == sorted([1, 2] * 10)


async def test_a_stopped_tools_calls_get_unavailable_saying_it_was_stopped() -> None:
    async with tv.open_supervisor() as sup:
        await sup.spawn(make_spec(), echo)
        assert await sup.execute("t", {"x": 1}) == 1
        await sup.stop("t")
        with pytest.raises(tv.ToolUnavailableError, match="stopped") as info:
            await sup.execute("t", {"x": 1})
        assert info.value.tool == "t"
        with pytest.raises(tv.ToolUnavailableError, match="stopped"):
            await sup.submit("t", {"x": 1})
        [result] = await sup.execute_many([("t", {"x": 1})])
        assert isinstance(result.error, tv.ToolUnavailableError)
        assert "stopped" in str(result.error)


async def test_calls_after_close_are_refused_and_counted_as_rejected() -> None:
    spec = make_spec("idem")
    spec.idempotency.enabled = True
    async with tv.open_supervisor() as sup:
        await sup.spawn(spec, echo)
        await sup.spawn(make_spec("plain"), echo)
    for tool in ("plain", "idem"):
        with pytest.raises(tv.SupervisorClosedError):
            await sup.execute(tool, {"x": 1})
        with pytest.raises(tv.SupervisorClosedError):  # submit raises what it can at once
            await sup.submit(tool, {"x": 1})
        assert_balanced(sup.stats(tool))


# ------------------------------------------------------------------ execute_many


async def test_execute_many_answers_malformed_entries_and_runs_the_rest(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def slow_echo(args: dict[str, Any]) -> Any:
        await trio.sleep(1)
        return args["x"]

    batch: list[Any] = [("t", {"x": 1}), ("t",), None, 5, ("t", {"x": 2})]
    async with tv.open_supervisor() as sup:
        await sup.spawn(make_spec(), slow_echo)
        results = await sup.execute_many(batch)
        stats = sup.stats("t")
    assert len(results) == len(batch)
    assert [r.ok for r in results] == [True, False, False, False, True]
    assert [results[0].value, results[4].value] == [1, 2]
    for i in (1, 2, 3):
        error = results[i].error
        assert isinstance(error, TypeError), error
        assert f"entry {i}" in str(error)
        assert repr(batch[i]) in str(error)
    assert (stats.calls, stats.successes) == (2, 2)
    assert_balanced(stats)


# ------------------------------------------------------------------ faults stay inside their tool


class CustomBaseError(BaseException):
    """A BaseException that is not an Exception, as some libraries define."""


@pytest.mark.parametrize(
    "fault",
    [SystemExit(3), asyncio.CancelledError(), CustomBaseError("odd")],
    ids=["SystemExit", "asyncio.CancelledError", "custom BaseException"],
)
async def test_a_tools_base_exception_fails_only_its_call(
    autojump_clock: trio.testing.MockClock, fault: BaseException
) -> None:
    async def faulty(args: dict[str, Any]) -> Any:
        await trio.sleep(1)
        if args["x"] < 0:
            raise fault
        return args["x"]

    async def steady(args: dict[str, Any]) -> Any:
        await trio.sleep(2)
        return args["x"]

    async with tv.open_supervisor() as sup:
        await sup.spawn(make_spec("faulty"), faulty)
        await sup.spawn(make_spec("steady"), steady)
        results = await sup.execute_many(
            [("faulty", {"x": -1}), ("steady", {"x": 1}), ("faulty", {"x": 2})]
            + [("steady", {"x": i}) for i in range(3, 6)]
        )
        # The supervisor stays up and the faulty tool keeps serving.
        assert await sup.execute("faulty", {"x": 9}) == 9
        assert await sup.execute("steady", {"x": 8}) == 8
        faulty_stats, steady_stats = sup.stats("faulty"), sup.stats("steady")
    crashed = results[0].error
    assert isinstance(crashed, tv.ActorCrashedError), crashed
    assert crashed.cause is fault
    assert [r.value for r in results[1:]] == [1, 2, 3, 4, 5]
    assert (faulty_stats.calls, faulty_stats.failures, faulty_stats.successes) == (3, 1, 2)
    assert_balanced(faulty_stats)
    assert_balanced(steady_stats)


def test_keyboard_interrupt_from_a_tool_still_stops_the_program() -> None:
    async def interrupted(args: dict[str, Any]) -> Any:
        raise KeyboardInterrupt

    async def main() -> None:
        async with tv.open_supervisor() as sup:
            await sup.spawn(make_spec(), interrupted)
            with trio.fail_after(5):
                await sup.execute("t", {"x": 1})

    # It may arrive grouped with the errors of the calls it interrupted: what matters is
    # that it reaches the program (``except* KeyboardInterrupt`` or the interpreter's exit).
    with pytest.raises(BaseException) as info:
        trio.run(main)
    if isinstance(info.value, BaseExceptionGroup):
        interrupts, _rest = info.value.split(KeyboardInterrupt)
        assert interrupts is not None, info.value
    else:
        assert isinstance(info.value, KeyboardInterrupt), info.value
