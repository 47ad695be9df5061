"""Fleet-wide protection: budgets, rate limits and breaker signals shared through Redis.

See docs/remote.md, "Fleet-wide protection".
"""

from toolvisor.shared._redis import RedisShared as RedisShared

__all__ = ["RedisShared"]
