"""Per-call bookkeeping cost of StandardCircuitBreakerPolicy on a closed breaker.

Run: ``python benchmarks/bench_breaker.py [--calls N] [--rounds R]``.

In one ``trio.run`` it alternates rounds of ``await noop()`` (the baseline) and
``await policy.execute_with_breaker(noop, "t")``, then prints the medians per call and
their difference (the breaker's bookkeeping), in microseconds. Alternating rounds in one
process keeps a noisy machine from faking the difference.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
from pathlib import Path

import pybreaker
import trio

if importlib.util.find_spec("toolvisor") is None:  # run from a checkout, not installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from toolvisor.policies import (
    AdaptiveCircuitBreakerPolicy,
    StandardCircuitBreakerPolicy,
)


async def noop() -> None:
    return None


async def baseline_round(calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        await noop()
    return (time.perf_counter() - start) / calls


async def breaker_round(
    policy: StandardCircuitBreakerPolicy | AdaptiveCircuitBreakerPolicy, calls: int
) -> float:
    execute = policy.execute_with_breaker
    start = time.perf_counter()
    for _ in range(calls):
        await execute(noop, "t")
    return (time.perf_counter() - start) / calls


async def main(calls: int, rounds: int) -> None:
    policies = {
        "Standard execute_with_breaker": StandardCircuitBreakerPolicy(),
        "Adaptive execute_with_breaker": AdaptiveCircuitBreakerPolicy(),
        # A listener forces the full pybreaker replay of every success (no fast path).
        "Standard + listener (full replay)": StandardCircuitBreakerPolicy(
            listeners=[pybreaker.CircuitBreakerListener()]
        ),
    }
    base: list[float] = []
    samples: dict[str, list[float]] = {name: [] for name in policies}
    for _ in range(rounds):
        base.append(await baseline_round(calls))
        for name, policy in policies.items():
            samples[name].append(await breaker_round(policy, calls))
    b = statistics.median(base) * 1e6
    print(f"calls per round: {calls}, rounds: {rounds} (medians, microseconds per call)")
    print(f"{'baseline await noop()':36} {b:8.3f} us")
    for name, values in samples.items():
        m = statistics.median(values) * 1e6
        print(f"{name:36} {m:8.3f} us  (bookkeeping {m - b:6.3f} us)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=15)
    options = parser.parse_args()
    trio.run(main, options.calls, options.rounds)
