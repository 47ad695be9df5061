"""toolvisor.aio under OpenTelemetry: instrument() takes the asyncio supervisor, the call
span is a child of the asyncio caller's span, and spans an asyncio tool opens are
children of their attempt's span."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
import trio
from aio_helpers import make_spec, run
from opentelemetry import trace
from otel_support import Otel
from prometheus_client.parser import text_string_to_metric_families

import toolvisor as tv
import toolvisor.aio as aio
from toolvisor import telemetry


@pytest.mark.parametrize("runs_on", ["asyncio", "trio"])
def test_an_asyncio_apps_call_and_its_tools_spans_join_the_callers_trace(
    otel: Otel, runs_on: str
) -> None:
    tracer = otel.tracer_provider.get_tracer("app")
    failures = [ConnectionError("reset")]

    sleep = asyncio.sleep if runs_on == "asyncio" else trio.sleep  # the tool's own library

    async def lookup(args: dict[str, Any]) -> str:
        with tracer.start_as_current_span("query"):
            await sleep(0.001)
            if failures:
                raise failures.pop()
        return "found"

    retry = tv.FixedRetryPolicy(max_attempts=2, delay_seconds=0.001)

    async def main() -> None:
        async with aio.open_supervisor() as sup:
            instrumentation = telemetry.instrument(
                sup, meter_provider=otel.meter_provider, tracer_provider=otel.tracer_provider
            )
            assert telemetry.is_instrumented(sup)
            await sup.spawn(make_spec("lookup", retry_policy=retry), lookup, runs_on=runs_on)
            with tracer.start_as_current_span("handle request"):
                assert await sup.execute("lookup", {}) == "found"
                # the asyncio caller's own span is current again
                assert trace.get_current_span().name == "handle request"  # type: ignore[attr-defined]
            assert telemetry.uninstrument(sup)
            assert not instrumentation.active and not telemetry.is_instrumented(sup)
            assert await sup.execute("lookup", {}) == "found"  # not recorded

    run(main)
    (request,) = otel.spans("handle request")
    (call,) = otel.spans("call lookup")
    attempts = {a.attributes["attempt.number"]: a for a in otel.spans("attempt lookup")}
    queries = sorted(otel.spans("query"), key=lambda s: s.start_time or 0)
    assert call.parent is not None and call.parent.span_id == request.context.span_id
    assert sorted(attempts) == [1, 2]
    assert len(queries) == 3  # two traced attempts, one call after uninstrument
    for n, query in zip([1, 2], queries, strict=False):
        assert query.parent is not None and query.parent.span_id == attempts[n].context.span_id
    assert queries[2].parent is None  # no attempt span is left current in any task
    durations = otel.counts("toolvisor.call.duration")
    assert sum(durations.values()) == 1


def test_an_asyncio_supervisor_is_instrumented_once(otel: Otel) -> None:
    async def main() -> None:
        async with aio.open_supervisor() as sup:
            telemetry.instrument(sup, meter_provider=otel.meter_provider)
            with pytest.raises(ValueError, match="instrumented already"):
                telemetry.instrument(sup, meter_provider=otel.meter_provider)
            assert telemetry.uninstrument(sup)
            assert not telemetry.uninstrument(sup)

    run(main)


def test_an_asyncio_app_serves_its_calls_on_prometheus() -> None:
    async def echo(args: dict[str, Any]) -> Any:
        await asyncio.sleep(0)
        return args

    async def main() -> str:
        async with aio.open_supervisor() as sup:
            await sup.spawn(make_spec("echo"), echo)
            server = telemetry.serve_prometheus(sup, 0)
            try:
                for _ in range(3):
                    await sup.execute("echo", {})
                async with httpx.AsyncClient() as client:  # an asyncio client, on this loop
                    response = await client.get(server.url)
            finally:
                server.close()
            response.raise_for_status()
            return response.text

    text = run(main)
    families = {f.name: f for f in text_string_to_metric_families(text)}
    [count] = [
        s.value
        for s in families["toolvisor_call_duration_seconds"].samples
        if s.name == "toolvisor_call_duration_seconds_count" and s.labels["tool"] == "echo"
    ]
    assert count == 3.0
