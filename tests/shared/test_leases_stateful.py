"""The local lease state machines against a small model of Redis's side.

The ledgers are driven through every order of local decisions and exchanges that are
answered, lost after Redis applied them, or lost before; the model server applies each
request once (by sequence number), as the Lua scripts do.
"""

from __future__ import annotations

import math

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from toolvisor.shared._leases import BudgetLedger, TokenLease


class BudgetMachine(RuleBasedStateMachine):
    """No window (ttl far away): the fleet never retries more than ratio * calls."""

    def __init__(self) -> None:
        super().__init__()
        self.ratio = 0.25
        self.ledgers = [BudgetLedger(ratio=self.ratio, ttl_s=1e9) for _ in range(3)]
        self.calls = 0
        self.retries = 0
        # The model server: its counts, and the last seq applied per ledger.
        self.server_calls = 0
        self.server_retries = 0
        self.applied: dict[int, tuple[int, int]] = {}

    @rule(i=st.integers(0, 2), n=st.integers(1, 5))
    def deposit(self, i: int, n: int) -> None:
        for _ in range(n):
            self.ledgers[i].deposit()
            self.calls += 1

    @rule(i=st.integers(0, 2))
    def retry(self, i: int) -> None:
        if self.ledgers[i].try_spend():
            self.retries += 1

    @rule(i=st.integers(0, 2), outcome=st.sampled_from(["answered", "lost_after", "lost"]))
    def exchange(self, i: int, outcome: str) -> None:
        ledger = self.ledgers[i]
        request = ledger.outgoing(0.0)
        if request is None or outcome == "lost":
            return
        last = self.applied.get(i)
        if last is not None and last[0] == request.seq:
            granted = last[1]
        else:
            self.server_calls += request.calls
            self.server_retries += request.retries - request.returned
            balance = self.ratio * self.server_calls - self.server_retries
            granted = max(0, min(request.want, math.floor(balance + 1e-9)))
            self.server_retries += granted
            self.applied[i] = (request.seq, granted)
        if outcome == "answered":
            ledger.answered(request.seq, granted, 0, 0.0)

    @invariant()
    def the_fleet_never_overdraws(self) -> None:
        assert self.retries <= self.ratio * self.calls + 1e-9
        # Redis counts every retry made, as spent already (leases) or reported.
        held = sum(ledger.lease for ledger in self.ledgers)
        unsent = sum(
            ledger.pending_retries
            + (0 if ledger.inflight is None or self._applied(j) else ledger.inflight.retries)
            for j, ledger in enumerate(self.ledgers)
        )
        returned = sum(
            ledger.inflight.returned
            for j, ledger in enumerate(self.ledgers)
            if ledger.inflight is not None and not self._applied(j)
        )
        # Granted by the server, its answer lost: the ledger gets it when it asks again.
        in_transit = sum(self.applied[j][1] for j in range(3) if self._applied(j))
        assert self.server_retries + unsent - returned == self.retries + held + in_transit

    def _applied(self, i: int) -> bool:
        inflight = self.ledgers[i].inflight
        last = self.applied.get(i)
        return inflight is not None and last is not None and last[0] == inflight.seq


class TokenMachine(RuleBasedStateMachine):
    """A bucket without refill: the fleet admits at most its capacity."""

    def __init__(self) -> None:
        super().__init__()
        self.capacity = 20.0
        self.tokens = self.capacity
        self.leases = [TokenLease(per_second=1e-9, capacity=self.capacity) for _ in range(3)]
        self.admitted = 0
        self.applied: dict[int, tuple[int, int, float]] = {}

    @rule(i=st.integers(0, 2))
    def call(self, i: int) -> None:
        delay = self.leases[i].take(0.0, math.inf, 0.0)
        if delay is not None and delay >= 0:
            assert delay == 0.0
            self.admitted += 1

    @rule(i=st.integers(0, 2), outcome=st.sampled_from(["answered", "lost_after", "lost"]))
    def exchange(self, i: int, outcome: str) -> None:
        lease = self.leases[i]
        request = lease.outgoing()
        if request is None or outcome == "lost":
            return
        last = self.applied.get(i)
        if last is not None and last[0] == request.seq:
            granted, level = last[1], last[2]
        else:
            self.tokens = min(self.capacity, self.tokens + request.returned)
            level = self.tokens
            granted = max(0, min(request.want, math.floor(self.tokens + 1e-9)))
            self.tokens -= granted
            self.applied[i] = (request.seq, granted, level)
        if outcome == "answered":
            lease.answered(request.seq, granted, level, 0.0)

    @invariant()
    def the_fleet_admits_at_most_the_bucket(self) -> None:
        assert self.admitted <= self.capacity
        held = sum(lease.held() for lease in self.leases)
        assert self.admitted + held + self.tokens <= self.capacity + 1e-9


TestBudgetLedger = BudgetMachine.TestCase
TestTokenLease = TokenMachine.TestCase
