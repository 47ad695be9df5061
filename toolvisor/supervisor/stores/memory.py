"""The in-process idempotency store: bounded, LRU for done records, TTL on trio's clock."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

import trio

from toolvisor.errors import IdempotencyStoreError
from toolvisor.supervisor.stores._common import check_ttl
from toolvisor.supervisor.stores.base import ClaimOutcome, Record, RecordState

__all__ = ["MemoryStore"]

_IN_PROGRESS = RecordState.IN_PROGRESS
_DONE = RecordState.DONE


class MemoryStore:
    """Idempotency records in a dict of this process (the default store).

    Nothing survives the process (``persistent`` is False) and nothing is shared with
    other processes. The store holds at most ``max_entries`` records: when a new claim
    would pass that bound, the least recently used *done* record is evicted (a later call
    with its key executes again). Live claims are never evicted; when every slot holds a
    live claim, ``claim`` raises ``IdempotencyStoreError`` (too many calls in flight for
    the bound: raise ``max_entries``).

    Every operation is O(1) (except that a full store first drops its expired claims, a
    scan done only when it is full) and never yields to trio: the methods are ``async``
    for the interface only, as they sit on the per-call hot path.

    Args:
        max_entries: the bound on records held, claims and done records together.
        clock: seconds, monotonic; defaults to ``trio.current_time`` (so ``MockClock``
            drives expiry in tests). ``expires_at`` of the records is on this clock.
    """

    persistent: bool = False

    def __init__(
        self, max_entries: int = 100_000, *, clock: Callable[[], float] | None = None
    ) -> None:
        if isinstance(max_entries, bool) or not isinstance(max_entries, int) or max_entries < 1:
            raise ValueError(f"max_entries must be an int >= 1, got {max_entries!r}")
        self.max_entries = max_entries
        self._clock: Callable[[], float] = clock if clock is not None else trio.current_time
        # Done records in least-recently-used-first order; claims apart, so eviction
        # pops the oldest done record in O(1) and never looks at a claim.
        self._done: OrderedDict[str, Record] = OrderedDict()
        self._claims: dict[str, Record] = {}

    def __repr__(self) -> str:
        return (
            f"MemoryStore(max_entries={self.max_entries}, claims={len(self._claims)}, "
            f"done={len(self._done)})"
        )

    def __len__(self) -> int:
        """The number of records held, live or expired but not yet dropped."""
        return len(self._done) + len(self._claims)

    async def claim(
        self, key: str, fingerprint: str, owner: str, claim_ttl_s: float
    ) -> ClaimOutcome:
        """Claim ``key`` for ``owner`` unless a live record stands there (see ``base``)."""
        return self.claim_now(key, fingerprint, owner, claim_ttl_s)

    def claim_now(self, key: str, fingerprint: str, owner: str, claim_ttl_s: float) -> ClaimOutcome:
        """``claim`` without the coroutine: this store never waits (the hot path uses it)."""
        ttl = check_ttl("claim_ttl_s", claim_ttl_s)
        now = self._clock()
        done = self._done
        claims = self._claims
        record = claims.get(key)
        if record is not None:
            if record.expires_at > now:
                return ClaimOutcome(claimed=False, record=record)
            del claims[key]
        else:
            record = done.get(key)
            if record is not None:
                if record.expires_at > now:
                    done.move_to_end(key)
                    return ClaimOutcome(claimed=False, record=record)
                del done[key]
        if len(done) + len(claims) >= self.max_entries:
            self._make_room(now)
        new = Record(
            key=key,
            fingerprint=fingerprint,
            state=_IN_PROGRESS,
            owner=owner,
            expires_at=now + ttl,
        )
        claims[key] = new
        return ClaimOutcome(claimed=True, record=new)

    async def complete(
        self,
        key: str,
        owner: str,
        ttl_s: float,
        result_json: str | None,
        not_stored_reason: str | None = None,
    ) -> bool:
        """Turn ``owner``'s live claim on ``key`` into a done record kept ``ttl_s`` seconds."""
        return self.complete_now(key, owner, ttl_s, result_json, not_stored_reason)

    def complete_now(
        self,
        key: str,
        owner: str,
        ttl_s: float,
        result_json: str | None,
        not_stored_reason: str | None = None,
    ) -> bool:
        """``complete`` without the coroutine (see ``claim_now``)."""
        ttl = check_ttl("ttl_s", ttl_s, allow_zero=True)
        now = self._clock()
        claim = self._claims.get(key)
        if claim is None or claim.owner != owner or claim.expires_at <= now:
            return False
        del self._claims[key]
        if ttl > 0.0:
            self._done[key] = Record(
                key=key,
                fingerprint=claim.fingerprint,
                state=_DONE,
                owner=owner,
                expires_at=now + ttl,
                result_json=result_json,
                not_stored_reason=not_stored_reason,
            )
        return True

    async def release(self, key: str, owner: str) -> bool:
        """Drop ``owner``'s live claim on ``key``."""
        claim = self._claims.get(key)
        if claim is None or claim.owner != owner or claim.expires_at <= self._clock():
            return False
        del self._claims[key]
        return True

    async def get(self, key: str) -> Record | None:
        """The live record of ``key`` (a hit counts as a use for the LRU order)."""
        now = self._clock()
        record = self._claims.get(key)
        if record is not None:
            if record.expires_at > now:
                return record
            del self._claims[key]
            return None
        record = self._done.get(key)
        if record is None:
            return None
        if record.expires_at > now:
            self._done.move_to_end(key)
            return record
        del self._done[key]
        return None

    async def aclose(self) -> None:
        """Nothing to release: the records stay, so the store may be used again."""

    def _make_room(self, now: float) -> None:
        """Free one slot: evict the LRU done record, else drop expired claims, else fail."""
        if self._done:
            self._done.popitem(last=False)
            return
        expired = [k for k, r in self._claims.items() if r.expires_at <= now]
        for k in expired:
            del self._claims[k]
        if not expired:
            raise IdempotencyStoreError(
                "MemoryStore",
                f"the store is full: all {self.max_entries} entries are calls in progress; "
                "raise max_entries or lower the number of concurrent idempotent calls",
            )
