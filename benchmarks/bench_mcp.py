"""Calls per second of ``toolvisor.mcp`` against a bare ``mcp`` SDK server, same tool.

Run: ``python benchmarks/bench_mcp.py [--rounds R] [--calls N] [--concurrency C]``.

Both servers are the SDK's low-level ``Server`` with the same trivial tool (it adds two
integers): the bare one calls it straight from its ``tools/call`` handler; toolvisor's
runs it through ``sup.execute`` (argument validation, the tool's actor, its breaker and
retry policies: a Standard breaker and exponential retry, as a real spec would have).
The SDK's own client drives each over two transports: in memory (the client connected
to the server object in process) and stdio (each server in its own subprocess, started
once). Rounds alternate between the two servers, the order rotating each round; the
result is the median over rounds of the paired ratio toolvisor / bare, which cancels
a noisy machine's drift between rounds. The target is at least 0.9x.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

if importlib.util.find_spec("toolvisor") is None:  # run from a checkout, not installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import mcp_types as types
import trio
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.server.lowlevel import Server
from mcp.server.stdio import stdio_server

from toolvisor import (
    ExponentialBackoffRetryPolicy,
    FunctionToolSpec,
    IntegerParameter,
    StandardCircuitBreakerPolicy,
    open_supervisor,
)
from toolvisor.mcp import mcp_server, serve_stdio

TARGET = 0.9
SCHEMA = {
    "type": "object",
    "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
    "required": ["a", "b"],
    "additionalProperties": False,
}


async def add(args: dict[str, Any]) -> int:
    return int(args["a"]) + int(args["b"])


def spec() -> FunctionToolSpec:
    return FunctionToolSpec(
        id="add-v1",
        tool_name="add",
        description="Add two integers",
        parameters=[
            IntegerParameter(name="a", required=True),
            IntegerParameter(name="b", required=True),
        ],
        circuit_breaker_policy=StandardCircuitBreakerPolicy(failure_threshold=5),
        retry_policy=ExponentialBackoffRetryPolicy(max_attempts=3, base_delay=0.1),
    )


def bare_server() -> Server[Any]:
    """What a user writes with the SDK alone: list the tool, call it, answer its JSON."""

    async def list_tools(_ctx: Any, _params: Any) -> types.ListToolsResult:
        return types.ListToolsResult(
            tools=[types.Tool(name="add", description="Add two integers", input_schema=SCHEMA)]
        )

    async def call_tool(_ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        value = await add(params.arguments or {})
        return types.CallToolResult(content=[types.TextContent(text=json.dumps(value))])

    return Server("bare", on_list_tools=list_tools, on_call_tool=call_tool)


async def serve(kind: str) -> None:
    """The stdio server process of one contender."""
    if kind == "bare":
        server = bare_server()
        async with stdio_server() as (read, write):
            await server.run(read, write, server.create_initialization_options())
        return
    async with open_supervisor() as sup:
        await sup.spawn(spec(), add)
        await serve_stdio(sup)


async def load(client: Client, calls: int, concurrency: int) -> float:
    """Calls per second of ``calls`` calls, ``concurrency`` at a time."""
    per_task = calls // concurrency

    async def caller(i: int) -> None:
        for j in range(per_task):
            result = await client.call_tool("add", {"a": i, "b": j})
            if result.is_error or result.content[0].text != str(i + j):  # type: ignore[union-attr]
                raise AssertionError(f"wrong answer: {result}")

    start = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for i in range(concurrency):
            nursery.start_soon(caller, i)
    return per_task * concurrency / (time.perf_counter() - start)


def _child_env() -> dict[str, str]:
    """This process's environment (the SDK passes a minimal one), this checkout first."""
    root = str(Path(__file__).resolve().parents[1])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return env


async def measure(args: argparse.Namespace, transport: str) -> dict[str, Any]:
    rates: dict[str, list[float]] = {"bare": [], "toolvisor": []}
    async with open_supervisor() as sup:
        await sup.spawn(spec(), add)
        if transport == "memory":
            targets: dict[str, Any] = {"bare": bare_server(), "toolvisor": mcp_server(sup)}
        else:
            targets = {
                kind: StdioServerParameters(
                    command=sys.executable, args=[__file__, "--serve", kind], env=_child_env()
                )
                for kind in ("bare", "toolvisor")
            }
        async with Client(targets["bare"]) as bare, Client(targets["toolvisor"]) as tv:
            clients = {"bare": bare, "toolvisor": tv}
            for client in clients.values():  # warm-up
                await load(client, max(args.concurrency, args.calls // 10), args.concurrency)
            order = ["bare", "toolvisor"]
            for _ in range(args.rounds):
                for kind in order:
                    rates[kind].append(await load(clients[kind], args.calls, args.concurrency))
                order.reverse()
    ratios = [t / b for t, b in zip(rates["toolvisor"], rates["bare"], strict=True)]
    return {
        "transport": transport,
        "bare_calls_per_s": statistics.median(rates["bare"]),
        "toolvisor_calls_per_s": statistics.median(rates["toolvisor"]),
        "ratio": statistics.median(ratios),
        "ratio_range": [min(ratios), max(ratios)],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--calls", type=int, default=2000, help="calls per round")
    parser.add_argument("--concurrency", type=int, default=8, help="calls at a time")
    parser.add_argument("--transports", default="memory,stdio")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    parser.add_argument("--serve", choices=("bare", "toolvisor"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        trio.run(serve, args.serve)
        return 0
    results = []
    load_before = os.getloadavg()
    for transport in args.transports.split(","):
        run: Callable[[], Awaitable[dict[str, Any]]] = lambda t=transport: measure(args, t)  # noqa: E731
        figures = trio.run(run)
        results.append(figures)
        low, high = figures["ratio_range"]
        print(
            f"{transport:>6}: bare {figures['bare_calls_per_s']:8.0f} calls/s, toolvisor "
            f"{figures['toolvisor_calls_per_s']:8.0f} calls/s, ratio {figures['ratio']:.2f}x "
            f"(rounds {low:.2f}-{high:.2f}x; target >= {TARGET}x)"
        )
    if args.json is not None:
        run_info = {
            "rounds": args.rounds,
            "calls": args.calls,
            "concurrency": args.concurrency,
            "cpus": os.cpu_count(),
            "loadavg_before_after": [load_before, os.getloadavg()],
        }
        args.json.write_text(json.dumps({**run_info, "results": results}, indent=2))
    return 0 if all(r["ratio"] >= TARGET for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
