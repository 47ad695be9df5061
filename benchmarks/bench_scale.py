"""What one in-flight call costs: tasks, GC-tracked objects and Python heap bytes.

Usage::

    python benchmarks/bench_scale.py [--calls N] [--tools T] [--top K]

``N`` concurrent calls (default 10,000) spread over ``T`` tools (default 100) to a tool
that waits on one shared ``trio.Event`` / ``asyncio.Event``; once every call is inside
the tool, the script counts, per call in flight: tasks, objects tracked by the garbage
collector (by type: each one is visited by every full collection) and the bytes
``tracemalloc`` sees allocated since the load began (Python's heap only). Each contender
runs in a fresh interpreter:

- ``toolvisor``: ``Supervisor.execute()`` with the scale section's policies (Standard
  breaker, exponential retry, ``timeout_s=30``, ``max_concurrency = N / T``);
- ``asyncio``: asyncio + tenacity + aiobreaker (one breaker per tool), as the scale
  section's contender;
- ``executor``: ``FunctionToolExecutor.execute()`` with the same policies, which runs
  them in the caller's task (no actor, no worker task; each attempt in its own
  ``timeout_s`` cancel scope): a bound on what running toolvisor's calls without a
  second task per call could save;
- ``trio``: one bare trio task per call awaiting the tool.

``--top K`` also lists the K source lines that allocated the most bytes per call.
The counts are exact for a given interpreter and library versions (they do not depend
on the machine's load), so they compare two checkouts directly.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import gc
import json
import os
import subprocess
import sys
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import trio
import trio.testing

CONTENDERS = ("toolvisor", "executor", "asyncio", "trio")


class _Census:
    """Objects and bytes before the load, and per call once every call is in flight."""

    def __init__(self, calls: int, top: int) -> None:
        self.calls = calls
        self.top = top
        gc.collect()
        self.types = collections.Counter(type(o).__name__ for o in gc.get_objects())
        self.objects = sum(self.types.values())
        tracemalloc.start(1)
        self.snapshot = tracemalloc.take_snapshot()

    def take(self, tasks: int) -> dict[str, Any]:
        snapshot = tracemalloc.take_snapshot()
        tracemalloc.stop()
        gc.collect()
        types = collections.Counter(type(o).__name__ for o in gc.get_objects())
        n = self.calls
        by_type = {
            k: round(v / n, 2) for k, v in (types - self.types).most_common() if v >= n / 100
        }
        lines = snapshot.compare_to(self.snapshot, "lineno")
        return {
            "calls": n,
            "tasks_per_call": tasks / n,
            "objects_per_call": (sum(types.values()) - self.objects) / n,
            "bytes_per_call": sum(s.size_diff for s in lines) / n,
            "objects_by_type": by_type,
            "top_lines": [
                {
                    "bytes": round(s.size_diff / n),
                    "count": round(s.count_diff / n, 2),
                    "line": str(s.traceback),
                }
                for s in lines[: self.top]
            ],
        }


class _Gate:
    """The trio contenders' tool: it counts the calls inside it and waits for ``release``."""

    def __init__(self) -> None:
        self.release = trio.Event()
        self.entered = 0

    async def tool(self, args: dict[str, Any]) -> object:
        self.entered += 1
        await self.release.wait()
        return args["i"]


def _trio_tasks() -> Iterator[trio.lowlevel.Task]:
    stack = [trio.lowlevel.current_root_task()]
    while stack:
        task = stack.pop()
        if task is None:
            continue
        yield task
        for nursery in task.child_nurseries:
            stack.extend(nursery.child_tasks)


async def _toolvisor(calls: int, tools: int, top: int) -> dict[str, Any]:
    from toolvisor import open_supervisor
    from toolvisor._bench._contenders import STANDARD, tool_spec

    per_tool = calls // tools
    gate = _Gate()
    tool = gate.tool

    async with open_supervisor() as sup:
        for t in range(tools):
            await sup.spawn(tool_spec(STANDARD, name=f"tool_{t}", max_concurrency=per_tool), tool)
        await trio.testing.wait_all_tasks_blocked()
        tasks_before = sum(1 for _ in _trio_tasks())
        census = _Census(per_tool * tools, top)
        async with trio.open_nursery() as nursery:
            for k in range(per_tool * tools):
                nursery.start_soon(sup.execute, f"tool_{k % tools}", {"i": k})
            await trio.testing.wait_all_tasks_blocked()
            assert gate.entered == per_tool * tools, gate.entered
            figures = census.take(sum(1 for _ in _trio_tasks()) - tasks_before)
            gate.release.set()
    return figures


async def _executor(calls: int, tools: int, top: int) -> dict[str, Any]:
    from toolvisor import FunctionToolExecutor
    from toolvisor._bench._contenders import STANDARD, tool_spec

    per_tool = calls // tools
    gate = _Gate()
    tool = gate.tool

    executors = [
        FunctionToolExecutor(tool_spec(STANDARD, name=f"tool_{t}", max_concurrency=per_tool), tool)
        for t in range(tools)
    ]
    tasks_before = sum(1 for _ in _trio_tasks())
    census = _Census(per_tool * tools, top)
    async with trio.open_nursery() as nursery:
        for k in range(per_tool * tools):
            nursery.start_soon(executors[k % tools].execute, {"i": k})
        await trio.testing.wait_all_tasks_blocked()
        assert gate.entered == per_tool * tools, gate.entered
        figures = census.take(sum(1 for _ in _trio_tasks()) - tasks_before - 1)
        gate.release.set()
    return figures


async def _trio(calls: int, _tools: int, top: int) -> dict[str, Any]:
    gate = _Gate()
    tool = gate.tool

    async def one(k: int) -> None:
        await tool({"i": k})

    tasks_before = sum(1 for _ in _trio_tasks())
    census = _Census(calls, top)
    async with trio.open_nursery() as nursery:
        for k in range(calls):
            nursery.start_soon(one, k)
        await trio.testing.wait_all_tasks_blocked()
        assert gate.entered == calls, gate.entered
        figures = census.take(sum(1 for _ in _trio_tasks()) - tasks_before - 1)
        gate.release.set()
    return figures


async def _asyncio(calls: int, tools: int, top: int) -> dict[str, Any]:
    from toolvisor._bench._contenders import STANDARD, make_guarded, new_breaker

    per_tool = calls // tools
    release = asyncio.Event()
    all_in = asyncio.Event()
    entered = 0

    async def tool(args: dict[str, Any]) -> object:
        nonlocal entered
        entered += 1
        if entered == per_tool * tools:
            all_in.set()
        await release.wait()
        return args["i"]

    guarded = [make_guarded(tool, new_breaker(STANDARD), STANDARD) for _ in range(tools)]
    await asyncio.sleep(0)
    tasks_before = len(asyncio.all_tasks())
    census = _Census(per_tool * tools, top)
    async with asyncio.TaskGroup() as group:
        for k in range(per_tool * tools):
            group.create_task(guarded[k % tools]({"i": k}))
        await all_in.wait()
        figures = census.take(len(asyncio.all_tasks()) - tasks_before)
        release.set()
    return figures


def measure(contender: str, calls: int, tools: int, top: int) -> dict[str, Any]:
    """One contender's census, in this process."""
    if contender == "toolvisor":
        return trio.run(_toolvisor, calls, tools, top)
    if contender == "executor":
        return trio.run(_executor, calls, tools, top)
    if contender == "trio":
        return trio.run(_trio, calls, tools, top)
    if contender == "asyncio":
        return asyncio.run(_asyncio(calls, tools, top))
    raise ValueError(f"unknown contender {contender!r}; one of {CONTENDERS}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=10_000)
    parser.add_argument("--tools", type=int, default=100)
    parser.add_argument("--top", type=int, default=0)
    parser.add_argument("--one", choices=CONTENDERS, help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.one:
        print(json.dumps(measure(options.one, options.calls, options.tools, options.top)))
        return
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(__file__).parents[1]), *sys.path]))
    for contender in CONTENDERS:
        args = [sys.executable, __file__, "--one", contender, "--calls", str(options.calls)]
        args += ["--tools", str(options.tools), "--top", str(options.top)]
        done = subprocess.run(args, env=env, check=True, capture_output=True, text=True)
        figures = json.loads(done.stdout)
        print(
            f"{contender:>9}: per call in flight: {figures['tasks_per_call']:.2f} tasks, "
            f"{figures['objects_per_call']:.1f} GC-tracked objects, "
            f"{figures['bytes_per_call']:,.0f} bytes (tracemalloc)"
        )
        types = ", ".join(f"{k} {v}" for k, v in list(figures["objects_by_type"].items())[:12])
        print(f"{'':>11}by type: {types}")
        for line in figures["top_lines"]:
            print(f"{'':>11}{line['bytes']:>5} B {line['count']:>5} x {line['line']}")


if __name__ == "__main__":
    main()
