"""A failed call leaves no reference cycle: freed at once, not by the garbage collector.

A call keeps its error (its outcome) and the error's traceback keeps the frames it went
through, on the tool's side and the caller's. Were any of those frames to keep the call,
each failed call would leave a cycle of a dozen or more objects (frames, tracebacks, the
call) that only a collection frees, and a failure storm would make the collector run
often, over a large heap, exactly when latency matters. Each test makes failures of
one kind and checks that the collector finds nothing to free.
"""

from __future__ import annotations

import gc
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any

import pytest
import trio

import toolvisor as tv
from toolvisor.testing import FlakyTool, settle

CALLS = 50


class DeclinedError(Exception):
    """The tool's own failure."""


@contextmanager
def no_cyclic_garbage() -> Iterator[None]:
    """Fail if the block leaves objects that only the garbage collector frees."""
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        yield
        gc.collect()
        garbage = [type(o).__name__ for o in gc.garbage]
        assert garbage == [], sorted(set(garbage))
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()


async def _failures(sup: tv.Supervisor, tool: str, expected: type[Exception]) -> None:
    for i in range(CALLS):
        with suppress(expected):
            await sup.execute(tool, {"i": i})


def _spec(name: str, **kw: Any) -> tv.FunctionToolSpec:
    return tv.FunctionToolSpec(
        id=f"{name}-v1", tool_name=name, parameters=[tv.IntegerParameter(name="i")], **kw
    )


async def _warm(sup: tv.Supervisor, tool: str, expected: type[Exception]) -> None:
    # First calls fill caches (compiled schemas, interned strings): not garbage.
    await _failures(sup, tool, expected)
    await settle()


Tool = Callable[[dict[str, Any]], Awaitable[Any]]


async def _declines(args: dict[str, Any]) -> Any:
    raise DeclinedError(f"declined {args['i']}")


async def _hangs(args: dict[str, Any]) -> Any:
    await trio.sleep_forever()


@pytest.mark.parametrize(
    ("spec", "tool", "expected"),
    [
        pytest.param(_spec("declines"), _declines, DeclinedError, id="the tool raises"),
        pytest.param(
            _spec(
                "retries",
                retry_policy=tv.FixedRetryPolicy(max_attempts=3, delay_seconds=0.1),
            ),
            _declines,
            DeclinedError,
            id="the tool raises on every retry",
        ),
        pytest.param(
            _spec("hedged", read_only=True, hedging=tv.HedgingPolicy(delay=0.1)),
            _declines,
            DeclinedError,
            id="a hedged race every attempt lost",
        ),
        pytest.param(
            _spec("hangs", timeout_s=1.0),
            _hangs,
            tv.ToolTimeoutError,
            id="answered at its timeout, cut later",
        ),
        pytest.param(
            _spec(
                "hangs_retried",
                timeout_s=1.0,
                retry_policy=tv.FixedRetryPolicy(max_attempts=2, delay_seconds=0.1),
            ),
            _hangs,
            tv.ToolTimeoutError,
            id="cut at its timeout, retried",
        ),
    ],
)
async def test_failed_calls_leave_no_cyclic_garbage(
    autojump_clock: trio.testing.MockClock,
    spec: tv.FunctionToolSpec,
    tool: Tool,
    expected: type[Exception],
) -> None:
    async with tv.open_supervisor() as sup:
        await sup.spawn(spec, tool)
        await _warm(sup, spec.tool_name, expected)
        with no_cyclic_garbage():
            await _failures(sup, spec.tool_name, expected)
            await settle()  # the cut attempts unwound and were recorded
        assert sup.stats(spec.tool_name).failures == 2 * CALLS


async def test_an_open_breakers_refusals_leave_no_cyclic_garbage(
    autojump_clock: trio.testing.MockClock,
) -> None:
    spec = _spec(
        "opens",
        circuit_breaker_policy=tv.StandardCircuitBreakerPolicy(
            failure_threshold=1, recovery_timeout=3600
        ),
    )
    async with tv.open_supervisor() as sup:
        await sup.spawn(spec, _declines)
        with pytest.raises(DeclinedError):
            await sup.execute("opens", {"i": 0})  # trips the breaker
        await _warm(sup, "opens", tv.CircuitOpenError)
        with no_cyclic_garbage():
            await _failures(sup, "opens", tv.CircuitOpenError)
        assert sup.stats("opens").rejected == 2 * CALLS


async def test_a_success_after_retries_leaves_no_cyclic_garbage(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # The first attempts' errors stay on the call (last_error) while it retries.
    flaky = FlakyTool([DeclinedError("1"), DeclinedError("2"), "ok"] * (CALLS + 1))
    spec = _spec("flaky", retry_policy=tv.FixedRetryPolicy(max_attempts=3, delay_seconds=0.1))
    async with tv.open_supervisor() as sup:
        await sup.spawn(spec, flaky)
        await sup.execute("flaky", {"i": 0})
        with no_cyclic_garbage():
            for i in range(CALLS):
                await sup.execute("flaky", {"i": i})
        assert sup.stats("flaky").successes == CALLS + 1
