"""Attempts answered at their timeout are cut later, by the run's sweeper: when?

The watchdog answers a caller whose first attempt ran out of ``timeout_s`` at the
deadline; cancelling the attempt (and the breaker's record of it) waits until the
program is idle, or at most ``MAX_DEFER_S`` in a program that never is, or until a
worker of the tool is about to start a call. These tests pin each of those moments on
trio's MockClock, and check that nothing is lost when the actor is killed meanwhile.
"""

from __future__ import annotations

import contextlib
import functools
from typing import Any

import pytest
import trio

import toolvisor as tv
from toolvisor.actors import sweeper
from toolvisor.testing import settle


def _spec(name: str, **kw: Any) -> tv.FunctionToolSpec:
    return tv.FunctionToolSpec(
        id=f"{name}-v1",
        tool_name=name,
        parameters=[tv.NumericParameter(name="sleep", required=True)],
        timeout_s=1.0,
        circuit_breaker_policy=tv.StandardCircuitBreakerPolicy(
            failure_threshold=1, recovery_timeout=60
        ),
        **kw,
    )


class Hang:
    """A tool that sleeps ``args["sleep"]`` seconds and notes when it was cut."""

    def __init__(self) -> None:
        self.cut_at: list[float] = []

    async def __call__(self, args: dict[str, Any]) -> float:
        try:
            await trio.sleep(args["sleep"])
        except trio.Cancelled:
            self.cut_at.append(trio.current_time())
            raise
        return float(args["sleep"])


async def time_out(sup: tv.Supervisor, tool: str = "hang") -> float:
    """Call a hanging tool until its timeout answers; return when it did."""
    start = trio.current_time()
    with pytest.raises(tv.ToolTimeoutError):
        await sup.execute(tool, {"sleep": 100.0})
    answered = trio.current_time()
    assert answered - start == 1.0  # the answer is at the deadline
    return answered


async def test_an_answered_attempt_is_cut_and_recorded_once_the_program_is_idle(
    autojump_clock: trio.testing.MockClock,
) -> None:
    hang = Hang()
    async with tv.open_supervisor() as sup:
        await sup.spawn(_spec("hang"), hang)
        answered = await time_out(sup)
        await trio.testing.wait_all_tasks_blocked()
        assert hang.cut_at == []  # not yet: the sweeper looks every IDLE_S
        assert sup.stats("hang").breaker_state == "closed"
        await trio.sleep(3 * sweeper.IDLE_S)
        # The run was idle at the sweeper's first look: cut then, and recorded.
        assert hang.cut_at == [pytest.approx(answered + sweeper.IDLE_S)]
        assert sup.stats("hang").breaker_state == "open"


async def test_in_a_program_that_never_idles_the_cut_waits_at_most_max_defer_s(
    autojump_clock: trio.testing.MockClock,
) -> None:
    hang = Hang()

    async def busy() -> None:
        while True:  # noqa: ASYNC110 - a timer always due within IDLE_S: never idle
            await trio.sleep(sweeper.IDLE_S / 4)

    async with tv.open_supervisor() as sup:
        await sup.spawn(_spec("hang"), hang)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(busy)
            answered = await time_out(sup)
            await trio.sleep(sweeper.MAX_DEFER_S / 2)
            assert hang.cut_at == []
            await trio.sleep(sweeper.MAX_DEFER_S)
            assert len(hang.cut_at) == 1
            assert answered < hang.cut_at[0] <= answered + sweeper.MAX_DEFER_S + sweeper.IDLE_S
            nursery.cancel_scope.cancel()


async def test_a_call_about_to_start_cuts_the_answered_attempts_first(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # The next call must see the breaker the timed-out attempt opened, and must not run
    # beside it: the worker that takes it cuts the deferred attempt and waits for its
    # record, in the same instant.
    hang = Hang()
    async with tv.open_supervisor() as sup:
        await sup.spawn(_spec("hang"), hang)
        answered = await time_out(sup)
        with pytest.raises(tv.CircuitOpenError):
            await sup.execute("hang", {"sleep": 0.0})
        assert hang.cut_at == [answered]
        assert trio.current_time() == answered


async def test_more_than_a_chunk_is_cut_over_several_idle_moments(
    autojump_clock: trio.testing.MockClock,
) -> None:
    calls = sweeper.CHUNK + 10
    hang = Hang()
    spec = _spec("hang", max_concurrency=calls)
    spec.circuit_breaker_policy = tv.StandardCircuitBreakerPolicy(
        failure_threshold=calls + 1, recovery_timeout=60
    )
    async with tv.open_supervisor() as sup:
        await sup.spawn(spec, hang)

        async def one() -> None:
            with pytest.raises(tv.ToolTimeoutError):
                await sup.execute("hang", {"sleep": 100.0})

        async with trio.open_nursery() as nursery:
            for _ in range(calls):
                nursery.start_soon(one)
        answered = trio.current_time()
        await trio.sleep(10 * sweeper.IDLE_S)
        # A chunk at each of the sweeper's first two looks (the run idle at both).
        first, second = answered + sweeper.IDLE_S, answered + 2 * sweeper.IDLE_S
        assert sorted(hang.cut_at) == [pytest.approx(first)] * sweeper.CHUNK + [
            pytest.approx(second)
        ] * (calls - sweeper.CHUNK)
        stats = sup.stats("hang")
        assert (stats.timeouts, stats.failures, stats.in_flight) == (calls, calls, 0)
        assert spec.circuit_breaker_policy.failure_count("hang") == calls


async def test_an_actor_killed_with_deferred_cuts_restarts_and_serves(
    autojump_clock: trio.testing.MockClock,
) -> None:
    hang = Hang()
    spec = _spec("hang")
    spec.circuit_breaker_policy = tv.NoOpCircuitBreakerPolicy()
    async with tv.open_supervisor() as sup:
        await sup.spawn(spec, hang)
        await time_out(sup)
        await sup.kill("hang")  # before the sweeper's first look
        assert len(hang.cut_at) == 1  # the kill cancelled the attempt
        await settle()
        assert len(hang.cut_at) == 1
        assert await sup.execute("hang", {"sleep": 0.5}) == 0.5
        stats = sup.stats("hang")
        assert (stats.timeouts, stats.successes, stats.in_flight) == (1, 1, 0)


@pytest.mark.parametrize("queued", [True, False], ids=["queued before", "sent after"])
async def test_a_call_waiting_for_a_busy_bulkhead_does_not_wait_for_the_sweeper(
    autojump_clock: trio.testing.MockClock, queued: bool
) -> None:
    # One worker, hung and answered: the next call, queued behind it or sent once it was
    # answered, starts as the worker is cut, in the instant of the answer.
    started: list[float] = []

    async def tool(args: dict[str, Any]) -> float:
        started.append(trio.current_time())
        await trio.sleep(args["sleep"])
        return float(args["sleep"])

    spec = _spec("one", max_concurrency=1)
    spec.circuit_breaker_policy = tv.NoOpCircuitBreakerPolicy()
    async with tv.open_supervisor() as sup:
        await sup.spawn(spec, tool)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(functools.partial(time_out, sup, "one"))
            await trio.testing.wait_all_tasks_blocked()
            if queued:
                assert await sup.execute("one", {"sleep": 0.5}) == 0.5
            else:
                await trio.sleep(1.0)
                await trio.testing.wait_all_tasks_blocked()
                # The answer came; the worker waits for its cut (the sweeper looks at 1.001).
                assert sup.stats("one").in_flight == 0
                assert await sup.execute("one", {"sleep": 0.5}) == 0.5
        assert started == [0.0, 1.0]


async def test_a_tool_that_ends_in_time_is_answered_although_its_end_waits(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """B's tool returns before its deadline while A, answered at its timeout, takes 2 s
    to clean up: B's success is recorded after A's timeout, and B's caller gets B's
    value, not a timeout, by B's attempt deadline at the latest."""

    async def tool(args: dict[str, Any]) -> float:
        if args["sleep"] > 10:
            try:
                await trio.sleep_forever()
            finally:  # a graceful close (an HTTP client's aclose), shielded
                with trio.CancelScope(shield=True):
                    await trio.sleep(2.0)
        await trio.sleep(args["sleep"])
        return float(args["sleep"])

    replies: dict[str, tuple[object, float]] = {}
    async with tv.open_supervisor() as sup:
        await sup.spawn(_spec("hang", max_concurrency=2, retry_policy=tv.NoRetryPolicy()), tool)

        async def call(name: str, sleep: float) -> None:
            try:
                value: object = await sup.execute("hang", {"sleep": sleep})
            except Exception as exc:
                value = type(exc)
            replies[name] = (value, trio.current_time())

        async with trio.open_nursery() as nursery:
            nursery.start_soon(call, "A", 100.0)
            await trio.sleep(0.5)
            nursery.start_soon(call, "B", 0.7)  # returns at 1.2; its deadline is 1.5
        await settle()
    assert replies["A"] == (tv.ToolTimeoutError, 1.0)
    value, answered_at = replies["B"]
    assert value == 0.7
    assert answered_at <= 1.5


async def test_a_call_starting_while_an_end_waits_for_its_record_sees_that_end(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A hangs and is answered at 1.0, and its cut (at the sweeper's first idle look)
    takes 0.3 s to clean up; B's tool returns at 1.2, before A's cut is recorded, so B's
    success is recorded after A's timeout; C, sent at 1.25, starts when A's record is
    made, at about 1.3. B's tool ended before C started: C's breaker has B's success in
    it (no failure counted), whichever of B's and C's workers trio wakes first.
    (Repeated: trio orders the two at random.)"""
    seen: list[int] = []
    policy = tv.StandardCircuitBreakerPolicy(failure_threshold=5, recovery_timeout=60)

    async def tool(args: dict[str, Any]) -> float:
        if args["sleep"] == 0:
            seen.append(policy.failure_count("hang"))
            return 0.0
        if args["sleep"] > 10:
            try:
                await trio.sleep_forever()
            finally:
                with trio.CancelScope(shield=True):
                    await trio.sleep(0.3)
        await trio.sleep(args["sleep"])
        return float(args["sleep"])

    for _ in range(20):
        spec = _spec("hang", max_concurrency=3, retry_policy=tv.NoRetryPolicy())
        spec.circuit_breaker_policy = policy
        async with tv.open_supervisor() as sup:
            await sup.spawn(spec, tool)

            async def call(sleep: float, sup: tv.Supervisor = sup) -> None:
                with contextlib.suppress(tv.ToolTimeoutError):
                    await sup.execute("hang", {"sleep": sleep})

            async with trio.open_nursery() as nursery:
                nursery.start_soon(call, 100.0)  # A
                await trio.sleep(0.5)
                nursery.start_soon(call, 0.7)  # B: returns at 1.2
                await trio.sleep(0.75)
                nursery.start_soon(call, 0.0)  # C, at 1.25
            await settle()
        policy.reset("hang")
    assert seen == [0] * 20
