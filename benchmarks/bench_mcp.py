"""Calls per second of ``toolvisor.mcp`` against bare ``mcp`` SDK servers, same tool.

Run: ``python benchmarks/bench_mcp.py [--rounds R] [--calls N] [--concurrency C]
[--breakdown]``.

Three servers, each the SDK's low-level ``Server`` with the same trivial tool (it adds
two integers):

- ``bare``: calls the tool straight from its ``tools/call`` handler, arguments unchecked
  (the SDK's low-level server does not validate them against the ``inputSchema``);
- ``bare_validating``: the same, after checking the arguments against the tool's
  ``inputSchema`` with a validator compiled once (jsonschema-rs), as any server must
  before it runs a tool, answering bad ones with an ``isError`` result;
- ``toolvisor``: runs the tool through ``sup.execute`` (argument validation, the tool's
  actor, its breaker and retry policies: a Standard breaker and exponential retry, as a
  real spec would have).

The SDK's own client drives each over two transports: in memory (the client connected
to the server object in process) and stdio (each server in its own subprocess, started
once). ``toolvisor`` serves stdio on toolvisor's own transport (which answers every
line, the SDK's parser's refusals included) and the bare servers on the SDK's; over
stdio a fourth server, ``bare_toolvisor_stdio``, is ``bare`` on toolvisor's transport, so
the figure "on the same transport" compares the two servers alone. Rounds alternate
between the servers, the order rotating each round; the result
is the median over rounds of the paired ratio toolvisor / bare (and toolvisor /
bare_validating), which cancels a noisy machine's drift between rounds. In memory, the
garbage collector's collections per 1,000 calls are counted too (client and server
share the process). With ``--breakdown``, three more bare servers join the in-memory
rotation to say where toolvisor's share goes, each a step from ``bare`` towards
``toolvisor`` (a separate run: six servers in one process change what the collector
costs each, so the main figures come from a run without them):

- ``bare_awaiting``: the bare handler waits once before the tool (one checkpoint), as
  the request waits once for the actor's reply: what that wait costs the SDK's request;
- ``bare_executor``: runs the tool through ``FunctionToolExecutor`` with the same spec
  (validation, breaker, retry, in the request's own task): the policies without the hop;
- ``bare_execute``: calls ``sup.execute`` (the policies and the hop to the tool's
  actor), without ``toolvisor.mcp``'s handler.

The target is at least 0.9x of ``bare``.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
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

import jsonschema_rs
import mcp_types as types
import trio
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.server.lowlevel import Server
from mcp.server.stdio import stdio_server
from mcp.shared.exceptions import MCPError

from toolvisor import (
    ExponentialBackoffRetryPolicy,
    FunctionToolExecutor,
    FunctionToolSpec,
    IntegerParameter,
    StandardCircuitBreakerPolicy,
    open_supervisor,
)
from toolvisor._mcp_stdio import stdio_streams
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


def bare_validating_server() -> Server[Any]:
    """The bare server checking what it must: the tool is known, its arguments match the
    ``inputSchema`` (a validator compiled once per tool); bad arguments are an
    ``isError`` result the model can read."""
    validators = {"add": jsonschema_rs.validator_for(SCHEMA)}

    async def list_tools(_ctx: Any, _params: Any) -> types.ListToolsResult:
        return types.ListToolsResult(
            tools=[types.Tool(name="add", description="Add two integers", input_schema=SCHEMA)]
        )

    async def call_tool(_ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        validator = validators.get(params.name)
        if validator is None:
            raise MCPError(-32602, f"unknown tool {params.name!r}")
        args = params.arguments or {}
        try:
            validator.validate(args)
        except jsonschema_rs.ValidationError as exc:
            error = types.TextContent(text=exc.message)
            return types.CallToolResult(content=[error], is_error=True)
        value = await add(args)
        return types.CallToolResult(content=[types.TextContent(text=json.dumps(value))])

    return Server("bare_validating", on_list_tools=list_tools, on_call_tool=call_tool)


def _bare_with(run: Callable[[dict[str, Any]], Awaitable[Any]], name: str) -> Server[Any]:
    """The bare server, its tool call replaced by ``run(arguments)``."""

    async def list_tools(_ctx: Any, _params: Any) -> types.ListToolsResult:
        return types.ListToolsResult(
            tools=[types.Tool(name="add", description="Add two integers", input_schema=SCHEMA)]
        )

    async def call_tool(_ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        value = await run(params.arguments or {})
        return types.CallToolResult(content=[types.TextContent(text=json.dumps(value))])

    return Server(name, on_list_tools=list_tools, on_call_tool=call_tool)


def breakdown_servers(sup: Any) -> dict[str, Server[Any]]:
    """The in-memory steps from ``bare`` to ``toolvisor`` (see the module docstring)."""

    async def awaiting(args: dict[str, Any]) -> int:
        await trio.lowlevel.checkpoint()
        return await add(args)

    async def execute(args: dict[str, Any]) -> Any:
        return await sup.execute("add", args)

    executor = FunctionToolExecutor(spec(), add)
    return {
        "bare_awaiting": _bare_with(awaiting, "bare_awaiting"),
        "bare_executor": _bare_with(executor.execute, "bare_executor"),
        "bare_execute": _bare_with(execute, "bare_execute"),
    }


KINDS = ("bare", "bare_validating", "toolvisor")
#: Over stdio, the bare server also on toolvisor's stdio transport: the same transport as
#: toolvisor's server, where ``bare`` runs on the SDK's.
STDIO_ONLY = ("bare_toolvisor_stdio",)
BREAKDOWN = ("bare_awaiting", "bare_executor", "bare_execute")
BARE_SERVERS = {"bare": bare_server, "bare_validating": bare_validating_server}


async def serve(kind: str) -> None:
    """The stdio server process of one contender."""
    if kind in BARE_SERVERS:
        server = BARE_SERVERS[kind]()
        async with stdio_server() as (read, write):
            await server.run(read, write, server.create_initialization_options())
        return
    if kind == "bare_toolvisor_stdio":
        server = bare_server()
        async with stdio_streams() as (read, write):
            await server.run(read, write, server.create_initialization_options())
        return
    async with open_supervisor() as sup:
        await sup.spawn(spec(), add)
        await serve_stdio(sup)


async def call_add(client: Client, a: int, b: int) -> str:
    """One ``tools/call`` of the adding tool; its text, checked to be ``a + b``."""
    result = await client.call_tool("add", {"a": a, "b": b})
    text = result.content[0].text  # type: ignore[union-attr]
    if result.is_error or text != str(a + b):
        raise AssertionError(f"wrong answer: {result}")
    return text


async def load(client: Client, calls: int, concurrency: int) -> float:
    """Calls per second of ``calls`` calls, ``concurrency`` at a time."""
    per_task = calls // concurrency

    async def caller(i: int) -> None:
        for j in range(per_task):
            await call_add(client, i, j)

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


def _gc_collections() -> list[int]:
    return [generation["collections"] for generation in gc.get_stats()]


def _median_ratio(rates: dict[str, list[float]], of: str, to: str) -> dict[str, Any]:
    ratios = [t / b for t, b in zip(rates[of], rates[to], strict=True)]
    return {"median": statistics.median(ratios), "range": [min(ratios), max(ratios)]}


async def measure(args: argparse.Namespace, transport: str) -> dict[str, Any]:
    if transport == "memory":
        kinds = KINDS + BREAKDOWN if args.breakdown else KINDS
    else:
        kinds = KINDS + STDIO_ONLY
    rates: dict[str, list[float]] = {kind: [] for kind in kinds}
    collections: dict[str, list[list[int]]] = {kind: [] for kind in kinds}
    async with open_supervisor() as sup:
        await sup.spawn(spec(), add)
        if transport == "memory":
            targets: dict[str, Any] = {kind: make() for kind, make in BARE_SERVERS.items()}
            targets["toolvisor"] = mcp_server(sup)
            if args.breakdown:
                targets.update(breakdown_servers(sup))
        else:
            targets = {
                kind: StdioServerParameters(
                    command=sys.executable, args=[__file__, "--serve", kind], env=_child_env()
                )
                for kind in kinds
            }
        async with contextlib.AsyncExitStack() as stack:
            clients = {
                kind: await stack.enter_async_context(Client(targets[kind])) for kind in kinds
            }
            for client in clients.values():  # warm-up
                await load(client, max(args.concurrency, args.calls // 10), args.concurrency)
            order = list(kinds)
            for _ in range(args.rounds):
                for kind in order:
                    before = _gc_collections()
                    rates[kind].append(await load(clients[kind], args.calls, args.concurrency))
                    after = _gc_collections()
                    collections[kind].append([a - b for a, b in zip(after, before, strict=True)])
                order = order[1:] + order[:1]
    figures: dict[str, Any] = {"transport": transport}
    for kind in kinds:
        figures[f"{kind}_calls_per_s"] = statistics.median(rates[kind])
    vs_bare = _median_ratio(rates, "toolvisor", "bare")
    vs_validating = _median_ratio(rates, "toolvisor", "bare_validating")
    figures["ratio"], figures["ratio_range"] = vs_bare["median"], vs_bare["range"]
    figures["ratio_vs_validating"] = vs_validating["median"]
    figures["ratio_vs_validating_range"] = vs_validating["range"]
    figures["rounds_calls_per_s"] = rates
    if transport == "stdio":
        same = _median_ratio(rates, "toolvisor", "bare_toolvisor_stdio")
        figures["ratio_same_transport"] = same["median"]
        figures["ratio_same_transport_range"] = same["range"]
    if transport == "memory":  # client and server in this process: their collections
        figures["gc_collections_per_1000_calls"] = {
            kind: [
                statistics.median(c[g] for c in collections[kind]) * 1000 / args.calls
                for g in range(3)
            ]
            for kind in kinds
        }
        if args.breakdown:
            figures["breakdown_ratio_vs_bare"] = {
                kind: _median_ratio(rates, kind, "bare") for kind in BREAKDOWN
            }
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--calls", type=int, default=2000, help="calls per round")
    parser.add_argument("--concurrency", type=int, default=8, help="calls at a time")
    parser.add_argument("--transports", default="memory,stdio")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    parser.add_argument(
        "--breakdown",
        action="store_true",
        help="in memory, also the servers between bare and toolvisor (where its share goes)",
    )
    parser.add_argument("--serve", choices=KINDS + STDIO_ONLY, help=argparse.SUPPRESS)
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
        vlow, vhigh = figures["ratio_vs_validating_range"]
        print(
            f"{transport:>6}: bare {figures['bare_calls_per_s']:8.0f} calls/s, bare_validating "
            f"{figures['bare_validating_calls_per_s']:8.0f} calls/s, toolvisor "
            f"{figures['toolvisor_calls_per_s']:8.0f} calls/s\n"
            f"        toolvisor/bare {figures['ratio']:.2f}x (rounds {low:.2f}-{high:.2f}x; "
            f"target >= {TARGET}x), toolvisor/bare_validating "
            f"{figures['ratio_vs_validating']:.2f}x (rounds {vlow:.2f}-{vhigh:.2f}x)"
        )
        if "ratio_same_transport" in figures:
            slow, shigh = figures["ratio_same_transport_range"]
            print(
                f"        bare on toolvisor's stdio transport "
                f"{figures['bare_toolvisor_stdio_calls_per_s']:8.0f} calls/s: toolvisor/bare "
                f"on the same transport {figures['ratio_same_transport']:.2f}x "
                f"(rounds {slow:.2f}-{shigh:.2f}x)"
            )
        if "gc_collections_per_1000_calls" in figures:
            shown = ", ".join(
                f"{kind} " + "/".join(f"{n:g}" for n in per_gen)
                for kind, per_gen in figures["gc_collections_per_1000_calls"].items()
            )
            print(f"        gc collections per 1,000 calls (gen0/gen1/gen2): {shown}")
        for kind, ratio in figures.get("breakdown_ratio_vs_bare", {}).items():
            low, high = ratio["range"]
            print(
                f"        {kind} {figures[f'{kind}_calls_per_s']:8.0f} calls/s, "
                f"{ratio['median']:.2f}x bare (rounds {low:.2f}-{high:.2f}x)"
            )
    if args.json is not None:
        run_info = {
            "rounds": args.rounds,
            "calls": args.calls,
            "concurrency": args.concurrency,
            "breakdown": args.breakdown,
            "cpus": os.cpu_count(),
            "loadavg_before_after": [load_before, os.getloadavg()],
        }
        args.json.write_text(json.dumps({**run_info, "results": results}, indent=2))
    return 0 if all(r["ratio"] >= TARGET for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
