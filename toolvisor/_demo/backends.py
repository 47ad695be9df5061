"""Simulated back ends of the demo: they fail in patterns, on trio's clock.

Each back end has a timeline of *phases* placed at fractions of the demo's duration
(so a 3 s demo shows the same story as a 15 s one, faster). The randomness comes from
one seeded ``random.Random`` per back end: the same ``--seed`` replays the same story
(up to the scheduling jitter of real time).
"""

from __future__ import annotations

import random
from collections import Counter

import attrs
import trio

from ..errors import RateLimitError

__all__ = [
    "ConnectionLostError",
    "Database",
    "GatewayUnavailableError",
    "PaymentGateway",
    "Phase",
    "SearchApi",
    "Timeline",
]


class GatewayUnavailableError(Exception):
    """The payment gateway answered 503 (the demo's outage)."""


class ConnectionLostError(Exception):
    """The database dropped the connection (the demo's failover)."""


@attrs.frozen
class Phase:
    """A named period ``[start, end)`` as fractions of the demo's duration."""

    name: str
    start: float
    end: float


@attrs.define
class Timeline:
    """Where the demo stands: seconds since the start, and the duration it runs for."""

    t0: float
    duration: float

    def elapsed(self) -> float:
        """Seconds since the demo started (trio's clock)."""
        return trio.current_time() - self.t0

    def phase(self, phases: tuple[Phase, ...]) -> str:
        """The name of the phase in force now, or ``"normal"``."""
        fraction = self.elapsed() / self.duration
        for p in phases:
            if p.start <= fraction < p.end:
                return p.name
        return "normal"


class PaymentGateway:
    """A card gateway: 20-80 ms per charge, 6 % connection resets, a 503 outage.

    It remembers every transaction id it charged during this run, so the demo can
    prove that no payment was charged twice and none that an earlier run charged. Like a
    real payment API it deduplicates on the caller's Idempotency-Key: a charge sent again
    with a key it already charged returns the first confirmation without charging.
    """

    PHASES = (Phase("outage (503)", 0.30, 0.45),)

    def __init__(self, timeline: Timeline, seed: int) -> None:
        self.timeline = timeline
        self.rng = random.Random(f"gateway:{seed}")
        self.attempts = 0
        self.charged: Counter[str] = Counter()
        self._by_key: dict[str, str] = {}  # idempotency key -> confirmation

    def state(self) -> str:
        """The phase now (shown in the live view)."""
        return self.timeline.phase(self.PHASES)

    async def charge(
        self, transaction_id: str, amount: float, idempotency_key: str | None = None
    ) -> str:
        """Charge once per idempotency key; return a confirmation code."""
        self.attempts += 1
        await trio.sleep(self.rng.uniform(0.02, 0.08))
        if self.state() != "normal":
            raise GatewayUnavailableError("503 Service Unavailable from the card gateway")
        if idempotency_key is not None and idempotency_key in self._by_key:
            return self._by_key[idempotency_key]  # charged already: the same answer
        if self.rng.random() < 0.06:
            raise ConnectionResetError("connection reset by the card gateway")
        self.charged[transaction_id] += 1
        confirmation = f"conf-{transaction_id[-5:]}-{int(amount * 100) % 9973:04d}"
        if idempotency_key is not None:
            self._by_key[idempotency_key] = confirmation
        return confirmation


class SearchApi:
    """An external HTTP API: a token bucket of 6 calls/s and a slow period.

    Over the rate limit it answers 429 with ``retry_after`` (the seconds until a token
    is free); in its slow period answers take 0.6-1.2 s, past the tool's timeout, and
    no 429 comes back (the overloaded front end queues every request), so the timeouts
    follow each other and the adaptive breaker opens.
    """

    PHASES = (Phase("slow (overloaded)", 0.55, 0.72),)
    RATE = 6.0
    BURST = 4.0

    def __init__(self, timeline: Timeline, seed: int) -> None:
        self.timeline = timeline
        self.rng = random.Random(f"api:{seed}")
        self.attempts = 0
        self.rate_limited = 0
        self._tokens = self.BURST
        self._refilled = timeline.t0

    def state(self) -> str:
        """The phase now (shown in the live view)."""
        return self.timeline.phase(self.PHASES)

    async def search(self, query: str) -> list[str]:
        """One request; raises ``RateLimitError`` (429) over the rate limit."""
        self.attempts += 1
        now = trio.current_time()
        self._tokens = min(self.BURST, self._tokens + (now - self._refilled) * self.RATE)
        self._refilled = now
        if self.state() != "normal":
            await trio.sleep(self.rng.uniform(0.6, 1.2))  # queued behind the overload
            return [f"{query}-result-{i}" for i in range(3)]
        if self._tokens < 1.0 - 1e-9:  # a float refill may land a hair below a token
            self.rate_limited += 1
            wait = (1.0 - self._tokens) / self.RATE
            raise RateLimitError("429 Too Many Requests", retry_after=round(wait, 3))
        self._tokens -= 1.0
        await trio.sleep(self.rng.uniform(0.03, 0.12))
        return [f"{query}-result-{i}" for i in range(3)]


class Database:
    """An orders database: 5-20 ms writes, a pool of 4 connections, a failover.

    During the failover the old primary is gone and a connection hangs until its connect
    timeout (0.3-0.8 s, often past the tool's 0.5 s), then every write fails with
    ``ConnectionLostError``: the adaptive limit falls at the timeouts and the circuit
    breaker opens and fails fast until the database is back.
    """

    PHASES = (Phase("failover", 0.70, 0.82),)

    def __init__(self, timeline: Timeline, seed: int) -> None:
        self.timeline = timeline
        self.rng = random.Random(f"db:{seed}")
        self.attempts = 0
        self.written: Counter[str] = Counter()
        self._pool = trio.CapacityLimiter(4)

    def state(self) -> str:
        """The phase now (shown in the live view)."""
        return self.timeline.phase(self.PHASES)

    async def insert_order(self, order_id: str, sku: str, quantity: int) -> int:
        """Insert one order; return its row id."""
        self.attempts += 1
        async with self._pool:
            if self.state() != "normal":
                await trio.sleep(self.rng.uniform(0.3, 0.8))  # the connect timeout
                raise ConnectionLostError("server closed the connection unexpectedly")
            await trio.sleep(self.rng.uniform(0.005, 0.02))
            self.written[order_id] += 1
            return 1000 + len(self.written)
