"""An adaptive bulkhead in a real supervisor, on trio's MockClock.

The limit (``ToolStats.concurrency_limit``) falls when the tool's latency rises or its
calls time out, and climbs back when it is healthy; the worker pool follows it; no call
starts while ``limit`` calls run; the counters add up; events are published.
"""

from __future__ import annotations

import contextlib
import itertools
from typing import Any

import pytest
import trio
import trio.testing

from toolvisor import (
    AdaptiveConcurrency,
    ConcurrencyLimitChanged,
    Event,
    FunctionToolSpec,
    IntegerParameter,
    Supervisor,
    ToolOverloadedError,
    ToolTimeoutError,
    open_supervisor,
)


class Backend:
    """A tool whose latency the test sets, counting the attempts running at once."""

    def __init__(self, latency: float, limit: AdaptiveConcurrency | None = None) -> None:
        self.latency = latency
        self.limit = limit
        self.running = 0
        self.peak = 0
        self.excess = 0  # the most attempts running above the limit, at an attempt's start
        self.ran = 0

    async def __call__(self, args: dict[str, Any]) -> int:
        self.running += 1
        self.ran += 1
        self.peak = max(self.peak, self.running)
        if self.limit is not None:
            self.excess = max(self.excess, self.running - self.limit.limit)
        try:
            await trio.sleep(self.latency)
        finally:
            self.running -= 1
        return int(args.get("i", 0))


def _spec(name: str, bulkhead: int | AdaptiveConcurrency, timeout_s: float = 30.0) -> Any:
    return FunctionToolSpec(
        id=f"{name}-v1",
        tool_name=name,
        parameters=[IntegerParameter(name="i")],
        max_concurrency=bulkhead,
        timeout_s=timeout_s,
    )


async def _load(
    sup: Supervisor, tool: str, callers: int, until: float, timeout: float | None = None
) -> None:
    async def caller() -> None:
        while trio.current_time() < until:
            with contextlib.suppress(ToolTimeoutError):
                await sup.execute(tool, {"i": 1}, timeout=timeout)

    async with trio.open_nursery() as nursery:
        for _ in range(callers):
            nursery.start_soon(caller)


def _adds_up(sup: Supervisor, tool: str) -> None:
    s = sup.stats(tool)
    assert s.calls == s.successes + s.failures + s.rejected + s.cancelled, s
    assert s.in_flight == 0


async def test_the_limit_falls_when_latency_rises_then_recovers(
    autojump_clock: trio.testing.MockClock,
) -> None:
    limit = AdaptiveConcurrency(initial=4, max_limit=16)
    backend = Backend(0.05, limit)
    seen: list[tuple[float, int]] = []

    async def watch(sup: Supervisor) -> None:
        while True:
            seen.append((trio.current_time(), sup.stats("db").concurrency_limit))
            await trio.sleep(0.1)

    async with open_supervisor(grace_s=0) as sup:
        await sup.spawn(_spec("db", limit), backend)
        assert sup.stats("db").concurrency_limit == 4
        t0 = trio.current_time()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch, sup)
            await _load(sup, "db", 20, t0 + 2)  # healthy: it climbs to max_limit
            healthy = sup.stats("db").concurrency_limit
            backend.latency = 0.5  # ten times slower
            await _load(sup, "db", 20, t0 + 5)
            backend.latency = 0.05
            await _load(sup, "db", 20, t0 + 8)
            nursery.cancel_scope.cancel()
        recovered = sup.stats("db").concurrency_limit
        _adds_up(sup, "db")
        assert sup.stats("db").failures == 0
    slow = [lim for at, lim in seen if t0 + 2 <= at < t0 + 5]
    assert healthy == 16
    assert min(slow) <= 10  # gradient2 under sustained latency: about 2 * queue_size
    assert recovered == 16
    assert backend.excess <= 0, "an attempt started while the limit's worth ran"
    assert backend.peak == 16


async def test_timeouts_are_drops_and_events_follow_the_limit(
    autojump_clock: trio.testing.MockClock,
) -> None:
    limit = AdaptiveConcurrency(initial=16, max_limit=16, algorithm="aimd", backoff_ratio=0.5)
    backend = Backend(0.01, limit)
    events: list[Event] = []
    async with open_supervisor(grace_s=0) as sup:
        await sup.spawn(_spec("api", limit, timeout_s=0.2), backend)
        await _load(sup, "api", 20, trio.current_time() + 1)
        assert events == []  # nobody listened: none was built
        unsubscribe = sup.subscribe(events.append)
        backend.latency = 1.0  # every attempt is cut at timeout_s
        await _load(sup, "api", 20, trio.current_time() + 2)
        low = sup.stats("api").concurrency_limit
        backend.latency = 0.01
        await _load(sup, "api", 20, trio.current_time() + 2)
        unsubscribe()
        s = sup.stats("api")
        _adds_up(sup, "api")
    assert low == 1  # halved at each timeout down to min_limit
    assert s.timeouts > 0 and s.failures >= s.timeouts
    assert s.concurrency_limit == 16  # +1 per busy success, back to max_limit
    changes = [e for e in events if isinstance(e, ConcurrencyLimitChanged)]
    assert changes and all(e.tool == "api" for e in changes)
    assert all(a.new == b.old for a, b in itertools.pairwise(changes))
    assert min(e.new for e in changes) == 1
    assert changes[-1].new == s.concurrency_limit
    assert backend.excess <= 0


async def test_the_pool_shrinks_to_the_limit(autojump_clock: trio.testing.MockClock) -> None:
    limit = AdaptiveConcurrency(initial=12, max_limit=12, algorithm="aimd")
    backend = Backend(0.05, limit)
    async with open_supervisor(grace_s=0) as sup:
        await sup.spawn(_spec("pool", limit, timeout_s=0.1), backend)
        await _load(sup, "pool", 30, trio.current_time() + 1)
        actor = sup._routes["pool"].actor  # the worker pool itself
        assert actor is not None
        assert len(actor._pool) == 12
        backend.latency = 0.5  # timeouts: the limit falls
        await _load(sup, "pool", 30, trio.current_time() + 1, timeout=0.3)
        backend.latency = 0.01
        lowered = limit.limit
        # A few calls, one at a time: a worker above the limit retires after each.
        for i in range(40):
            await sup.execute("pool", {"i": i})
        assert lowered < 12
        assert len(actor._pool) <= max(limit.limit, lowered)
        _adds_up(sup, "pool")


async def test_a_fixed_bulkhead_reports_its_int(autojump_clock: trio.testing.MockClock) -> None:
    backend = Backend(0.01)
    events: list[Event] = []
    async with open_supervisor(grace_s=0) as sup:
        sup.subscribe(events.append)
        await sup.spawn(_spec("fixed", 3), backend)
        await _load(sup, "fixed", 10, trio.current_time() + 1)
        assert sup.stats("fixed").concurrency_limit == 3
        assert sup.spec("fixed").adaptive_concurrency is None
    assert backend.peak == 3
    assert not [e for e in events if isinstance(e, ConcurrencyLimitChanged)]


async def test_reconfigure_resizes_a_running_bulkhead(
    autojump_clock: trio.testing.MockClock,
) -> None:
    backend = Backend(1.0)
    async with open_supervisor(grace_s=0) as sup:
        await sup.spawn(_spec("r", 8), backend)
        async with trio.open_nursery() as nursery:
            for i in range(8):
                nursery.start_soon(sup.execute, "r", {"i": i})
            await trio.sleep(0.5)
            assert backend.running == 8
            await sup.reconfigure("r", max_concurrency=2)
            assert sup.stats("r").concurrency_limit == 2
            for i in range(6):
                nursery.start_soon(sup.execute, "r", {"i": i})
            await trio.sleep(0.1)
            assert backend.running == 8  # the eight running go on; no new one starts
            backend.peak = 0
            await trio.sleep(0.6)  # the eight end
            assert backend.running == 2  # then two at a time
        assert backend.peak <= 2  # none started while two or more of the eight ran
        backend.peak = 0
        adaptive = AdaptiveConcurrency(initial=3, max_limit=3, algorithm="aimd")
        backend.limit = adaptive
        await sup.reconfigure("r", max_concurrency=adaptive)
        assert sup.stats("r").concurrency_limit == 3
        await _load(sup, "r", 10, trio.current_time() + 5)
        assert backend.peak == 3 and backend.excess <= 0
        await sup.reconfigure("r", max_concurrency=5)
        backend.peak, backend.limit = 0, None
        await _load(sup, "r", 10, trio.current_time() + 5)
        assert backend.peak == 5
        assert sup.stats("r").concurrency_limit == 5
        with pytest.raises(ValueError, match="max_concurrency must be an integer >= 1, got 0"):
            await sup.reconfigure("r", max_concurrency=0)
        _adds_up(sup, "r")


async def test_one_instance_on_two_specs_is_one_limit(
    autojump_clock: trio.testing.MockClock,
) -> None:
    shared = AdaptiveConcurrency(initial=8, max_limit=8, algorithm="aimd", backoff_ratio=0.5)
    slow, fast = Backend(1.0), Backend(0.01)
    async with open_supervisor(grace_s=0) as sup:
        await sup.spawn(_spec("a", shared, timeout_s=0.1), slow)
        await sup.spawn(_spec("b", shared), fast)
        await _load(sup, "a", 4, trio.current_time() + 1)  # a's timeouts lower it for both
        assert shared.limit == 1
        assert sup.stats("a").concurrency_limit == sup.stats("b").concurrency_limit == 1
        async with trio.open_nursery() as nursery:
            for i in range(8):
                nursery.start_soon(sup.execute, "b", {"i": i})
            await trio.sleep(0.005)
            assert fast.running == 1  # b's bulkhead follows the shared limit
        # b's successes raise it again (aimd: +1 per busy success), for a as well.
        assert shared.limit > 1
        assert sup.stats("a").concurrency_limit == shared.limit


async def test_overload_reports_the_current_limit(autojump_clock: trio.testing.MockClock) -> None:
    limit = AdaptiveConcurrency(initial=2, max_limit=2)
    spec = _spec("full", limit)
    spec.queue_size = 1
    spec.overflow = "reject"
    async with open_supervisor(grace_s=0) as sup:
        await sup.spawn(spec, Backend(1.0, limit))
        async with trio.open_nursery() as nursery:
            for i in range(3):  # two running, one queued
                nursery.start_soon(sup.execute, "full", {"i": i})
                await trio.sleep(0.01)
            with pytest.raises(ToolOverloadedError) as info:
                await sup.execute("full", {"i": 9})
        assert info.value.max_concurrency == 2
        _adds_up(sup, "full")


def test_the_spec_field_takes_an_int_or_an_adaptive_limit() -> None:
    spec = _spec("x", 4)
    spec.max_concurrency = AdaptiveConcurrency(initial=4)
    compiled = spec.compile()
    assert compiled.adaptive_concurrency is spec.max_concurrency
    assert compiled.max_concurrency == 4
    with pytest.raises(ValueError, match=r"max_concurrency must be an integer >= 1, got 'x'"):
        spec.max_concurrency = "x"  # type: ignore[assignment]


async def test_calls_cut_by_their_deadline_are_drops(
    autojump_clock: trio.testing.MockClock,
) -> None:
    limit = AdaptiveConcurrency(initial=16, max_limit=16, algorithm="aimd", backoff_ratio=0.5)
    async with open_supervisor(grace_s=0) as sup:
        await sup.spawn(_spec("late", limit), Backend(1.0, limit))  # timeout_s 30: no cut
        await _load(sup, "late", 20, trio.current_time() + 3, timeout=0.5)
        s = sup.stats("late")
        _adds_up(sup, "late")
    assert s.successes == 0 and s.timeouts == s.calls
    assert s.concurrency_limit == 1


async def _handover_round() -> int:
    """One round of the test below; the most calls of ``x`` that ran above the limit."""
    shared = AdaptiveConcurrency(initial=4, max_limit=4, algorithm="aimd", backoff_ratio=0.5)
    running = 0
    excess = 0

    async def x(args: dict[str, Any]) -> int:
        nonlocal running, excess
        running += 1
        excess = max(excess, running - shared.limit)
        try:
            await trio.sleep({0: 0.1, 10: 0.4}.get(args["i"], 5.0))
        finally:
            running -= 1
        return 0

    async with open_supervisor(grace_s=0) as sup:
        await sup.spawn(_spec("x", shared), x)
        await sup.spawn(_spec("y", shared, timeout_s=1.0), Backend(10.0))
        t0 = trio.current_time()
        async with trio.open_nursery() as nursery:
            for _ in range(4):  # x's pool grows to 4 workers, then idles
                nursery.start_soon(sup.submit, "x", {"i": 0})
            for at in (0.5, 1.5, 2.0):  # y's timeouts at 1.5 (-> 2), 2.5 (-> 1), 3.0
                await trio.sleep_until(t0 + at)
                nursery.start_soon(sup.submit, "y", {"i": 0})
            await trio.sleep_until(t0 + 2.6)
            assert shared.limit == 1
            for i in (10, 11, 12):  # one runs (ends at 3.0), two wait for a slot
                nursery.start_soon(sup.submit, "x", {"i": i})
            await trio.sleep(3)
    return excess


async def test_a_slot_handed_over_as_a_shared_limit_falls_is_not_used(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """At one instant a call of ``x`` ends (its slot goes to ``x``'s waiting calls) and a
    timeout of ``y`` lowers the shared limit: whichever runs first, the waiting calls
    start only within the limit (trio runs one instant's tasks in a random order)."""
    for _ in range(20):
        assert await _handover_round() <= 0
