"""toolvisor.testing: FlakyTool, AttemptRecorder, RateLimitError, EventLog and fixtures."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pytest
import trio

import toolvisor
import toolvisor.testing
from toolvisor import (
    BreakerTransition,
    CallFailed,
    ExecutionContext,
    RetryScheduled,
    ToolTimeoutError,
)
from toolvisor.testing import (
    AttemptRecorder,
    Delay,
    EventLog,
    FlakyTool,
    RateLimitError,
    make_supervisor_fixture,
    open_test_supervisor,
    supervisor,  # a pytest fixture, imported as a user's conftest.py would
)

sqlite_supervisor = make_supervisor_fixture(
    name="sqlite_supervisor",
    idempotency_store=lambda: toolvisor.SQLiteStore(Path(tempfile.mkdtemp()) / "idem.db"),
)


# --------------------------------------------------------------------------- the docstring


async def test_module_docstring_example(
    supervisor: toolvisor.Supervisor, autojump_clock: trio.testing.MockClock
) -> None:
    spec = toolvisor.FunctionToolSpec(id="api-v1", tool_name="api")
    spec.retry_policy = toolvisor.ExponentialBackoffRetryPolicy(
        max_attempts=4, base_delay=1.0, jitter=0.0
    )
    tool = AttemptRecorder(FlakyTool([TimeoutError(), TimeoutError(), TimeoutError()]))
    await supervisor.spawn(spec, tool)

    assert await supervisor.execute("api", {}) == {"status": "success"}
    assert tool.gaps() == [1.0, 2.0, 4.0]  # exact: MockClock
    assert supervisor.stats("api").retries == 3


# --------------------------------------------------------------------------- FlakyTool


async def test_flaky_tool_follows_its_script(autojump_clock: trio.testing.MockClock) -> None:
    boom = ConnectionError("boom")
    tool = FlakyTool([boom, KeyError, Delay(5, then="slow"), Delay(1), {"v": 1}])
    with pytest.raises(ConnectionError) as info:
        await tool({"a": 1})
    assert info.value is boom
    with pytest.raises(KeyError):
        await tool({})
    start = trio.current_time()
    assert await tool({}) == "slow"
    assert trio.current_time() - start == pytest.approx(5)
    assert await tool({}) == {"status": "success"}
    assert await tool({}) == {"v": 1}
    assert await tool({}) == {"status": "success"}  # script used up: failure_rate 0
    assert (tool.calls, tool.successes, tool.failures) == (6, 4, 2)
    assert tool.args[0] == {"a": 1}
    assert len(tool.times) == 6
    tool.reset()
    assert tool.calls == 0
    with pytest.raises(ConnectionError):
        await tool({})


async def test_flaky_tool_random_failures_are_seeded() -> None:
    async def outcomes(seed: int) -> list[bool]:
        tool = FlakyTool(failure_rate=0.7, seed=seed)
        seen = []
        for _ in range(200):
            try:
                await tool({})
            except TimeoutError:
                seen.append(False)
            else:
                seen.append(True)
        return seen

    first = await outcomes(1)
    assert first == await outcomes(1)
    assert first != await outcomes(2)
    assert 0.6 < first.count(False) / len(first) < 0.8


async def test_flaky_tool_rate_limits_and_latency(autojump_clock: trio.testing.MockClock) -> None:
    tool = FlakyTool(rate_limit_rate=1.0, retry_after=2.5, latency=0.3)
    start = trio.current_time()
    with pytest.raises(RateLimitError) as info:
        await tool({})
    assert info.value.retry_after == 2.5
    assert trio.current_time() - start == pytest.approx(0.3)
    assert "retry_after=2.5" in repr(info.value)

    ranged = FlakyTool(latency=(0.1, 0.2), result=lambda args: args["x"] * 2)
    start = trio.current_time()
    assert await ranged({"x": 21}) == 42
    assert 0.1 <= trio.current_time() - start <= 0.2


def test_flaky_tool_rejects_bad_settings() -> None:
    with pytest.raises(ValueError, match="failure_rate"):
        FlakyTool(failure_rate=1.5)
    with pytest.raises(ValueError, match="must not exceed 1"):
        FlakyTool(failure_rate=0.6, rate_limit_rate=0.6)
    with pytest.raises(ValueError, match="latency"):
        FlakyTool(latency=-1)


async def test_flaky_tool_times_out_under_a_supervisor(
    supervisor: toolvisor.Supervisor, autojump_clock: trio.testing.MockClock
) -> None:
    spec = toolvisor.FunctionToolSpec(id="slow-v1", tool_name="slow", timeout_s=1.0)
    spec.retry_policy = toolvisor.FixedRetryPolicy(max_attempts=2, delay_seconds=0.5)
    tool = FlakyTool([Delay(10)])
    await supervisor.spawn(spec, tool)
    assert await supervisor.execute("slow", {}) == {"status": "success"}
    assert tool.calls == 2
    assert supervisor.stats("slow").timeouts == 1
    assert trio.current_time() == pytest.approx(1.5)

    # A call deadline shorter than the delay: the caller gets ToolTimeoutError.
    spec.tool_name = "slower"
    await supervisor.spawn(spec, FlakyTool([Delay(10)]))
    with pytest.raises(ToolTimeoutError) as info:
        await supervisor.execute("slower", {}, timeout=0.5)
    assert info.value.scope == "call"


# --------------------------------------------------------------------------- AttemptRecorder


async def test_attempt_recorder_passes_ctx_and_records(
    autojump_clock: trio.testing.MockClock,
) -> None:
    seen: list[str | None] = []

    async def tool(args: dict[str, Any], ctx: ExecutionContext) -> str:
        seen.append(ctx.tenant_id)
        if len(seen) < 3:
            raise ConnectionError("again")
        return "ok"

    spec = toolvisor.FunctionToolSpec(id="r-v1", tool_name="rec")
    spec.retry_policy = toolvisor.FixedRetryPolicy(max_attempts=3, delay_seconds=2.0)
    recorder = AttemptRecorder(tool)
    executor = toolvisor.FunctionToolExecutor(spec, recorder)
    ctx = ExecutionContext(tenant_id="t-1")
    assert await executor.execute({}, ctx) == "ok"
    assert seen == ["t-1", "t-1", "t-1"]
    assert recorder.attempts == 3
    assert recorder.gaps() == pytest.approx([2.0, 2.0])
    assert recorder.offsets() == pytest.approx([0.0, 2.0, 4.0])
    assert [type(e) for e in recorder.errors] == [ConnectionError, ConnectionError, type(None)]


async def test_attempt_recorder_drives_a_policy_directly(
    autojump_clock: trio.testing.MockClock,
) -> None:
    recorder = AttemptRecorder(FlakyTool([RateLimitError(retry_after=7), TimeoutError()]))
    policy = toolvisor.ExponentialBackoffRetryPolicy(max_attempts=3, base_delay=1.0, jitter=0)
    assert await policy.execute(recorder.bind({"q": "x"})) == {"status": "success"}
    # retry_after (7 s) wins over the 1 s backoff; then 2 s.
    assert recorder.gaps() == pytest.approx([7.0, 2.0])
    assert recorder.offsets()[0] == 0.0
    assert AttemptRecorder(FlakyTool()).gaps() == []


def test_attempt_recorder_rejects_sync_functions() -> None:
    def not_async(args: dict[str, Any]) -> None:
        return None

    with pytest.raises(TypeError, match="not an async function"):
        AttemptRecorder(not_async)


# --------------------------------------------------------------------------- EventLog


async def test_event_log_collects_breaker_and_retry_events(
    supervisor: toolvisor.Supervisor, autojump_clock: trio.testing.MockClock
) -> None:
    spec = toolvisor.FunctionToolSpec(id="e-v1", tool_name="ev")
    spec.retry_policy = toolvisor.FixedRetryPolicy(max_attempts=2, delay_seconds=1.0)
    spec.circuit_breaker_policy = toolvisor.StandardCircuitBreakerPolicy(
        failure_threshold=2, recovery_timeout=10
    )
    log = EventLog.attach(supervisor)
    await supervisor.spawn(spec, FlakyTool(failure_rate=1.0))
    with pytest.raises(TimeoutError):  # FlakyTool's failure, which opened the breaker
        await supervisor.execute("ev", {})
    assert [(e.old, e.new) for e in log.of_type(BreakerTransition, "ev")] == [("closed", "open")]
    assert [e.delay for e in log.of_type(RetryScheduled)] == [1.0]
    assert log.of_type(RetryScheduled, "other") == []
    assert [e.error_type for e in log.of_type(CallFailed)] == ["TimeoutError"]
    log.detach()
    log.detach()  # twice is harmless
    recorded = len(log.events)
    await trio.sleep(10)
    await supervisor.execute_many([("ev", {})])
    assert len(log.events) == recorded == 3  # detached: nothing more recorded


# --------------------------------------------------------------------------- fixtures


async def test_open_test_supervisor_closes_at_once() -> None:
    async with open_test_supervisor() as sup:
        spec = toolvisor.FunctionToolSpec(id="h-v1", tool_name="hang")
        await sup.spawn(spec, FlakyTool([Delay(3600)]))
        await sup.submit("hang", {})
        start = trio.current_time()
    assert trio.current_time() - start < 1.0  # grace_s=0: no 10 s drain


async def test_supervisor_fixture_factory_with_a_store(
    sqlite_supervisor: toolvisor.Supervisor,
) -> None:
    spec = toolvisor.FunctionToolSpec(
        id="s-v1", tool_name="pay", parameters=[toolvisor.IntegerParameter(name="id")]
    )
    spec.idempotency.enabled = True
    spec.idempotency.persist_result = True
    tool = FlakyTool()
    await sqlite_supervisor.spawn(spec, tool)
    for _ in range(3):
        assert await sqlite_supervisor.execute("pay", {"id": 1}) == {"status": "success"}
    assert tool.calls == 1


def test_fixtures_are_discoverable() -> None:
    assert "supervisor" in dir(toolvisor.testing)
    assert toolvisor.testing.supervisor is supervisor
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = toolvisor.testing.nope


def test_rate_limit_error_defaults() -> None:
    err = RateLimitError()
    assert err.retry_after is None
    assert str(err) == "rate limited"
    assert (
        toolvisor.FixedRetryPolicy(delay_seconds=1).next_delay(1, RateLimitError(retry_after=9))
        == 9
    )


# --------------------------------------------------------------------------- docs/testing.md


async def test_docs_testing_example(
    supervisor: toolvisor.Supervisor, autojump_clock: trio.testing.MockClock
) -> None:
    spec = toolvisor.FunctionToolSpec(id="flaky-v1", tool_name="flaky")
    spec.circuit_breaker_policy = toolvisor.StandardCircuitBreakerPolicy(
        failure_threshold=5, recovery_timeout=60
    )
    spec.retry_policy = toolvisor.ExponentialBackoffRetryPolicy(
        max_attempts=3, base_delay=1.0, max_delay=10.0, jitter=0.0
    )
    tool = AttemptRecorder(FlakyTool(failure_rate=0.7, seed=42))  # 70 % TimeoutError
    log = EventLog.attach(supervisor)
    await supervisor.spawn(spec, tool)

    results = [await supervisor.execute_many([("flaky", {})]) for _ in range(20)]

    assert ("closed", "open") in [(e.old, e.new) for e in log.of_type(BreakerTransition)]
    assert any(isinstance(r[0].error, toolvisor.CircuitOpenError) for r in results)
    for event in log.of_type(RetryScheduled):
        assert event.delay == 2.0 ** (event.attempt - 1)

    recorder = AttemptRecorder(FlakyTool([RateLimitError(retry_after=7), TimeoutError()]))
    policy = toolvisor.ExponentialBackoffRetryPolicy(max_attempts=3, base_delay=1.0, jitter=0)
    assert await policy.execute(recorder.bind()) == {"status": "success"}
    assert recorder.gaps() == pytest.approx([7.0, 2.0])
