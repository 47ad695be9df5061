"""Idempotency stores: where the idempotency-cache actor keeps its records.

``MemoryStore`` (the default, in process), ``SQLiteStore`` (one durable file, shared by
the processes on it) and ``RedisStore`` (shared across hosts; needs the ``redis`` extra)
implement ``IdempotencyStore``; bring your own by implementing the same protocol.
"""

from toolvisor.supervisor.stores.base import (
    ClaimOutcome as ClaimOutcome,
)
from toolvisor.supervisor.stores.base import (
    IdempotencyStore as IdempotencyStore,
)
from toolvisor.supervisor.stores.base import (
    Record as Record,
)
from toolvisor.supervisor.stores.base import (
    RecordState as RecordState,
)
from toolvisor.supervisor.stores.memory import MemoryStore as MemoryStore
from toolvisor.supervisor.stores.redis import RedisStore as RedisStore
from toolvisor.supervisor.stores.sqlite import SQLiteStore as SQLiteStore

__all__ = [
    "ClaimOutcome",
    "IdempotencyStore",
    "MemoryStore",
    "Record",
    "RecordState",
    "RedisStore",
    "SQLiteStore",
]
