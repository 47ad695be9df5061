"""This process's side of the fleet-wide state: pure state machines, no I/O.

Each shared policy keeps a *ledger* here that the call path reads and writes without
awaiting anything; a background task (``toolvisor.shared._redis``) exchanges it with
Redis every ``interval_s``. An exchange is a request (what this process did since the
last one, what it hands back, what it asks for) answered by a Lua script; every request
carries a sequence number and the script remembers the last one it applied per ledger,
so a request sent again after a lost reply is applied once (its stored answer comes
back). A ledger with a request in flight keeps it until it is answered, and sends it
again, unchanged, on the next exchange.

Times are trio times of this process; the scripts use the Redis server's clock.
"""

from __future__ import annotations

import math

import attrs

__all__ = [
    "BudgetLedger",
    "BudgetRequest",
    "FleetCounts",
    "RateRequest",
    "TokenLease",
]

_EPS = 1e-9
#: The most credits or tokens one process asks for in one exchange.
MAX_LEASE = 10_000


def _target(demand: int, cap: float) -> int:
    """What a ledger asks to hold: twice the last interval's demand, at least 1."""
    return int(max(1, min(cap, MAX_LEASE, 2 * demand)))


# --- the retry budget -----------------------------------------------------------------


@attrs.frozen
class BudgetRequest:
    """One exchange of a budget ledger (see :class:`BudgetLedger`)."""

    seq: int
    calls: int
    retries: int
    returned: int
    returned_slice: int
    want: int
    made_at: float


@attrs.define(slots=True, eq=False)
class BudgetLedger:
    """A process's share of a fleet retry budget.

    The fleet's ledger, in Redis, counts every process's calls and retries per slice of
    the window. A process spends, in this order:

    * its *lease*: credits Redis granted it, counted there as retries already;
    * the credit of its own deposits not yet sent (``ratio`` per call, minus the retries
      they paid for), which reach Redis with the next request.

    so every retry is paid for by the fleet's balance and the fleet never overdraws.
    A lease is topped up to twice the last interval's demand; a surplus (more than twice
    that) goes back, and a lease older than half the window goes back whole (Redis
    forgets a slice's retries when the slice expires: credits kept longer would be
    counted twice). Credits go back to the slice of the oldest grant they came with, so a
    return never gives the fleet more than it had.

    While the process is disconnected (``connected`` False) the ledger records nothing:
    the local budget decides alone, and the fleet resumes from the next exchange.
    """

    ratio: float
    ttl_s: float
    pending_calls: int = 0
    pending_retries: int = 0
    lease: int = 0
    lease_slice: int = -1
    lease_at: float = -math.inf
    demand: int = 0
    seq: int = 0
    inflight: BudgetRequest | None = None

    def deposit(self) -> None:
        """One call started."""
        self.pending_calls += 1

    def try_spend(self) -> bool:
        """A retry wants a credit: take it from the lease or the unsent deposits."""
        self.demand += 1
        if self.lease >= 1:
            self.lease -= 1
            return True
        if self.ratio * self.pending_calls - self.pending_retries >= 1 - _EPS:
            self.pending_retries += 1
            return True
        return False

    def credit(self) -> float:
        """The credits this process may spend now."""
        return self.lease + max(0.0, self.ratio * self.pending_calls - self.pending_retries)

    def outgoing(self, now: float) -> BudgetRequest | None:
        """The request of the next exchange (the one in flight again, if unanswered)."""
        inflight = self.inflight
        if inflight is not None:
            if now - inflight.made_at <= self.ttl_s:
                return inflight
            # What it counted has left the window meanwhile: dropping it loses nothing
            # the fleet would still count (its returned credits expired with their slice).
            self.inflight = None
        target = _target(self.demand, math.inf)
        returned, returned_slice = 0, -1
        if self.lease and now - self.lease_at > self.ttl_s / 2:
            returned, returned_slice, self.lease = self.lease, self.lease_slice, 0
        elif self.lease > 2 * target:
            returned, returned_slice = self.lease - target, self.lease_slice
            self.lease = target
        want = max(0, target - self.lease)
        if not (self.pending_calls or self.pending_retries or returned or want):
            return None
        self.seq += 1
        request = BudgetRequest(
            seq=self.seq,
            calls=self.pending_calls,
            retries=self.pending_retries,
            returned=returned,
            returned_slice=returned_slice,
            want=want,
            made_at=now,
        )
        self.pending_calls = self.pending_retries = self.demand = 0
        self.inflight = request
        return request

    def answered(self, seq: int, granted: int, slice_: int, now: float) -> None:
        """Redis applied request ``seq`` and granted ``granted`` credits in ``slice_``."""
        if self.inflight is None or self.inflight.seq != seq:
            return
        self.inflight = None
        if granted > 0:
            if self.lease == 0:
                self.lease_slice, self.lease_at = slice_, now
            self.lease += granted

    def forget(self) -> None:
        """A new trio run: times of the last one mean nothing; hand nothing back."""
        self.pending_calls = self.pending_retries = self.demand = self.lease = 0
        self.lease_slice, self.lease_at, self.inflight = -1, -math.inf, None


# --- the token bucket -----------------------------------------------------------------


@attrs.frozen
class RateRequest:
    """One exchange of a token lease (see :class:`TokenLease`)."""

    seq: int
    returned: int
    want: int


@attrs.define(slots=True)
class _Batch:
    """Tokens granted in one exchange: token ``n`` (from 1) comes ``(n - level) / rate``
    seconds after ``at`` (at once if that is <= 0), ``level`` being the fleet bucket's
    tokens when Redis granted them."""

    at: float
    level: float
    count: int
    next: int = 1

    def left(self) -> int:
        return self.count - self.next + 1

    def due(self, per_second: float) -> float:
        """When the next token of the batch may be used."""
        wait = (self.next - self.level) / per_second
        return self.at + wait if wait > 0 else self.at


@attrs.define(slots=True, eq=False)
class TokenLease:
    """A process's tokens of a fleet token bucket.

    The bucket lives in Redis. An exchange takes up to ``want`` tokens from it, the
    present ones and, within ``max_wait_s``, future ones (the bucket goes below zero, as
    the local bucket does for a call that waits): each comes at the time the bucket would
    have given it, measured from when the answer arrived here (never earlier than on
    Redis's clock). A call takes the next token of its lease in order; a call whose token
    comes too late for it (past ``max_wait_s`` or its deadline) takes nothing. Every
    admitted call holds a token taken from the fleet's bucket and proceeds no sooner than
    that token comes, so the fleet admits at most ``burst + rate * t`` calls in any ``t``.

    A lease is topped up to twice the last interval's demand (at most the burst); a
    surplus beyond twice that goes back (the latest tokens first).
    """

    per_second: float
    capacity: float
    batches: list[_Batch] = attrs.field(factory=list)
    demand: int = 0
    seq: int = 0
    inflight: RateRequest | None = None
    #: The last request was granted in full (an empty lease may ask again at once).
    satisfied: bool = True

    def held(self) -> int:
        """Tokens this process holds (present and future)."""
        return sum(batch.left() for batch in self.batches)

    def take(self, now: float, deadline: float, max_wait_s: float) -> float | None:
        """A call at ``now``: the delay until its token (>= 0), ``-delay`` when that token
        comes too late (nothing taken), or None with no token held."""
        self.demand += 1
        batches = self.batches
        while batches and not batches[0].left():
            batches.pop(0)
        if not batches:
            return None
        batch = batches[0]
        due = batch.due(self.per_second)
        delay = due - now if due > now else 0.0
        if delay > max_wait_s + _EPS or now + delay >= deadline - _EPS:
            return -delay if delay > 0 else -max_wait_s - 1 / self.per_second
        batch.next += 1
        return delay

    def outgoing(self) -> RateRequest | None:
        """The request of the next exchange (the one in flight again, if unanswered)."""
        if self.inflight is not None:
            return self.inflight
        target = _target(self.demand, self.capacity)
        held = self.held()
        returned = 0
        if held > 2 * target:
            returned = held - target
            left = returned
            while left:  # the latest tokens go back
                last = self.batches[-1]
                n = min(left, last.left())
                last.count -= n
                left -= n
                if not last.left():
                    self.batches.pop()
            held = target
        want = max(0, target - held)
        if not (returned or want):
            return None
        self.seq += 1
        self.demand = 0
        self.inflight = RateRequest(seq=self.seq, returned=returned, want=want)
        return self.inflight

    def answered(self, seq: int, granted: int, level: float, now: float) -> None:
        """Redis applied request ``seq``: ``granted`` tokens, from bucket level ``level``."""
        inflight = self.inflight
        if inflight is None or inflight.seq != seq:
            return
        self.inflight = None
        self.satisfied = granted >= inflight.want
        if granted > 0:
            self.batches.append(_Batch(at=now, level=level, count=granted))

    def forget(self) -> None:
        """A new trio run: tokens timed on the last run's clock are dropped."""
        self.batches.clear()
        self.demand, self.inflight, self.satisfied = 0, None, True


# --- the breaker's counts ---------------------------------------------------------------


@attrs.define(slots=True, eq=False)
class FleetCounts:
    """One tool's outcomes for the fleet: what this process has not sent yet, and what
    the fleet saw.

    ``calls`` and ``failures`` are the fleet's totals over the window (every process's,
    this one's included) as of the last exchange, counted from ``since``: the last time
    this process's breaker closed or was reset (from the window's next bucket, a tenth
    of the window, on), so the outcomes that opened it do not open it again.
    """

    ok: int = 0
    failed: int = 0
    calls: int = 0
    failures: int = 0
    since: float = -math.inf

    def count(self, failed: bool) -> None:
        if failed:
            self.failed += 1
        else:
            self.ok += 1

    def take(self) -> tuple[int, int]:
        """The counts not sent yet (now the exchange's)."""
        ok, failed = self.ok, self.failed
        self.ok = self.failed = 0
        return ok, failed

    def restart(self, now: float) -> None:
        """The breaker closed (or was reset) at ``now``: count the fleet from here."""
        self.since = now
        self.calls = self.failures = 0

    def forget(self) -> None:
        self.ok = self.failed = self.calls = self.failures = 0
        self.since = -math.inf
