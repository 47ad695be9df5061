"""What the demo saw: per-tool tallies gathered while it runs, and the final report."""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Mapping
from typing import Any

import attrs
import trio

from ..actors.stats import ToolStats
from ..events import BreakerTransition, Event, RetryScheduled

__all__ = ["DemoReport", "PaymentSummary", "ToolSummary", "Tracker"]


@attrs.frozen
class ToolSummary:
    """One tool's numbers at the end of the demo (from ``Supervisor.stats``, plus events)."""

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
    breaker_transitions: int
    breaker_state: str
    backend_attempts: int
    latency_p50_s: float
    latency_p99_s: float
    errors: Mapping[str, int]

    @property
    def consistent(self) -> bool:
        """Every call ended exactly once: successes + failures + rejected + cancelled."""
        return self.calls == self.successes + self.failures + self.rejected + self.cancelled


@attrs.frozen
class PaymentSummary:
    """What happened to the payments (the idempotent tool with a persistent store).

    Attributes:
        sent: distinct transaction ids sent this run.
        sends: calls made (duplicates included).
        charged_now: ids the gateway charged during this run.
        from_store: ids answered from the store without a charge in this run (so
            charged by an earlier run: the persisted results).
        from_store_sends: calls answered that way (resends of those ids included).
        duplicate_hits: resends answered from the cache of a charge made in this run.
        failed: ids that never succeeded in this run (not stored: a later run charges them).
        double_charges: ids the gateway charged more than once (must be 0).
    """

    sent: frozenset[str]
    sends: int
    charged_now: frozenset[str]
    from_store: frozenset[str]
    from_store_sends: int
    duplicate_hits: int
    failed: frozenset[str]
    double_charges: int


@attrs.frozen
class DemoReport:
    """The demo's result: what the summary table prints."""

    db_path: str
    seed: int
    duration_s: float
    elapsed_s: float
    tools: tuple[ToolSummary, ...]
    payments: PaymentSummary
    events_dropped: int

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
        self.transitions: Counter[str] = Counter()
        self.retry_events: Counter[str] = Counter()
        self.errors: dict[str, Counter[str]] = {t: Counter() for t in tools}
        self.recent: deque[tuple[float, str, str]] = deque(maxlen=10)
        self.printed: list[tuple[float, str, str]] = []  # for the plain view
        self.payment_sends = 0
        self.payment_ok: Counter[str] = Counter()  # successful sends, by id
        self.payment_sent: set[str] = set()

    def note(self, tool: str, text: str, *, loud: bool = True) -> None:
        """Log a line for the views (``loud`` lines are printed in plain mode)."""
        item = (trio.current_time() - self.t0, tool, text)
        self.recent.append(item)
        if loud:
            self.printed.append(item)

    def on_event(self, event: Event) -> None:
        """Record a supervisor event."""
        if isinstance(event, BreakerTransition):
            self.transitions[event.tool] += 1
            self.note(event.tool, f"breaker {event.old} -> {event.new}")
        elif isinstance(event, RetryScheduled):
            self.retry_events[event.tool] += 1
            error = event.error.split("(", 1)[0]
            self.note(
                event.tool,
                f"attempt {event.attempt} failed ({error}); retry in {event.delay * 1000:.0f} ms",
                loud=False,
            )
        else:
            self.note(getattr(event, "tool", "?"), type(event).__name__)

    async def consume(self, events: trio.MemoryReceiveChannel[Event]) -> None:
        """Record every event of the channel until it closes."""
        async for event in events:
            self.on_event(event)

    def on_result(self, tool: str, args: Mapping[str, Any], error: Exception | None) -> None:
        """Record a call's outcome: None for a success, else the exception it raised."""
        if error is not None:
            self.errors[tool][type(error).__name__] += 1
        if "transaction_id" not in args:
            return
        tx = str(args["transaction_id"])
        self.payment_sends += 1
        self.payment_sent.add(tx)
        if error is None:
            self.payment_ok[tx] += 1

    def summarise(self, stats: ToolStats, policies: str, backend_attempts: int) -> ToolSummary:
        """One tool's :class:`ToolSummary`."""
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
            breaker_transitions=self.transitions[stats.tool],
            breaker_state=stats.breaker_state,
            backend_attempts=backend_attempts,
            latency_p50_s=stats.latency_p50_s,
            latency_p99_s=stats.latency_p99_s,
            errors=dict(self.errors.get(stats.tool, {})),
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
            failed=frozenset(self.payment_sent - set(ok)),
            double_charges=sum(1 for n in charged.values() if n > 1),
        )
