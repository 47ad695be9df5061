"""Per-call overhead in CPU instructions, counted by valgrind: the same on a busy machine.

Usage::

    python benchmarks/bench_instructions.py [--calls N] [--concurrency 1,100] [--json PATH]

The per-call overhead section (``toolvisor bench --sections overhead``) times its
contenders, and on a shared machine its medians move by 10-30 % from run to run. This
script counts instead: each contender runs ``N`` calls (default 2,000) of the overhead
section's tool (``async def tool(args): return args['i']``, same policies) under
``valgrind --tool=callgrind``, in a fresh interpreter with ``PYTHONHASHSEED=0``, once
with the calls and once without (set-up, imports and warm-up only); the difference over
``N`` is the contender's instructions per call. Counts are repeatable to about 2 % (the
interpreter's own allocation pattern still varies a little), whatever else the machine
does, so two checkouts compare directly, and a change to the call path can be judged
before any timed run.

``--contenders mcp_bare,mcp_toolvisor`` counts bench_mcp.py's in-memory servers the same
way: one call is a ``tools/call`` of the SDK's client (the ``mcp`` extra).

Instructions are not time: a task switch or a cache miss costs more per instruction
than a dict lookup. The timed section stays the reference; this is its steady second
opinion. Needs valgrind (Debian: ``apt-get install valgrind``) and the bench extra
(tenacity, aiobreaker) for the asyncio contender.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import trio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CONTENDERS = ("toolvisor", "executor", "trio", "asyncio")
#: bench_mcp.py's in-memory servers behind the SDK's client (``--contenders mcp_bare,...``).
MCP_CONTENDERS = ("mcp_bare", "mcp_toolvisor")
#: Calls made before the counted ones in both runs (first-call costs: caches, pools).
WARMUP = 300


def _contender(name: str) -> Any:
    from toolvisor._bench import _contenders as c

    def instant() -> Any:
        return c.instant

    if name == "toolvisor":
        return c.toolvisor_contender(c.STANDARD, instant)
    if name == "executor":
        return c.executor_contender(c.STANDARD, instant)
    if name == "trio":
        return c.ceiling_contender(instant)
    if name == "asyncio":
        return c.asyncio_contender(c.STANDARD, instant)
    if name in MCP_CONTENDERS:
        return _mcp_contender(name.removeprefix("mcp_"))
    known = ", ".join(CONTENDERS + MCP_CONTENDERS)
    raise SystemExit(f"unknown contender {name!r}; one of {known}")


def _mcp_contender(kind: str) -> Any:
    """A server of bench_mcp.py (``bare`` or ``toolvisor``, the same adding tool) called
    in memory by the SDK's client: a call is bench_mcp's ``call_add`` (one ``tools/call``)."""
    from contextlib import asynccontextmanager

    from mcp import Client

    from toolvisor import open_supervisor
    from toolvisor._bench._harness import Contender
    from toolvisor.mcp import mcp_server

    sys.path.insert(0, str(ROOT / "benchmarks"))
    import bench_mcp

    @asynccontextmanager
    async def setup() -> Any:
        async with open_supervisor() as sup:
            await sup.spawn(bench_mcp.spec(), bench_mcp.add)
            server = mcp_server(sup) if kind == "toolvisor" else bench_mcp.bare_server()
            async with Client(server) as client:

                async def call(args: dict[str, Any]) -> object:
                    return await bench_mcp.call_add(client, args["i"], 1)

                yield call

    return Contender(f"mcp_{kind}", f"MCP tools/call, {kind} server", "trio", setup)


async def _load(contender: Any, calls: int, concurrency: int, nursery: Any) -> None:
    async with contender.setup() as call:
        for i in range(WARMUP):
            await call({"i": i})

        async def caller(first: int) -> None:
            for i in range(first, calls, concurrency):
                await call({"i": i})

        await nursery(caller, concurrency)


async def _trio_callers(caller: Any, concurrency: int) -> None:
    async with trio.open_nursery() as nursery:
        for k in range(concurrency):
            nursery.start_soon(caller, k)


async def _asyncio_callers(caller: Any, concurrency: int) -> None:
    async with asyncio.TaskGroup() as group:
        for k in range(concurrency):
            group.create_task(caller(k))


def child(name: str, calls: int, concurrency: int) -> None:
    """Run one contender's load in this process (what valgrind counts)."""
    import gc

    gc.disable()  # collections come at allocation counts that vary with the run's length
    contender = _contender(name)
    if contender.loop == "trio":
        trio.run(_load, contender, calls, concurrency, _trio_callers)
    else:
        asyncio.run(_load(contender, calls, concurrency, _asyncio_callers))


def _instructions(name: str, calls: int, concurrency: int) -> int:
    command = [
        "valgrind",
        "--tool=callgrind",
        "--callgrind-out-file=/dev/null",
        sys.executable,
        __file__,
        "--child",
        name,
        str(calls),
        str(concurrency),
    ]
    env = {**os.environ, "PYTHONHASHSEED": "0", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    found = re.search(r"Collected : (\d+)", done.stderr)
    if done.returncode != 0 or found is None:
        raise SystemExit(f"{name} under valgrind failed:\n{done.stderr[-2000:]}")
    return int(found.group(1))


def per_call(name: str, calls: int, concurrency: int) -> float:
    """Instructions per call of ``name`` at ``concurrency`` callers."""
    base = _instructions(name, 0, concurrency)
    loaded = _instructions(name, calls, concurrency)
    return (loaded - base) / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--concurrency", default="1,100")
    parser.add_argument("--contenders", default=",".join(CONTENDERS))
    parser.add_argument("--json", type=Path)
    parser.add_argument("--child", nargs=3, metavar=("CONTENDER", "CALLS", "CONCURRENCY"))
    opts = parser.parse_args()
    if opts.child:
        name, calls, concurrency = opts.child
        child(name, int(calls), int(concurrency))
        return
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (Debian: apt-get install valgrind)")
    names = [n for n in opts.contenders.split(",") if n]
    results: dict[str, dict[str, float]] = {}
    for concurrency in (int(c) for c in opts.concurrency.split(",")):
        row = {n: per_call(n, opts.calls, concurrency) for n in names}
        results[str(concurrency)] = row
        print(f"{concurrency} caller(s): instructions per call")
        for n, count in row.items():
            ratios = ", ".join(
                f"{row[o] / count:.2f}x {o}" for o in names if o != n
            )  # throughput-like: the other's cost over this one's
            print(f"  {n:10s} {count:10,.0f}   ({ratios})")
    if opts.json is not None:
        opts.json.write_text(json.dumps({"calls": opts.calls, "results": results}, indent=1))


if __name__ == "__main__":
    main()
