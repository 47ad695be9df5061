"""The interface every idempotency store implements.

A store keeps one record per idempotency key. A record is *in progress* (a claim: some
caller, in this process or another, is executing the key; the claim is a lease its
holder renews while it lives), *done* (the key's execution succeeded; its result is kept
as JSON text until ``expires_at``) or *unknown* (an attempt started and was cut: it may
have had its effect, so the key must not run again until ``expires_at`` or ``forget``).

The operations are atomic, also across processes for the stores that are shared (SQLite
on one file, Redis):

- ``claim``: take the key if nobody holds it, if the holder's claim expired, or if the
  done or unknown record expired; otherwise report what is there.
- ``renew``: the claim holder extends its lease (only if it still holds the claim).
- ``complete``: the claim holder stores the success (only if it still holds the claim).
- ``mark_unknown``: the claim holder records that the outcome is unknown.
- ``release``: the claim holder gives the key up after a clean failure (failures are not
  stored, so a later call may execute again).
- ``forget``: drop the key's record, whatever it is (an operator's decision).
- ``get``: read the record.

Every store takes a ``namespace`` (an application's name): two applications sharing one
Redis or one SQLite file with different namespaces never see each other's keys.

Results are JSON text, never pickle: a tampered store must not run code. A store that
cannot be reached, or holds rows it cannot read, raises ``IdempotencyStoreError``.
"""

from __future__ import annotations

import enum
from typing import Protocol, runtime_checkable

import attrs

__all__ = ["ClaimOutcome", "IdempotencyStore", "Record", "RecordState"]


class RecordState(enum.Enum):
    """Where a key's execution stands."""

    IN_PROGRESS = "in_progress"
    DONE = "done"
    UNKNOWN = "unknown"


@attrs.frozen
class Record:
    """One key's record.

    Attributes:
        key: the idempotency key (already namespaced by tool and tenant).
        fingerprint: hash of the call's arguments, to detect a key reused with other
            arguments.
        state: in progress, done or unknown.
        owner: the claim holder's token (unique per execution).
        expires_at: when the record stops counting, on the store's clock (seconds). For
            a claim, when a crashed holder stops blocking the key; for a done record,
            the end of its TTL.
        result_json: the JSON text of the result when done and stored, else ``None``.
        not_stored_reason: when done but the result could not be stored (e.g. not JSON
            serialisable), why; ``None`` otherwise.
    """

    key: str
    fingerprint: str
    state: RecordState
    owner: str
    expires_at: float
    result_json: str | None = None
    not_stored_reason: str | None = None


@attrs.frozen
class ClaimOutcome:
    """What ``claim`` found.

    ``claimed`` is True when the caller now holds the key (``record`` is its new claim);
    otherwise ``record`` is what stands there (in progress by someone else, or done).
    """

    claimed: bool
    record: Record


@runtime_checkable
class IdempotencyStore(Protocol):
    """Storage for idempotency records: MemoryStore, SQLiteStore, RedisStore or yours."""

    #: True when records survive the process (SQLite, Redis): ``persist_result`` then
    #: keeps results across restarts.
    persistent: bool

    async def claim(
        self, key: str, fingerprint: str, owner: str, claim_ttl_s: float
    ) -> ClaimOutcome:
        """Claim ``key`` for ``owner`` for ``claim_ttl_s`` seconds, atomically."""

    async def complete(
        self,
        key: str,
        owner: str,
        ttl_s: float,
        result_json: str | None,
        not_stored_reason: str | None = None,
    ) -> bool:
        """Mark ``key`` done with its result for ``ttl_s`` seconds.

        Returns False (and changes nothing) when ``owner`` no longer holds the claim.
        """

    async def renew(self, key: str, owner: str, claim_ttl_s: float) -> bool:
        """Extend ``owner``'s claim on ``key`` to ``claim_ttl_s`` from now.

        Returns False (and changes nothing) when ``owner`` no longer holds the claim.
        """

    async def mark_unknown(self, key: str, owner: str, ttl_s: float) -> bool:
        """Turn ``owner``'s claim into an *unknown* record for ``ttl_s`` seconds.

        Returns False (and changes nothing) when ``owner`` no longer holds the claim.
        """

    async def release(self, key: str, owner: str) -> bool:
        """Drop ``owner``'s claim on ``key``; False when it no longer held it."""

    async def forget(self, key: str) -> bool:
        """Drop whatever record ``key`` has; True if there was one."""

    async def get(self, key: str) -> Record | None:
        """The live (unexpired) record of ``key``, or None."""

    async def aclose(self) -> None:
        """Release connections and files. Idempotent."""
