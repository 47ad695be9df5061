"""OpenTelemetry metrics and traces for a supervisor's tools, and a Prometheus endpoint.

``instrument(sup)`` makes every call of every tool of ``sup`` (spawned before or after)
visible to OpenTelemetry: a duration histogram per call and per attempt, a counter of
the supervisor's events, gauges of in-flight and queued calls and of breaker states, and
a span per call with a child span per attempt (``instrument(executor)`` does the same
for a ``FunctionToolExecutor``'s one tool). Needs the ``otel`` extra
(``pip install 'toolvisor[otel]'``, opentelemetry-api only); an application brings its
own SDK and exporters, or passes providers explicitly. ``serve_prometheus(sup, port)``
(the ``prometheus`` extra) serves the same instruments on ``/metrics``.

Attributes carry tool names, outcome words, attempt numbers and exception type names
only: never arguments, idempotency keys, contexts or exception messages (which may quote
arguments), so their cardinality is bounded by the tools and the exception classes of
the program. The table of names, units and attributes is in docs/telemetry.md.
"""

from __future__ import annotations

import functools
import importlib
import itertools
import math
import sys
import threading
import weakref
from collections import deque
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import outcome
import trio

try:
    from opentelemetry import context as otel_context
    from opentelemetry import metrics, propagate, trace
    from opentelemetry.metrics import CallbackOptions, Observation
    from opentelemetry.trace import Span, SpanKind, Status, StatusCode
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
except ImportError as exc:  # pragma: no cover - the extra is not installed
    raise ImportError(
        "toolvisor.telemetry needs opentelemetry-api: pip install 'toolvisor[otel]'"
    ) from exc

from .actors.call import Call
from .actors.observer import AttemptContext
from .actors.stats import ToolStats
from .errors import ToolvisorError
from .events import (
    EVENT_NAMES,
    BreakerTransition,
    Event,
)
from .executor import FunctionToolExecutor

if TYPE_CHECKING:
    from .aio import Supervisor as AsyncioSupervisor
    from .supervisor.core import Supervisor

    #: What instrument() observes: a supervisor's tools, or one executor's tool.
    Target = Supervisor | FunctionToolExecutor
    #: What instrument() takes: a target, or a ``toolvisor.aio`` supervisor (its trio one).
    Instrumented = Target | AsyncioSupervisor

__all__ = [
    "DURATION_BUCKETS_S",
    "Instrumentation",
    "MetricsServer",
    "extract_context",
    "inject_context",
    "instrument",
    "is_instrumented",
    "remote_context",
    "remote_fields",
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
_EventKey = tuple[str, str, str | None]  # (tool, event name, breaker state or None)
_SERIALS = itertools.count()
#: How long a no-op tracer is believed before it is asked again (seconds).
_NO_SPANS_S = 1.0
_EVENT_NAMES: Mapping[type, str] = EVENT_NAMES
#: A duration waiting to reach the SDK: (histogram, seconds, attributes).
_Pending = deque[tuple[Any, float, Mapping[str, Any]]]
#: Durations recorded in trio's thread when this many wait (bounds the memory and the
#: time one flush takes: about 7 us each, so a few milliseconds).
FLUSH_AT = 256
#: The context the durations are recorded under: it holds no span. A truthy context
#: spares the SDK its lookup of the current one, and the trace-based exemplar filter
#: sees no sampled span (as in the tool actor's task, which carries no caller's span).
_NO_SPAN = trace.set_span_in_context(trace.INVALID_SPAN)

# The supervisors instrumented now, and their instrumentation (weakly: the supervisor
# holds its instrumentation, which holds the supervisor through its subscription).
_INSTRUMENTED: weakref.WeakKeyDictionary[Target, weakref.ref[Instrumentation]] = (
    weakref.WeakKeyDictionary()
)


def error_type(error: BaseException) -> str:
    """``error.type`` of ``error``: its class's qualified name (module-qualified unless a
    builtin), e.g. ``toolvisor.errors.ToolTimeoutError`` or ``ValueError``."""
    cls = type(error)
    module = cls.__module__
    return cls.__qualname__ if module == "builtins" else f"{module}.{cls.__qualname__}"


class _Trace:
    """What the instrumentation keeps on one call (``Call.trace``)."""

    __slots__ = ("attempt", "attempt_started", "span", "unsampled")

    def __init__(self, span: Span | None, unsampled: Span | None = None) -> None:
        #: The call's span; None when the tracer records nothing (then no attempt spans).
        self.span = span
        #: The call's span when the sampler dropped it (valid, not recording): current
        #: while the tool runs, so the spans the tool opens follow that decision.
        self.unsampled = unsampled
        self.attempt: Span | None = None  # the running attempt's span
        #: trio time the running attempt started; None while no attempt runs.
        self.attempt_started: float | None = None


class Instrumentation:
    """The instruments and spans of one supervisor; made by :func:`instrument`.

    It is the supervisor's call observer (the hooks of
    ``toolvisor.actors.observer.CallObserver``) and an event subscriber. Its hooks run
    in trio's thread; the observable instruments' callbacks in the metric reader's (they
    read ``Supervisor.stats`` and the instrumentation's own event counts, and report
    nothing for a tool that goes away meanwhile).

    What a call costs: two durations appended to :attr:`pending` (the call's and its
    attempt's) and, when the tracer records, its spans. The durations reach the SDK's
    histograms in batches: when the metric reader collects (an observable instrument's
    callback records them; the SDK runs every callback before it reads the histograms,
    so a collection sees every call that ended before it) and whenever ``FLUSH_AT`` of
    them wait. Everything counted (the events) is counted in plain integers here and
    read by the SDK when it collects.
    """

    def __init__(
        self,
        sup: Target,
        *,
        meter_provider: metrics.MeterProvider | None = None,
        tracer_provider: trace.TracerProvider | None = None,
    ) -> None:
        from . import __version__

        self._sup: weakref.ref[Target] = weakref.ref(sup)
        self._active = True
        self._current: Call | None = None  # the call the actor works on (span events)
        self._cache: dict[tuple[Any, ...], dict[str, Any]] = {}
        self._names: dict[str, tuple[str, str]] = {}  # tool -> its span names
        #: Events seen, by (tool, event name, breaker state or None): the counter's values.
        self.events: dict[_EventKey, int] = {}
        #: Durations not recorded in the SDK yet (appended in trio's thread; taken by
        #: whichever thread flushes, each one once).
        self.pending: _Pending = deque()
        self.serial = next(_SERIALS)
        #: While the tracer is a no-op, call spans are not started until this trio time
        #: (the tracer is asked again once a second: a global provider may be set later).
        self._no_spans_until = -math.inf
        self._on_end = self._call_ended  # one bound method, not one per call
        self._tracer = trace.get_tracer(_SCOPE, __version__, tracer_provider)
        self._instruments = _Instruments.of(meter_provider)
        self._call_duration = self._instruments.call_duration
        self._attempt_duration = self._instruments.attempt_duration
        self._instruments.join(self)
        self._unsubscribe = sup.subscribe(self._on_event)
        self._previous = sup.observe(self)

    @property
    def active(self) -> bool:
        """True until :meth:`uninstrument`."""
        return self._active

    @property
    def alive(self) -> bool:
        """True while the supervisor exists (the instrumentation holds it weakly)."""
        return self._sup() is not None

    def uninstrument(self) -> None:
        """Stop observing: later calls and events are not recorded (idempotent).

        Calls already made still end their spans and record their durations: the
        durations waiting are recorded now, those of the calls still running at the
        next collection. The instruments stay registered with the meter (OpenTelemetry
        cannot remove an instrument); the observable ones report nothing from now on.
        """
        if not self._active:
            return
        self._active = False
        self._unsubscribe()
        self._instruments.leave(self)
        sup = self._sup()
        if sup is not None:
            sup.observe(self._previous)
            ref = _INSTRUMENTED.get(sup)
            if ref is not None and ref() is self:
                del _INSTRUMENTED[sup]

    # ------------------------------------------------------------------ call hooks

    def call_started(self, call: Call) -> None:
        """Open the call's span (child of the caller's current span)."""
        span = unsampled = None
        if call.started >= self._no_spans_until:
            tool = call.tool
            started = self._tracer.start_span(
                self._span_names(tool)[0], None, SpanKind.INTERNAL, self._attributes(tool)
            )
            if started.is_recording():
                span = started
            elif started is trace.INVALID_SPAN:  # a no-op tracer (no SDK configured)
                self._no_spans_until = call.started + _NO_SPANS_S
            else:  # sampled out: nothing to end, but the tool's spans are its children
                unsampled = started
        call.trace = _Trace(span, unsampled)
        call.on_end = self._on_end

    def call_running(self, call: Call) -> None:
        """The actor works on ``call``: breaker transitions go on its span."""
        self._current = call

    def attempt_started(self, call: Call) -> None:
        """Note the attempt's start; open a child span of the call's for it."""
        self._current = call
        record: _Trace | None = call.trace
        if record is None:
            return  # made before instrument()
        span = record.span
        if span is not None:
            record.attempt = self._tracer.start_span(
                self._span_names(call.tool)[1],
                trace.set_span_in_context(span),
                SpanKind.INTERNAL,
                {"tool": call.tool, "attempt.number": call.attempts},
            )
        record.attempt_started = trio.current_time()

    def attempt_context(self, call: Call) -> AttemptContext | None:
        """The running attempt's span as the current span while its tool runs: spans the
        tool opens are the attempt's children. For a call the sampler dropped, its span
        (not recording) is the current one instead, so the sampler drops the tool's spans
        too rather than starting traces of their own. None without a span of either kind
        (a no-op tracer, or a call made before instrument())."""
        record: _Trace | None = call.trace
        if record is None:
            return None
        span = record.attempt or record.unsampled
        if span is None:
            return None
        # The tool's exceptions are the attempt's outcome, which attempt_ended records
        # (its status and error.type): nothing else may write them on the span (an
        # exception's message can hold an argument value).
        return functools.partial(
            trace.use_span, span, record_exception=False, set_status_on_exception=False
        )

    def attempt_ended(
        self, call: Call, error: BaseException | None, retry_in: float | None
    ) -> None:
        """Record the running attempt (if any); a retry becomes an event of the call."""
        self._current = call
        record: _Trace | None = call.trace
        if record is None:
            return
        started = record.attempt_started
        span = record.span
        if error is None:
            if started is None:
                return
            record.attempt_started = None
            attributes = self._attributes(call.tool, call.attempts, False, None)
            self._record(self._attempt_duration, trio.current_time() - started, attributes)
            if span is not None:
                self._end_attempt(record, attributes, failed=False)
            return
        etype = error_type(error)
        if retry_in is not None and span is not None:
            span.add_event(
                "toolvisor.retry",
                {"attempt.number": call.attempts, "retry.delay": retry_in, "error.type": etype},
            )
        if started is None:
            return  # no attempt ran since the last one ended (a refused retry)
        record.attempt_started = None
        handled = retry_in is not None or self._retryable(call, error)
        attributes = self._attributes(call.tool, call.attempts, handled, etype)
        self._record(self._attempt_duration, trio.current_time() - started, attributes)
        if span is not None:
            self._end_attempt(record, attributes, failed=True)

    def _record(self, histogram: Any, seconds: float, attributes: Mapping[str, Any]) -> None:
        """Record a duration: append it, and hand the batch to the SDK once it is full."""
        pending = self.pending
        pending.append((histogram, seconds, attributes))
        if len(pending) >= FLUSH_AT:
            _flush(pending)

    @staticmethod
    def _end_attempt(record: _Trace, attributes: dict[str, Any], *, failed: bool) -> None:
        attempt, record.attempt = record.attempt, None
        if attempt is not None:
            attempt.set_attributes(attributes)
            if failed:
                attempt.set_status(_ERROR)
            attempt.end()

    def _span_names(self, tool: str) -> tuple[str, str]:
        names = self._names.get(tool)
        if names is None:
            names = self._names[tool] = (f"call {tool}", f"attempt {tool}")
        return names

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
            spec = sup.spec if isinstance(sup, FunctionToolExecutor) else sup.spec(call.tool)
        except ToolvisorError:  # stopped meanwhile
            return True
        policy = spec.retry_policy
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
        started = record.attempt_started
        if started is not None:  # cut by the call's end: its deadline, caller, or crash
            record.attempt_started = None
            cut = self._attributes(call.tool, call.attempts, False, etype or "cancelled")
            self._record(self._attempt_duration, now - started, cut)
            if record.span is not None:
                self._end_attempt(record, cut, failed=True)
        attributes = self._attributes(call.tool, kind, etype)
        self._record(self._call_duration, now - call.started, attributes)
        span = record.span
        if span is None:
            return
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
        state = None
        if isinstance(event, BreakerTransition):
            state = event.new
            current = self._current
            if current is not None and current.tool == event.tool:
                record = current.trace
                if isinstance(record, _Trace) and record.span is not None:
                    record.span.add_event(
                        "toolvisor.breaker_transition",
                        {"breaker.from": event.old, "breaker.to": event.new},
                    )
        key = (event.tool, name, state)
        self.events[key] = self.events.get(key, 0) + 1

    # ------------------------------------------------------------------ readings

    def tool_stats(self) -> list[ToolStats]:
        """A snapshot of every tool's stats (none once uninstrumented)."""
        sup = self._sup()
        if sup is None or not self._active:
            return []
        if isinstance(sup, FunctionToolExecutor):  # its one tool
            return [sup.stats()]
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


def _flush(pending: _Pending) -> None:
    """Record every duration of ``pending`` in the SDK's histograms, each exactly once.

    ``popleft`` is atomic, so trio's thread (a full batch) and the metric reader's (a
    collection) may flush the same deque at once: each duration goes to one of them.
    """
    take = pending.popleft
    while True:
        try:
            histogram, seconds, attributes = take()
        except IndexError:
            return
        histogram.record(seconds, attributes, _NO_SPAN)


class _Instruments:
    """The instruments of one meter provider, shared by the supervisors instrumented on it.

    The SDK keeps one instrument per name and meter, with the callbacks given when it
    was first created only: so each provider gets its instruments once, and the
    observable ones read every supervisor instrumented on it, adding up what two
    supervisors report under the same attributes (two tools of the same name). The
    events of a supervisor uninstrumented or gone stay counted (a counter never goes
    down).
    """

    #: Guards the members and counts; taken inside the SDK's collection (the callbacks),
    #: so it is never held while calling into the SDK.
    _lock = threading.Lock()
    #: Serialises making a provider's instruments. Separate from ``_lock``: creating an
    #: instrument takes the SDK's lock, which a collection in another thread holds while
    #: its callbacks take ``_lock``; one lock for both would deadlock the two threads.
    _making = threading.Lock()
    _by_provider: weakref.WeakKeyDictionary[Any, _Instruments] = weakref.WeakKeyDictionary()

    @classmethod
    def of(cls, meter_provider: metrics.MeterProvider | None) -> _Instruments:
        provider = metrics.get_meter_provider() if meter_provider is None else meter_provider
        with cls._making:
            instruments = cls._by_provider.get(provider)
            if instruments is None:
                instruments = cls._by_provider[provider] = cls(provider)
            return instruments

    def __init__(self, provider: metrics.MeterProvider) -> None:
        from . import __version__

        #: By serial: each member (weakly), its event counts (kept when it goes) and its
        #: durations waiting (recorded when the reader collects, or when it goes).
        self._members: dict[
            int, tuple[weakref.ref[Instrumentation], dict[_EventKey, int], _Pending]
        ] = {}
        self._retired: dict[_EventKey, int] = {}
        #: The pending durations of members gone: their calls still running may append
        #: to them; each is flushed at every collection until its member is gone too.
        self._draining: list[tuple[weakref.ref[Instrumentation], _Pending]] = []
        meter = provider.get_meter(_SCOPE, __version__)
        self.call_duration = meter.create_histogram(
            "toolvisor.call.duration",
            unit="s",
            description="Duration of tool calls, from the call to its end (queue wait, "
            "every attempt and the waits between them).",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS_S,
        )
        self.attempt_duration = meter.create_histogram(
            "toolvisor.attempt.duration",
            unit="s",
            description="Duration of the attempts that ran a tool.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS_S,
        )
        meter.create_observable_counter(
            "toolvisor.events",
            callbacks=[self._observe_events],
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

    def join(self, member: Instrumentation) -> None:
        with self._lock:
            self._members[member.serial] = (weakref.ref(member), member.events, member.pending)

    def leave(self, member: Instrumentation) -> None:
        with self._lock:
            self._retire(member.serial)
        _flush(member.pending)

    def _retire(self, serial: int) -> None:
        """Keep a member's event counts and its pending durations, and forget it (the
        lock is held)."""
        entry = self._members.pop(serial, None)
        if entry is not None:
            ref, events, pending = entry
            for key, count in events.copy().items():
                self._retired[key] = self._retired.get(key, 0) + count
            self._draining.append((ref, pending))

    def _snapshot(self) -> tuple[list[Instrumentation], dict[_EventKey, int]]:
        """The live members (those gone are retired) and every event count: the retired
        members' and the live ones'. Records every pending duration first: each
        callback of a collection calls this before the SDK reads the histograms."""
        with self._lock:
            live = []
            for serial, (ref, _events, _pending) in list(self._members.items()):
                member = ref()
                if member is None or not member.alive:
                    self._retire(serial)
                else:
                    live.append(member)
            counts = dict(self._retired)
            for _ref, events, _pending in self._members.values():
                for key, count in events.copy().items():  # one step: safe from any thread
                    counts[key] = counts.get(key, 0) + count
            batches = [pending for _ref, _events, pending in self._members.values()]
            batches.extend(pending for _ref, pending in self._draining)
        for pending in batches:  # outside the lock: the SDK takes its own
            _flush(pending)
        with self._lock:
            # A member gone appends no more: once it is flushed, its deque can go.
            self._draining = [(r, p) for r, p in self._draining if p or r() is not None]
        return live, counts

    def _observe_events(self, _options: CallbackOptions) -> Iterable[Observation]:
        _members, counts = self._snapshot()
        observations = []
        for (tool, name, state), count in counts.items():
            attributes = {"tool": tool, "event.name": name}
            if state is not None:
                attributes["breaker.state"] = state
            observations.append(Observation(count, attributes))
        return observations

    def _stats(self) -> list[ToolStats]:
        members, _ = self._snapshot()
        return [stats for member in members for stats in member.tool_stats()]

    def _observe_breakers(self, _options: CallbackOptions) -> Iterable[Observation]:
        values: dict[tuple[str, str], int] = {}
        for stats in self._stats():
            states: tuple[str, ...] = _BREAKER_STATES
            if stats.breaker_state not in states:
                states = (*states, stats.breaker_state)
            for state in states:
                key = (stats.tool, state)
                values[key] = values.get(key, 0) + (state == stats.breaker_state)
        return [Observation(v, {"tool": t, "state": s}) for (t, s), v in values.items()]

    def _observe_in_flight(self, _options: CallbackOptions) -> Iterable[Observation]:
        return self._by_tool((s.tool, s.in_flight) for s in self._stats())

    def _observe_queued(self, _options: CallbackOptions) -> Iterable[Observation]:
        return self._by_tool((s.tool, s.queued) for s in self._stats())

    @staticmethod
    def _by_tool(pairs: Iterable[tuple[str, int]]) -> list[Observation]:
        values: dict[str, int] = {}
        for tool, value in pairs:
            values[tool] = values.get(tool, 0) + value
        return [Observation(v, {"tool": t}) for t, v in values.items()]


def instrument(
    sup: Instrumented,
    *,
    meter_provider: metrics.MeterProvider | None = None,
    tracer_provider: trace.TracerProvider | None = None,
) -> Instrumentation:
    """Record metrics and spans of every call of ``sup``'s tools, spawned now or later.

    Args:
        sup: an open supervisor (toolvisor's, or a ``toolvisor.aio`` one inside its
            ``async with`` block), or a ``FunctionToolExecutor`` (the same instruments
            and spans for its one tool; its in-flight and queued gauges read 0).
        meter_provider: where the instruments go (default: OpenTelemetry's global one).
        tracer_provider: where the spans go (default: the global one).

    Returns:
        The :class:`Instrumentation`; ``uninstrument(sup)`` or its ``uninstrument()``
        stops it.

    Raises:
        TypeError: ``sup`` is neither a Supervisor nor a FunctionToolExecutor.
        ValueError: ``sup`` is instrumented already (uninstrument it first).
    """
    from .supervisor.core import Supervisor

    sup = _target(sup)
    if not isinstance(sup, Supervisor | FunctionToolExecutor):
        raise TypeError(
            "instrument() takes a Supervisor (toolvisor's or toolvisor.aio's) or a "
            f"FunctionToolExecutor, got {type(sup).__name__}"
        )
    ref = _INSTRUMENTED.get(sup)
    if ref is not None and ref() is not None:
        kind = "supervisor" if isinstance(sup, Supervisor) else "executor"
        raise ValueError(
            f"this {kind} is instrumented already; call uninstrument(sup) before "
            "instrumenting it again"
        )
    instrumentation = Instrumentation(
        sup, meter_provider=meter_provider, tracer_provider=tracer_provider
    )
    _INSTRUMENTED[sup] = weakref.ref(instrumentation)
    return instrumentation


def _target(sup: Instrumented) -> Target:
    """What is observed for ``sup``: a ``toolvisor.aio`` supervisor's trio supervisor
    (RuntimeError outside its ``async with`` block), else ``sup`` itself."""
    aio = sys.modules.get("toolvisor.aio._supervisor")  # imported by any aio supervisor
    if aio is not None and isinstance(sup, aio.Supervisor):
        trio_sup: Target = sup._sup
        return trio_sup
    return sup  # type: ignore[return-value]


def uninstrument(sup: Instrumented) -> bool:
    """Stop recording ``sup``'s calls; False if it was not instrumented."""
    ref = _INSTRUMENTED.get(_target(sup))
    instrumentation = None if ref is None else ref()
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


_W3C = TraceContextTextMapPropagator()


def remote_fields() -> dict[str, str]:
    """The caller's current span as W3C ``traceparent`` and ``tracestate`` fields.

    What ``toolvisor.open_remote`` puts in a call's message; empty when no span is
    current (nothing to join). Always W3C trace context, whatever propagator the
    application set globally (the message's fields are named after it).
    """
    carrier: dict[str, str] = {}
    _W3C.inject(carrier)
    return carrier


def remote_context(traceparent: str, tracestate: str = "") -> otel_context.Context | None:
    """The context a worker runs a remote call under, from its message's W3C fields.

    None when ``traceparent`` is empty or malformed (the call starts a trace of its own).
    """
    if not traceparent:
        return None
    carrier = {"traceparent": traceparent}
    if tracestate:
        carrier["tracestate"] = tracestate
    context = _W3C.extract(carrier)
    if not trace.get_current_span(context).get_span_context().is_valid:
        return None
    return context


def is_instrumented(sup: Instrumented) -> bool:
    """Whether ``sup`` is instrumented now (by :func:`instrument` or :func:`serve_prometheus`)."""
    ref = _INSTRUMENTED.get(_target(sup))
    instrumentation = None if ref is None else ref()
    return instrumentation is not None and instrumentation.active


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


def serve_prometheus(
    sup: Supervisor | AsyncioSupervisor, port: int, *, host: str = "127.0.0.1"
) -> MetricsServer:
    """Instrument ``sup`` and serve its metrics in Prometheus' format on ``/metrics``.

    Names are the instruments' with underscores and their unit
    (``toolvisor_call_duration_seconds``, ``toolvisor_events_total``...). Needs the
    ``prometheus`` extra (opentelemetry-sdk, opentelemetry-exporter-prometheus,
    prometheus-client). The server runs in a thread of its own; ``close()`` stops it.

    Args:
        sup: an open supervisor (toolvisor's or ``toolvisor.aio``'s), not instrumented yet.
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
