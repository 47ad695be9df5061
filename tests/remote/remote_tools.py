"""Tools the remote tests' worker processes serve (``remote_tools:TOOLS``).

Tools that leave traces append one line per event to ``$TV_TEST_LOG`` (``event tool key
pid``): a small ``O_APPEND`` write, so lines from several processes never interleave.
"""

from __future__ import annotations

import os
import signal
from typing import Any

import trio

from toolvisor import (
    ExecutionContext,
    FallbackPolicy,
    FunctionToolSpec,
    NumericParameter,
    StandardCircuitBreakerPolicy,
    StringParameter,
)


class PaymentDeclinedError(Exception):
    """A tool's own exception, which reaches the caller as RemoteToolError."""


def trace(event: str, tool: str, key: str) -> None:
    path = os.environ.get("TV_TEST_LOG")
    if path:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, f"{event} {tool} {key} {os.getpid()}\n".encode())
        finally:
            os.close(fd)


async def echo(args: dict[str, Any]) -> dict[str, Any]:
    return {"echo": args["text"], "pid": os.getpid()}


async def whoami(args: dict[str, Any], ctx: ExecutionContext) -> dict[str, Any]:
    return {
        "tenant_id": ctx.tenant_id,
        "request_id": ctx.request_id,
        "metadata": dict(ctx.metadata),
    }


async def sleepy(args: dict[str, Any]) -> str:
    """Sleeps ``s`` seconds; traces start, end, and a cancellation."""
    key = args["key"]
    trace("start", "sleepy", key)
    try:
        await trio.sleep(args["s"])
    except trio.Cancelled:
        trace("cancelled", "sleepy", key)
        raise
    trace("end", "sleepy", key)
    return key


async def charge(args: dict[str, Any]) -> dict[str, Any]:
    """Idempotent on ``key``: traces start and end, sleeps ``s``."""
    trace("start", "charge", args["key"])
    await trio.sleep(args["s"])
    trace("end", "charge", args["key"])
    return {"charged": args["key"], "pid": os.getpid()}


async def stuck(args: dict[str, Any]) -> None:
    await trio.sleep(5)


async def decline(args: dict[str, Any]) -> None:
    raise PaymentDeclinedError(f"card {args['card']} expired")


async def fragile(args: dict[str, Any]) -> None:
    raise ConnectionError("backend down")


async def opaque(args: dict[str, Any]) -> object:
    """A value, or an error, that JSON or ``str()`` cannot carry, as ``kind`` says."""
    kind = args.get("kind", "object")
    if kind == "deep":  # past the stack of Python's JSON writer
        nested: list[object] = []
        for _ in range(100_000):
            nested = [nested]
        return nested
    if kind == "unprintable":  # str() of this error raises (more than 4,300 digits)
        raise ValueError(10**5000)
    if kind == "surrogate":  # a lone surrogate: UTF-8 (and so Redis) cannot carry it
        return {"name": "\ud800"}
    if kind == "surrogate_error":
        raise KeyError("no user \udc00")
    return object()


async def poison(args: dict[str, Any]) -> None:
    """Kills whichever worker runs it, as a call that crashes its process would."""
    trace("start", "poison", args["key"])
    os.kill(os.getpid(), signal.SIGKILL)


async def quote(args: dict[str, Any]) -> dict[str, Any]:
    """A price service that is down: its spec's fallback answers with a cached price."""
    raise ConnectionError("pricing service unreachable")


def _spec(name: str, *params: Any, **kw: Any) -> FunctionToolSpec:
    return FunctionToolSpec(
        id=f"{name}-v1",
        tool_name=name,
        description=f"the {name} test tool",
        parameters=list(params),
        **kw,
    )


_charge = _spec(
    "charge",
    StringParameter(name="key", required=True),
    NumericParameter(name="s", required=True, minimum=0),
    max_concurrency=64,
)
_charge.idempotency.enabled = True
_charge.idempotency.key_fields = ["key"]
_charge.idempotency.claim_ttl_s = 2.5

# The same charge, for a service that deduplicates on the key itself: a call delivered
# again after its worker died runs again (on_unknown_outcome="retry").
_charge_retry = _spec(
    "charge_retry",
    StringParameter(name="key", required=True),
    NumericParameter(name="s", required=True, minimum=0),
    max_concurrency=64,
)
_charge_retry.idempotency.enabled = True
_charge_retry.idempotency.key_fields = ["key"]
_charge_retry.idempotency.claim_ttl_s = 2.5
_charge_retry.idempotency.on_unknown_outcome = "retry"

_fragile = _spec("fragile")
_fragile.circuit_breaker_policy = StandardCircuitBreakerPolicy(
    failure_threshold=1, recovery_timeout=60
)

TOOLS = [
    (_spec("echo", StringParameter(name="text", required=True)), echo),
    (
        _spec(
            "sleepy",
            StringParameter(name="key", required=True),
            NumericParameter(name="s", required=True, minimum=0),
            timeout_s=5,
        ),
        sleepy,
    ),
    (_charge, charge),
    (_charge_retry, charge),
    (_spec("decline", StringParameter(name="card", required=True)), decline),
    (_fragile, fragile),
    (
        _spec(
            "opaque",
            StringParameter(
                name="kind", enum=["object", "deep", "unprintable", "surrogate", "surrogate_error"]
            ),
        ),
        opaque,
    ),
    (_spec("whoami"), whoami),
    (_spec("stuck", timeout_s=0.5), stuck),
    (_spec("poison", StringParameter(name="key", required=True)), poison),
    (_spec("quote", fallback=FallbackPolicy(value={"price": 10, "stale": True})), quote),
]
