"""The supervisor, its results and the idempotency-cache actor's stores."""

from .core import Supervisor as Supervisor
from .core import ToolRef as ToolRef
from .idempotency import IdempotencyCache as IdempotencyCache
from .open import open_supervisor as open_supervisor
from .results import PendingCall as PendingCall
from .results import ToolResult as ToolResult
from .stores import IdempotencyStore as IdempotencyStore
from .stores import MemoryStore as MemoryStore
from .stores import RedisStore as RedisStore
from .stores import SQLiteStore as SQLiteStore

__all__ = [
    "IdempotencyCache",
    "IdempotencyStore",
    "MemoryStore",
    "PendingCall",
    "RedisStore",
    "SQLiteStore",
    "Supervisor",
    "ToolRef",
    "ToolResult",
    "open_supervisor",
]
