"""A FunctionToolExecutor instrumented like a supervisor: the same instruments and spans."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing
from opentelemetry import trace
from otel_support import Otel

import toolvisor as tv
from toolvisor import telemetry


def key(**kw: Any) -> frozenset[tuple[str, Any]]:
    return frozenset((k.replace("_", "."), v) for k, v in kw.items())


def executor(fn: Any, **kw: Any) -> tv.FunctionToolExecutor:
    spec = tv.FunctionToolSpec(id="pay-v1", tool_name="pay", parameters=[], **kw)
    return tv.FunctionToolExecutor(spec, fn)


async def test_an_executor_records_calls_attempts_spans_and_events(
    otel: Otel, autojump_clock: trio.testing.MockClock
) -> None:
    failures = 1

    async def flaky(args: dict[str, Any]) -> str:
        nonlocal failures
        await trio.sleep(0.25)
        if failures:
            failures -= 1
            raise ConnectionError("reset")
        return "paid"

    ex = executor(flaky, retry_policy=tv.FixedRetryPolicy(max_attempts=3, delay_seconds=1))
    ins = telemetry.instrument(
        ex, meter_provider=otel.meter_provider, tracer_provider=otel.tracer_provider
    )
    assert telemetry.is_instrumented(ex)
    assert await ex.execute({}) == "paid"

    assert otel.counts("toolvisor.call.duration") == {key(tool="pay", outcome="succeeded"): 1}
    assert otel.counts("toolvisor.attempt.duration") == {
        key(tool="pay", attempt_number=1, attempt_handled=True, error_type="ConnectionError"): 1,
        key(tool="pay", attempt_number=2, attempt_handled=False): 1,
    }
    events = otel.counts("toolvisor.events")
    assert events[key(tool="pay", event_name="retry_scheduled")] == 1
    breaker = otel.counts("toolvisor.breaker.state")
    assert breaker[key(tool="pay", state="closed")] == 1

    spans = otel.exporter.get_finished_spans()
    (call,) = [s for s in spans if s.name == "call pay"]
    attempts = [s for s in spans if s.name == "attempt pay"]
    assert len(attempts) == 2
    assert all(a.parent is not None and a.parent.span_id == call.context.span_id for a in attempts)
    assert call.attributes is not None and call.attributes["toolvisor.attempts"] == 2
    assert [e.name for e in call.events] == ["toolvisor.retry"]

    ins.uninstrument()
    assert not telemetry.is_instrumented(ex)
    assert await ex.execute({}) == "paid"  # not recorded any more
    assert otel.counts("toolvisor.call.duration") == {key(tool="pay", outcome="succeeded"): 1}


async def test_an_executor_keeps_its_own_on_event_beside_the_instrumentation(
    otel: Otel, autojump_clock: trio.testing.MockClock
) -> None:
    async def declined(args: dict[str, Any]) -> None:
        raise ValueError("declined")

    seen: list[str] = []
    spec = tv.FunctionToolSpec(
        id="pay-v1",
        tool_name="pay",
        parameters=[],
        circuit_breaker_policy=tv.StandardCircuitBreakerPolicy(
            failure_threshold=1, recovery_timeout=60
        ),
    )
    ex = tv.FunctionToolExecutor(spec, declined, on_event=lambda e: seen.append(type(e).__name__))
    telemetry.instrument(ex, meter_provider=otel.meter_provider)
    with pytest.raises(ValueError, match="declined"):
        await ex.execute({})
    with pytest.raises(tv.CircuitOpenError):
        await ex.execute({})
    assert "BreakerTransition" in seen
    assert otel.counts("toolvisor.call.duration") == {
        key(tool="pay", outcome="failed", error_type="ValueError"): 1,
        key(tool="pay", outcome="rejected", error_type="toolvisor.errors.CircuitOpenError"): 1,
    }
    events = otel.counts("toolvisor.events")
    assert events[key(tool="pay", event_name="breaker_transition", breaker_state="open")] == 1
    assert otel.counts("toolvisor.breaker.state")[key(tool="pay", state="open")] == 1
    with pytest.raises(ValueError, match="instrumented already"):
        telemetry.instrument(ex, meter_provider=otel.meter_provider)


async def test_an_executors_tool_spans_are_children_of_the_attempt_in_the_callers_task(
    otel: Otel, autojump_clock: trio.testing.MockClock
) -> None:
    """The executor runs attempts in the caller's task: the attempt's span is current
    for the tool alone, and the caller's own span is current again once it returns."""
    tracer = otel.tracer_provider.get_tracer("tool")

    async def traced(args: dict[str, Any]) -> str:
        with tracer.start_as_current_span("query"):
            await trio.sleep(0.25)
        return "paid"

    ex = executor(traced)
    telemetry.instrument(
        ex, meter_provider=otel.meter_provider, tracer_provider=otel.tracer_provider
    )
    with tracer.start_as_current_span("handle request") as request:
        assert await ex.execute({}) == "paid"
        assert trace.get_current_span() is request
    spans = {s.name: s for s in otel.exporter.get_finished_spans()}
    query, attempt, call = spans["query"], spans["attempt pay"], spans["call pay"]
    assert query.parent is not None and query.parent.span_id == attempt.context.span_id
    assert call.parent is not None and call.parent.span_id == request.get_span_context().span_id
