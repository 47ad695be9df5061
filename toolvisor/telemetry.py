"""OpenTelemetry metrics and traces for a supervisor's tools, and a Prometheus endpoint.

``instrument(sup)`` makes every call of every tool of ``sup`` (spawned before or after)
visible to OpenTelemetry: a duration histogram per call and per attempt, a counter of
the supervisor's events, gauges of in-flight and queued calls and of breaker states, and
a span per call with a child span per attempt. Needs the ``otel`` extra
(``pip install 'toolvisor[otel]'``, opentelemetry-api only); an application brings its
own SDK and exporters, or passes providers explicitly. ``serve_prometheus(sup, port)``
(the ``prometheus`` extra) serves the same instruments on ``/metrics``.

Attributes carry tool names, outcome words, attempt numbers and exception type names
only: never arguments, idempotency keys, contexts or exception messages (which may quote
arguments), so their cardinality is bounded by the tools and the exception classes of
the program. The table of names, units and attributes is in docs/telemetry.md.
"""

from __future__ import annotations

import importlib
import threading
import weakref
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import outcome
import trio

try:
    from opentelemetry import context as otel_context
    from opentelemetry import metrics, propagate, trace
    from opentelemetry.metrics import CallbackOptions, Observation
    from opentelemetry.trace import Span, SpanKind, Status, StatusCode
except ImportError as exc:  # pragma: no cover - the extra is not installed
    raise ImportError(
        "toolvisor.telemetry needs opentelemetry-api: pip install 'toolvisor[otel]'"
    ) from exc

from .actors.call import Call
from .errors import ToolvisorError
from .events import (
    ActorRestarted,
    BreakerTransition,
    CallFailed,
    Event,
    ResultNotStored,
    RetryScheduled,
    ToolFailed,
)

if TYPE_CHECKING:
    from .supervisor.core import Supervisor

__all__ = [
    "DURATION_BUCKETS_S",
    "Instrumentation",
    "MetricsServer",
    "extract_context",
    "inject_context",
    "instrument",
    "require_prometheus",
    "serve_prometheus",
    "uninstrument",
]

#: Histogram bucket bounds (seconds) of both duration histograms: tool calls take from
#: a millisecond to a minute (the SDK's default bounds are made for milliseconds).
DURATION_BUCKETS_S = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)

_SCOPE = "toolvisor"
_OK = Status(StatusCode.OK)
_ERROR = Status(StatusCode.ERROR)
# The attribute names of an attribute set, by the length of its key (see _attributes).
_KEYS: Mapping[int, tuple[str, ...]] = {
    1: ("tool",),
    3: ("tool", "outcome", "error.type"),
    4: ("tool", "attempt.number", "attempt.handled", "error.type"),
}
_BREAKER_STATES = ("closed", "half_open", "open")
_EVENT_NAMES: Mapping[type, str] = {
    RetryScheduled: "retry_scheduled",
    BreakerTransition: "breaker_transition",
    ActorRestarted: "actor_restarted",
    ResultNotStored: "result_not_stored",
    ToolFailed: "tool_failed",
    CallFailed: "call_failed",
}

# The supervisors instrumented now, and their instrumentation.
_INSTRUMENTED: weakref.WeakKeyDictionary[Supervisor, Instrumentation] = weakref.WeakKeyDictionary()


def error_type(error: BaseException) -> str:
    """``error.type`` of ``error``: its class's qualified name (module-qualified unless a
    builtin), e.g. ``toolvisor.errors.ToolTimeoutError`` or ``ValueError``."""
    cls = type(error)
    module = cls.__module__
    return cls.__qualname__ if module == "builtins" else f"{module}.{cls.__qualname__}"


class _Trace:
    """What the instrumentation keeps on one call (``Call.trace``)."""

    __slots__ = ("attempt", "attempt_started", "recording", "span")

    def __init__(self, span: Span) -> None:
        self.span = span
        # A no-op tracer's span: no attempt spans are made (they would be no-ops too).
        self.recording = span.is_recording()
        self.attempt: Span | None = None  # the running attempt's span (None: none runs)
        self.attempt_started = 0.0


class Instrumentation:
    """The instruments and spans of one supervisor; made by :func:`instrument`.

    It is the supervisor's call observer (the hooks of
    ``toolvisor.actors.observer.CallObserver``) and an event subscriber. Its hooks run
    in trio's thread; the gauges' callbacks in the metric reader's (they read
    ``Supervisor.stats``, and report nothing for a tool that goes away meanwhile).
    """

    def __init__(
        self,
        sup: Supervisor,
        *,
        meter_provider: metrics.MeterProvider | None = None,
        tracer_provider: trace.TracerProvider | None = None,
    ) -> None:
        from . import __version__

        self._sup: weakref.ref[Supervisor] = weakref.ref(sup)
        self._active = True
        self._current: Call | None = None  # the call the actor works on (span events)
        self._cache: dict[tuple[Any, ...], dict[str, Any]] = {}
        meter = metrics.get_meter(_SCOPE, __version__, meter_provider)
        self._tracer = trace.get_tracer(_SCOPE, __version__, tracer_provider)
        self._call_duration = meter.create_histogram(
            "toolvisor.call.duration",
            unit="s",
            description="Duration of tool calls, from the call to its end (queue wait, "
            "every attempt and the waits between them).",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS_S,
        )
        self._attempt_duration = meter.create_histogram(
            "toolvisor.attempt.duration",
            unit="s",
            description="Duration of the attempts that ran a tool.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS_S,
        )
        self._events = meter.create_counter(
            "toolvisor.events",
            unit="{event}",
            description="Supervisor events: retries, breaker transitions, restarts, "
            "results not stored.",
        )
        meter.create_observable_gauge(
            "toolvisor.breaker.state",
            callbacks=[self._observe_breakers],
            unit="1",
            description="1 for each tool's current circuit breaker state, 0 for the others.",
        )
        meter.create_observable_gauge(
            "toolvisor.in_flight",
            callbacks=[self._observe_in_flight],
            unit="{call}",
            description="Calls each tool's actor holds now.",
        )
        meter.create_observable_gauge(
            "toolvisor.queued",
            callbacks=[self._observe_queued],
            unit="{call}",
            description="Calls waiting in each tool's inbox now.",
        )
        self._unsubscribe = sup.subscribe(self._on_event)
        self._previous = sup.observe(self)

    @property
    def active(self) -> bool:
        """True until :meth:`uninstrument`."""
        return self._active

    def uninstrument(self) -> None:
        """Stop observing: later calls and events are not recorded (idempotent).

        Calls already made still end their spans and record their durations. The gauges
        stay registered with the meter (OpenTelemetry cannot remove an instrument) and
        report nothing from now on.
        """
        if not self._active:
            return
        self._active = False
        self._unsubscribe()
        sup = self._sup()
        if sup is not None:
            sup.observe(self._previous)
            if _INSTRUMENTED.get(sup) is self:
                del _INSTRUMENTED[sup]

    # ------------------------------------------------------------------ call hooks

    def call_started(self, call: Call) -> None:
        """Open the call's span (child of the caller's current span)."""
        tool = call.tool
        span = self._tracer.start_span(
            f"call {tool}", kind=SpanKind.INTERNAL, attributes=self._attributes(tool)
        )
        call.trace = _Trace(span)
        call.on_end = self._call_ended

    def call_running(self, call: Call) -> None:
        """The actor works on ``call``: breaker transitions go on its span."""
        self._current = call

    def attempt_started(self, call: Call) -> None:
        """Open a child span of the call's for this attempt."""
        self._current = call
        record: _Trace | None = call.trace
        if record is None:
            return  # made before instrument()
        if record.recording:
            record.attempt = self._tracer.start_span(
                f"attempt {call.tool}",
                context=trace.set_span_in_context(record.span),
                kind=SpanKind.INTERNAL,
                attributes={"tool": call.tool, "attempt.number": call.attempts},
            )
        else:
            record.attempt = trace.INVALID_SPAN
        record.attempt_started = trio.current_time()

    def attempt_ended(
        self, call: Call, error: BaseException | None, retry_in: float | None
    ) -> None:
        """Close the running attempt (if any); a retry becomes an event of the call."""
        self._current = call
        record: _Trace | None = call.trace
        if record is None:
            return
        etype = None if error is None else error_type(error)
        if retry_in is not None and record.recording:
            record.span.add_event(
                "toolvisor.retry",
                {"attempt.number": call.attempts, "retry.delay": retry_in, "error.type": etype},
            )
        span = record.attempt
        if span is None:
            return  # no attempt ran since the last one ended (a refused retry)
        record.attempt = None
        handled = error is not None and (retry_in is not None or self._retryable(call, error))
        attributes = self._attributes(call.tool, call.attempts, handled, etype)
        self._attempt_duration.record(trio.current_time() - record.attempt_started, attributes)
        if record.recording:
            span.set_attributes(attributes)
            if error is not None:
                span.set_status(_ERROR)
            span.end()

    def _attributes(self, *key: Any) -> dict[str, Any]:
        """The attribute set of ``(tool)``, ``(tool, outcome, error type)`` or ``(tool,
        attempt number, handled, error type)``, made once (never mutated afterwards)."""
        attributes = self._cache.get(key)
        if attributes is None:
            names = _KEYS[len(key)]
            attributes = {n: v for n, v in zip(names, key, strict=True) if v is not None}
            self._cache[key] = attributes
        return attributes

    def _retryable(self, call: Call, error: BaseException) -> bool:
        """Whether the tool's retry policy handles ``error`` (True if it cannot say)."""
        sup = self._sup()
        if sup is None:
            return True
        try:
            policy = sup.spec(call.tool).retry_policy
        except ToolvisorError:  # stopped meanwhile
            return True
        is_retryable = getattr(policy, "is_retryable", None)
        if not callable(is_retryable):
            return True
        try:
            return bool(is_retryable(error))
        except Exception:
            return True

    def _call_ended(self, call: Call) -> None:
        """Record the call's duration and close its span (and a cut attempt's)."""
        if self._current is call:
            self._current = None
        record: _Trace | None = call.trace
        if record is None:
            return
        call.trace = None
        kind = call.end_kind or "failed"
        result = call.outcome
        etype = error_type(result.error) if isinstance(result, outcome.Error) else None
        now = trio.current_time()
        attempt = record.attempt
        if attempt is not None:  # cut by the call's end: its deadline, caller, or crash
            record.attempt = None
            cut = self._attributes(call.tool, call.attempts, False, etype or "cancelled")
            self._attempt_duration.record(now - record.attempt_started, cut)
            if record.recording:
                attempt.set_attributes(cut)
                attempt.set_status(_ERROR)
                attempt.end()
        attributes = self._attributes(call.tool, kind, etype)
        self._call_duration.record(now - call.started, attributes)
        if not record.recording:
            return
        span = record.span
        span.set_attributes(attributes)
        span.set_attribute("toolvisor.attempts", call.attempts)
        if call.cached:
            span.set_attribute("toolvisor.cached", True)
        if kind == "succeeded":
            span.set_status(_OK)
        elif kind != "cancelled":
            span.set_status(_ERROR)
        span.end()

    # ------------------------------------------------------------------ events

    def _on_event(self, event: Event) -> None:
        name = _EVENT_NAMES.get(type(event), type(event).__name__)
        attributes: dict[str, Any] = {"tool": event.tool, "event.name": name}
        if isinstance(event, BreakerTransition):
            attributes["breaker.state"] = event.new
            current = self._current
            if current is not None and current.tool == event.tool:
                record = current.trace
                if isinstance(record, _Trace):
                    record.span.add_event(
                        "toolvisor.breaker_transition",
                        {"breaker.from": event.old, "breaker.to": event.new},
                    )
        self._events.add(1, attributes)

    # ------------------------------------------------------------------ gauges

    def _stats(self) -> Iterable[Any]:
        sup = self._sup()
        if sup is None or not self._active:
            return []
        try:
            names = sup.tools()
        except RuntimeError:  # the routing table changed while being read: next time
            return []
        stats = []
        for name in names:
            try:
                stats.append(sup.stats(name))
            except (ToolvisorError, RuntimeError):
                continue  # stopped meanwhile
        return stats

    def _observe_breakers(self, _options: CallbackOptions) -> Iterable[Observation]:
        observations = []
        for stats in self._stats():
            states: tuple[str, ...] = _BREAKER_STATES
            if stats.breaker_state not in states:
                states = (*states, stats.breaker_state)
            for state in states:
                value = 1 if state == stats.breaker_state else 0
                observations.append(Observation(value, {"tool": stats.tool, "state": state}))
        return observations

    def _observe_in_flight(self, _options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(s.in_flight, {"tool": s.tool}) for s in self._stats()]

    def _observe_queued(self, _options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(s.queued, {"tool": s.tool}) for s in self._stats()]


def instrument(
    sup: Supervisor,
    *,
    meter_provider: metrics.MeterProvider | None = None,
    tracer_provider: trace.TracerProvider | None = None,
) -> Instrumentation:
    """Record metrics and spans of every call of ``sup``'s tools, spawned now or later.

    Args:
        sup: an open supervisor.
        meter_provider: where the instruments go (default: OpenTelemetry's global one).
        tracer_provider: where the spans go (default: the global one).

    Returns:
        The :class:`Instrumentation`; ``uninstrument(sup)`` or its ``uninstrument()``
        stops it.

    Raises:
        TypeError: ``sup`` is not a Supervisor.
        ValueError: ``sup`` is instrumented already (uninstrument it first).
    """
    from .supervisor.core import Supervisor

    if not isinstance(sup, Supervisor):
        raise TypeError(f"instrument() takes a Supervisor, got {type(sup).__name__}")
    if sup in _INSTRUMENTED:
        raise ValueError(
            "this supervisor is instrumented already; call uninstrument(sup) before "
            "instrumenting it again"
        )
    instrumentation = Instrumentation(
        sup, meter_provider=meter_provider, tracer_provider=tracer_provider
    )
    _INSTRUMENTED[sup] = instrumentation
    return instrumentation


def uninstrument(sup: Supervisor) -> bool:
    """Stop recording ``sup``'s calls; False if it was not instrumented."""
    instrumentation = _INSTRUMENTED.get(sup)
    if instrumentation is None:
        return False
    instrumentation.uninstrument()
    return True


# ---------------------------------------------------------------------- trace context


def inject_context() -> dict[str, str]:
    """The current trace context as message headers (W3C ``traceparent``/``tracestate``).

    For a transport that sends calls to another process: put these strings in the
    message; the receiving side passes them to :func:`extract_context`. Uses
    OpenTelemetry's global propagator (W3C trace context unless the application set
    another). Empty when there is no current span.
    """
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


def extract_context(carrier: Mapping[str, str]) -> otel_context.Context:
    """The trace context sent by :func:`inject_context`, to run a remote call under.

    Attach it around the call so that its span joins the caller's trace::

        token = opentelemetry.context.attach(extract_context(headers))
        try:
            await sup.execute(tool, args)
        finally:
            opentelemetry.context.detach(token)

    Headers that are missing or malformed give an empty context (a new trace).

    Raises:
        TypeError: ``carrier`` is not a mapping.
    """
    if not isinstance(carrier, Mapping):
        raise TypeError(f"carrier must be a mapping of str to str, got {type(carrier).__name__}")
    return propagate.extract(dict(carrier))


# ---------------------------------------------------------------------- Prometheus


class MetricsServer:
    """A ``/metrics`` endpoint of one supervisor's instruments; see :func:`serve_prometheus`.

    Attributes:
        host / port: where it listens (the real port when 0 was asked for).
        url: ``http://host:port/metrics``.
    """

    def __init__(
        self,
        instrumentation: Instrumentation,
        meter_provider: Any,
        server: Any,
        thread: threading.Thread,
    ) -> None:
        self.instrumentation = instrumentation
        self._meter_provider = meter_provider
        self._server = server
        self._thread = thread
        self.host: str = server.server_address[0]
        self.port: int = server.server_address[1]
        self.url = f"http://{self.host}:{self.port}/metrics"

    def close(self) -> None:
        """Stop serving and uninstrument the supervisor (idempotent)."""
        self.instrumentation.uninstrument()
        if self._thread.is_alive():
            self._server.shutdown()
            self._server.server_close()
            self._thread.join()
            self._meter_provider.shutdown()


def require_prometheus() -> None:
    """Check that :func:`serve_prometheus` can run.

    Raises:
        ImportError: naming the extra to install when a package is missing.
    """
    try:
        for module in ("opentelemetry.sdk.metrics", "opentelemetry.exporter.prometheus"):
            importlib.import_module(module)
        importlib.import_module("prometheus_client")
    except ImportError as exc:
        raise ImportError(
            "serving Prometheus metrics needs opentelemetry-sdk, "
            "opentelemetry-exporter-prometheus and prometheus-client: "
            f"pip install 'toolvisor[prometheus]' ({exc})"
        ) from exc


def serve_prometheus(sup: Supervisor, port: int, *, host: str = "127.0.0.1") -> MetricsServer:
    """Instrument ``sup`` and serve its metrics in Prometheus' format on ``/metrics``.

    Names are the instruments' with underscores and their unit
    (``toolvisor_call_duration_seconds``, ``toolvisor_events_total``...). Needs the
    ``prometheus`` extra (opentelemetry-sdk, opentelemetry-exporter-prometheus,
    prometheus-client). The server runs in a thread of its own; ``close()`` stops it.

    Args:
        sup: an open supervisor, not instrumented yet.
        port: the TCP port (0: any free one; see ``MetricsServer.port``).
        host: the address to listen on (default loopback only).

    Raises:
        ImportError: the ``prometheus`` extra is not installed.
        ValueError: ``port`` is not in 0-65535, or ``sup`` is instrumented already.
        OSError: the port cannot be bound (in use, or not allowed).
    """
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ValueError(f"port must be an int in 0-65535, got {port!r}")
    require_prometheus()
    from opentelemetry.exporter.prometheus import PrometheusMetricReader
    from opentelemetry.sdk.metrics import MeterProvider
    from prometheus_client import CollectorRegistry, start_http_server

    registry = CollectorRegistry()
    meter_provider = MeterProvider(metric_readers=[PrometheusMetricReader(registry=registry)])
    try:
        instrumentation = instrument(sup, meter_provider=meter_provider)
    except BaseException:
        meter_provider.shutdown()
        raise
    try:
        server, thread = start_http_server(port, addr=host, registry=registry)
    except BaseException:
        instrumentation.uninstrument()
        meter_provider.shutdown()
        raise
    return MetricsServer(instrumentation, meter_provider, server, thread)
