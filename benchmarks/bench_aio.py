"""Per-call overhead of ``toolvisor.aio`` from asyncio, against the code users would write
instead and against native trio toolvisor.

Run: ``python benchmarks/bench_aio.py [--rounds R] [--round-s S] [--json PATH]``.

Contenders, alternated round by round (each round in its own event loop, the order
rotating, as ``toolvisor bench`` does), all with the same policies (Standard breaker,
exponential retry, 30 s per-attempt timeout) and a tool that returns at once:

- ``aio``: ``toolvisor.aio`` ``execute()`` from asyncio, the tool an asyncio function
  (the default: each attempt runs as an asyncio task);
- ``aio_trio``: the same, the tool spawned with ``runs_on="trio"``;
- ``asyncio``: asyncio + tenacity + aiobreaker calling the function directly;
- ``toolvisor``: native trio ``Supervisor.execute()`` under ``trio.run``.

Prints paired medians of throughput ratios at 1 and 100 concurrent callers.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

if importlib.util.find_spec("toolvisor") is None:  # run from a checkout, not installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import toolvisor.aio
from toolvisor._bench._contenders import (
    STANDARD,
    TOOL,
    asyncio_contender,
    instant,
    tool_spec,
    toolvisor_contender,
)
from toolvisor._bench._harness import Call, Contender, measure_series


def aio_contender(runs_on: toolvisor.aio.RunsOn, name: str, label: str) -> Contender:
    @asynccontextmanager
    async def setup() -> AsyncIterator[Call]:
        async with toolvisor.aio.open_supervisor() as sup:
            await sup.spawn(tool_spec(STANDARD), instant, runs_on=runs_on)
            yield functools.partial(sup.execute, TOOL)

    return Contender(name, label, "asyncio", setup)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--round-s", type=float, default=0.25)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 100])
    parser.add_argument("--json", type=Path)
    opts = parser.parse_args()
    contenders = [
        aio_contender("asyncio", "aio", "toolvisor.aio execute(), asyncio tool"),
        aio_contender("trio", "aio_trio", "toolvisor.aio execute(), runs_on='trio'"),
        asyncio_contender(STANDARD, lambda: instant),
        toolvisor_contender(STANDARD, lambda: instant, label="native trio toolvisor"),
    ]
    series = []
    for concurrency in opts.concurrency:
        result = measure_series(
            contenders,
            concurrency,
            rounds=opts.rounds,
            round_s=opts.round_s,
            probe=200,
            tick=lambda _label: None,
        )
        series.append(result)
        print(f"\n{concurrency} caller(s): calls/s (median of {opts.rounds} rounds), p50")
        for run in result["runs"].values():
            median = run["median"]
            print(
                f"  {run['label']:<42} {median['calls_per_s']:>9.0f}/s"
                f"  p50 {median['p50_us']:>7.1f} us"
            )
        for pair in ("aio/asyncio", "aio/toolvisor", "aio_trio/asyncio", "aio_trio/toolvisor"):
            print(f"  {pair:<22} {result['ratios'][pair]:.2f}x")
    if opts.json is not None:
        opts.json.write_text(json.dumps(series, indent=2))


if __name__ == "__main__":
    main()
