"""The coredis client the transport uses, and the failures it turns into toolvisor errors."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from .._redact import redact_url

if TYPE_CHECKING:
    import coredis

__all__ = [
    "Redis",
    "import_coredis",
    "open_client",
    "redact",
    "redis_errors",
    "server_ms",
    "single_error",
]

#: A server that stops answering fails a command after this long instead of hanging it.
STREAM_TIMEOUT_S = 10.0
CONNECT_TIMEOUT_S = 2.0

Redis = Any  # coredis.Redis[str]; coredis's generics are heavy for mypy in every signature

redact = redact_url


def import_coredis() -> Any:
    try:
        import coredis
    except ImportError as exc:
        raise ImportError(
            "remote calls need the coredis package: pip install 'toolvisor[remote]'"
        ) from exc
    return coredis


@contextlib.asynccontextmanager
async def open_client(url: str) -> AsyncIterator[coredis.Redis[str]]:
    """A coredis client on ``url``, entered for the block (decoded replies)."""
    lib = import_coredis()
    client: coredis.Redis[str] = lib.Redis.from_url(
        url,
        decode_responses=True,
        stream_timeout=STREAM_TIMEOUT_S,
        connect_timeout=CONNECT_TIMEOUT_S,
    )
    async with client:
        yield client


async def server_ms(client: Redis) -> int:
    """The Redis server's clock in milliseconds (stream ids are made from it)."""
    now = await client.time()
    return int(now.timestamp() * 1000)


def redis_errors() -> tuple[type[BaseException], ...]:
    """What a Redis command raises when the server is unreachable, slow or refuses it."""
    return (import_coredis().exceptions.RedisError, OSError, TimeoutError)


def single_error(group: BaseExceptionGroup[BaseException]) -> BaseException | None:
    """The one exception inside ``group`` and the groups nested in it, or None if several.

    coredis runs its connections in an anyio task group and toolvisor in trio nurseries,
    so one failure (a refused connection) arrives wrapped once per layer.
    """
    leaves: list[BaseException] = []
    stack: list[BaseException] = [group]
    while stack:
        exc = stack.pop()
        if isinstance(exc, BaseExceptionGroup):
            stack.extend(exc.exceptions)
        else:
            leaves.append(exc)
    return leaves[0] if len(leaves) == 1 else None
