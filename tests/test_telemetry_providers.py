"""Telemetry and its providers: several supervisors on one meter provider, and a tracer
that starts recording after instrument()."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing
from opentelemetry import trace
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import toolvisor as tv
from toolvisor import telemetry


def spec(name: str, **kw: Any) -> tv.FunctionToolSpec:
    return tv.FunctionToolSpec(id=f"{name}-v1", tool_name=name, parameters=[], **kw)


async def ok(args: dict[str, Any]) -> str:
    return "ok"


async def declined(args: dict[str, Any]) -> None:
    raise ValueError("declined")


def points(reader: InMemoryMetricReader, name: str) -> dict[frozenset[tuple[str, Any]], Any]:
    data = reader.get_metrics_data()
    found: dict[frozenset[tuple[str, Any]], Any] = {}
    for rm in data.resource_metrics if data is not None else []:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                if metric.name == name:
                    for p in metric.data.data_points:
                        found[frozenset(p.attributes.items())] = getattr(p, "count", None) or (
                            p.value
                        )
    return found


def events_except_call_failed(
    reader: InMemoryMetricReader,
) -> dict[frozenset[tuple[str, Any]], Any]:
    """``toolvisor.events`` without ``call_failed`` (one per failed call, tested elsewhere)."""
    return {
        attributes: value
        for attributes, value in points(reader, "toolvisor.events").items()
        if ("event.name", "call_failed") not in attributes
    }


def key(**kw: Any) -> frozenset[tuple[str, Any]]:
    return frozenset((k.replace("_", "."), v) for k, v in kw.items())


async def test_two_supervisors_on_one_meter_provider_are_both_observed(
    reader: InMemoryMetricReader, autojump_clock: trio.testing.MockClock
) -> None:
    provider = reader.provider  # type: ignore[attr-defined]
    breaker = tv.StandardCircuitBreakerPolicy(failure_threshold=1, recovery_timeout=60)
    release = trio.Event()

    async def blocked(args: dict[str, Any]) -> str:
        await release.wait()
        return "ok"

    async with tv.open_supervisor() as a, tv.open_supervisor() as b:
        telemetry.instrument(a, meter_provider=provider)
        telemetry.instrument(b, meter_provider=provider)
        await a.spawn(spec("bad", circuit_breaker_policy=breaker), declined)
        await b.spawn(spec("bad"), declined)
        await a.spawn(spec("wait"), blocked)
        await b.spawn(spec("wait"), blocked)
        with pytest.raises(ValueError, match="declined"):
            await a.execute("bad", {})  # opens a's breaker
        pending = [await sup.submit("wait", {}) for sup in (a, b)]
        await trio.testing.wait_all_tasks_blocked()
        # The gauges add up what both report under the same attributes.
        assert points(reader, "toolvisor.in_flight") == {key(tool="bad"): 0, key(tool="wait"): 2}
        assert points(reader, "toolvisor.breaker.state")[key(tool="bad", state="open")] == 1
        assert points(reader, "toolvisor.breaker.state")[key(tool="bad", state="closed")] == 1
        release.set()
        for p in pending:
            await p.result()
        assert telemetry.uninstrument(a)
        # a's events stay counted once a is uninstrumented: a counter never goes down.
        opened = key(tool="bad", event_name="breaker_transition", breaker_state="open")
        assert events_except_call_failed(reader) == {opened: 1}
        # Instrumented again on the same provider: its gauges report again.
        telemetry.instrument(a, meter_provider=provider)
        assert points(reader, "toolvisor.breaker.state")[key(tool="bad", state="open")] == 1
        with pytest.raises(tv.CircuitOpenError):
            await a.execute("bad", {})
    durations = points(reader, "toolvisor.call.duration")
    assert durations[key(tool="bad", outcome="failed", error_type="ValueError")] == 1
    assert durations[key(tool="wait", outcome="succeeded")] == 2
    rejected = key(tool="bad", outcome="rejected", error_type="toolvisor.errors.CircuitOpenError")
    assert durations[rejected] == 1
    assert events_except_call_failed(reader) == {opened: 1}


async def test_a_supervisor_gone_without_uninstrument_keeps_its_events_counted(
    reader: InMemoryMetricReader, autojump_clock: trio.testing.MockClock
) -> None:
    provider = reader.provider  # type: ignore[attr-defined]
    retry = tv.FixedRetryPolicy(max_attempts=2, delay_seconds=1)
    async with tv.open_supervisor() as sup:
        telemetry.instrument(sup, meter_provider=provider)
        await sup.spawn(spec("bad", retry_policy=retry), declined)
        with pytest.raises(ValueError, match="declined"):
            await sup.execute("bad", {})
    del sup
    import gc

    gc.collect()
    assert events_except_call_failed(reader) == {key(tool="bad", event_name="retry_scheduled"): 1}
    assert points(reader, "toolvisor.in_flight") == {}


class SwitchedTracerProvider(trace.TracerProvider):
    """A provider whose tracers are no-ops until ``on`` (as the API's global proxy is
    until an application sets its SDK provider)."""

    def __init__(self, real: TracerProvider) -> None:
        self.real = real
        self.on = False

    def get_tracer(self, *args: Any, **kwargs: Any) -> trace.Tracer:
        return _SwitchedTracer(self, self.real.get_tracer(*args, **kwargs))


class _SwitchedTracer(trace.NoOpTracer):
    def __init__(self, switch: SwitchedTracerProvider, real: trace.Tracer) -> None:
        self.switch = switch
        self.real = real

    def start_span(self, *args: Any, **kwargs: Any) -> trace.Span:
        if self.switch.on:
            return self.real.start_span(*args, **kwargs)
        return super().start_span(*args, **kwargs)


async def test_spans_start_within_a_second_of_the_tracer_starting_to_record(
    reader: InMemoryMetricReader, autojump_clock: trio.testing.MockClock
) -> None:
    exporter = InMemorySpanExporter()
    real = TracerProvider()
    real.add_span_processor(SimpleSpanProcessor(exporter))
    switched = SwitchedTracerProvider(real)
    async with tv.open_supervisor() as sup:
        telemetry.instrument(
            sup,
            meter_provider=reader.provider,
            tracer_provider=switched,  # type: ignore[attr-defined]
        )
        await sup.spawn(spec("ok"), ok)
        await sup.execute("ok", {})
        switched.on = True
        await sup.execute("ok", {})  # the no-op tracer is believed for a second
        await trio.sleep(1.0)
        await sup.execute("ok", {})
        await sup.execute("ok", {})
    assert sorted(s.name for s in exporter.get_finished_spans()) == [
        "attempt ok",
        "attempt ok",
        "call ok",
        "call ok",
    ]
    # Metrics do not depend on the tracer: every call is recorded.
    assert points(reader, "toolvisor.call.duration") == {key(tool="ok", outcome="succeeded"): 4}
    real.shutdown()
