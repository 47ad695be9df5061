"""Per-call throughput of two checkouts of toolvisor, as paired ratios in one run.

Usage::

    python benchmarks/bench_compare.py BASELINE_DIR [CANDIDATE_DIR] [--rounds N]

Each round runs the same load once per checkout, each in a fresh interpreter with that
checkout first on ``sys.path`` (the order alternating round by round), and the paired
ratio of the round is candidate / baseline. The load is the per-call overhead section's:
``execute()`` on a tool that returns at once, with a Standard breaker (5 failures, 30 s),
exponential retry (5 attempts) and a 30 s per-attempt timeout, at 1 and 100 concurrent
callers, for a fixed number of calls. Throughput is calls per CPU second of the process
(the machine is shared: CPU time is what other tenants disturb least). Prints the
median calls/s of each and the median of the paired ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

_LOAD = r"""
import json, time, trio, toolvisor as tv

CALLS = {calls}

async def instant(args):
    return args["i"]

async def main():
    spec = tv.FunctionToolSpec(id="b-v1", tool_name="b", timeout_s=30,
                               parameters=[tv.IntegerParameter(name="i", required=True)])
    spec.circuit_breaker_policy = tv.StandardCircuitBreakerPolicy(failure_threshold=5,
                                                                  recovery_timeout=30)
    spec.retry_policy = tv.ExponentialBackoffRetryPolicy(max_attempts=5, base_delay=1.0,
                                                         max_delay=30.0)
    out = {{}}
    async with tv.open_supervisor() as sup:
        await sup.spawn(spec, instant)
        for callers in (1, 100):
            per = CALLS // callers

            async def caller(k):
                for i in range(per):
                    await sup.execute("b", {{"i": i}})

            async with trio.open_nursery() as n:  # warm-up
                for k in range(callers):
                    n.start_soon(caller, k)
            t0 = time.process_time()
            async with trio.open_nursery() as n:
                for k in range(callers):
                    n.start_soon(caller, k)
            out[callers] = per * callers / (time.process_time() - t0)
    print(json.dumps(out))

trio.run(main)
"""


def _run(tree: Path, calls: int) -> dict[str, float]:
    env = dict(os.environ, PYTHONPATH=str(tree))
    code = _LOAD.format(calls=calls)
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True
    )
    result: dict[str, float] = json.loads(done.stdout)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("baseline", type=Path)
    parser.add_argument("candidate", type=Path, nargs="?", default=Path(__file__).parents[1])
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--calls", type=int, default=20000)
    options = parser.parse_args()
    figures: dict[str, dict[str, list[float]]] = {"baseline": {}, "candidate": {}}
    ratios: dict[str, list[float]] = {}
    for r in range(options.rounds):
        order = ["baseline", "candidate"] if r % 2 == 0 else ["candidate", "baseline"]
        got = {name: _run(getattr(options, name), options.calls) for name in order}
        for name, result in got.items():
            for callers, rate in result.items():
                figures[name].setdefault(callers, []).append(rate)
        for callers in got["baseline"]:
            ratios.setdefault(callers, []).append(
                got["candidate"][callers] / got["baseline"][callers]
            )
    for callers, paired in ratios.items():
        base = statistics.median(figures["baseline"][callers])
        cand = statistics.median(figures["candidate"][callers])
        print(
            f"{callers:>4} callers: baseline {base:,.0f}/s  candidate {cand:,.0f}/s  "
            f"paired ratio median {statistics.median(paired):.3f} "
            f"(range {min(paired):.3f}-{max(paired):.3f}, {len(paired)} rounds)"
        )


if __name__ == "__main__":
    main()
