"""Tools the MCP tests serve, in process and through ``toolvisor mcp mcp_tools:setup``.

``setup(sup)`` spawns them; ``probe`` reports what the others saw (executions, the
cancellation of ``slow``, the supervisor's counters), so a test can read them over MCP
from a server running in another process.
"""

from __future__ import annotations

from typing import Any

import trio

from toolvisor import (
    ExecutionContext,
    FixedRetryPolicy,
    FunctionToolSpec,
    IdempotencyConfig,
    IntegerParameter,
    StandardCircuitBreakerPolicy,
    StringParameter,
    Supervisor,
)


class CardDeclinedError(Exception):
    """A tool's own failure that trying again never fixes."""


SEEN: dict[str, Any] = {
    "executions": 0,
    "slow_started": 0,
    "slow_cancelled": 0,
    "flaky_attempts": 0,
}

ECHO = FunctionToolSpec(
    id="echo-v1",
    tool_name="echo",
    description="Echo the text back",
    parameters=[StringParameter(name="text", required=True, max_length=1000)],
    read_only=True,
)
ADD = FunctionToolSpec(
    id="add-v1",
    tool_name="add",
    description="Add two integers",
    parameters=[
        IntegerParameter(name="a", required=True),
        IntegerParameter(name="b", required=True),
    ],
)
CHARGE = FunctionToolSpec(
    id="charge-v1",
    tool_name="charge",
    description="Charge a card (idempotent)",
    parameters=[IntegerParameter(name="cents", required=True, minimum=1)],
    idempotency=IdempotencyConfig(enabled=True),
)
DECLINE = FunctionToolSpec(id="decline-v1", tool_name="decline", description="Always declined")
DOWN = FunctionToolSpec(
    id="down-v1",
    tool_name="down",
    description="Its back end is down",
    circuit_breaker_policy=StandardCircuitBreakerPolicy(failure_threshold=1, recovery_timeout=60),
)
FLAKY = FunctionToolSpec(
    id="flaky-v1",
    tool_name="flaky",
    description="Fails every attempt, three of them",
    retry_policy=FixedRetryPolicy(max_attempts=3, delay_seconds=0.01),
)
SLOW = FunctionToolSpec(id="slow-v1", tool_name="slow", description="Takes a minute")
PROBE = FunctionToolSpec(
    id="probe-v1",
    tool_name="probe",
    description="What the other tools saw",
    parameters=[StringParameter(name="tool", required=True)],
    read_only=True,
)


async def echo(args: dict[str, Any]) -> dict[str, Any]:
    return {"text": args["text"]}


async def add(args: dict[str, Any]) -> int:
    await trio.sleep(0.001)
    return int(args["a"]) + int(args["b"])


async def charge(args: dict[str, Any], ctx: ExecutionContext) -> dict[str, Any]:
    SEEN["executions"] += 1
    return {"charged": args["cents"], "execution": SEEN["executions"]}


async def decline(args: dict[str, Any]) -> None:
    raise CardDeclinedError("card declined: insufficient funds")


async def down(args: dict[str, Any]) -> None:
    raise ConnectionError("payment gateway unreachable")


async def flaky(args: dict[str, Any]) -> None:
    SEEN["flaky_attempts"] += 1
    raise TimeoutError("the service did not answer")


async def slow(args: dict[str, Any]) -> str:
    SEEN["slow_started"] += 1
    try:
        await trio.sleep(60)
    except trio.Cancelled:
        SEEN["slow_cancelled"] += 1
        raise
    return "done"


TOOLS = [(ECHO, echo), (ADD, add), (CHARGE, charge), (DECLINE, decline), (DOWN, down)]


async def setup(sup: Supervisor) -> None:
    # A policy keeps its circuits' state by tool name, whichever supervisor runs them: a
    # fresh one per setup keeps each test's breaker its own.
    DOWN.circuit_breaker_policy = StandardCircuitBreakerPolicy(
        failure_threshold=1, recovery_timeout=60
    )
    FLAKY.circuit_breaker_policy = StandardCircuitBreakerPolicy(failure_threshold=5)
    for spec, fn in [*TOOLS, (FLAKY, flaky), (SLOW, slow)]:
        await sup.spawn(spec, fn)

    async def probe(args: dict[str, Any]) -> dict[str, Any]:
        stats = sup.stats(args["tool"])
        return {
            **SEEN,
            "calls": stats.calls,
            "cancelled": stats.cancelled,
            "in_flight": stats.in_flight,
        }

    await sup.spawn(PROBE, probe)
