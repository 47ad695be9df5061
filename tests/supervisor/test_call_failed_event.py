"""``CallFailed``: one event per call that ended without the tool's value."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing

import toolvisor as tv


def make_spec(name: str = "t", **kw: Any) -> tv.FunctionToolSpec:
    params = kw.pop("parameters", [tv.IntegerParameter(name="x", required=True)])
    return tv.FunctionToolSpec(id=f"{name}-v1", tool_name=name, parameters=params, **kw)


class DeclinedError(Exception):
    pass


async def scripted(args: dict[str, Any]) -> Any:
    x = args["x"]
    if x < 0:
        raise DeclinedError(f"declined {x}")
    if x >= 100:
        await trio.sleep(x)
    return x


def failures(seen: list[tv.Event]) -> list[tv.CallFailed]:
    return [e for e in seen if isinstance(e, tv.CallFailed)]


async def test_a_failed_call_publishes_one_event_with_its_error_and_attempts(
    autojump_clock: trio.testing.MockClock,
) -> None:
    spec = make_spec(retry_policy=tv.FixedRetryPolicy(max_attempts=3, delay_seconds=1))
    seen: list[tv.Event] = []
    async with tv.open_supervisor() as sup:
        sup.subscribe(seen.append)
        await sup.spawn(spec, scripted)
        assert await sup.execute("t", {"x": 1}) == 1
        with pytest.raises(DeclinedError):
            await sup.execute("t", {"x": -1})
        with pytest.raises(tv.ValidationError):
            await sup.execute("t", {"x": "one"})  # no call is made: no event
    [event] = failures(seen)
    assert (event.tool, event.outcome, event.error_type, event.attempts) == (
        "t",
        "failed",
        "DeclinedError",
        3,
    )
    assert "declined -1" in event.error
    assert event.at == pytest.approx(2.0)  # after the two 1 s waits between attempts


async def test_rejections_and_timeouts_are_published_as_their_calls_count_them(
    autojump_clock: trio.testing.MockClock,
) -> None:
    spec = make_spec(timeout_s=5)
    spec.circuit_breaker_policy = tv.StandardCircuitBreakerPolicy(
        failure_threshold=1, recovery_timeout=60
    )
    seen: list[tv.Event] = []
    async with tv.open_supervisor() as sup:
        sup.subscribe(seen.append)
        await sup.spawn(spec, scripted)
        with pytest.raises(tv.ToolTimeoutError):
            await sup.execute("t", {"x": 100})  # cut at timeout_s: opens the breaker
        with pytest.raises(tv.CircuitOpenError):
            await sup.execute("t", {"x": 1})  # refused: no attempt ran
        stats = sup.stats("t")
    events = failures(seen)
    assert [(e.outcome, e.error_type, e.attempts) for e in events] == [
        ("failed", "ToolTimeoutError", 1),
        ("rejected", "CircuitOpenError", 0),
    ]
    assert len(events) == stats.failures + stats.rejected


async def test_cancelled_calls_and_calls_never_made_publish_nothing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    seen: list[tv.Event] = []
    async with tv.open_supervisor() as sup:
        sup.subscribe(seen.append)
        await sup.spawn(make_spec(), scripted)
        with trio.move_on_after(1):
            await sup.execute("t", {"x": 100})  # the caller gives up: not a failure
        assert sup.stats("t").cancelled == 1
        await sup.stop("t")
        # A stopped or unknown tool has no call to end (nothing counts it either).
        with pytest.raises(tv.ToolUnavailableError):
            await sup.execute("t", {"x": 1})
        with pytest.raises(tv.UnknownToolError):
            await sup.execute("nope", {"x": 1})
    assert failures(seen) == []


async def test_every_failed_call_of_a_mixed_load_is_published_once() -> None:
    seen: list[tv.Event] = []
    async with tv.open_supervisor() as sup:
        sup.subscribe(seen.append)
        await sup.spawn(make_spec(max_concurrency=2), scripted)
        results = await sup.execute_many([("t", {"x": x}) for x in range(-20, 20)])
        stats = sup.stats("t")
    assert sum(not r.ok for r in results) == 20
    events = failures(seen)
    assert len(events) == 20 == stats.failures + stats.rejected
    assert sorted(e.error for e in events) == sorted(repr(r.error) for r in results if not r.ok)


async def test_nothing_is_published_once_the_last_subscriber_left() -> None:
    seen: list[tv.Event] = []
    async with tv.open_supervisor() as sup:
        unsubscribe = sup.subscribe(seen.append)
        await sup.spawn(make_spec(), scripted)
        with pytest.raises(DeclinedError):
            await sup.execute("t", {"x": -1})
        unsubscribe()
        with pytest.raises(DeclinedError):
            await sup.execute("t", {"x": -2})
    assert [e.error for e in failures(seen)] == [repr(DeclinedError("declined -1"))]
