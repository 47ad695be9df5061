"""The asyncio caller's own send path: calls that must wait, and the guest run's spin."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aio_helpers import add_up, make_spec, run, settled

import toolvisor as tv
from toolvisor import aio
from toolvisor.aio._guest import SPIN_PASSES, SPIN_S, Guest, HostClock


def test_a_rate_limited_call_waits_for_its_token_then_runs() -> None:
    async def echo(args: dict[str, Any]) -> Any:
        return args.get("x")

    async def main() -> None:
        async with aio.open_supervisor() as sup:
            spec = make_spec(rate_limit=tv.RateLimit(20, per_s=1.0, burst=1, max_wait_s=1.0))
            await sup.spawn(spec, echo)
            loop = asyncio.get_running_loop()
            started = loop.time()
            values = [await sup.execute("t", {"x": i}) for i in range(3)]
            assert values == [0, 1, 2]
            assert loop.time() - started >= 0.08  # two of them waited ~50 ms for a token
            stats = sup.stats("t")
            assert stats.successes == 3 and add_up(stats)

    run(main)


def test_a_call_waiting_for_room_times_out_at_its_deadline_and_can_be_cancelled() -> None:
    release = asyncio.Event()

    async def blocked(args: dict[str, Any]) -> None:
        await release.wait()

    async def main() -> None:
        async with aio.open_supervisor() as sup:
            await sup.spawn(make_spec(max_concurrency=1, queue_size=0), blocked)
            first = asyncio.ensure_future(sup.execute("t", {}))
            await asyncio.sleep(0.01)
            with pytest.raises(tv.ToolTimeoutError):
                await sup.execute("t", {}, timeout=0.05)  # no room before its deadline
            waiting = asyncio.ensure_future(sup.execute("t", {}))
            await asyncio.sleep(0.01)
            waiting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiting
            release.set()
            assert await first is None
            stats = sup.stats("t")
            assert stats.successes == 1 and stats.timeouts == 1 and stats.cancelled == 1
            assert add_up(stats)

    run(main)


def test_the_clock_spins_for_a_number_of_passes_after_close_crossings_only() -> None:
    now = [100.0]
    clock = HostClock(now=lambda: now[0])
    assert clock.current_time() == 100.0  # trio's time is the clock's ``now``
    for _ in range(20):  # crossings far apart: trio may sleep until its deadline
        now[0] += 10 * SPIN_S
        clock.touch()
        assert clock.deadline_to_sleep_time(now[0] + 1.0) == pytest.approx(1.0)
    for _ in range(20):  # close together: it polls for SPIN_PASSES idle passes after each
        now[0] += SPIN_S / 10
        clock.touch()
    now[0] += 60.0  # time passing (a preempted process) does not end the spin
    assert [clock.deadline_to_sleep_time(now[0] + 1.0) for _ in range(SPIN_PASSES)] == [
        0.0
    ] * SPIN_PASSES
    assert clock.deadline_to_sleep_time(now[0] + 1.0) == pytest.approx(1.0)
    # one long pause among close crossings does not stop the spin either
    clock.touch()
    now[0] += SPIN_S / 10
    clock.touch()
    assert clock.spins == SPIN_PASSES


def test_every_end_of_a_call_lets_go_of_its_reply_and_its_deadline_timer() -> None:
    release = asyncio.Event()
    entered = asyncio.Event()

    async def tool(args: dict[str, Any]) -> Any:
        if args.get("x") == 1:
            raise KeyError("a tool's own failure")
        if args.get("x") == 2:
            entered.set()
            await release.wait()
        return args.get("x")

    def held(loop: asyncio.AbstractEventLoop) -> tuple[int, int]:
        timers = [
            h
            for h in loop._scheduled  # type: ignore[attr-defined]
            if not h.cancelled() and getattr(h._callback, "__name__", "") == "time_out"
        ]
        return len(Guest._by_loop[loop]._calls), len(timers)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        async with aio.open_supervisor() as sup:
            spec = make_spec(max_concurrency=1, queue_size=1, overflow="reject")
            spec.circuit_breaker_policy = tv.StandardCircuitBreakerPolicy(
                failure_threshold=1, recovery_timeout=60, exclude=[KeyError]
            )
            await sup.spawn(spec, tool)
            assert await sup.execute("t", {"x": 0}, timeout=30) == 0  # a value
            with pytest.raises(KeyError):
                await sup.execute("t", {"x": 1}, timeout=30)  # the tool's error
            with pytest.raises(tv.ValidationError):
                await sup.execute("t", {"x": "not an int"}, timeout=30)  # no call made
            with pytest.raises(tv.ToolTimeoutError):
                await sup.execute("t", {"x": 2}, timeout=0.02)  # its deadline
            await settled(sup, "t")  # its attempt's task ended: the bulkhead is free
            entered.clear()
            running = asyncio.ensure_future(sup.execute("t", {"x": 2}, timeout=30))
            await entered.wait()
            queued = asyncio.ensure_future(sup.execute("t", {"x": 2}, timeout=30))
            async with asyncio.timeout(5):
                while sup.stats("t").queued == 0:  # noqa: ASYNC110 - no event to wait on
                    await asyncio.sleep(0.001)
            with pytest.raises(tv.ToolOverloadedError):  # refused in the send itself
                await sup.execute("t", {"x": 0}, timeout=30)
            queued.cancel()  # its caller gives up
            with pytest.raises(asyncio.CancelledError):
                await queued
            release.set()
            assert await running == 2
            stats = sup.stats("t")
            assert stats.calls == 6 and stats.rejected == 1 and stats.cancelled == 1
            assert add_up(stats)
            assert held(loop) == (0, 0)

    run(main)
