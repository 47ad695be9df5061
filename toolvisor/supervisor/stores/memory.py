"""The in-process idempotency store: bounded, LRU for done records, TTL on trio's clock."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

import trio

from toolvisor.errors import IdempotencyStoreError
from toolvisor.supervisor.stores._common import DEFAULT_NAMESPACE, check_namespace, check_ttl
from toolvisor.supervisor.stores.base import ClaimOutcome, Record, RecordState

__all__ = ["MemoryStore"]

_IN_PROGRESS = RecordState.IN_PROGRESS
_DONE = RecordState.DONE
_UNKNOWN = RecordState.UNKNOWN

# The records are held as tuples of strings and floats, not as ``Record``s: a tuple of
# atoms is built faster than an attrs instance, and the garbage collector stops tracking
# it after one pass, so a store holding many thousands of done records costs later
# collections nothing. ``Record``s are built only for the callers that read one.
_Claim = tuple[str, str, float]  # fingerprint, owner, expires_at (also an unknown record)
_Done = tuple[str, str, float, str | None, str | None]  # ... result_json, not_stored_reason


class MemoryStore:
    """Idempotency records in a dict of this process (the default store).

    Nothing survives the process (``persistent`` is False) and nothing is shared with
    other processes. The store holds at most ``max_entries`` records: when a new claim
    would pass that bound, the least recently used *done* record is evicted (a later call
    with its key executes again). Live claims and *unknown* records are never evicted
    (evicting an unknown record would let its key run twice); when every slot holds one
    of them, ``claim`` raises ``IdempotencyStoreError`` (raise ``max_entries``, or
    ``forget`` the unknown keys you have settled).

    Every operation is O(1) (except that a full store first drops its expired claims, a
    scan done only when it is full) and never yields to trio: the methods are ``async``
    for the interface only, as they sit on the per-call hot path.

    Args:
        max_entries: the bound on records held, claims and done records together.
        clock: seconds, monotonic; defaults to ``trio.current_time`` (so ``MockClock``
            drives expiry in tests). ``expires_at`` of the records is on this clock.
        namespace: the application's name. A MemoryStore is never shared between
            processes, so it isolates nothing; it is kept (and validated) so that every
            store answers ``namespace`` alike.
    """

    persistent: bool = False

    def __init__(
        self,
        max_entries: int = 100_000,
        *,
        clock: Callable[[], float] | None = None,
        namespace: str = DEFAULT_NAMESPACE,
    ) -> None:
        if isinstance(max_entries, bool) or not isinstance(max_entries, int) or max_entries < 1:
            raise ValueError(f"max_entries must be an int >= 1, got {max_entries!r}")
        self.max_entries = max_entries
        self.namespace = check_namespace(namespace)
        self._clock: Callable[[], float] = clock if clock is not None else trio.current_time
        # Done records in least-recently-used-first order; claims apart, so eviction
        # pops the oldest done record in O(1) and never looks at a claim.
        self._done: OrderedDict[str, _Done] = OrderedDict()
        self._claims: dict[str, _Claim] = {}
        self._unknown: dict[str, _Claim] = {}

    def __repr__(self) -> str:
        return (
            f"MemoryStore(max_entries={self.max_entries}, namespace={self.namespace!r}, "
            f"claims={len(self._claims)}, done={len(self._done)}, "
            f"unknown={len(self._unknown)})"
        )

    def __len__(self) -> int:
        """The number of records held, live or expired but not yet dropped."""
        return len(self._done) + len(self._claims) + len(self._unknown)

    async def claim(
        self, key: str, fingerprint: str, owner: str, claim_ttl_s: float
    ) -> ClaimOutcome:
        """Claim ``key`` for ``owner`` unless a live record stands there (see ``base``)."""
        ttl = check_ttl("claim_ttl_s", claim_ttl_s)
        now = self._clock()
        claims = self._claims
        claim = claims.get(key)
        if claim is not None:
            if claim[2] > now:
                return ClaimOutcome(claimed=False, record=_claim_record(key, claim))
            del claims[key]
        else:
            done = self._done.get(key)
            if done is not None:
                if done[2] > now:
                    self._done.move_to_end(key)
                    return ClaimOutcome(claimed=False, record=_done_record(key, done))
                del self._done[key]
            elif self._unknown:
                unknown = self._unknown.get(key)
                if unknown is not None:
                    if unknown[2] > now:
                        return ClaimOutcome(claimed=False, record=_unknown_record(key, unknown))
                    del self._unknown[key]
        if len(self._done) + len(claims) + len(self._unknown) >= self.max_entries:
            self._make_room(now)
        claims[key] = claim = (fingerprint, owner, now + ttl)
        return ClaimOutcome(claimed=True, record=_claim_record(key, claim))

    async def complete(
        self,
        key: str,
        owner: str,
        ttl_s: float,
        result_json: str | None,
        not_stored_reason: str | None = None,
    ) -> bool:
        """Turn ``owner``'s live claim on ``key`` into a done record kept ``ttl_s`` seconds."""
        ttl = check_ttl("ttl_s", ttl_s, allow_zero=True)
        now = self._clock()
        claim = self._claims.get(key)
        if claim is None or claim[1] != owner or claim[2] <= now:
            return False
        del self._claims[key]
        if ttl > 0.0:
            self._done[key] = (claim[0], owner, now + ttl, result_json, not_stored_reason)
        return True

    async def renew(self, key: str, owner: str, claim_ttl_s: float) -> bool:
        """Move the end of ``owner``'s live claim on ``key`` to ``claim_ttl_s`` from now."""
        ttl = check_ttl("claim_ttl_s", claim_ttl_s)
        now = self._clock()
        claim = self._claims.get(key)
        if claim is None or claim[1] != owner or claim[2] <= now:
            return False
        self._claims[key] = (claim[0], owner, now + ttl)
        return True

    async def mark_unknown(self, key: str, owner: str, ttl_s: float) -> bool:
        """Turn ``owner``'s live claim on ``key`` into an unknown record kept ``ttl_s``."""
        ttl = check_ttl("ttl_s", ttl_s, allow_zero=True)
        now = self._clock()
        claim = self._claims.get(key)
        if claim is None or claim[1] != owner or claim[2] <= now:
            return False
        del self._claims[key]
        if ttl > 0.0:
            self._unknown[key] = (claim[0], owner, now + ttl)
        return True

    async def release(self, key: str, owner: str) -> bool:
        """Drop ``owner``'s live claim on ``key``."""
        claim = self._claims.get(key)
        if claim is None or claim[1] != owner or claim[2] <= self._clock():
            return False
        del self._claims[key]
        return True

    async def forget(self, key: str) -> bool:
        """Drop the record of ``key``, whatever it is; True if a live one was there."""
        now = self._clock()
        held = self._claims.pop(key, None) or self._unknown.pop(key, None)
        if held is not None:
            return held[2] > now
        done = self._done.pop(key, None)
        return done is not None and done[2] > now

    async def get(self, key: str) -> Record | None:
        """The live record of ``key`` (a hit counts as a use for the LRU order)."""
        now = self._clock()
        claim = self._claims.get(key)
        if claim is not None:
            if claim[2] > now:
                return _claim_record(key, claim)
            del self._claims[key]
            return None
        unknown = self._unknown.get(key)
        if unknown is not None:
            if unknown[2] > now:
                return _unknown_record(key, unknown)
            del self._unknown[key]
            return None
        done = self._done.get(key)
        if done is None:
            return None
        if done[2] > now:
            self._done.move_to_end(key)
            return _done_record(key, done)
        del self._done[key]
        return None

    async def aclose(self) -> None:
        """Nothing to release: the records stay, so the store may be used again."""

    def _make_room(self, now: float) -> None:
        """Free one slot: evict the LRU done record, else drop expired claims and unknown
        records, else fail."""
        if self._done:
            self._done.popitem(last=False)
            return
        dropped = 0
        for held in (self._claims, self._unknown):
            expired = [k for k, c in held.items() if c[2] <= now]
            for k in expired:
                del held[k]
            dropped += len(expired)
        if not dropped:
            raise IdempotencyStoreError(
                "MemoryStore",
                f"the store is full: all {self.max_entries} entries are calls in progress "
                f"({len(self._claims)}) or keys of unknown outcome ({len(self._unknown)}); "
                "raise max_entries, lower the number of concurrent idempotent calls, or "
                "forget the unknown keys you have settled",
            )


def _claim_record(key: str, claim: _Claim) -> Record:
    return Record(
        key=key, fingerprint=claim[0], state=_IN_PROGRESS, owner=claim[1], expires_at=claim[2]
    )


def _unknown_record(key: str, unknown: _Claim) -> Record:
    return Record(
        key=key, fingerprint=unknown[0], state=_UNKNOWN, owner=unknown[1], expires_at=unknown[2]
    )


def _done_record(key: str, done: _Done) -> Record:
    return Record(
        key=key,
        fingerprint=done[0],
        state=_DONE,
        owner=done[1],
        expires_at=done[2],
        result_json=done[3],
        not_stored_reason=done[4],
    )
