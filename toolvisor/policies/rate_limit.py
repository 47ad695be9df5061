"""A token bucket per tool: calls beyond a rate wait a little, or are refused unrun.

The bucket holds up to ``burst`` tokens (``burst=None``: ``rate``) and starts full; it
refills at ``rate / per_s`` tokens per second. A call takes one token. Without one, it may
wait for the next: the token is reserved now (the bucket goes below zero) and the call
proceeds when it comes, so waiting calls go in their order of arrival::

    tokens(now) = min(burst, tokens(then) + (now - then) * rate / per_s)
    delay       = 0 if tokens(now) >= 1 else (1 - tokens(now)) * per_s / rate

A call whose ``delay`` is above ``max_wait_s``, or would end at or past the call's own
deadline, takes nothing and is refused at once with ``RateLimitedError`` (``retry_after``
= that delay): the tool never runs for it. Over any interval of ``d`` seconds, calls
admitted are at most ``burst + d * rate / per_s``.

Pure: every method takes ``now`` (trio time); the supervisor does the waiting. One
instance on several specs is one bucket they share.

With ``shared=RedisShared(url, name)`` the bucket is the fleet's: it lives in Redis, and
every process using that Redis and name takes its calls' tokens from it, through a lease
of tokens refreshed in the background (no round trip per call; see ``toolvisor.shared``).
The fleet then admits at most ``burst + d * rate / per_s`` calls in ``d`` seconds. While
Redis cannot be reached each process falls back to its own local bucket.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import attrs

from toolvisor.policies._shared_field import check_shared

if TYPE_CHECKING:
    from toolvisor.shared._redis import RedisShared, _RateMember

__all__ = ["RateLimit"]


def _positive(_instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < math.inf:
        raise ValueError(
            f"RateLimit: {attribute.name!r} must be a finite number > 0, got {value!r}"
        )


def _burst(
    _instance: object, attribute: attrs.Attribute[float | None], value: float | None
) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not 1 <= value < math.inf:
        raise ValueError(
            f"RateLimit: {attribute.name!r} must be None or a finite number >= 1 "
            f"(a call takes one token), got {value!r}"
        )


def _max_wait(_instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < math.inf:
        raise ValueError(
            f"RateLimit: {attribute.name!r} must be a finite number >= 0, got {value!r}"
        )


_EPS = 1e-9  # seconds and tokens below what any clock or rate here can mean


class _Bucket:
    """The bucket's mutable state: plain slots, so the hot path assigns them directly
    (an attrs class with a frozen field runs a Python ``__setattr__`` for every one)."""

    __slots__ = ("at", "tokens")

    def __init__(self, tokens: float) -> None:
        self.tokens = tokens
        self.at = -math.inf


@attrs.frozen(eq=False)
class RateLimit:
    """At most ``rate`` calls per ``per_s`` seconds, bursts of ``burst``; see the module.

    Args:
        rate: tokens added per ``per_s`` seconds.
        per_s: the period of ``rate`` (``RateLimit(100, per_s=60)``: 100 calls a minute).
        burst: the bucket's size (None: ``rate``); calls that may go at once.
        max_wait_s: how long a call may wait for a token (0: refused at once).
        shared: a :class:`~toolvisor.RedisShared`: one bucket for every process using it.

    Example::

        spec.rate_limit = RateLimit(10, per_s=1.0, burst=20, max_wait_s=0.5)
    """

    # The configuration is fixed once built (the bucket's state derives from it).
    rate: float = attrs.field(validator=_positive)
    per_s: float = attrs.field(default=1.0, validator=_positive)
    burst: float | None = attrs.field(default=None, validator=_burst)
    max_wait_s: float = attrs.field(default=0.0, validator=_max_wait)
    shared: RedisShared | None = attrs.field(
        default=None, kw_only=True, validator=check_shared("RateLimit: "), repr=False
    )
    _fleet: _RateMember | None = attrs.field(default=None, init=False, repr=False)
    _capacity: float = attrs.field(init=False, repr=False)
    _per_second: float = attrs.field(init=False, repr=False)
    _bucket: _Bucket = attrs.field(init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        capacity = float(self.rate if self.burst is None else self.burst)
        object.__setattr__(self, "_capacity", capacity)
        object.__setattr__(self, "_per_second", self.rate / self.per_s)
        object.__setattr__(self, "_bucket", _Bucket(capacity))
        if self.shared is not None:
            fleet = self.shared._rate(self._per_second, capacity, self.max_wait_s, self)
            object.__setattr__(self, "_fleet", fleet)

    def __repr__(self) -> str:
        shared = "" if self.shared is None else f", shared={self.shared!r}"
        return (
            f"RateLimit(rate={self.rate!r}, per_s={self.per_s!r}, burst={self.burst!r}, "
            f"max_wait_s={self.max_wait_s!r}{shared})"
        )

    @property
    def capacity(self) -> float:
        """The bucket's size: ``burst``, or ``rate`` when ``burst`` is None."""
        return self._capacity

    def reserve(self, now: float, deadline: float = math.inf) -> float:
        """Take a token for a call at ``now``; the seconds to wait before it runs.

        Returns:
            0 when a token is there; else the delay until the reserved one comes, at most
            ``max_wait_s`` and ending before ``deadline``; else ``-delay`` (negative or
            ``-0.0`` never happens: a refusal's delay is always > 0), taking nothing.

        Shared and connected, the token comes from this process's lease of the fleet's
        bucket; with none left the call is refused (and a new lease asked for at once).
        """
        fleet = self._fleet
        if fleet is not None and fleet.shared._use():
            return fleet.reserve(now, deadline)
        bucket = self._bucket
        tokens = bucket.tokens
        if now > bucket.at:
            # The first call: ``now - at`` is inf, and the bucket is full.
            tokens += (now - bucket.at) * self._per_second
            if tokens > self._capacity:
                tokens = self._capacity
            bucket.at = now
        # Within _EPS a token is there (or a deadline is met): refills and clocks are
        # floats, and 0.1 * 5 * 2 may land a hair below 1.
        if tokens >= 1 - _EPS:
            bucket.tokens = tokens - 1
            return 0.0
        bucket.tokens = tokens
        delay = (1 - tokens) / self._per_second
        if delay > self.max_wait_s + _EPS or now + delay >= deadline - _EPS:
            return -delay
        bucket.tokens = tokens - 1
        return delay

    def available(self, now: float) -> float:
        """The tokens in the bucket at ``now`` (negative while calls wait for theirs).

        Shared and connected: the tokens this process's lease holds.
        """
        fleet = self._fleet
        if fleet is not None and fleet.shared._use():
            return float(fleet.lease.held())
        bucket = self._bucket
        if now > bucket.at:
            tokens = bucket.tokens + (now - bucket.at) * self._per_second
            bucket.tokens = tokens if tokens < self._capacity else self._capacity
            bucket.at = now
        return bucket.tokens
