"""What the demo saw: per-tool tallies gathered while it runs, and the final report."""

from __future__ import annotations

import math
from collections import Counter, deque
from collections.abc import Mapping
from typing import Any

import attrs
import trio

from ..actors.stats import ToolStats
from ..events import BreakerTransition, CallFailed, ConcurrencyLimitChanged, Event, RetryScheduled

__all__ = [
    "PAYMENT_RESEND_S",
    "PER_WORKER",
    "DemoReport",
    "PaymentSummary",
    "ToolSummary",
    "Tracker",
    "Transition",
    "percentile",
    "plural",
]


#: The breaker state the demo shows with worker processes: each keeps its own breakers.
PER_WORKER = "per worker"

#: A client whose payment failed sends it again this much later (once), as a shop would:
#: the failure stored nothing, so the resend runs the charge.
PAYMENT_RESEND_S = 3.0


def plural(n: int, word: str, many: str | None = None) -> str:
    """``"1 call"``, ``"2 calls"`` (``many`` for irregular plurals)."""
    return f"{n} {word if n == 1 else (many or word + 's')}"


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile ``q`` (0..1) of ``values``; 0.0 when there are none."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


@attrs.frozen
class Transition:
    """A breaker transition, seconds after the demo started."""

    at: float
    old: str
    new: str

    def __str__(self) -> str:
        return f"{self.old} -> {self.new} at {self.at:.1f} s"


@attrs.frozen
class ToolSummary:
    """One tool's numbers at the end of the demo (from ``Supervisor.stats``, plus events).

    ``latency_p50_s`` / ``latency_p99_s`` are measured by the demo around every call it
    made: cache hits, refusals and failures included.
    """

    tool: str
    policies: str
    calls: int
    successes: int
    failures: int
    rejected: int
    cancelled: int
    retries: int
    timeouts: int
    cache_hits: int
    breaker_transitions: tuple[Transition, ...]
    breaker_state: str
    backend_attempts: int
    latency_p50_s: float
    latency_p99_s: float
    errors: Mapping[str, int]
    retry_errors: Mapping[str, int] = attrs.field(factory=dict)
    concurrency_limit: int = 0  # the bulkhead's limit at the end
    limit_changes: tuple[tuple[float, int], ...] = ()  # (seconds in, new limit), adaptive

    @property
    def consistent(self) -> bool:
        """Every call ended exactly once: successes + failures + rejected + cancelled."""
        return self.calls == self.successes + self.failures + self.rejected + self.cancelled

    @property
    def breaker_since(self) -> str:
        """Since when the breaker has been in its final state: ``"since 7.1 s"``."""
        if not self.breaker_transitions:
            return "throughout"
        return f"since {self.breaker_transitions[-1].at:.1f} s"


@attrs.frozen
class PaymentSummary:
    """What happened to the payments (the idempotent tool with a persistent store).

    Attributes:
        sent: distinct transaction ids sent this run.
        sends: calls made (duplicates and resends of failed ones included).
        charged_now: ids the gateway charged during this run.
        from_store: ids answered from the store without a charge in this run (so
            charged by an earlier run: the persisted results).
        from_store_sends: calls answered that way (resends of those ids included).
        duplicate_hits: resends answered from the cache of a charge made in this run.
        recovered: ids whose first send failed and a later send (the client trying
            again after a failure) charged: a failure stores nothing, so it runs again.
        failed: ids that never succeeded in this run (nothing stored for them: the next
            call with the id runs the charge).
        double_charges: ids the gateway charged more than once (must be 0).
    """

    sent: frozenset[str]
    sends: int
    charged_now: frozenset[str]
    from_store: frozenset[str]
    from_store_sends: int
    duplicate_hits: int
    recovered: frozenset[str]
    failed: frozenset[str]
    double_charges: int


@attrs.frozen
class DemoReport:
    """The demo's result: what the summary prints."""

    db_path: str
    seed: int
    duration_s: float
    elapsed_s: float
    tools: tuple[ToolSummary, ...]
    payments: PaymentSummary
    events_dropped: int
    interrupted: bool = False
    #: Every call's end as (seconds since the start, tool, outcome word): the plot's data.
    outcomes: tuple[tuple[float, str, str], ...] = ()
    #: With worker processes: the calls each answered, as (worker id, calls); else empty.
    workers: tuple[tuple[str, int], ...] = ()
    #: With worker processes: calls that ended without a reply (refused before sending,
    #: past their deadline at the caller first, cancelled).
    unanswered: int = 0

    def tool(self, name: str) -> ToolSummary:
        """The summary of tool ``name``."""
        for t in self.tools:
            if t.tool == name:
                return t
        raise KeyError(name)


class Tracker:
    """Tallies events and call results as they arrive (written by the demo's tasks only)."""

    def __init__(self, tools: list[str], t0: float) -> None:
        self.t0 = t0
        self.transitions: dict[str, list[Transition]] = {t: [] for t in tools}
        self.retry_errors: dict[str, Counter[str]] = {t: Counter() for t in tools}
        self.errors: dict[str, Counter[str]] = {t: Counter() for t in tools}
        self.latencies: dict[str, list[float]] = {t: [] for t in tools}
        self.limits: dict[str, list[tuple[float, int]]] = {t: [] for t in tools}
        # The views' event box: only what tells the story (breaker transitions, back-end
        # phases, adaptive thresholds); retries are summarised per tool instead.
        self.recent: deque[tuple[float, str, str]] = deque(maxlen=40)
        self.printed: list[tuple[float, str, str]] = []  # for the plain view
        self.payment_sends = 0
        self.payment_ok: Counter[str] = Counter()  # successful sends, by id
        self.payment_failed_first: set[str] = set()  # ids whose first send failed
        self.payment_sent: set[str] = set()
        # Each call's end (seconds since the start, tool, outcome): successes from the
        # results, failures and refusals from CallFailed, which says which of the two.
        self.outcomes: list[tuple[float, str, str]] = []

    def elapsed(self) -> float:
        """Seconds since the demo started."""
        return trio.current_time() - self.t0

    def note(self, tool: str, text: str) -> None:
        """Log a line of the story for the views."""
        item = (self.elapsed(), tool, text)
        self.recent.append(item)
        self.printed.append(item)

    def on_event(self, event: Event) -> None:
        """Record a supervisor event."""
        if isinstance(event, BreakerTransition):
            self.transitions.setdefault(event.tool, []).append(
                Transition(self.elapsed(), str(event.old), str(event.new))
            )
            self.note(event.tool, f"breaker {event.old} -> {event.new}")
        elif isinstance(event, ConcurrencyLimitChanged):
            self.limits.setdefault(event.tool, []).append((self.elapsed(), event.new))
            self.note(event.tool, f"concurrency limit {event.old} -> {event.new}")
        elif isinstance(event, RetryScheduled):
            error = event.error.split("(", 1)[0]
            self.retry_errors.setdefault(event.tool, Counter())[error] += 1
        elif isinstance(event, CallFailed):
            self.outcomes.append((event.at - self.t0, event.tool, event.outcome))
        else:
            self.note(getattr(event, "tool", "?"), type(event).__name__)

    async def consume(self, events: trio.MemoryReceiveChannel[Event]) -> None:
        """Record every event of the channel until it closes."""
        async for event in events:
            self.on_event(event)

    def on_result(
        self, tool: str, args: Mapping[str, Any], error: Exception | None, latency_s: float
    ) -> None:
        """Record a call's outcome (None for a success, else its exception) and latency."""
        self.latencies.setdefault(tool, []).append(latency_s)
        if error is None:
            self.outcomes.append((self.elapsed(), tool, "succeeded"))
        else:
            # A tool's own exception from a worker arrives as RemoteToolError naming it.
            remote_type = getattr(error, "type_name", None)
            kind = remote_type.rsplit(".", 1)[-1] if remote_type else type(error).__name__
            self.errors.setdefault(tool, Counter())[kind] += 1
        if "transaction_id" not in args:
            return
        tx = str(args["transaction_id"])
        self.payment_sends += 1
        first = tx not in self.payment_sent
        self.payment_sent.add(tx)
        if error is None:
            self.payment_ok[tx] += 1
        elif first:
            self.payment_failed_first.add(tx)

    def summarise(self, stats: ToolStats, policies: str, backend_attempts: int) -> ToolSummary:
        """One tool's :class:`ToolSummary`."""
        latencies = self.latencies.get(stats.tool, [])
        return ToolSummary(
            tool=stats.tool,
            policies=policies,
            calls=stats.calls,
            successes=stats.successes,
            failures=stats.failures,
            rejected=stats.rejected,
            cancelled=stats.cancelled,
            retries=stats.retries,
            timeouts=stats.timeouts,
            cache_hits=stats.cache_hits,
            breaker_transitions=tuple(self.transitions.get(stats.tool, ())),
            breaker_state=str(stats.breaker_state),
            backend_attempts=backend_attempts,
            latency_p50_s=percentile(latencies, 0.50),
            latency_p99_s=percentile(latencies, 0.99),
            errors=dict(self.errors.get(stats.tool, {})),
            retry_errors=dict(self.retry_errors.get(stats.tool, {})),
            concurrency_limit=stats.concurrency_limit,
            limit_changes=tuple(self.limits.get(stats.tool, ())),
        )

    def payments(self, charged: Counter[str]) -> PaymentSummary:
        """The :class:`PaymentSummary`, given the gateway's charges of this run.

        A successful send of an id the gateway did not charge in this run was answered
        from the store (charged by an earlier run); of the successful sends of an id it
        did charge, all but the one that ran were answered from the cache.
        """
        charged_now = frozenset(charged)
        ok = self.payment_ok
        from_store = frozenset(tx for tx in ok if tx not in charged_now)
        return PaymentSummary(
            sent=frozenset(self.payment_sent),
            sends=self.payment_sends,
            charged_now=charged_now,
            from_store=from_store,
            from_store_sends=sum(ok[tx] for tx in from_store),
            duplicate_hits=sum(n - 1 for tx, n in ok.items() if tx in charged_now),
            recovered=frozenset(tx for tx in self.payment_failed_first if tx in charged_now),
            failed=frozenset(self.payment_sent - set(ok)),
            double_charges=sum(1 for n in charged.values() if n > 1),
        )
