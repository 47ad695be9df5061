"""A retry budget: retries allowed in proportion to calls, plus a floor (Finagle's).

A retry policy alone multiplies the load on a failing service by ``max_attempts``: when
every call fails, every call retries. A budget caps retries as a share of the calls::

    balance(now) = min_retries_per_s * ttl_s + ratio * calls_in_window - retries_in_window

Each call deposits (``ratio`` credits), each retry withdraws one credit, and a retry is
allowed while the balance is at least 1. Deposits and withdrawals count for ``ttl_s``:
time is cut into ``SLICES`` slices of ``ttl_s / SLICES`` seconds (slice ``k`` covers
``[k * w, (k + 1) * w)``), and what happened in slice ``k`` counts until slice
``k + SLICES`` begins, so between ``0.9 * ttl_s`` and ``ttl_s`` after it (the windowed
counter of Finagle's ``RetryBudget``). Over any window of ``ttl_s`` seconds, retries are
therefore at most ``ratio * calls + min_retries_per_s * ttl_s``.

The budget is pure: every method takes ``now`` (trio time) and nothing sleeps. One
instance attached to several specs is one budget shared by their calls (within one trio
run: the times it is given must come from one clock).

With ``shared=RedisShared(url, name)`` the calls and retries of every process using that
Redis and name are counted together: the formula above holds for the fleet's totals, and
this process spends credits Redis leased to it (no round trip per call; see
``toolvisor.shared``). The local counts go on meanwhile, and decide alone while Redis
cannot be reached.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import attrs

from toolvisor.policies._shared_field import check_shared

if TYPE_CHECKING:
    from toolvisor.shared._redis import RedisShared, _BudgetMember

__all__ = ["SLICES", "RetryBudget"]

SLICES = 10
"""The slices of a budget's window (credits expire slice by slice)."""

# A balance computed in floating point may miss 1 by a rounding error (0.1 * 10).
_EPSILON = 1e-9


def _finite_non_negative(
    _instance: object, attribute: attrs.Attribute[float], value: float
) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < math.inf:
        raise ValueError(
            f"RetryBudget: {attribute.name!r} must be a finite number >= 0, got {value!r}"
        )


def _ratio(_instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    _finite_non_negative(_instance, attribute, value)
    if value > 1000:
        raise ValueError(f"RetryBudget: {attribute.name!r} must be at most 1000, got {value!r}")


def _ttl(_instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 1e-3 <= value <= 3600:
        raise ValueError(
            f"RetryBudget: {attribute.name!r} must be a number of seconds in [0.001, 3600], "
            f"got {value!r}"
        )


class _Window:
    """The budget's mutable state: plain slots, so the hot path assigns them directly
    (an attrs class with a frozen field runs a Python ``__setattr__`` for every one)."""

    __slots__ = ("calls", "index", "retries", "slice", "total_calls", "total_retries")

    def __init__(self) -> None:
        self.calls = [0] * SLICES  # per slice, a ring indexed by ``slice % SLICES``
        self.retries = [0] * SLICES
        self.slice = -(2**62)  # the latest slice seen
        self.index = self.slice % SLICES
        self.total_calls = 0  # over the live slices
        self.total_retries = 0


@attrs.frozen(eq=False)
class RetryBudget:
    """Retries allowed as a share of calls, with a floor; see the module docstring.

    Args:
        ratio: credits each call deposits (0.2: one retry per five calls).
        min_retries_per_s: the floor: retries per second allowed whatever the calls, so
            a tool with little traffic can still retry.
        ttl_s: how long a deposit or a withdrawal counts.
        shared: a :class:`~toolvisor.RedisShared` to count with every process that uses
            it (the floor ``min_retries_per_s`` is then the fleet's).

    Example::

        budget = RetryBudget(ratio=0.2, min_retries_per_s=10.0, ttl_s=10.0)
        spec.retry_policy = ExponentialBackoffRetryPolicy(max_attempts=3)
        spec.retry_budget = budget  # several specs may share it

    A retry the budget refuses is skipped: the call ends with the tool's last error
    (a note says the budget was exhausted) and ``ToolStats.budget_exhausted`` counts it.
    """

    # The configuration is fixed once built (the window's slices derive from it).
    ratio: float = attrs.field(default=0.2, validator=_ratio)
    min_retries_per_s: float = attrs.field(default=10.0, validator=_finite_non_negative)
    ttl_s: float = attrs.field(default=10.0, validator=_ttl)
    shared: RedisShared | None = attrs.field(
        default=None, kw_only=True, validator=check_shared("RetryBudget: "), repr=False
    )
    _fleet: _BudgetMember | None = attrs.field(default=None, init=False, repr=False)
    _slices_per_s: float = attrs.field(init=False, repr=False)
    _reserve: float = attrs.field(init=False, repr=False)
    _window: _Window = attrs.field(init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        object.__setattr__(self, "_slices_per_s", SLICES / self.ttl_s)
        object.__setattr__(self, "_reserve", self.min_retries_per_s * self.ttl_s)
        object.__setattr__(self, "_window", _Window())
        if self.shared is not None:
            fleet = self.shared._budget(self.ratio, self._reserve, self.ttl_s, self)
            object.__setattr__(self, "_fleet", fleet)

    def __repr__(self) -> str:
        shared = "" if self.shared is None else f", shared={self.shared!r}"
        return (
            f"RetryBudget(ratio={self.ratio!r}, min_retries_per_s={self.min_retries_per_s!r}, "
            f"ttl_s={self.ttl_s!r}{shared})"
        )

    def deposit(self, now: float) -> None:
        """One call started at ``now``: deposit ``ratio`` credits."""
        window = self._window
        current = int(now * self._slices_per_s // 1)
        if current > window.slice:
            self._roll(current)
        window.calls[window.index] += 1
        window.total_calls += 1
        fleet = self._fleet
        if fleet is not None and fleet.shared._use():
            fleet.ledger.deposit()

    def try_withdraw(self, now: float) -> bool:
        """A retry wants to run at ``now``: withdraw one credit, or refuse (False).

        Shared and connected, the fleet's credit decides (the local counts record the
        retry either way); otherwise the local balance.
        """
        window = self._window
        current = int(now * self._slices_per_s // 1)
        if current > window.slice:
            self._roll(current)
        fleet = self._fleet
        if fleet is not None and fleet.shared._use():
            if not fleet.ledger.try_spend():
                return False
        elif self._balance() < 1 - _EPSILON:
            return False
        window.retries[window.index] += 1
        window.total_retries += 1
        return True

    def balance(self, now: float) -> float:
        """The credits available at ``now`` (a retry needs 1).

        Shared and connected: the credits this process may spend now (its lease and its
        deposits not yet sent); otherwise the local balance.
        """
        current = int(now * self._slices_per_s // 1)
        if current > self._window.slice:
            self._roll(current)
        fleet = self._fleet
        if fleet is not None and fleet.shared._use():
            return fleet.ledger.credit()
        return self._balance()

    def _balance(self) -> float:
        window = self._window
        return self._reserve + self.ratio * window.total_calls - window.total_retries

    def _roll(self, current: int) -> None:
        """Move to slice ``current`` (later than the latest), expiring the slices between.

        A time before the latest slice seen counts in the latest (it never expires early).
        """
        window = self._window
        last = window.slice
        calls, retries = window.calls, window.retries
        for k in range(last + 1, min(current, last + SLICES) + 1):
            j = k % SLICES
            window.total_calls -= calls[j]
            window.total_retries -= retries[j]
            calls[j] = retries[j] = 0
        window.slice = current
        window.index = current % SLICES
