"""Chaos strategies (toolvisor.testing.chaos) on the real call path."""

from __future__ import annotations

import random
from typing import Any

import pytest
import trio

import toolvisor as tv
from toolvisor.testing.chaos import ChaosFault, ChaosLatency, ChaosOutcome


def make_spec(chaos: list[Any], **kw: Any) -> tv.FunctionToolSpec:
    spec = tv.FunctionToolSpec(
        id="search-v1", tool_name="search", parameters=[tv.IntegerParameter(name="i")], **kw
    )
    spec.chaos = chaos
    return spec


async def search(args: dict[str, Any]) -> Any:
    return {"hits": args["i"]}


def invariant(stats: tv.ToolStats) -> bool:
    return stats.calls == stats.successes + stats.failures + stats.rejected + stats.cancelled


async def test_a_fault_hits_its_share_of_attempts_reproducibly(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def run(seed: int) -> list[bool]:
        spec = make_spec([ChaosFault(0.3, ConnectionError, rng=random.Random(seed))])
        async with tv.open_supervisor() as sup:
            await sup.spawn(spec, search)
            results = await sup.execute_many([("search", {"i": i}) for i in range(400)])
            stats = sup.stats("search")
        assert invariant(stats) and stats.failures == sum(not r.ok for r in results)
        assert all(isinstance(r.error, ConnectionError) for r in results if not r.ok)
        return [r.ok for r in results]

    first = await run(7)
    assert 0.2 < first.count(False) / 400 < 0.4
    assert sorted(await run(7)) == sorted(first)


async def test_an_injected_fault_is_an_attempt_failure_the_retry_policy_retries(
    autojump_clock: trio.testing.MockClock,
) -> None:
    error = ConnectionError("chaos: connection reset")
    spec = make_spec([ChaosFault(1.0, error)])
    spec.retry_policy = tv.FixedRetryPolicy(max_attempts=3, delay_seconds=0.1)
    spec.circuit_breaker_policy = tv.StandardCircuitBreakerPolicy(
        failure_threshold=10, recovery_timeout=30
    )
    async with tv.open_supervisor() as sup:
        await sup.spawn(spec, search)
        with pytest.raises(ConnectionError) as caught:
            await sup.execute("search", {"i": 1})
        stats = sup.stats("search")
    assert caught.value is error
    assert stats.retries == 2 and stats.failures == 1


async def test_latency_counts_against_the_attempt_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    spec = make_spec([ChaosLatency(1.0, 5.0)], timeout_s=2.0)
    async with tv.open_supervisor() as sup:
        await sup.spawn(spec, search)
        with pytest.raises(tv.ToolTimeoutError):
            await sup.execute("search", {"i": 1})
        assert sup.stats("search").timeouts == 1


async def test_an_outcome_replaces_the_tool_and_disabled_chaos_never_hits(
    autojump_clock: trio.testing.MockClock,
) -> None:
    ran = 0

    async def counted(args: dict[str, Any]) -> Any:
        nonlocal ran
        ran += 1
        return "real"

    chaos = [
        ChaosFault(1.0, ConnectionError, enabled=False),
        ChaosOutcome(1.0, "made up"),
    ]
    async with tv.open_supervisor() as sup:
        await sup.spawn(make_spec(chaos), counted)
        assert await sup.execute("search", {"i": 1}) == "made up"
    assert ran == 0


async def test_the_first_strategy_is_outermost(autojump_clock: trio.testing.MockClock) -> None:
    async with tv.open_supervisor() as sup:
        await sup.spawn(make_spec([ChaosOutcome(1.0, "outer"), ChaosFault(1.0, KeyError)]), search)
        assert await sup.execute("search", {"i": 1}) == "outer"


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: ChaosFault(1.5, ValueError), "rate"),
        (lambda: ChaosFault(0.1, "boom"), "error"),
        (lambda: ChaosLatency(0.1, -1), "delay"),
        (lambda: ChaosOutcome(0.1, 1, rng=7), "rng"),
    ],
)
def test_bad_arguments_name_the_field(make: Any, field: str) -> None:
    with pytest.raises(ValueError, match=f"'{field}'"):
        make()


def test_spec_chaos_takes_only_strategies() -> None:
    spec = make_spec([])
    with pytest.raises(ValueError, match=r"chaos\[1\]"):
        spec.chaos = [ChaosOutcome(0.1, 1), "fault"]
