"""The contenders of the per-call benchmarks and the tools they call.

Each contender serves ``call({"i": k})`` with the same policies:

- ``toolvisor``: ``Supervisor.execute()`` (one hop into the tool actor's inbox);
- ``executor``: ``FunctionToolExecutor.execute()`` (the same pipeline in the caller's task);
- ``trio``: the bare trio one-hop request/reply ceiling: the caller sends (args, waiter)
  over a trio memory channel to ONE server task, which awaits the same function and
  reschedules the caller with the outcome (``wait_task_rescheduled``/``reschedule``, as
  toolvisor's ReplySlot does); no policies at all;
- ``asyncio``: asyncio + tenacity + aiobreaker calling the function directly: a tenacity
  ``@retry`` (``stop_after_attempt(5)``, the matching wait) around an
  ``asyncio.timeout(timeout_s)`` per attempt around ``aiobreaker.CircuitBreaker.call_async``.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import outcome
import trio

from .. import (
    ExponentialBackoffRetryPolicy,
    FixedRetryPolicy,
    FunctionToolExecutor,
    FunctionToolSpec,
    IntegerParameter,
    IRetryPolicy,
    StandardCircuitBreakerPolicy,
    open_supervisor,
)
from ..supervisor import Supervisor
from ._deps import require
from ._harness import Args, Call, Contender

__all__ = [
    "TOOL",
    "Flaky",
    "Policies",
    "asyncio_contender",
    "ceiling_contender",
    "executor_contender",
    "failing",
    "flaky_attempts",
    "instant",
    "make_guarded",
    "tool_spec",
    "toolvisor_contender",
]

TOOL = "bench_tool"
ToolFactory = Callable[[], Callable[[Args], Awaitable[object]]]


class Flaky(Exception):  # noqa: N818 - a tool's own failure, named as a user would
    """The benchmark tool's injected failure."""


async def instant(args: Args) -> object:
    """A tool that returns at once."""
    return args["i"]


async def failing(args: Args) -> object:
    """A tool that always fails."""
    raise Flaky(args["i"])


def flaky_attempts() -> Callable[[Args], Awaitable[object]]:
    """A tool whose attempts fail 3 times in 10: attempt n (in the order the tool runs
    them) fails when ``n % 10 < 3``.

    Deterministic, and never more than 3 failures in a row whatever the interleaving of
    the callers, so a breaker that opens after 5 consecutive failures stays closed.
    """
    attempts = itertools.count()

    async def flaky(args: Args) -> object:
        if next(attempts) % 10 < 3:
            raise Flaky(args["i"])
        return args["i"]

    return flaky


class Policies:
    """The policy sets, for toolvisor and their tenacity/aiobreaker equivalents."""

    def __init__(
        self,
        *,
        retry: Callable[[], IRetryPolicy],
        tenacity_wait: Callable[[Any], Any],
        recovery_timeout_s: float = 30.0,
        timeout_s: float = 30.0,
        failure_threshold: int = 5,
        attempts: int = 5,
        description: str,
    ) -> None:
        self.retry = retry
        self.tenacity_wait = tenacity_wait
        self.recovery_timeout_s = recovery_timeout_s
        self.timeout_s = timeout_s
        self.failure_threshold = failure_threshold
        self.attempts = attempts
        self.description = description


def _exp_retry() -> IRetryPolicy:
    return ExponentialBackoffRetryPolicy(max_attempts=5, base_delay=1.0, max_delay=30.0)


def _exp_retry_tiny() -> IRetryPolicy:
    return ExponentialBackoffRetryPolicy(max_attempts=5, base_delay=0.001, max_delay=0.01)


def _fixed_zero() -> IRetryPolicy:
    return FixedRetryPolicy(max_attempts=5, delay_seconds=0.0)


#: Section 1 (overhead): Standard breaker + exponential retry + per-attempt timeout.
STANDARD = Policies(
    retry=_exp_retry,
    tenacity_wait=lambda t: t.wait_exponential(multiplier=1, max=30),
    description=(
        "breaker: 5 consecutive failures, 30 s open; retry: 5 attempts, exponential "
        "1, 2, 4 ... s (max 30 s); per-attempt timeout 30 s"
    ),
)
#: Section 3 (failure path): retries without delay.
RETRY_NOW = Policies(
    retry=_fixed_zero,
    tenacity_wait=lambda t: t.wait_none(),
    description=(
        "breaker: 5 consecutive failures, 30 s open; retry: 5 attempts, no delay "
        "(FixedRetryPolicy(delay_seconds=0) / tenacity wait_none()); per-attempt timeout 30 s"
    ),
)
#: Section 3 (open breaker): tiny exponential delays so tripping the breaker is quick.
OPEN = Policies(
    retry=_exp_retry_tiny,
    tenacity_wait=lambda t: t.wait_exponential(multiplier=0.001, max=0.01),
    recovery_timeout_s=3600.0,
    description=(
        "breaker: 5 consecutive failures, 3600 s open (tripped during set-up); retry: 5 "
        "attempts, exponential 1, 2, 4 ... ms; per-attempt timeout 30 s"
    ),
)


def tool_spec(
    policies: Policies,
    *,
    name: str = TOOL,
    max_concurrency: int = 16,
    idempotent: bool = False,
) -> FunctionToolSpec:
    """A spec with one required integer argument ``i`` and ``policies``."""
    spec = FunctionToolSpec(
        id=f"{name}-v1",
        tool_name=name,
        description="benchmark tool",
        parameters=[IntegerParameter(name="i", required=True)],
        timeout_s=policies.timeout_s,
        max_concurrency=max_concurrency,
    )
    spec.circuit_breaker_policy = StandardCircuitBreakerPolicy(
        failure_threshold=policies.failure_threshold,
        recovery_timeout=policies.recovery_timeout_s,
    )
    spec.retry_policy = policies.retry()
    if idempotent:
        spec.idempotency.enabled = True
        spec.idempotency.persist_result = True
        spec.idempotency.ttl_s = 3600.0
    return spec


Prepare = Callable[[Supervisor], Awaitable[None]]


def toolvisor_contender(
    policies: Policies,
    tool: ToolFactory,
    *,
    name: str = "toolvisor",
    label: str = "toolvisor execute()",
    prepare: Prepare | None = None,
) -> Contender:
    """``functools.partial(sup.execute, TOOL)`` on a freshly spawned tool."""

    @asynccontextmanager
    async def setup() -> AsyncIterator[Call]:
        async with open_supervisor() as sup:
            await sup.spawn(tool_spec(policies), tool())
            if prepare is not None:
                await prepare(sup)
            yield functools.partial(sup.execute, TOOL)

    return Contender(name, label, "trio", setup)


def executor_contender(
    policies: Policies,
    tool: ToolFactory,
    *,
    name: str = "executor",
    label: str = "FunctionToolExecutor",
) -> Contender:
    """``FunctionToolExecutor(spec, fn).execute`` (the pipeline in the caller's task)."""

    @asynccontextmanager
    async def setup() -> AsyncIterator[Call]:
        executor = FunctionToolExecutor(tool_spec(policies), tool())
        await trio.lowlevel.checkpoint()
        yield executor.execute

    return Contender(name, label, "trio", setup)


class _Waiter:
    __slots__ = ("task",)

    def __init__(self, task: trio.lowlevel.Task | None) -> None:
        self.task = task


def ceiling_contender(
    tool: ToolFactory, *, name: str = "trio", label: str = "bare trio one-hop"
) -> Contender:
    """The bare trio request/reply ceiling: one memory channel, ONE server task."""

    @asynccontextmanager
    async def setup() -> AsyncIterator[Call]:
        fn = tool()
        send, receive = trio.open_memory_channel[tuple[Args, _Waiter]](1024)

        async def serve() -> None:
            receive_one = receive.receive
            reschedule = trio.lowlevel.reschedule
            while True:
                args, waiter = await receive_one()
                result: outcome.Outcome[object]
                try:
                    result = outcome.Value(await fn(args))
                except Exception as exc:
                    result = outcome.Error(exc)
                task = waiter.task
                if task is not None:
                    waiter.task = None
                    reschedule(task, result)

        async def request(args: Args) -> object:
            waiter = _Waiter(trio.lowlevel.current_task())
            try:
                send.send_nowait((args, waiter))
            except trio.WouldBlock:
                await send.send((args, waiter))

            def abort(_raise_cancel: object) -> trio.lowlevel.Abort:
                waiter.task = None
                return trio.lowlevel.Abort.SUCCEEDED

            return await trio.lowlevel.wait_task_rescheduled(abort)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(serve)
            yield request
            nursery.cancel_scope.cancel()

    return Contender(name, label, "trio", setup)


def make_guarded(
    fn: Callable[[Args], Awaitable[object]], breaker: Any, policies: Policies
) -> Callable[[Args], Awaitable[object]]:
    """``fn`` behind tenacity (retry) around asyncio.timeout around aiobreaker."""
    tenacity = require("tenacity")
    aiobreaker = require("aiobreaker")
    rejected = aiobreaker.CircuitBreakerError
    timeout_s = policies.timeout_s

    def retryable(exc: BaseException) -> bool:
        # toolvisor retries any Exception but never a breaker rejection, nor cancellation
        return isinstance(exc, Exception) and not isinstance(exc, rejected)

    @tenacity.retry(  # type: ignore[untyped-decorator]
        stop=tenacity.stop_after_attempt(policies.attempts),
        wait=policies.tenacity_wait(tenacity),
        retry=tenacity.retry_if_exception(retryable),
        reraise=True,
    )
    async def guarded(args: Args) -> object:
        async with asyncio.timeout(timeout_s):
            return await breaker.call_async(fn, args)

    return guarded  # type: ignore[no-any-return]


def new_breaker(policies: Policies) -> Any:
    """An ``aiobreaker.CircuitBreaker`` matching the toolvisor breaker of ``policies``."""
    aiobreaker = require("aiobreaker")
    return aiobreaker.CircuitBreaker(
        fail_max=policies.failure_threshold,
        timeout_duration=timedelta(seconds=policies.recovery_timeout_s),
    )


AsyncPrepare = Callable[[Callable[[Args], Awaitable[object]], Any], Awaitable[None]]


def asyncio_contender(
    policies: Policies,
    tool: ToolFactory,
    *,
    name: str = "asyncio",
    label: str = "asyncio+tenacity+aiobreaker",
    prepare: AsyncPrepare | None = None,
) -> Contender:
    """The same calls on asyncio with tenacity and aiobreaker (see the module docstring)."""

    @asynccontextmanager
    async def setup() -> AsyncIterator[Call]:
        breaker = new_breaker(policies)
        guarded = make_guarded(tool(), breaker, policies)
        if prepare is not None:
            await prepare(guarded, breaker)
        await asyncio.sleep(0)
        yield guarded

    return Contender(name, label, "asyncio", setup)
