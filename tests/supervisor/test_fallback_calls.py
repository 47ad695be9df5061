"""A fallback on the call path: every end it replaces, once, and what it never hides."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import trio
import trio.testing

import toolvisor as tv


class OutageError(Exception):
    """The dependency's failure."""


def make_spec(fallback: tv.FallbackPolicy | None, name: str = "catalog") -> tv.FunctionToolSpec:
    spec = tv.FunctionToolSpec(
        id=f"{name}-v1",
        tool_name=name,
        parameters=[tv.IntegerParameter(name="i", required=True)],
    )
    spec.fallback = fallback
    return spec


def adds_up(stats: tv.ToolStats) -> bool:
    return stats.calls == stats.successes + stats.failures + stats.rejected + stats.cancelled


async def test_a_failing_tool_answers_with_the_fallback_after_every_attempt(
    autojump_clock: trio.testing.MockClock,
) -> None:
    ran: list[int] = []

    async def catalog(args: dict[str, Any]) -> Any:
        ran.append(args["i"])
        raise OutageError("503")

    spec = make_spec(tv.FallbackPolicy(value={"hits": [], "stale": True}))
    spec.retry_policy = tv.FixedRetryPolicy(max_attempts=3, delay_seconds=0.1)
    events: list[tv.Event] = []
    async with tv.open_supervisor() as sup:
        sup.subscribe(events.append)
        await sup.spawn(spec, catalog)
        assert await sup.execute("catalog", {"i": 1}) == {"hits": [], "stale": True}
        [result] = await sup.execute_many([("catalog", {"i": 2})])
        pending = await sup.submit("catalog", {"i": 3})
        submitted = await pending.result()
        stats = sup.stats("catalog")
    assert ran == [1, 1, 1, 2, 2, 2, 3, 3, 3]  # outermost: the retries ran out first
    assert result.ok and result.fallback and result.error is None
    assert result.value == {"hits": [], "stale": True} and result.attempts == 3
    assert submitted.ok and submitted.fallback
    assert (stats.successes, stats.fallbacks, stats.failures, stats.retries) == (3, 3, 0, 6)
    assert adds_up(stats)
    used = [e for e in events if isinstance(e, tv.FallbackUsed)]
    assert [(e.tool, e.error) for e in used] == [("catalog", repr(OutageError("503")))] * 3


async def test_a_fallback_never_hides_a_validation_error() -> None:
    async def catalog(args: dict[str, Any]) -> Any:
        return args["i"]

    async with tv.open_supervisor() as sup:
        await sup.spawn(make_spec(tv.FallbackPolicy(value="fallback")), catalog)
        with pytest.raises(tv.ValidationError):
            await sup.execute("catalog", {"i": "not an int"})
        with pytest.raises(tv.ValidationError):
            await sup.submit("catalog", {})
        [result] = await sup.execute_many([("catalog", {"j": 1})])
        stats = sup.stats("catalog")
    assert not result.ok and not result.fallback
    assert isinstance(result.error, tv.ValidationError)
    assert stats.calls == 0 and stats.fallbacks == 0  # no call was made


async def test_a_fallback_never_hides_a_tool_raising_validation_error() -> None:
    async def catalog(args: dict[str, Any]) -> Any:
        raise tv.ValidationError([tv.FieldError("/i", "out of range")])

    async with tv.open_supervisor() as sup:
        await sup.spawn(make_spec(tv.FallbackPolicy(value="fallback")), catalog)
        with pytest.raises(tv.ValidationError):
            await sup.execute("catalog", {"i": 1})
        stats = sup.stats("catalog")
    assert stats.failures == 1 and stats.fallbacks == 0 and adds_up(stats)


async def test_breaker_open_gives_the_fallback_counted_as_success(
    autojump_clock: trio.testing.MockClock,
) -> None:
    ran = 0

    async def catalog(args: dict[str, Any]) -> Any:
        nonlocal ran
        ran += 1
        raise OutageError("down")

    spec = make_spec(tv.FallbackPolicy(value="stale", on=(tv.CircuitOpenError,)))
    spec.circuit_breaker_policy = tv.StandardCircuitBreakerPolicy(
        failure_threshold=2, recovery_timeout=30
    )
    async with tv.open_supervisor() as sup:
        await sup.spawn(spec, catalog)
        for i in range(2):  # the tool's own failures: not replaced (on= says so)
            with pytest.raises(OutageError):
                await sup.execute("catalog", {"i": i})
        assert sup.stats("catalog").breaker_state == "open"
        assert await sup.execute("catalog", {"i": 3}) == "stale"
        [result] = await sup.execute_many([("catalog", {"i": 4})])
        pending = await sup.submit("catalog", {"i": 5})  # submit does not raise either
        assert await pending.value() == "stale"
        stats = sup.stats("catalog")
    assert ran == 2
    assert result.ok and result.fallback and result.value == "stale" and result.attempts == 0
    assert (stats.failures, stats.successes, stats.fallbacks, stats.rejected) == (2, 3, 3, 0)
    assert adds_up(stats)


async def test_refusals_are_replaced_where_they_happen(
    autojump_clock: trio.testing.MockClock,
) -> None:
    gate = trio.Event()

    async def slow(args: dict[str, Any]) -> Any:
        await gate.wait()
        return "real"

    # Bulkhead full (overflow="reject") and rate limited: both in the send path.
    spec = make_spec(tv.FallbackPolicy(fn=lambda error: type(error).__name__), "slow")
    spec.max_concurrency = 1
    spec.queue_size = 0
    spec.overflow = "reject"
    limited = make_spec(tv.FallbackPolicy(fn=lambda error: error.retry_after), "limited")
    limited.rate_limit = tv.RateLimit(1, per_s=2.0)
    async with tv.open_supervisor() as sup:
        await sup.spawn(spec, slow)
        await sup.spawn(limited, slow)
        first = await sup.submit("slow", {"i": 1})
        await trio.testing.wait_all_tasks_blocked()
        assert await sup.execute("slow", {"i": 2}) == "ToolOverloadedError"
        gate.set()
        assert await first.value() == "real"
        assert await sup.execute("limited", {"i": 1}) == "real"
        assert await sup.execute("limited", {"i": 2}) == pytest.approx(2.0)
        stats, limits = sup.stats("slow"), sup.stats("limited")
    assert (stats.successes, stats.fallbacks, stats.rejected) == (2, 1, 0)
    assert (limits.successes, limits.fallbacks, limits.rate_limited) == (2, 1, 1)
    assert adds_up(stats) and adds_up(limits)


async def test_call_and_attempt_timeouts_are_replaced(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def hangs(args: dict[str, Any]) -> Any:
        await trio.sleep_forever()

    spec = make_spec(tv.FallbackPolicy(fn=lambda error: error.scope, on=(tv.ToolTimeoutError,)))
    spec.timeout_s = 1.0
    async with tv.open_supervisor() as sup:
        await sup.spawn(spec, hangs)
        assert await sup.execute("catalog", {"i": 1}, timeout=0.5) == "call"
        assert await sup.execute("catalog", {"i": 2}) == "attempt"
        [result] = await sup.execute_many([("catalog", {"i": 3})], timeout=0.5)
        stats = sup.stats("catalog")
    assert result.ok and result.fallback and result.value == "call"
    assert (stats.successes, stats.fallbacks, stats.timeouts, stats.failures) == (3, 3, 3, 0)
    assert adds_up(stats)


async def test_crashed_and_failed_tools_are_replaced() -> None:
    async def crashes(args: dict[str, Any]) -> Any:
        raise SystemExit(3)  # a BaseException: ActorCrashedError for this call

    errors: list[str] = []

    def kind(error: Exception) -> str:
        errors.append(type(error).__name__)
        return "down"

    async with tv.open_supervisor(max_restarts=0) as sup:
        await sup.spawn(make_spec(tv.FallbackPolicy(fn=kind)), crashes)
        assert await sup.execute("catalog", {"i": 1}) == "down"
        await sup.kill("catalog")  # past its restart intensity: the tool failed
        assert await sup.execute("catalog", {"i": 2}) == "down"
        [result] = await sup.execute_many([("catalog", {"i": 3})])
        stats = sup.stats("catalog")
    assert errors == ["ActorCrashedError", "ToolUnavailableError", "ToolUnavailableError"]
    assert result.ok and result.fallback and result.value == "down"
    assert (stats.successes, stats.fallbacks, stats.failures, stats.rejected) == (3, 3, 0, 0)
    assert adds_up(stats)


async def test_a_cancelled_call_is_never_replaced() -> None:
    started = trio.Event()

    async def hangs(args: dict[str, Any]) -> Any:
        started.set()
        await trio.sleep_forever()

    async with tv.open_supervisor() as sup:
        await sup.spawn(make_spec(tv.FallbackPolicy(value="fallback")), hangs)
        with trio.CancelScope() as scope:

            async def cancel_when_started() -> None:
                await started.wait()
                scope.cancel()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(cancel_when_started)
                await sup.execute("catalog", {"i": 1})
                pytest.fail("the cancelled call returned")
        assert scope.cancelled_caught
        stats = sup.stats("catalog")
    assert (stats.cancelled, stats.fallbacks, stats.successes) == (1, 0, 0) and adds_up(stats)


async def test_errors_outside_on_are_raised_as_they_are() -> None:
    async def catalog(args: dict[str, Any]) -> Any:
        raise KeyError("missing")

    async with tv.open_supervisor() as sup:
        await sup.spawn(make_spec(tv.FallbackPolicy(value=0, on=(OutageError,))), catalog)
        with pytest.raises(KeyError):
            await sup.execute("catalog", {"i": 1})
        stats = sup.stats("catalog")
    assert (stats.failures, stats.fallbacks) == (1, 0)


async def test_a_failing_fn_leaves_the_call_its_own_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def catalog(args: dict[str, Any]) -> Any:
        raise OutageError("down")

    def broken(error: Exception) -> Any:
        raise RuntimeError("cache offline")

    async with tv.open_supervisor() as sup:
        await sup.spawn(make_spec(tv.FallbackPolicy(fn=broken)), catalog)
        with (
            caplog.at_level(logging.ERROR, logger="toolvisor"),
            pytest.raises(OutageError) as caught,
        ):
            await sup.execute("catalog", {"i": 1})
        stats = sup.stats("catalog")
    assert any("RuntimeError('cache offline')" in note for note in caught.value.__notes__)
    assert "the fallback of tool 'catalog' failed" in caplog.text
    assert (stats.failures, stats.fallbacks, stats.successes) == (1, 0, 0)


async def test_the_executor_applies_the_same_fallback() -> None:
    async def catalog(args: dict[str, Any]) -> Any:
        raise OutageError("down")

    events: list[tv.Event] = []
    executor = tv.FunctionToolExecutor(
        make_spec(tv.FallbackPolicy(value="stale")), catalog, on_event=events.append
    )
    assert await executor.execute({"i": 1}) == "stale"
    stats = executor.stats()
    assert (stats.successes, stats.fallbacks) == (1, 1)
    assert [type(e) for e in events] == [tv.FallbackUsed]


async def test_no_event_is_published_without_subscribers() -> None:
    async def catalog(args: dict[str, Any]) -> Any:
        raise OutageError("down")

    events: list[tv.Event] = []
    async with tv.open_supervisor() as sup:
        await sup.spawn(make_spec(tv.FallbackPolicy(value=0)), catalog)
        assert await sup.execute("catalog", {"i": 1}) == 0
        unsubscribe = sup.subscribe(events.append)
        assert await sup.execute("catalog", {"i": 2}) == 0
        unsubscribe()
        assert await sup.execute("catalog", {"i": 3}) == 0
    assert len(events) == 1 and isinstance(events[0], tv.FallbackUsed)
