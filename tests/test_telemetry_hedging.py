"""Telemetry of hedged calls: a race is one attempt span, and every span ends."""

from __future__ import annotations

from typing import Any

import trio
import trio.testing
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from otel_support import Otel

import toolvisor as tv
from toolvisor import telemetry

SEARCH = tv.FunctionToolSpec(
    id="search-v1", tool_name="search", read_only=True, hedging=tv.HedgingPolicy(delay=1.0)
)


async def test_a_race_is_one_attempt_span_and_no_span_is_left_open(
    autojump_clock: trio.testing.MockClock,
) -> None:
    reader = InMemoryMetricReader()
    meters = MeterProvider(metric_readers=[reader])
    exporter = InMemorySpanExporter()
    tracers = TracerProvider()
    tracers.add_span_processor(SimpleSpanProcessor(exporter))
    started: list[int] = []

    async def search(args: dict[str, Any], ctx: tv.ExecutionContext) -> str:
        started.append(ctx.attempt)
        await trio.sleep(10.0 if ctx.attempt == 1 else 0.5)
        return f"attempt {ctx.attempt}"

    try:
        async with tv.open_supervisor() as sup:
            telemetry.instrument(sup, meter_provider=meters, tracer_provider=tracers)
            await sup.spawn(SEARCH, search)
            [result] = await sup.execute_many([("search", {})])
            telemetry.uninstrument(sup)
        assert (result.value, result.attempts, started) == ("attempt 2", 2, [1, 2])
        spans = exporter.get_finished_spans()
        calls = [s for s in spans if s.name == "call search"]
        attempts = [s for s in spans if s.name == "attempt search"]
        assert len(calls) == 1 and len(attempts) == 1  # the race, from its start to its win
        assert attempts[0].parent is not None
        assert attempts[0].parent.span_id == calls[0].context.span_id
        assert calls[0].attributes is not None
        assert calls[0].attributes["toolvisor.attempts"] == 2
        data = reader.get_metrics_data()
        assert data is not None
        [duration] = [
            point
            for rm in data.resource_metrics
            for sm in rm.scope_metrics
            for metric in sm.metrics
            if metric.name == "toolvisor.attempt.duration"
            for point in metric.data.data_points
        ]
        assert (duration.count, duration.sum) == (1, 1.5)  # on trio's clock
    finally:
        meters.shutdown()
        tracers.shutdown()


async def test_every_hedged_attempts_tool_spans_are_children_of_the_race(
    otel: Otel, autojump_clock: trio.testing.MockClock
) -> None:
    tracer = otel.tracer_provider.get_tracer("tool")

    async def search(args: dict[str, Any], ctx: tv.ExecutionContext) -> str:
        with tracer.start_as_current_span("query", attributes={"n": ctx.attempt}):
            await trio.sleep(10.0 if ctx.attempt == 1 else 0.5)
        return f"attempt {ctx.attempt}"

    async with tv.open_supervisor() as sup:
        otel.instrument(sup)
        await sup.spawn(SEARCH, search)
        assert await sup.execute("search", {}) == "attempt 2"
    (race,) = otel.spans("attempt search")
    queries = {q.attributes["n"]: q for q in otel.spans("query")}
    assert sorted(queries) == [1, 2]  # the loser's span ended too, cancelled
    for query in queries.values():
        assert query.parent is not None and query.parent.span_id == race.context.span_id
