"""OpenTelemetry instrumentation, checked with the SDK's in-memory reader and exporter."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import Decision, ParentBased, Sampler, SamplingResult
from otel_support import Otel
from prometheus_client.parser import text_string_to_metric_families

import toolvisor as tv
from toolvisor import telemetry


def spec(name: str, **kw: Any) -> tv.FunctionToolSpec:
    params = [tv.StringParameter(name="s", required=False)]
    return tv.FunctionToolSpec(id=f"{name}-v1", tool_name=name, parameters=params, **kw)


def attrs_of(**kw: Any) -> frozenset[tuple[str, Any]]:
    return frozenset((k.replace("_", "."), v) for k, v in kw.items())


async def ok(args: dict[str, Any]) -> str:
    return "ok"


async def declined(args: dict[str, Any]) -> None:
    raise ValueError(f"card declined: {args}")


# --------------------------------------------------------------------------- outcomes


async def test_every_outcome_is_recorded_once_with_its_attributes(
    otel: Otel, autojump_clock: trio.testing.MockClock
) -> None:
    breaker = tv.StandardCircuitBreakerPolicy(failure_threshold=1, recovery_timeout=60)
    async with tv.open_supervisor() as sup:
        otel.instrument(sup)
        await sup.spawn(spec("ok"), ok)
        await sup.spawn(spec("bad", circuit_breaker_policy=breaker), declined)

        async def forever(args: dict[str, Any]) -> None:
            await trio.sleep_forever()

        await sup.spawn(spec("slow"), forever)

        assert await sup.execute("ok", {}) == "ok"
        with pytest.raises(ValueError, match="declined"):
            await sup.execute("bad", {})  # fails, and opens the breaker
        with pytest.raises(tv.CircuitOpenError):
            await sup.execute("bad", {})  # rejected: the tool did not run
        with pytest.raises(tv.ToolTimeoutError):
            await sup.execute("slow", {}, timeout=1)
        with trio.move_on_after(1):
            await sup.execute("slow", {})  # cancelled by the caller's own scope
        stats = {name: sup.stats(name) for name in sup.tools()}

    timeout = "toolvisor.errors.ToolTimeoutError"
    assert otel.counts("toolvisor.call.duration") == {
        attrs_of(tool="ok", outcome="succeeded"): 1,
        attrs_of(tool="bad", outcome="failed", error_type="ValueError"): 1,
        attrs_of(tool="bad", outcome="rejected", error_type="toolvisor.errors.CircuitOpenError"): 1,
        attrs_of(tool="slow", outcome="failed", error_type=timeout): 1,
        attrs_of(tool="slow", outcome="cancelled"): 1,
    }
    # The metric agrees with the supervisor's own counters.
    assert sum(s.calls for s in stats.values()) == 5
    assert stats["bad"].rejected == 1
    assert stats["slow"].cancelled == 1
    calls = {(s.attributes["tool"], s.attributes["outcome"]) for s in otel.spans("call ")}
    assert calls == {
        ("ok", "succeeded"),
        ("bad", "failed"),
        ("bad", "rejected"),
        ("slow", "failed"),
        ("slow", "cancelled"),
    }
    # The rejected call ran no attempt; the cut ones end their attempt span with the call.
    by_outcome = {(s.attributes["tool"], s.attributes["outcome"]): s for s in otel.spans("call ")}
    assert otel.children(by_outcome["bad", "rejected"]) == []
    (cut,) = otel.children(by_outcome["slow", "failed"])
    assert cut.attributes["error.type"] == timeout
    (cancelled,) = otel.children(by_outcome["slow", "cancelled"])
    assert cancelled.attributes["error.type"] == "cancelled"


async def test_attempt_spans_match_toolresult_attempts(
    otel: Otel, autojump_clock: trio.testing.MockClock
) -> None:
    script = iter([TimeoutError(), ConnectionError(), "done", *[TimeoutError()] * 3])

    async def flaky(args: dict[str, Any]) -> str:
        step = next(script)
        if isinstance(step, Exception):
            raise step
        return step

    retry = tv.FixedRetryPolicy(max_attempts=3, delay_seconds=2)
    async with tv.open_supervisor() as sup:
        otel.instrument(sup)
        await sup.spawn(spec("flaky", retry_policy=retry), flaky)
        first = await sup.execute_many([("flaky", {})])
        second = await sup.execute_many([("flaky", {})])

    assert (first[0].ok, first[0].attempts) == (True, 3)
    assert (second[0].ok, second[0].attempts) == (False, 3)
    calls = sorted(otel.spans("call "), key=lambda s: s.start_time or 0)
    for call_span, result in zip(calls, [first[0], second[0]], strict=True):
        attempts = sorted(otel.children(call_span), key=lambda s: s.start_time or 0)
        assert len(attempts) == result.attempts
        assert [a.attributes["attempt.number"] for a in attempts] == list(
            range(1, result.attempts + 1)
        )
        assert call_span.attributes["toolvisor.attempts"] == result.attempts
    first_attempts = sorted(otel.children(calls[0]), key=lambda s: s.start_time or 0)
    assert [a.attributes.get("error.type") for a in first_attempts] == [
        "TimeoutError",
        "ConnectionError",
        None,
    ]
    assert [a.attributes["attempt.handled"] for a in first_attempts] == [True, True, False]
    retries = [e for e in calls[0].events if e.name == "toolvisor.retry"]
    assert [(e.attributes["attempt.number"], e.attributes["retry.delay"]) for e in retries] == [
        (1, 2.0),
        (2, 2.0),
    ]
    durations = otel.counts("toolvisor.attempt.duration")
    assert (
        durations[
            attrs_of(
                tool="flaky", attempt_number=1, attempt_handled=True, error_type="TimeoutError"
            )
        ]
        == 2
    )
    assert durations[attrs_of(tool="flaky", attempt_number=3, attempt_handled=False)] == 1
    last = attrs_of(tool="flaky", attempt_number=3, attempt_handled=True, error_type="TimeoutError")
    assert durations[last] == 1  # retryable, though no attempt remained
    assert (
        otel.counts("toolvisor.events")[attrs_of(tool="flaky", event_name="retry_scheduled")] == 4
    )


async def test_a_non_retryable_failure_is_not_handled(
    otel: Otel, autojump_clock: trio.testing.MockClock
) -> None:
    retry = tv.FixedRetryPolicy(max_attempts=3, delay_seconds=1, retry_on=[TimeoutError])
    async with tv.open_supervisor() as sup:
        otel.instrument(sup)
        await sup.spawn(spec("bad", retry_policy=retry), declined)
        with pytest.raises(ValueError, match="declined"):
            await sup.execute("bad", {})
    (attempt,) = otel.spans("attempt ")
    assert attempt.attributes["attempt.handled"] is False
    assert attempt.attributes["error.type"] == "ValueError"


async def test_an_attempt_cut_at_its_timeout_is_an_attempt_that_failed(
    otel: Otel, autojump_clock: trio.testing.MockClock
) -> None:
    script = iter([10.0, 0.0])

    async def sometimes_slow(args: dict[str, Any]) -> str:
        await trio.sleep(next(script))
        return "ok"

    retry = tv.FixedRetryPolicy(max_attempts=2, delay_seconds=1)
    async with tv.open_supervisor() as sup:
        otel.instrument(sup)
        await sup.spawn(spec("slow", retry_policy=retry, timeout_s=1), sometimes_slow)
        assert await sup.execute("slow", {}) == "ok"
    attempts = sorted(otel.spans("attempt "), key=lambda s: s.attributes["attempt.number"])
    assert [a.attributes.get("error.type") for a in attempts] == [
        "toolvisor.errors.ToolTimeoutError",
        None,
    ]
    (first,) = [
        p for p in otel.points("toolvisor.attempt.duration") if p.attributes["attempt.number"] == 1
    ]
    assert first.sum == pytest.approx(1.0)


async def test_an_actor_crash_ends_the_call_and_its_attempt(otel: Otel) -> None:
    started = trio.Event()

    async def hangs(args: dict[str, Any]) -> None:
        started.set()
        await trio.sleep_forever()

    async with tv.open_supervisor() as sup:
        otel.instrument(sup)
        await sup.spawn(spec("hangs"), hangs)
        async with trio.open_nursery() as nursery:
            results: list[tv.ToolResult] = []

            async def call() -> None:
                results.extend(await sup.execute_many([("hangs", {})]))

            nursery.start_soon(call)
            await started.wait()
            await sup.kill("hangs")
    assert isinstance(results[0].error, tv.ActorCrashedError)
    (call_span,) = otel.spans("call ")
    assert call_span.attributes["outcome"] == "failed"
    (attempt,) = otel.children(call_span)
    assert attempt.attributes["error.type"] == "toolvisor.errors.ActorCrashedError"


# --------------------------------------------------------------------------- breaker


async def test_a_breaker_transition_is_a_span_event_and_a_counted_event(
    otel: Otel, autojump_clock: trio.testing.MockClock
) -> None:
    breaker = tv.StandardCircuitBreakerPolicy(failure_threshold=2, recovery_timeout=30)
    async with tv.open_supervisor() as sup:
        otel.instrument(sup)
        await sup.spawn(spec("bad", circuit_breaker_policy=breaker), declined)
        for _ in range(2):
            with pytest.raises(ValueError, match="declined"):
                await sup.execute("bad", {})
        gauge = {p.attributes["state"]: p.value for p in otel.points("toolvisor.breaker.state")}
        assert gauge == {"closed": 0, "half_open": 0, "open": 1}
        await trio.sleep(31)
        with pytest.raises(ValueError, match="declined"):
            await sup.execute("bad", {})  # the half-open trial fails: open again

    calls = sorted(otel.spans("call "), key=lambda s: s.start_time or 0)
    transitions = [
        [
            (e.attributes["breaker.from"], e.attributes["breaker.to"])
            for e in s.events
            if e.name == "toolvisor.breaker_transition"
        ]
        for s in calls
    ]
    assert transitions == [[], [("closed", "open")], [("open", "half_open"), ("half_open", "open")]]
    events = otel.counts("toolvisor.events")
    assert events[attrs_of(tool="bad", event_name="breaker_transition", breaker_state="open")] == 2
    assert (
        events[attrs_of(tool="bad", event_name="breaker_transition", breaker_state="half_open")]
        == 1
    )


# --------------------------------------------------------------------------- gauges


async def test_in_flight_and_queued_gauges(otel: Otel) -> None:
    release = trio.Event()

    async def blocked(args: dict[str, Any]) -> str:
        await release.wait()
        return "ok"

    async with tv.open_supervisor() as sup:
        otel.instrument(sup)
        await sup.spawn(spec("blocked", max_concurrency=1, queue_size=4), blocked)
        pending = [await sup.submit("blocked", {}) for _ in range(3)]
        await trio.testing.wait_all_tasks_blocked()
        in_flight = {p.attributes["tool"]: p.value for p in otel.points("toolvisor.in_flight")}
        queued = {p.attributes["tool"]: p.value for p in otel.points("toolvisor.queued")}
        release.set()
        for p in pending:
            await p.result()
    assert in_flight == {"blocked": 1}
    assert queued == {"blocked": 2}


# --------------------------------------------------------------------------- lifecycle


async def test_tools_spawned_before_and_after_are_covered_and_uninstrument_stops(
    otel: Otel,
) -> None:
    async with tv.open_supervisor() as sup:
        await sup.spawn(spec("before"), ok)
        await sup.execute("before", {})  # not instrumented yet: not recorded
        instrumentation = otel.instrument(sup)
        await sup.spawn(spec("after"), ok)
        await sup.execute("before", {})
        await sup.execute("after", {})
        await sup.kill("after")  # a restarted actor stays instrumented
        await sup.execute("after", {})
        assert telemetry.uninstrument(sup) is True
        assert not instrumentation.active
        await sup.execute("before", {})
        assert telemetry.uninstrument(sup) is False
        otel.instrument(sup)  # may be instrumented again once uninstrumented
    counts = otel.counts("toolvisor.call.duration")
    assert counts[attrs_of(tool="before", outcome="succeeded")] == 1
    assert counts[attrs_of(tool="after", outcome="succeeded")] == 2
    assert len(otel.spans("call ")) == 3
    assert (
        otel.counts("toolvisor.events")[attrs_of(tool="after", event_name="actor_restarted")] == 1
    )


async def test_instrument_rejects_bad_input(otel: Otel) -> None:
    with pytest.raises(
        TypeError, match=r"takes a Supervisor \(.*\) or a FunctionToolExecutor, got str"
    ):
        telemetry.instrument("sup")  # type: ignore[arg-type]
    async with tv.open_supervisor() as sup:
        otel.instrument(sup)
        with pytest.raises(ValueError, match="instrumented already"):
            otel.instrument(sup)


async def test_the_callers_span_is_the_parent_and_context_crosses_a_message(otel: Otel) -> None:
    tracer = otel.tracer_provider.get_tracer("test")
    async with tv.open_supervisor() as sup:
        otel.instrument(sup)
        await sup.spawn(spec("ok"), ok)
        with tracer.start_as_current_span("handle request") as request:
            await sup.execute("ok", {})
            headers = telemetry.inject_context()
        assert set(headers) >= {"traceparent"}
        # What a worker in another process does with the message's headers:
        token = otel_context.attach(telemetry.extract_context(headers))
        try:
            await sup.execute("ok", {})
        finally:
            otel_context.detach(token)
        await sup.execute("ok", {})  # no current span: a trace of its own
    local, remote, alone = sorted(otel.spans("call "), key=lambda s: s.start_time or 0)
    for span in (local, remote):
        assert span.parent is not None
        assert span.parent.span_id == request.get_span_context().span_id
        assert span.context.trace_id == request.get_span_context().trace_id
    assert alone.parent is None
    assert alone.context.trace_id != request.get_span_context().trace_id
    assert telemetry.extract_context({"traceparent": "garbage"}) == otel_context.Context()
    with pytest.raises(TypeError, match="mapping"):
        telemetry.extract_context("traceparent")  # type: ignore[arg-type]


async def test_spans_the_tool_opens_are_children_of_their_attempts_span(
    otel: Otel, autojump_clock: trio.testing.MockClock
) -> None:
    """Attempt 1 (kept on time by the actor's watchdog) is cut at its timeout, attempt 2
    (under its own scope) fails, attempt 3 returns: each opened a span of its own."""
    tracer = otel.tracer_provider.get_tracer("tool")
    script = iter([10.0, ConnectionError("reset"), 0.0])

    async def traced(args: dict[str, Any], ctx: tv.ExecutionContext) -> str:
        with tracer.start_as_current_span("query", attributes={"n": ctx.attempt}):
            step = next(script)
            if isinstance(step, Exception):
                raise step
            await trio.sleep(step)
            return "ok"

    retry = tv.FixedRetryPolicy(max_attempts=3, delay_seconds=1)
    async with tv.open_supervisor() as sup:
        otel.instrument(sup)
        await sup.spawn(spec("traced", retry_policy=retry, timeout_s=1), traced)
        assert await sup.execute("traced", {}) == "ok"
    attempts = {a.attributes["attempt.number"]: a for a in otel.spans("attempt ")}
    queries = {q.attributes["n"]: q for q in otel.spans("query")}
    assert sorted(queries) == sorted(attempts) == [1, 2, 3]
    for n, query in queries.items():
        assert query.parent is not None
        assert query.parent.span_id == attempts[n].context.span_id
        assert query.context.trace_id == attempts[n].context.trace_id


async def test_after_an_attempt_its_span_is_no_longer_current_in_the_actor(
    otel: Otel, autojump_clock: trio.testing.MockClock
) -> None:
    """An attempt cut at its timeout leaves no span current in the worker: the next
    calls (one traced, one after uninstrument) see their own attempt's span, or none."""
    seen: list[Any] = []

    async def hangs_once(args: dict[str, Any]) -> str:
        seen.append(trace.get_current_span().get_span_context())
        if len(seen) == 1:
            await trio.sleep_forever()
        return "ok"

    async with tv.open_supervisor() as sup:
        instrumentation = otel.instrument(sup)
        await sup.spawn(spec("hangs", timeout_s=1, max_concurrency=1), hangs_once)
        with pytest.raises(tv.ToolTimeoutError):
            await sup.execute("hangs", {})
        assert await sup.execute("hangs", {}) == "ok"
        telemetry.uninstrument(sup)
        assert not instrumentation.active
        assert await sup.execute("hangs", {}) == "ok"
    cut, second = sorted(otel.spans("attempt "), key=lambda s: s.start_time or 0)
    assert [c.span_id for c in seen[:2]] == [cut.context.span_id, second.context.span_id]
    assert not seen[2].is_valid  # uninstrumented: no span left behind by the others


# --------------------------------------------------------------------------- cardinality

_MARK = "argval-"


def _all_attribute_values(otel: Otel) -> list[Any]:
    values: list[Any] = []
    for span in otel.exporter.get_finished_spans():
        values.extend(span.attributes.values())
        for event in span.events:
            values.extend(event.attributes.values())
        values.append(span.name)
        values.append(span.status.description)
    for name in (
        "toolvisor.call.duration",
        "toolvisor.attempt.duration",
        "toolvisor.events",
        "toolvisor.breaker.state",
        "toolvisor.in_flight",
        "toolvisor.queued",
    ):
        for point in otel.points(name):
            values.extend(point.attributes.keys())
            values.extend(point.attributes.values())
    return values


@settings(max_examples=25)
@given(
    value=st.text(min_size=0, max_size=20),
    tenant=st.text(max_size=10),
    fail=st.booleans(),
)
def test_no_argument_key_or_context_value_reaches_any_attribute(
    value: str, tenant: str, fail: bool
) -> None:
    secret = _MARK + value
    otel = Otel()

    async def echo(args: dict[str, Any]) -> str:
        if fail:
            raise ValueError(f"refusing {args['s']}")
        return str(args["s"])

    async def main() -> None:
        async with tv.open_supervisor() as sup:
            otel.instrument(sup)
            echo_spec = spec(
                "echo", retry_policy=tv.FixedRetryPolicy(max_attempts=2, delay_seconds=0)
            )
            echo_spec.idempotency.enabled = True
            await sup.spawn(echo_spec, echo)
            ctx = tv.ExecutionContext(
                tenant_id=_MARK + tenant,
                request_id=secret,
                metadata={"m": secret},
                idempotency_key=secret,
            )
            for _ in range(2):  # the second is a cache hit when the first succeeded
                await sup.execute_many([("echo", {"s": secret}, ctx)])

    trio.run(main)
    assert otel.spans("call ")
    for v in _all_attribute_values(otel):
        assert _MARK not in str(v)
    otel.meter_provider.shutdown()
    otel.tracer_provider.shutdown()


# --------------------------------------------------------------------------- Prometheus


async def test_serve_prometheus_serves_the_documented_names() -> None:
    async with tv.open_supervisor() as sup:
        await sup.spawn(spec("ok"), ok)
        await sup.spawn(spec("bad"), declined)
        server = telemetry.serve_prometheus(sup, 0)
        try:
            await sup.execute("ok", {})
            with pytest.raises(ValueError, match="declined"):
                await sup.execute("bad", {})
            async with httpx.AsyncClient() as client:
                response = await client.get(server.url)
        finally:
            server.close()
        server.close()  # idempotent
    assert response.status_code == 200
    families = {f.name: f for f in text_string_to_metric_families(response.text)}
    for name in PROMETHEUS_NAMES:
        assert name in families, name
    samples = [
        s
        for s in families["toolvisor_call_duration_seconds"].samples
        if s.name == "toolvisor_call_duration_seconds_count"
    ]
    assert {(s.labels["tool"], s.labels["outcome"], s.value) for s in samples} == {
        ("ok", "succeeded", 1.0),
        ("bad", "failed", 1.0),
    }


def test_serve_prometheus_rejects_a_bad_port() -> None:
    async def main() -> None:
        async with tv.open_supervisor() as sup:
            with pytest.raises(ValueError, match="port must be an int in 0-65535, got 70000"):
                telemetry.serve_prometheus(sup, 70000)

    trio.run(main)


# Histograms and counters are named as families (without _bucket/_count, _total).
PROMETHEUS_NAMES = (
    "toolvisor_call_duration_seconds",
    "toolvisor_attempt_duration_seconds",
    "toolvisor_breaker_state",
    "toolvisor_in_flight",
    "toolvisor_queued",
)


# --------------------------------------------------------------------------- docs

DOC = Path(__file__).resolve().parents[1] / "docs" / "telemetry.md"


def test_docs_table_names_every_instrument() -> None:
    text = DOC.read_text()
    for name in (
        "toolvisor.call.duration",
        "toolvisor.attempt.duration",
        "toolvisor.events",
        "toolvisor.breaker.state",
        "toolvisor.in_flight",
        "toolvisor.queued",
        "toolvisor_events_total",
        *PROMETHEUS_NAMES,
    ):
        assert f"`{name}`" in text, name


RUNNABLE = [
    block
    for block in re.findall(r"```python\n(.*?)```", DOC.read_text(), re.DOTALL)
    if not block.startswith("# fragment")
]


def test_docs_have_a_runnable_block() -> None:
    assert RUNNABLE


@pytest.mark.parametrize("block", RUNNABLE, ids=str.__len__)
def test_docs_python_blocks_run(block: str) -> None:
    exec(compile(block, str(DOC), "exec"), {"__name__": "__main__"})


# --------------------------------------------------------------------------- random mixes

_STEP = st.sampled_from(["ok", "fail", "slow", "hang"])


@settings(max_examples=20)
@given(
    scripts=st.lists(st.lists(_STEP, min_size=1, max_size=4), min_size=1, max_size=8),
    threshold=st.integers(min_value=1, max_value=4),
)
def test_metrics_and_spans_agree_with_the_counters_on_any_mix(
    scripts: list[list[str]], threshold: int
) -> None:
    """Whatever the tool does, each call is one duration point and one span with the
    outcome its counters say, and each attempt that ran is one attempt span."""
    otel = Otel()
    steps = iter([step for script in scripts for step in script])
    results: list[tv.ToolResult] = []
    stats: list[tv.ToolStats] = []

    async def tool(args: dict[str, Any]) -> str:
        step = next(steps, "ok")
        if step == "fail":
            raise ConnectionError("down")
        if step == "slow":
            await trio.sleep(2)  # past timeout_s: the attempt times out
        if step == "hang":
            await trio.sleep(100)  # past the call's deadline (4 s)
        return "ok"

    async def main() -> None:
        breaker = tv.StandardCircuitBreakerPolicy(failure_threshold=threshold, recovery_timeout=5)
        retry = tv.FixedRetryPolicy(max_attempts=3, delay_seconds=1)
        async with tv.open_supervisor() as sup:
            otel.instrument(sup)
            await sup.spawn(
                spec("t", retry_policy=retry, circuit_breaker_policy=breaker, timeout_s=1.5), tool
            )
            for _ in scripts:
                results.extend(await sup.execute_many([("t", {})], timeout=4))
                await trio.sleep(1)
            stats.append(sup.stats("t"))

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    (s,) = stats
    by_outcome: Counter[str] = Counter()
    for point in otel.points("toolvisor.call.duration"):
        by_outcome[point.attributes["outcome"]] += point.count
    assert by_outcome == +Counter(
        succeeded=s.successes, failed=s.failures, rejected=s.rejected, cancelled=s.cancelled
    )
    assert sum(by_outcome.values()) == s.calls == len(results)
    calls = sorted(otel.spans("call "), key=lambda c: c.start_time or 0)
    assert [len(otel.children(c)) for c in calls] == [r.attempts for r in results]
    assert sum(p.count for p in otel.points("toolvisor.attempt.duration")) == sum(
        r.attempts for r in results
    )
    assert len(otel.spans("attempt ")) == sum(r.attempts for r in results)
    otel.meter_provider.shutdown()
    otel.tracer_provider.shutdown()


async def test_a_tool_runs_in_the_supervisors_context_not_its_spawners(otel: Otel) -> None:
    """A tool spawned inside a span (a request, another tool's attempt) does not keep
    that span for its later calls: uninstrumented, its spans start traces of their own."""
    tracer = otel.tracer_provider.get_tracer("app")

    async def inner(args: dict[str, Any]) -> str:
        with tracer.start_as_current_span("inner query"):
            await trio.lowlevel.checkpoint()
        return "inner"

    async with tv.open_supervisor() as sup:

        async def spawner(args: dict[str, Any]) -> str:
            await sup.spawn(spec("inner"), inner)
            return "spawned"

        await sup.spawn(spec("spawner"), spawner)
        otel.instrument(sup)
        with tracer.start_as_current_span("handle request"):
            assert await sup.execute("spawner", {}) == "spawned"
        telemetry.uninstrument(sup)
        assert await sup.execute("inner", {}) == "inner"
    (query,) = otel.spans("inner query")
    assert query.parent is None


async def test_a_sampled_out_calls_tool_spans_are_sampled_out_with_it() -> None:
    """With a parent-based sampler that drops the call spans, the tool's own spans are
    dropped with their call instead of starting traces of their own."""
    exporter = InMemorySpanExporter()

    class DropCalls(Sampler):
        def should_sample(
            self, parent_context: Any, trace_id: int, name: str, *a: Any, **k: Any
        ) -> SamplingResult:
            keep = not name.startswith("call ")
            return SamplingResult(Decision.RECORD_AND_SAMPLE if keep else Decision.DROP)

        def get_description(self) -> str:
            return "DropCalls"

    tracers = TracerProvider(sampler=ParentBased(root=DropCalls()))
    tracers.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = tracers.get_tracer("tool")

    async def traced(args: dict[str, Any]) -> str:
        with tracer.start_as_current_span("query"):
            await trio.lowlevel.checkpoint()
        return "ok"

    async with tv.open_supervisor() as sup:
        telemetry.instrument(sup, meter_provider=MeterProvider(), tracer_provider=tracers)
        await sup.spawn(spec("traced"), traced)
        for _ in range(3):
            assert await sup.execute("traced", {}) == "ok"
    assert exporter.get_finished_spans() == ()
    with tracer.start_as_current_span("a root span the sampler keeps"):
        pass
    assert len(exporter.get_finished_spans()) == 1  # the sampler does keep other roots


async def test_an_observer_without_attempt_context_still_observes() -> None:
    """An observer written to the four hooks it had before ``attempt_context``."""
    seen: list[str] = []

    class Old:
        def call_started(self, call: Any) -> None:
            seen.append("call")

        def call_running(self, call: Any) -> None:
            pass

        def attempt_started(self, call: Any) -> None:
            seen.append(f"attempt {call.attempts}")

        def attempt_ended(
            self, call: Any, error: BaseException | None, retry_in: float | None
        ) -> None:
            seen.append("ended")

    async with tv.open_supervisor() as sup:
        await sup.spawn(spec("ok"), ok)
        sup.observe(Old())  # type: ignore[arg-type]
        assert await sup.execute("ok", {}) == "ok"
    assert seen == ["call", "attempt 1", "ended"]
