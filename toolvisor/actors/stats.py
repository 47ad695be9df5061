"""Per-tool counters (mutable, written only by the tool's own tasks) and their snapshot."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs

__all__ = ["Counters", "ToolStats"]

_RING = 2048  # latencies kept for the percentiles: the most recent calls


@attrs.frozen
class ToolStats:
    """A snapshot of one tool's counters, as ``Supervisor.stats(tool)`` returns it.

    Attributes:
        calls: calls made (arguments valid), whatever their end.
        successes: calls that ended with the tool's value (cache hits included), or with
            the value of the spec's fallback instead of their error (``fallbacks``).
        failures: calls in which the tool ran and failed, that timed out, or whose actor
            crashed (and calls refused for a reason of their own: an idempotency
            conflict, an unknown outcome, a store error).
        rejected: calls no attempt of which ran: breaker open, bulkhead full
            (``overflow="reject"``), tool unavailable or stopped, supervisor closed.
        cancelled: calls their caller's own cancel scope gave up on.
            Every call ends in exactly one of successes, failures, rejected and
            cancelled: ``calls == successes + failures + rejected + cancelled`` whenever
            no call is in flight.
        retries: attempts after the first that ran (a retry the breaker refused did not);
            with ``spec.hedging``, the first attempt of every race after the first.
        timeouts: attempts that ran past ``timeout_s``, and calls past their deadline.
        cache_hits: calls answered by the idempotency cache (no execution).
        in_flight / queued: calls running now / waiting in the inbox now.
        restarts: times the actor crashed and was restarted.
        breaker_state: the circuit breaker's state now.
        latency_p50_s / latency_p99_s: over the most recent calls that ran the tool
            (seconds; 0 if none; cache hits are not in them).
        rate_limited: calls the spec's ``rate_limit`` refused (no token in time; each is
            also counted in ``rejected``).
        budget_exhausted: retries the spec's ``retry_budget`` refused (each such call
            ended with the tool's last error).
        fallbacks: calls the spec's ``fallback`` answered instead of their error (each
            is also counted in ``successes``).
        concurrency_limit: the bulkhead now: the spec's ``max_concurrency`` itself when it
            is an int, the current limit when it is an ``AdaptiveConcurrency`` (0 where no
            bulkhead applies, as in ``FunctionToolExecutor``).
        hedged: hedged attempts that ran (``spec.hedging``): attempts a race started
            beside or after the first attempt of a retry, not counted in ``retries``
            (a hedge the breaker refused did not run). So, over the calls that ran, the
            sum of their ``ToolResult.attempts`` is their number plus ``retries`` plus
            ``hedged``.
    """

    tool: str
    calls: int
    successes: int
    failures: int
    retries: int
    rejected: int
    cancelled: int
    timeouts: int
    cache_hits: int
    in_flight: int
    queued: int
    restarts: int
    breaker_state: str
    latency_p50_s: float
    latency_p99_s: float
    budget_exhausted: int = 0
    rate_limited: int = 0
    fallbacks: int = 0
    concurrency_limit: int = 0
    hedged: int = 0


class Counters:
    """The live counters of one tool. Plain attributes: the hot path only adds to them."""

    __slots__ = (
        "_lat",
        "_lat_i",
        "budget_exhausted",
        "cache_hits",
        "calls",
        "cancelled",
        "failures",
        "fallbacks",
        "hedged",
        "publish",
        "rate_limited",
        "rejected",
        "restarts",
        "retries",
        "successes",
        "timeouts",
    )

    def __init__(self) -> None:
        self.calls = 0
        self.successes = 0
        self.failures = 0
        self.retries = 0
        self.rejected = 0
        self.cancelled = 0
        self.timeouts = 0
        self.cache_hits = 0
        self.restarts = 0
        self.budget_exhausted = 0
        self.rate_limited = 0
        #: Where this tool's calls publish their ``CallFailed`` events: the supervisor's
        #: hub while anyone listens, else None (and no event is built).
        self.publish: Callable[[Any], None] | None = None
        self.fallbacks = 0
        self.hedged = 0
        self._lat: list[float] = []
        self._lat_i = 0

    def latency(self, seconds: float) -> None:
        """Record one call's latency in the ring."""
        lat = self._lat
        if len(lat) < _RING:
            lat.append(seconds)
        else:
            lat[self._lat_i] = seconds
            self._lat_i = (self._lat_i + 1) % _RING

    def snapshot(
        self,
        tool: str,
        *,
        in_flight: int,
        queued: int,
        breaker_state: str,
        concurrency_limit: int = 0,
    ) -> ToolStats:
        """Freeze the counters into a :class:`ToolStats` (the bulkhead's limit given)."""
        lat = sorted(self._lat)

        def pct(q: float) -> float:
            if not lat:
                return 0.0
            return lat[min(len(lat) - 1, round(q * (len(lat) - 1)))]

        return ToolStats(
            tool=tool,
            calls=self.calls,
            successes=self.successes,
            failures=self.failures,
            retries=self.retries,
            rejected=self.rejected,
            cancelled=self.cancelled,
            timeouts=self.timeouts,
            cache_hits=self.cache_hits,
            in_flight=in_flight,
            queued=queued,
            restarts=self.restarts,
            breaker_state=breaker_state,
            latency_p50_s=pct(0.50),
            latency_p99_s=pct(0.99),
            budget_exhausted=self.budget_exhausted,
            rate_limited=self.rate_limited,
            fallbacks=self.fallbacks,
            concurrency_limit=concurrency_limit,
            hedged=self.hedged,
        )
