"""What the retry budget and the rate limit cost per call, and what the budget saves.

Usage::

    python benchmarks/bench_strategies.py [--rounds N] [--calls N]

1. Overhead, as paired ratios in one run: ``execute()`` on a tool that returns at once,
   with a Standard breaker and exponential retry, alone (A) and with a RetryBudget and a
   RateLimit with tokens to spare (B), at 1 and 100 callers; each round runs A and B once
   each in one process, alternating their order; the ratio of a round is B / A in calls
   per CPU second. Prints the median ratio.
2. Load under a failure storm, on trio's MockClock (exact, no timing noise): 100 callers
   send calls to a tool failing 30 % of its attempts (seeded), with
   ``FixedRetryPolicy(max_attempts=3)``, without and with ``RetryBudget(ratio=0.2)``;
   prints the tool's load (attempts that ran) per call sent.
3. Adaptive concurrency, as paired ratios in one run: the same tool and policies with a
   fixed bulkhead of 16 (A) and with ``AdaptiveConcurrency`` pinned at 16
   (``min_limit = max_limit = 16``, so both run as many calls at once and the difference
   is the gate and the per-call sample) (B), for each algorithm, at 1 and 100 callers;
   alternating order, median of B / A in calls per CPU second.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from typing import Any

import trio
import trio.testing

import toolvisor as tv


async def instant(args: dict[str, Any]) -> Any:
    return args["i"]


def _spec(name: str, strategies: bool) -> tv.FunctionToolSpec:
    spec = tv.FunctionToolSpec(
        id=f"{name}-v1",
        tool_name=name,
        timeout_s=30,
        parameters=[tv.IntegerParameter(name="i", required=True)],
    )
    spec.circuit_breaker_policy = tv.StandardCircuitBreakerPolicy(
        failure_threshold=5, recovery_timeout=30
    )
    spec.retry_policy = tv.ExponentialBackoffRetryPolicy(max_attempts=5, base_delay=1.0)
    if strategies:
        spec.retry_budget = tv.RetryBudget()
        spec.rate_limit = tv.RateLimit(1e9)
    return spec


async def _throughput(sup: tv.Supervisor, tool: str, callers: int, calls: int) -> float:
    per = calls // callers

    async def caller() -> None:
        for i in range(per):
            await sup.execute(tool, {"i": i})

    t0 = time.process_time()
    async with trio.open_nursery() as nursery:
        for _ in range(callers):
            nursery.start_soon(caller)
    return per * callers / (time.process_time() - t0)


async def overhead(rounds: int, calls: int) -> dict[int, list[float]]:
    ratios: dict[int, list[float]] = {1: [], 100: []}
    async with tv.open_supervisor() as sup:
        await sup.spawn(_spec("plain", False), instant)
        await sup.spawn(_spec("strategies", True), instant)
        for callers in ratios:
            await _throughput(sup, "plain", callers, calls)  # warm-up
            await _throughput(sup, "strategies", callers, calls)
            for r in range(rounds):
                order = ["plain", "strategies"] if r % 2 == 0 else ["strategies", "plain"]
                got = {tool: await _throughput(sup, tool, callers, calls) for tool in order}
                ratios[callers].append(got["strategies"] / got["plain"])
    return ratios


async def storm(budget: tv.RetryBudget | None, calls: int = 20_000, callers: int = 100) -> float:
    rng = random.Random(30)
    ran = 0

    async def flaky(args: dict[str, Any]) -> Any:
        nonlocal ran
        ran += 1
        await trio.sleep(0.01)
        if rng.random() < 0.3:
            raise ConnectionError("storm")
        return args["i"]

    spec = tv.FunctionToolSpec(
        id="storm-v1", tool_name="storm", parameters=[tv.IntegerParameter(name="i")]
    )
    spec.max_concurrency = callers
    spec.retry_policy = tv.FixedRetryPolicy(max_attempts=3, delay_seconds=0.05)
    spec.retry_budget = budget
    async with tv.open_supervisor() as sup:
        await sup.spawn(spec, flaky)

        async def caller() -> None:
            for i in range(calls // callers):
                await sup.execute_many([("storm", {"i": i})])

        async with trio.open_nursery() as nursery:
            for _ in range(callers):
                nursery.start_soon(caller)
    return ran / calls


def _bulkhead_spec(name: str, bulkhead: int | tv.AdaptiveConcurrency) -> tv.FunctionToolSpec:
    spec = _spec(name, False)
    spec.max_concurrency = bulkhead
    return spec


async def adaptive_overhead(rounds: int, calls: int) -> dict[tuple[str, int], list[float]]:
    ratios: dict[tuple[str, int], list[float]] = {}
    async with tv.open_supervisor() as sup:
        await sup.spawn(_bulkhead_spec("fixed", 16), instant)
        for algorithm in ("gradient2", "aimd"):
            pinned = tv.AdaptiveConcurrency(
                initial=16, min_limit=16, max_limit=16, algorithm=algorithm
            )
            await sup.spawn(_bulkhead_spec(algorithm, pinned), instant)
        for algorithm in ("gradient2", "aimd"):
            for callers in (1, 100):
                values = ratios[algorithm, callers] = []
                await _throughput(sup, "fixed", callers, calls)  # warm-up
                await _throughput(sup, algorithm, callers, calls)
                for r in range(rounds):
                    order = ["fixed", algorithm] if r % 2 == 0 else [algorithm, "fixed"]
                    got = {tool: await _throughput(sup, tool, callers, calls) for tool in order}
                    values.append(got[algorithm] / got["fixed"])
    return ratios


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--calls", type=int, default=20000)
    options = parser.parse_args()
    ratios = trio.run(overhead, options.rounds, options.calls)
    for callers, values in ratios.items():
        print(
            f"{callers:>4} callers: budget + rate limit + breaker + retry / breaker + retry: "
            f"paired ratio median {statistics.median(values):.3f} "
            f"(range {min(values):.3f}-{max(values):.3f}, {len(values)} rounds)"
        )
    clock = trio.testing.MockClock(autojump_threshold=0)
    without = trio.run(storm, None, clock=clock)
    clock = trio.testing.MockClock(autojump_threshold=0)
    with_budget = trio.run(storm, tv.RetryBudget(ratio=0.2), clock=clock)
    print(
        "30 % failure storm, 100 callers, max_attempts=3: tool load per call sent "
        f"{without:.3f}x without a budget, {with_budget:.3f}x with RetryBudget(ratio=0.2)"
    )
    for (algorithm, callers), values in trio.run(
        adaptive_overhead, options.rounds, options.calls
    ).items():
        print(
            f"{callers:>4} callers: AdaptiveConcurrency({algorithm}, pinned at 16) / fixed "
            f"bulkhead of 16: paired ratio median {statistics.median(values):.3f} "
            f"(range {min(values):.3f}-{max(values):.3f}, {len(values)} rounds)"
        )


if __name__ == "__main__":
    main()
