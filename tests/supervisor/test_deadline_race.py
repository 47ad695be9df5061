"""A tool's reply racing its deadline at the actor's watchdog: exactly one reply each.

The tool finishes at the very instant its deadline passes (trio's MockClock makes the
instant exact): the watchdog's wake-up and the tool's return are due together, and
trio runs them in either order. Whichever wins, each caller gets one outcome, the
counters add up, and the workers serve the next calls as if nothing happened.
"""

from __future__ import annotations

from typing import Any

import pytest
import trio

import toolvisor as tv
from toolvisor.testing import settle

N = 40


def _spec(name: str, timeout_s: float, **kw: Any) -> tv.FunctionToolSpec:
    return tv.FunctionToolSpec(
        id=f"{name}-v1",
        tool_name=name,
        description=name,
        parameters=[tv.NumericParameter(name="sleep", required=True)],
        timeout_s=timeout_s,
        max_concurrency=N,
        **kw,
    )


async def _sleeper(args: dict[str, Any]) -> float:
    await trio.sleep(args["sleep"])
    return float(args["sleep"])


async def _race(sup: tv.Supervisor, tool: str, sleep: float, timeout: float | None) -> list[Any]:
    outcomes: list[list[Any]] = [[] for _ in range(N)]

    async def one(k: int) -> None:
        try:
            outcomes[k].append(await sup.execute(tool, {"sleep": sleep}, timeout=timeout))
        except tv.ToolTimeoutError as exc:
            outcomes[k].append(exc)

    async with trio.open_nursery() as nursery:
        for k in range(N):
            nursery.start_soon(one, k)
    assert all(len(o) == 1 for o in outcomes), outcomes
    return [o[0] for o in outcomes]


def _check_counters(stats: tv.ToolStats, calls: int) -> None:
    assert stats.calls == calls
    assert stats.calls == stats.successes + stats.failures + stats.rejected + stats.cancelled
    assert stats.in_flight == 0


@pytest.mark.parametrize("rounds", [3])
async def test_a_reply_at_the_attempts_timeout_is_one_reply(
    autojump_clock: trio.testing.MockClock, rounds: int
) -> None:
    async with tv.open_supervisor() as sup:
        await sup.spawn(_spec("edge", timeout_s=1.0), _sleeper)
        calls = 0
        for _ in range(rounds):
            got = await _race(sup, "edge", sleep=1.0, timeout=None)
            calls += N
            for g in got:
                assert g == 1.0 or (isinstance(g, tv.ToolTimeoutError) and g.scope == "attempt")
            stats = sup.stats("edge")
            _check_counters(stats, calls)
            assert stats.failures == stats.timeouts  # every failure is one of the timeouts
            # The same workers serve the next calls normally: a quick one succeeds.
            assert await sup.execute("edge", {"sleep": 0.1}) == 0.1
            calls += 1
            _check_counters(sup.stats("edge"), calls)


async def test_a_reply_at_the_calls_own_deadline_is_one_reply(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with tv.open_supervisor() as sup:
        await sup.spawn(_spec("edge", timeout_s=30.0), _sleeper)
        got = await _race(sup, "edge", sleep=2.0, timeout=2.0)
        for g in got:
            assert g == 2.0 or (isinstance(g, tv.ToolTimeoutError) and g.scope == "call")
        _check_counters(sup.stats("edge"), N)
        assert await sup.execute("edge", {"sleep": 0.5}, timeout=2.0) == 0.5


async def test_attempts_cut_at_their_timeout_are_recorded_by_the_breaker(
    autojump_clock: trio.testing.MockClock,
) -> None:
    spec = _spec("hangs", timeout_s=0.5)
    spec.circuit_breaker_policy = tv.StandardCircuitBreakerPolicy(
        failure_threshold=2, recovery_timeout=60
    )
    async with tv.open_supervisor() as sup:
        await sup.spawn(spec, _sleeper)
        for _ in range(2):
            with pytest.raises(tv.ToolTimeoutError):
                await sup.execute("hangs", {"sleep": 10.0})
        with pytest.raises(tv.CircuitOpenError):
            await sup.execute("hangs", {"sleep": 0.0})
        stats = sup.stats("hangs")
        assert (stats.timeouts, stats.failures, stats.rejected) == (2, 2, 1)
        assert stats.breaker_state == "open"


async def test_a_timeout_storm_answers_every_caller_before_any_cut_attempt_unwinds(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # N calls time out in the same instant: the watchdog answers all of their callers
    # first and their workers are cut once the program is idle, so no caller waits
    # behind the unwinding of the others' attempts; each attempt still unwinds and is
    # recorded.
    seen: list[str] = []

    async def hang(_args: dict[str, Any]) -> None:
        try:
            await trio.sleep_forever()
        finally:
            seen.append("unwound")

    spec = _spec("storm", timeout_s=1.0)
    spec.circuit_breaker_policy = tv.StandardCircuitBreakerPolicy(
        failure_threshold=N, recovery_timeout=60
    )
    async with tv.open_supervisor() as sup:
        await sup.spawn(spec, hang)

        async def one() -> None:
            with pytest.raises(tv.ToolTimeoutError):
                await sup.execute("storm", {"sleep": 0})
            seen.append("answered")

        async with trio.open_nursery() as nursery:
            for _ in range(N):
                nursery.start_soon(one)
        # The workers unwind once their callers ran; the breaker records every attempt.
        await trio.testing.wait_all_tasks_blocked()
        assert seen == ["answered"] * N
        await settle()
        assert seen == ["answered"] * N + ["unwound"] * N
        stats = sup.stats("storm")
        assert (stats.timeouts, stats.failures, stats.in_flight) == (N, N, 0)
        assert stats.breaker_state == "open"  # N failures recorded: the threshold
