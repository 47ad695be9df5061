"""A retry budget on the call path: under a failure storm it caps the tool's load."""

from __future__ import annotations

from typing import Any

import pytest
import trio

import toolvisor as tv


class DownError(Exception):
    """The service is down."""


def make_spec(name: str, budget: tv.RetryBudget | None, attempts: int = 3) -> tv.FunctionToolSpec:
    spec = tv.FunctionToolSpec(
        id=f"{name}-v1", tool_name=name, parameters=[tv.IntegerParameter(name="i")]
    )
    spec.retry_policy = tv.FixedRetryPolicy(max_attempts=attempts, delay_seconds=0.1)
    spec.retry_budget = budget
    return spec


def invariant(stats: tv.ToolStats) -> bool:
    return stats.calls == stats.successes + stats.failures + stats.rejected + stats.cancelled


async def storm(sup: tv.Supervisor, tool: str, calls: int, callers: int, pause: float) -> None:
    async def caller(n: int) -> None:
        for _ in range(n):
            result = await sup.execute_many([(tool, {"i": 0})])
            assert not result[0].ok and isinstance(result[0].error, DownError)
            await trio.sleep(pause)

    async with trio.open_nursery() as nursery:
        for _ in range(callers):
            nursery.start_soon(caller, calls // callers)


async def test_an_exhausted_budget_stops_retries_in_a_failure_storm(
    autojump_clock: trio.testing.MockClock,
) -> None:
    runs = 0

    async def down(args: dict[str, Any]) -> Any:
        nonlocal runs
        runs += 1
        raise DownError("503")

    budget = tv.RetryBudget(ratio=0.2, min_retries_per_s=1.0, ttl_s=10.0)
    async with tv.open_supervisor() as sup:
        await sup.spawn(make_spec("down", budget), down)
        start = trio.current_time()
        await storm(sup, "down", calls=400, callers=20, pause=0.5)
        seconds = trio.current_time() - start
        stats = sup.stats("down")
    assert stats.calls == 400 and stats.failures == 400 and invariant(stats)
    assert runs == stats.calls + stats.retries
    # Finagle's bound: over any ttl window, ratio x calls + the floor; over the storm:
    assert stats.retries <= 0.2 * stats.calls + 1.0 * (seconds + 10.0)
    assert stats.retries < 0.5 * 2 * stats.calls  # without the budget: 2 retries per call
    assert stats.budget_exhausted > 0
    # A call either used both retries or ended on a refused one.
    assert stats.budget_exhausted + stats.retries / 2 >= stats.calls


async def test_a_refused_retry_ends_the_call_with_the_tools_own_error_and_a_note(
    autojump_clock: trio.testing.MockClock,
) -> None:
    budget = tv.RetryBudget(ratio=0.0, min_retries_per_s=0.1, ttl_s=10.0)  # one retry

    async def down(args: dict[str, Any]) -> Any:
        raise DownError(f"503 for {args['i']}")

    async with tv.open_supervisor() as sup:
        await sup.spawn(make_spec("down", budget), down)
        first = (await sup.execute_many([("down", {"i": 1})]))[0]
        assert first.attempts == 2  # the one retry the floor allows, then refused
        with pytest.raises(DownError, match="503 for 2") as caught:
            await sup.execute("down", {"i": 2})
        stats = sup.stats("down")
    assert any("retry budget" in note for note in caught.value.__notes__)
    assert stats.retries == 1 and stats.budget_exhausted == 2 and invariant(stats)


async def test_one_budget_on_two_specs_is_shared(autojump_clock: trio.testing.MockClock) -> None:
    budget = tv.RetryBudget(ratio=0.0, min_retries_per_s=0.3, ttl_s=10.0)  # three retries

    async def down(args: dict[str, Any]) -> Any:
        raise DownError

    async with tv.open_supervisor() as sup:
        await sup.spawn(make_spec("a", budget, attempts=2), down)
        await sup.spawn(make_spec("b", budget, attempts=2), down)
        for tool in ["a", "b", "a", "b"]:
            await sup.execute_many([(tool, {"i": 0})])
        a, b = sup.stats("a"), sup.stats("b")
    assert a.retries + b.retries == 3
    assert a.budget_exhausted + b.budget_exhausted == 1


async def test_successes_are_untouched_and_deposit(autojump_clock: trio.testing.MockClock) -> None:
    budget = tv.RetryBudget(ratio=0.5, min_retries_per_s=0.0, ttl_s=10.0)
    fail_next = False

    async def flaky(args: dict[str, Any]) -> Any:
        nonlocal fail_next
        fail_next = not fail_next
        if fail_next:
            raise DownError
        return args["i"]

    async with tv.open_supervisor() as sup:
        await sup.spawn(make_spec("flaky", budget), flaky)
        # The first call deposits 0.5: its retry is refused. The second call brings the
        # balance to 1: it fails once and its retry runs and succeeds.
        first = (await sup.execute_many([("flaky", {"i": 1})]))[0]
        assert not first.ok and first.attempts == 1
        fail_next = False
        assert await sup.execute("flaky", {"i": 2}) == 2
        stats = sup.stats("flaky")
    assert stats.retries == 1 and stats.budget_exhausted == 1 and stats.successes == 1


def test_spec_refuses_a_budget_that_is_not_one() -> None:
    spec = make_spec("x", None)
    with pytest.raises(ValueError, match="retry_budget"):
        spec.retry_budget = 0.2  # type: ignore[assignment]


async def test_no_budget_means_the_retry_policy_alone_decides(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def down(args: dict[str, Any]) -> Any:
        raise DownError

    async with tv.open_supervisor() as sup:
        await sup.spawn(make_spec("down", None), down)
        await storm(sup, "down", calls=20, callers=4, pause=0.0)
        stats = sup.stats("down")
    assert stats.retries == 40 and stats.budget_exhausted == 0


async def test_a_call_whose_first_attempt_timed_out_deposits_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # The actor's watchdog cuts a first attempt at timeout_s and the attempt loop goes on
    # from that cut: the call is still one call for the budget.
    budget = tv.RetryBudget(ratio=0.5, min_retries_per_s=0.0, ttl_s=10.0)

    async def slow(args: dict[str, Any]) -> Any:
        await trio.sleep(10)

    spec = make_spec("slow", budget, attempts=2)
    spec.timeout_s = 1.0
    async with tv.open_supervisor() as sup:
        await sup.spawn(spec, slow)
        result = (await sup.execute_many([("slow", {"i": 0})]))[0]
        assert isinstance(result.error, tv.ToolTimeoutError)
        # 0.5 credit deposited, less than the one a retry needs: no retry ran.
        assert result.attempts == 1 and sup.stats("slow").budget_exhausted == 1
