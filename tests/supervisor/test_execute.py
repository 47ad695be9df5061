"""Calls through the supervisor: routing, bad input, deadlines, bulkhead, breaker, events."""

from __future__ import annotations

import math
from typing import Any

import attrs
import pytest
import trio
import trio.testing

import toolvisor as tv


def make_spec(name: str = "t", **kw: Any) -> tv.FunctionToolSpec:
    params = kw.pop("parameters", [tv.IntegerParameter(name="x")])
    return tv.FunctionToolSpec(id=f"{name}-v1", tool_name=name, parameters=params, **kw)


async def echo(args: dict[str, Any]) -> Any:
    return args.get("x")


# ------------------------------------------------------------------ routing & results


async def test_execute_returns_value_and_passes_ctx() -> None:
    seen: list[tv.ExecutionContext] = []

    async def with_ctx(args: dict[str, Any], ctx: tv.ExecutionContext) -> Any:
        seen.append(ctx)
        return args["x"] * 2

    async with tv.open_supervisor() as sup:
        ref = await sup.spawn(make_spec("double"), with_ctx)
        ctx = tv.ExecutionContext(tenant_id="acme", request_id="r1")
        assert await sup.execute("double", {"x": 21}, ctx) == 42
        assert await ref.execute({"x": 1}) == 2
    # The caller's context, with the attempt's number (and the call's key, when idempotent).
    assert seen[0] == attrs.evolve(ctx, attempt=1)
    assert seen[1].tenant_id is None


async def test_submit_then_result_and_execute_many_in_order() -> None:
    async def slow_echo(args: dict[str, Any]) -> Any:
        await trio.sleep(0.01 * (5 - args["x"]))
        return args["x"]

    async with tv.open_supervisor() as sup:
        await sup.spawn(make_spec(), slow_echo)
        pending = await sup.submit("t", {"x": 3})
        result = await pending.result()
        assert result.ok and result.value == 3 and result.attempts == 1
        assert await pending.value() == 3  # a pending call can be awaited again
        results = await sup.execute_many([("t", {"x": i}) for i in range(5)])
        assert [r.value for r in results] == [0, 1, 2, 3, 4]
        assert all(r.ok and r.error is None for r in results)


async def test_execute_many_reports_each_failure_without_raising() -> None:
    async def boom(args: dict[str, Any]) -> Any:
        raise KeyError("nope")

    async with tv.open_supervisor() as sup:
        await sup.spawn(make_spec("ok"), echo)
        await sup.spawn(make_spec("boom"), boom)
        results = await sup.execute_many(
            [("ok", {"x": 1}), ("missing", {}), ("ok", {"x": "bad"}), ("boom", {"x": 1})]
        )
    assert [r.ok for r in results] == [True, False, False, False]
    assert isinstance(results[1].error, tv.UnknownToolError)
    assert isinstance(results[2].error, tv.ValidationError)
    assert isinstance(results[3].error, KeyError)
    with pytest.raises(KeyError):
        results[3].unwrap()


async def test_unknown_tool_lists_known_ones() -> None:
    async with tv.open_supervisor() as sup:
        await sup.spawn(make_spec("a"), echo)
        await sup.spawn(make_spec("b"), echo)
        with pytest.raises(tv.UnknownToolError) as info:
            await sup.execute("c", {})
    assert info.value.known == ("a", "b")
    assert "'a', 'b'" in str(info.value)


async def test_duplicate_spawn_and_bad_functions_are_refused() -> None:
    def not_async(args: dict[str, Any]) -> int:
        return 1

    async def no_args() -> int:
        return 1

    async with tv.open_supervisor() as sup:
        await sup.spawn(make_spec("a"), echo)
        with pytest.raises(tv.DuplicateToolError):
            await sup.spawn(make_spec("a"), echo)
        with pytest.raises(TypeError, match="not an async function"):
            await sup.spawn(make_spec("b"), not_async)
        with pytest.raises(TypeError, match="takes no arguments"):
            await sup.spawn(make_spec("c"), no_args)
        with pytest.raises(TypeError, match="ToolSpec"):
            await sup.spawn({"tool_name": "d"}, echo)  # type: ignore[arg-type]
        assert sup.tools() == ["a"]


async def test_tool_returning_non_awaitable_gets_a_clear_error() -> None:
    async def liar(args: dict[str, Any]) -> Any:  # passes the spawn check
        return 1

    def plain(args: dict[str, Any]) -> Any:
        return 42

    async with tv.open_supervisor() as sup:
        await sup.spawn(make_spec(), liar)
        liar.__code__ = plain.__code__  # from now on it returns a plain int
        with pytest.raises(TypeError, match="not an awaitable"):
            await sup.execute("t", {"x": 1})


async def test_invalid_args_never_reach_the_tool_nor_the_breaker() -> None:
    ran = 0

    async def tool(args: dict[str, Any]) -> Any:
        nonlocal ran
        ran += 1
        return 1

    spec = make_spec(parameters=[tv.IntegerParameter(name="x", required=True, minimum=0)])
    spec.circuit_breaker_policy = tv.StandardCircuitBreakerPolicy(failure_threshold=1)
    spec.retry_policy = tv.FixedRetryPolicy(max_attempts=3, delay_seconds=0)
    async with tv.open_supervisor() as sup:
        await sup.spawn(spec, tool)
        for bad in ({"x": -1}, {"x": True}, {}, {"x": 1, "y": 2}, [1]):
            with pytest.raises(tv.ValidationError):
                await sup.execute("t", bad)  # type: ignore[arg-type]
        stats = sup.stats("t")
        assert await sup.execute("t", {"x": 1}) == 1
    assert ran == 1
    assert stats.calls == 0 and stats.failures == 0
    assert stats.breaker_state == "closed"


async def test_calls_after_close_raise_supervisor_closed() -> None:
    async with tv.open_supervisor() as sup:
        await sup.spawn(make_spec(), echo)
    with pytest.raises(tv.SupervisorClosedError):
        await sup.execute("t", {"x": 1})
    with pytest.raises(tv.SupervisorClosedError):
        await sup.spawn(make_spec("u"), echo)


async def test_bad_timeout_values_are_refused() -> None:
    async with tv.open_supervisor() as sup:
        await sup.spawn(make_spec(), echo)
        with pytest.raises(ValueError, match="timeout"):
            await sup.execute("t", {"x": 1}, timeout=0)
        with pytest.raises(TypeError, match="timeout"):
            await sup.execute("t", {"x": 1}, timeout="5")  # type: ignore[arg-type]


async def test_open_supervisor_refuses_bad_settings() -> None:
    with pytest.raises(ValueError, match="max_restarts"):
        async with tv.open_supervisor(max_restarts=-1):
            pass
    with pytest.raises(ValueError, match="grace_s"):
        async with tv.open_supervisor(grace_s=math.nan):
            pass


async def test_an_error_in_the_block_is_not_wrapped_in_a_group() -> None:
    async def body() -> None:
        async with tv.open_supervisor() as sup:
            await sup.spawn(make_spec(), echo)
            raise LookupError("mine")

    with pytest.raises(LookupError, match="mine"):
        await body()


# ------------------------------------------------------------------ time


async def test_per_attempt_timeout_is_retryable_and_exact(
    autojump_clock: trio.testing.MockClock,
) -> None:
    starts: list[float] = []

    async def hang(args: dict[str, Any]) -> Any:
        starts.append(trio.current_time())
        await trio.sleep_forever()

    spec = make_spec(timeout_s=2.0)
    spec.retry_policy = tv.ExponentialBackoffRetryPolicy(
        max_attempts=3, base_delay=1.0, max_delay=10.0, jitter=0.0
    )
    async with tv.open_supervisor() as sup:
        await sup.spawn(spec, hang)
        t0 = trio.current_time()
        with pytest.raises(tv.ToolTimeoutError) as info:
            await sup.execute("t", {"x": 1})
        elapsed = trio.current_time() - t0
        stats = sup.stats("t")
    assert info.value.scope == "attempt" and info.value.timeout_s == 2.0
    # attempts at 0, 2+1, 5+2 -> each times out after 2 s: ends at 9 s
    assert [s - t0 for s in starts] == pytest.approx([0.0, 3.0, 7.0])
    assert elapsed == pytest.approx(9.0)
    assert stats.timeouts == 3 and stats.retries == 2 and stats.failures == 1
    assert any("3 attempts" in n for n in info.value.__notes__)


async def test_attempt_timeouts_without_retry_count_as_breaker_failures(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def hang(args: dict[str, Any]) -> Any:
        await trio.sleep_forever()

    spec = make_spec(timeout_s=1.0)
    spec.circuit_breaker_policy = tv.StandardCircuitBreakerPolicy(
        failure_threshold=2, recovery_timeout=10
    )
    async with tv.open_supervisor() as sup:
        await sup.spawn(spec, hang)
        t0 = trio.current_time()
        with pytest.raises(tv.ToolTimeoutError):
            await sup.execute("t", {"x": 1})
        assert trio.current_time() - t0 == pytest.approx(1.0)
        with pytest.raises(tv.ToolTimeoutError) as trip:  # the 2nd timeout trips it
            await sup.execute("t", {"x": 1})
        assert trio.current_time() - t0 == pytest.approx(2.0)
        # Answered at its timeout by the watchdog, before the breaker recorded the cut
        # attempt: the caller's error carries no note about the breaker it opened.
        assert not getattr(trip.value, "__notes__", None)
        with pytest.raises(tv.CircuitOpenError):  # and now it fails fast
            await sup.execute("t", {"x": 1})
        stats = sup.stats("t")
    assert (stats.timeouts, stats.failures, stats.rejected) == (2, 2, 1)


async def test_overall_deadline_cancels_the_running_attempt(
    autojump_clock: trio.testing.MockClock,
) -> None:
    cancelled = trio.Event()

    async def hang(args: dict[str, Any]) -> Any:
        try:
            await trio.sleep_forever()
        finally:
            cancelled.set()

    async with tv.open_supervisor() as sup:
        await sup.spawn(make_spec(timeout_s=100), hang)
        t0 = trio.current_time()
        with pytest.raises(tv.ToolTimeoutError) as info:
            await sup.execute("t", {"x": 1}, timeout=5)
        assert trio.current_time() - t0 == pytest.approx(5.0)
        with trio.fail_after(1):
            await cancelled.wait()
        assert sup.stats("t").in_flight == 0
    assert info.value.scope == "call"
    assert isinstance(info.value, TimeoutError)


async def test_retry_wait_past_the_deadline_is_not_slept(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def fail(args: dict[str, Any]) -> Any:
        raise ConnectionError("down")

    spec = make_spec()
    spec.retry_policy = tv.FixedRetryPolicy(max_attempts=5, delay_seconds=10)
    async with tv.open_supervisor() as sup:
        await sup.spawn(spec, fail)
        t0 = trio.current_time()
        with pytest.raises(ConnectionError):
            await sup.execute("t", {"x": 1}, timeout=15)
        # attempt 1 at 0, wait 10, attempt 2 at 10; the next wait would end at 20 > 15
        assert trio.current_time() - t0 == pytest.approx(10.0)


async def test_queued_call_past_its_deadline_is_dropped_unexecuted(
    autojump_clock: trio.testing.MockClock,
) -> None:
    ran: list[int] = []

    async def slow(args: dict[str, Any]) -> Any:
        ran.append(args["x"])
        await trio.sleep(10)
        return args["x"]

    async with tv.open_supervisor() as sup:
        await sup.spawn(make_spec(max_concurrency=1), slow)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sup.execute, "t", {"x": 1})
            await trio.sleep(0.1)
            with pytest.raises(tv.ToolTimeoutError):
                await sup.execute("t", {"x": 2}, timeout=1)
        assert ran == [1]
        assert sup.stats("t").queued == 0


async def test_caller_cancellation_cancels_its_attempt(
    autojump_clock: trio.testing.MockClock,
) -> None:
    cancelled = trio.Event()

    async def hang(args: dict[str, Any]) -> Any:
        try:
            await trio.sleep_forever()
        except trio.Cancelled:
            cancelled.set()
            raise

    async with tv.open_supervisor() as sup:
        await sup.spawn(make_spec(), hang)
        with trio.move_on_after(3):
            await sup.execute("t", {"x": 1})
        with trio.fail_after(1):
            await cancelled.wait()
        stats = sup.stats("t")
    assert stats.in_flight == 0 and stats.failures == 0  # cancellation is not a failure


# ------------------------------------------------------------------ bulkhead


async def test_bulkhead_caps_concurrent_attempts(autojump_clock: trio.testing.MockClock) -> None:
    running = peak = 0

    async def tool(args: dict[str, Any]) -> Any:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await trio.sleep(1)
        running -= 1
        return 1

    async with tv.open_supervisor() as sup:
        await sup.spawn(make_spec(max_concurrency=4, queue_size=1000), tool)
        results = await sup.execute_many([("t", {"x": i}) for i in range(40)])
    assert all(r.ok for r in results)
    assert peak == 4


async def test_overflow_reject_answers_overloaded_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    gate = trio.Event()

    async def blocked(args: dict[str, Any]) -> Any:
        await gate.wait()
        return 1

    async with tv.open_supervisor() as sup:
        await sup.spawn(make_spec(max_concurrency=1, queue_size=2, overflow="reject"), blocked)
        async with trio.open_nursery() as nursery:
            for _ in range(3):  # one running, two queued
                nursery.start_soon(sup.execute, "t", {"x": 1})
            await trio.sleep(0.1)
            t0 = trio.current_time()
            with pytest.raises(tv.ToolOverloadedError) as info:
                await sup.execute("t", {"x": 1})
            assert trio.current_time() == t0
            gate.set()
        stats = sup.stats("t")
    assert info.value.max_concurrency == 1 and info.value.queue_size == 2
    assert stats.rejected == 1 and stats.successes == 3
    assert stats.calls == stats.successes + stats.failures + stats.rejected


async def test_overflow_wait_applies_backpressure_until_the_deadline(
    autojump_clock: trio.testing.MockClock,
) -> None:
    gate = trio.Event()

    async def blocked(args: dict[str, Any]) -> Any:
        await gate.wait()
        return 1

    async with tv.open_supervisor() as sup:
        await sup.spawn(make_spec(max_concurrency=1, queue_size=0), blocked)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sup.execute, "t", {"x": 1})
            await trio.sleep(0.1)
            t0 = trio.current_time()
            with pytest.raises(tv.ToolTimeoutError):
                await sup.execute("t", {"x": 1}, timeout=2)
            assert trio.current_time() - t0 == pytest.approx(2.0)
            gate.set()


# ------------------------------------------------------------------ breaker & retries


async def test_opening_breaker_stops_the_remaining_retries(
    autojump_clock: trio.testing.MockClock,
) -> None:
    calls = 0

    async def fail(args: dict[str, Any]) -> Any:
        nonlocal calls
        calls += 1
        raise ConnectionError("down")

    spec = make_spec()
    spec.circuit_breaker_policy = tv.StandardCircuitBreakerPolicy(
        failure_threshold=2, recovery_timeout=30
    )
    spec.retry_policy = tv.FixedRetryPolicy(max_attempts=5, delay_seconds=1)
    async with tv.open_supervisor() as sup:
        await sup.spawn(spec, fail)
        with pytest.raises(ConnectionError) as info:  # the tool ran: its own error
            await sup.execute("t", {"x": 1})
        assert calls == 2
        assert any("breaker of tool 't' opened" in note for note in info.value.__notes__)
        t0 = trio.current_time()
        with pytest.raises(tv.CircuitOpenError) as again:
            await sup.execute("t", {"x": 1})
        assert trio.current_time() == t0  # fails immediately
        assert calls == 2
        assert again.value.retry_after == pytest.approx(30.0)  # opened at t=1, now t=1
        stats = sup.stats("t")
    assert stats.breaker_state == "open"
    assert stats.calls == 2
    assert stats.failures == 1  # the call that tripped it ran the tool: a failure
    assert stats.rejected == 1  # the next one never ran: a rejection


async def test_breaker_of_one_tool_never_affects_another() -> None:
    shared = tv.StandardCircuitBreakerPolicy(failure_threshold=1, recovery_timeout=60)

    async def fail(args: dict[str, Any]) -> Any:
        raise ConnectionError("down")

    bad, good = make_spec("bad"), make_spec("good")
    bad.circuit_breaker_policy = good.circuit_breaker_policy = shared
    async with tv.open_supervisor() as sup:
        await sup.spawn(bad, fail)
        await sup.spawn(good, echo)
        with pytest.raises(ConnectionError):  # its failure opened the breaker of "bad"
            await sup.execute("bad", {"x": 1})
        with pytest.raises(tv.CircuitOpenError):
            await sup.execute("bad", {"x": 1})
        assert await sup.execute("good", {"x": 7}) == 7
        assert sup.stats("bad").breaker_state == "open"
        assert sup.stats("good").breaker_state == "closed"


async def test_tool_error_is_re_raised_as_is_with_attempt_note(
    autojump_clock: trio.testing.MockClock,
) -> None:
    class PaymentDeclinedError(Exception):
        pass

    async def decline(args: dict[str, Any]) -> Any:
        raise PaymentDeclinedError("card declined")

    spec = make_spec()
    spec.retry_policy = tv.FixedRetryPolicy(max_attempts=2, delay_seconds=0.5)
    async with tv.open_supervisor() as sup:
        await sup.spawn(spec, decline)
        with pytest.raises(PaymentDeclinedError) as info:
            await sup.execute("t", {"x": 1})
    assert "failed after 2 attempts" in info.value.__notes__[-1]


async def test_reconfigure_swaps_policies_without_dropping_calls(
    autojump_clock: trio.testing.MockClock,
) -> None:
    attempts = 0

    async def flaky(args: dict[str, Any]) -> Any:
        nonlocal attempts
        attempts += 1
        mine = attempts
        await trio.sleep(1)
        if mine < 3:
            raise ConnectionError("not yet")
        return mine

    async with tv.open_supervisor() as sup:
        await sup.spawn(make_spec(), flaky)
        pending = await sup.submit("t", {"x": 1})
        await trio.sleep(0.5)  # in flight under NoRetryPolicy
        await sup.reconfigure(
            "t", retry_policy=tv.FixedRetryPolicy(max_attempts=2, delay_seconds=0)
        )
        second = await sup.submit("t", {"x": 2})
        first = await pending.result()
        assert await second.value() == 3
        with pytest.raises(TypeError):
            await sup.reconfigure("t", retry_policy="fast")  # type: ignore[arg-type]
    assert isinstance(first.error, ConnectionError)  # ran with the old policy: no retry
    assert first.attempts == 1
    assert attempts == 3  # the second call retried once under the new policy


# ------------------------------------------------------------------ events & stats


async def test_events_report_retries_and_breaker_transitions(
    autojump_clock: trio.testing.MockClock,
) -> None:
    outcomes = iter([ConnectionError("a"), ConnectionError("b"), None, None])

    async def scripted(args: dict[str, Any]) -> Any:
        error = next(outcomes)
        if error is not None:
            raise error
        return "ok"

    spec = make_spec()
    spec.circuit_breaker_policy = tv.StandardCircuitBreakerPolicy(
        failure_threshold=2, recovery_timeout=10
    )
    spec.retry_policy = tv.FixedRetryPolicy(max_attempts=2, delay_seconds=1)
    seen: list[tv.Event] = []
    async with tv.open_supervisor() as sup:
        unsubscribe = sup.subscribe(seen.append)
        await sup.spawn(spec, scripted)
        async with sup.events() as channel:
            with pytest.raises(ConnectionError):
                await sup.execute("t", {"x": 1})
            await trio.sleep(10)
            assert await sup.execute("t", {"x": 1}) == "ok"
            unsubscribe()
            got = []
            while True:
                try:
                    got.append(channel.receive_nowait())
                except trio.WouldBlock:
                    break
    retries = [e for e in seen if isinstance(e, tv.RetryScheduled)]
    transitions = [(e.old, e.new) for e in seen if isinstance(e, tv.BreakerTransition)]
    assert [(r.attempt, r.delay) for r in retries] == [(1, 1.0)]
    assert transitions == [("closed", "open"), ("open", "half_open"), ("half_open", "closed")]
    assert got == seen


async def test_a_failing_event_callback_never_breaks_a_call(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def bad_callback(event: tv.Event) -> None:
        raise RuntimeError("callback bug")

    async def fail_once(args: dict[str, Any]) -> Any:
        if args["x"] == 0:
            raise ConnectionError("x")
        return args["x"]

    spec = make_spec()
    spec.retry_policy = tv.FixedRetryPolicy(max_attempts=2, delay_seconds=0)
    async with tv.open_supervisor() as sup:
        sup.subscribe(bad_callback)
        await sup.spawn(spec, fail_once)
        with pytest.raises(ConnectionError):
            await sup.execute("t", {"x": 0})
    assert "callback bug" in caplog.text


async def test_stats_count_every_call_once(autojump_clock: trio.testing.MockClock) -> None:
    async def tool(args: dict[str, Any]) -> Any:
        await trio.sleep(args["x"])
        if args["x"] == 3:
            raise ValueError("three")
        return args["x"]

    async with tv.open_supervisor() as sup:
        await sup.spawn(make_spec(timeout_s=4), tool)
        results = await sup.execute_many([("t", {"x": x}) for x in (1, 2, 3, 5)])
        stats = sup.stats("t")
    assert [r.ok for r in results] == [True, True, False, False]
    assert stats.calls == 4 and stats.successes == 2 and stats.failures == 2
    assert stats.timeouts == 1
    assert stats.latency_p50_s == pytest.approx(3.0)
    assert stats.latency_p99_s == pytest.approx(4.0)
    assert stats.in_flight == 0 and stats.queued == 0


async def test_a_cut_attempt_whose_outcome_the_open_breaker_refuses_raises_the_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Another call opens the breaker while this call's first attempt runs past timeout_s:
    the tool ran, so the call ends with its ToolTimeoutError, never CircuitOpenError."""

    async def tool(args: dict[str, Any]) -> Any:
        if args["x"] == 1:
            await trio.sleep_forever()  # cut by the watchdog at timeout_s
        raise ConnectionError("down")  # x == 2 fails at once and opens the breaker

    spec = make_spec(timeout_s=5.0)
    spec.circuit_breaker_policy = tv.StandardCircuitBreakerPolicy(
        failure_threshold=1, recovery_timeout=60
    )
    spec.retry_policy = tv.FixedRetryPolicy(max_attempts=3, delay_seconds=0.1)
    async with tv.open_supervisor() as sup:
        await sup.spawn(spec, tool)
        slow = await sup.submit("t", {"x": 1})
        await trio.sleep(1)
        with pytest.raises(ConnectionError):
            await sup.execute("t", {"x": 2})
        result = await slow.result()
        stats = sup.stats("t")
    assert isinstance(result.error, tv.ToolTimeoutError) and result.attempts == 1
    assert any("breaker" in note for note in result.error.__notes__)
    assert (stats.calls, stats.failures, stats.rejected) == (2, 2, 0)
