"""Hedging: more attempts of one call while the first is slow or failed (Polly's modes).

A hedged call races up to ``1 + max_hedged_attempts`` attempts of its tool; the first
that returns wins and the others are cancelled. ``delay`` picks the mode:

* ``delay > 0``, **latency** mode: attempt 1 starts; if no attempt has returned
  ``delay`` seconds after the latest one started, the next starts. An attempt that fails
  starts the next one at once. Timeline of ``HedgingPolicy(max_hedged_attempts=2,
  delay=1.0)`` with a tool that hangs: attempts at t = 0, 1, 2.
* ``delay == 0``, **parallel** mode: all the attempts start at once.
* ``delay < 0``, **fallback** mode: one attempt at a time; the next starts only when
  the previous one failed (never because it is slow).

A failure starts the next attempt unless it says another attempt would be refused or
fail the same way: toolvisor's own refusals (``NEVER_RETRIED``: the breaker is open, an
outcome is unknown...) and programming errors (``PROGRAMMING_ERRORS``); after one of
those no further attempt starts and the race waits for those still running.

:class:`HedgeSchedule` is the pure schedule of one race: it decides when the next
attempt starts from what it is told (launches and ends, with trio times), without
running or sleeping; the attempt loop does the running.
"""

from __future__ import annotations

import math
from typing import Literal

import attrs

from toolvisor.policies._keywords import suggest_keywords
from toolvisor.policies.retry import NEVER_RETRIED, PROGRAMMING_ERRORS

__all__ = ["MAX_HEDGED_ATTEMPTS", "HedgeSchedule", "HedgingPolicy", "stops_hedging"]

MAX_HEDGED_ATTEMPTS = 10
"""The most hedged attempts a policy may add to the first one (Polly's bound)."""

HedgingMode = Literal["latency", "parallel", "fallback"]


def _hedged_attempts(_instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or not 1 <= value <= MAX_HEDGED_ATTEMPTS
    ):
        raise ValueError(
            f"HedgingPolicy: {attribute.name!r} must be an integer from 1 to "
            f"{MAX_HEDGED_ATTEMPTS} (attempts added to the first one), got {value!r}"
        )


def _delay(value: object) -> float:
    """``delay`` as a float (the converter validates: attrs converts before it validates)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(
            "HedgingPolicy: 'delay' must be a finite number of seconds "
            f"(> 0 latency mode, 0 parallel, < 0 fallback), got {value!r}"
        )
    return float(value)


def stops_hedging(exc: BaseException) -> bool:
    """Whether a failed attempt's ``exc`` stops further hedges (see the module docstring)."""
    return isinstance(exc, NEVER_RETRIED + PROGRAMMING_ERRORS)


@suggest_keywords
@attrs.frozen(slots=True)
class HedgingPolicy:
    """Race more attempts of a slow or failed call; see the module docstring for modes.

    Args:
        max_hedged_attempts: attempts that may start in addition to the first (1 to 10).
        delay: seconds between starts in latency mode (> 0); 0 starts every attempt at
            once (parallel mode); < 0 starts the next only after a failure (fallback
            mode).

    Only for tools that may run twice at once: ``read_only`` ones, or idempotent ones
    (``spec.idempotency.enabled``: every attempt sees the call's one
    ``ctx.idempotency_key``). Spawning a spec with ``hedging`` on any other tool raises
    ``ValueError``.

    Example::

        spec.read_only = True
        spec.hedging = HedgingPolicy(max_hedged_attempts=1, delay=0.2)
        HedgingPolicy(delay=0.2).mode  # 'latency'
    """

    max_hedged_attempts: int = attrs.field(default=1, validator=_hedged_attempts)
    delay: float = attrs.field(default=2.0, converter=_delay)

    @property
    def mode(self) -> HedgingMode:
        """``"latency"`` (delay > 0), ``"parallel"`` (0) or ``"fallback"`` (< 0)."""
        if self.delay > 0:
            return "latency"
        return "parallel" if self.delay == 0 else "fallback"

    @property
    def max_attempts(self) -> int:
        """Attempts one race may start: the first plus ``max_hedged_attempts``."""
        return 1 + self.max_hedged_attempts

    def schedule(self, now: float) -> HedgeSchedule:
        """A new race, starting at trio time ``now`` (its first attempt is due now)."""
        return HedgeSchedule(self, now)


class HedgeSchedule:
    """The pure schedule of one race: when its next attempt starts.

    The loop asks :meth:`next_at`, starts an attempt when that time has come
    (:meth:`launch`), and reports every attempt that ended without a value
    (:meth:`failed`). A race is lost once :attr:`over` is True (nothing runs and nothing
    more may start). Nothing here reads a clock: times are given.

    Attributes:
        launched: attempts started so far.
        running: attempts started and not ended.
    """

    __slots__ = ("_last", "_owed", "_stopped", "launched", "policy", "running")

    def __init__(self, policy: HedgingPolicy, now: float) -> None:
        self.policy = policy
        self.launched = 0
        self.running = 0
        self._last = now  # when the latest attempt started
        self._owed = 1  # attempts due now: the first, then one per failure
        self._stopped = False

    def next_at(self) -> float:
        """Trio time at which the next attempt starts: ``-inf`` when it is due now,
        ``inf`` when only a failure could start one (or none may start any more)."""
        if self._stopped or self.launched >= self.policy.max_attempts:
            return math.inf
        if self._owed:
            return -math.inf
        delay = self.policy.delay
        if delay < 0:
            return math.inf
        return self._last + delay

    def launch(self, now: float) -> int:
        """An attempt starts at ``now``; its index in the race (0: the first).

        Raises:
            RuntimeError: no attempt is due at ``now``.
        """
        if self.next_at() > now:
            raise RuntimeError(f"no attempt of this race is due at {now!r}")
        if self._owed:
            self._owed -= 1
        index = self.launched
        self.launched += 1
        self.running += 1
        self._last = now
        return index

    def failed(self, exc: BaseException) -> None:
        """A running attempt ended with ``exc``: start another at once, unless ``exc``
        stops hedging (:func:`stops_hedging`)."""
        if self.running <= 0:
            raise RuntimeError("no attempt of this race is running")
        self.running -= 1
        if stops_hedging(exc):
            self._stopped = True
        else:
            self._owed += 1

    @property
    def over(self) -> bool:
        """Every attempt ended without a value and no other may start: the race is lost."""
        return self.running == 0 and self.next_at() == math.inf

    def __repr__(self) -> str:
        return (
            f"<HedgeSchedule {self.policy!r} launched={self.launched} running={self.running}"
            f"{' stopped' if self._stopped else ''}>"
        )
