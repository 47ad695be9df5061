"""The asyncio caller's own send path: calls that must wait, and the guest run's spin."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aio_helpers import add_up, make_spec, run

import toolvisor as tv
from toolvisor import aio
from toolvisor.aio._guest import SPIN_PASSES, SPIN_S, HostClock


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
