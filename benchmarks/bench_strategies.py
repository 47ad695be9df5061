"""What the retry budget and the rate limit cost per call, and what the budget saves.

Usage::

    python benchmarks/bench_strategies.py [--rounds N] [--calls N] [--plot PATH.png]

1. Overhead, as paired ratios in one run: ``execute()`` on a tool that returns at once,
   with a Standard breaker and exponential retry, alone (A) and with a RetryBudget and a
   RateLimit with tokens to spare (B), at 1 and 100 callers; each round runs A and B once
   each in one process, alternating their order; the ratio of a round is B / A in calls
   per CPU second. Prints the median ratio.
2. Load under a failure storm, on trio's MockClock (exact, no timing noise): 100 callers
   send calls to a tool failing 30 % of its attempts (seeded), with
   ``FixedRetryPolicy(max_attempts=3)``, without and with ``RetryBudget(ratio=0.2)``;
   prints the tool's load (attempts that ran) per call sent. ``--plot`` also sweeps the
   failure rate from 10 % to 100 % (5,000 calls each) and draws the load per call sent
   with and without the budget (matplotlib).
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


async def storm(
    budget: tv.RetryBudget | None,
    calls: int = 20_000,
    callers: int = 100,
    failure_rate: float = 0.3,
) -> float:
    rng = random.Random(30)
    ran = 0

    async def flaky(args: dict[str, Any]) -> Any:
        nonlocal ran
        ran += 1
        await trio.sleep(0.01)
        if rng.random() < failure_rate:
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
    parser.add_argument("--plot", default=None, metavar="PATH.png")
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
    if options.plot:
        plot_storms(options.plot)
    for (algorithm, callers), values in trio.run(
        adaptive_overhead, options.rounds, options.calls
    ).items():
        print(
            f"{callers:>4} callers: AdaptiveConcurrency({algorithm}, pinned at 16) / fixed "
            f"bulkhead of 16: paired ratio median {statistics.median(values):.3f} "
            f"(range {min(values):.3f}-{max(values):.3f}, {len(values)} rounds)"
        )


def storm_load(budget: tv.RetryBudget | None, failure_rate: float, calls: int) -> float:
    """The storm's tool load per call sent, on a MockClock (exact and instant)."""
    clock = trio.testing.MockClock(autojump_threshold=0)
    return trio.run(storm, budget, calls, 100, failure_rate, clock=clock)


def plot_storms(path: str, calls: int = 5_000) -> None:
    """Load per call sent against the failure rate, without and with the budget."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rates = [0.1, 0.3, 0.5, 0.7, 0.9, 1.0]
    without = [storm_load(None, r, calls) for r in rates]
    with_budget = [storm_load(tv.RetryBudget(ratio=0.2), r, calls) for r in rates]
    for r, a, b in zip(rates, without, with_budget, strict=True):
        print(f"  failure rate {r:.0%}: load {a:.3f}x without a budget, {b:.3f}x with")
    fig, ax = plt.subplots(figsize=(6, 3.6))
    ax.plot(rates, without, marker="o", label="FixedRetryPolicy(max_attempts=3)")
    ax.plot(rates, with_budget, marker="o", label="... + RetryBudget(ratio=0.2)")
    ax.axhline(1.25, color="grey", ls="--", lw=0.8, label="1.25x of the calls sent")
    ax.set_xlabel("share of attempts failing")
    ax.set_ylabel("attempts per call sent")
    ax.set_ylim(bottom=0)
    ax.set_title(f"Failure storm, 100 callers, {calls} calls (MockClock)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"plot written to {path}")


if __name__ == "__main__":
    main()
