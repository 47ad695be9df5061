"""An adaptive bulkhead: a concurrency limit that follows the tool's latency and drops.

A fixed ``max_concurrency`` has to be guessed: too low wastes the service, too high lets a
slow service pile up calls until they all time out. ``AdaptiveConcurrency`` estimates the
limit from the calls themselves, as Netflix's concurrency-limits does (the limit is a TCP
congestion window): after each call, one sample ``(rtt_s, inflight, dropped)`` moves it.

``rtt_s`` is how long the call held its slot; ``inflight`` the calls running when it
started (itself included); ``dropped`` that it ended in a timeout or was refused without
running. Two algorithms:

``"gradient2"`` (Netflix's ``Gradient2Limit``): compares the sample's latency (the short
term) with a long-term average of the latencies (an exponential moving average over
``long_window`` samples, the plain mean of the first ten), so a limit shrinks as latency
grows above its usual level::

    gradient = clamp(long_rtt / rtt, 0.5, 1.0)
    target   = estimate * gradient + queue_size       # room to probe while latency is low
    estimate = estimate * (1 - smoothing) + target * smoothing

The gradient's floor (0.5) keeps one outlier from halving the limit; with it, sustained
latency brings the limit down to about ``2 * queue_size``, the allowance it keeps for
probing. While fewer than half of the limit's calls run (the tool is *app-limited*: its
callers, not its service, set the pace) a sample changes nothing. When latency comes back
after a long slow period the long-term average is more than twice the sample's: it is cut
by 10 % per sample instead of waiting for the average to forget. A drop counts as the
gradient's floor without the allowance (``estimate *= 1 - smoothing / 2``), whatever the
load, and its latency (the timeout's, not the service's) stays out of the long-term
average.

``"aimd"`` (Netflix's ``AIMDLimit``, additive increase, multiplicative decrease)::

    dropped:                   limit = max(min_limit, min(limit - 1, floor(limit * backoff_ratio)))
    inflight * 2 >= limit:     limit = limit + 1
    otherwise:                 unchanged (app-limited)

Either way the limit is an integer within ``[min_limit, max_limit]`` (gradient2 keeps its
estimate as a float; the limit is its floor). Pure: :meth:`on_sample` takes the sample and
its time, nothing sleeps, and the actor's worker pool follows :attr:`limit`.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import attrs

__all__ = ["ALGORITHMS", "AdaptiveConcurrency"]

ALGORITHMS = ("gradient2", "aimd")
"""The algorithms ``AdaptiveConcurrency(algorithm=...)`` takes."""

_WARMUP = 10  # samples averaged plainly before the long-term average decays exponentially
_MIN_RTT = 1e-6  # seconds: a latency below a microsecond counts as one (no division by 0)


def _int_at_least_one(_instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(
            f"AdaptiveConcurrency: {attribute.name!r} must be an integer >= 1, got {value!r}"
        )


def _algorithm(_instance: object, attribute: attrs.Attribute[str], value: str) -> None:
    if value not in ALGORITHMS:
        raise ValueError(
            f"AdaptiveConcurrency: {attribute.name!r} must be one of "
            f"{', '.join(map(repr, ALGORITHMS))}, got {value!r}"
        )


def _number(low: float, high: float, *, low_open: bool, high_open: bool) -> Any:
    """A validator: a finite real number within the given interval, naming the field."""
    left = "(" if low_open else "["
    right = ")" if high_open else "]"

    def check(_instance: object, attribute: attrs.Attribute[float], value: float) -> None:
        ok = (
            not isinstance(value, bool)
            and isinstance(value, int | float)
            and math.isfinite(value)
            and (value > low if low_open else value >= low)
            and (value < high if high_open else value <= high)
        )
        if not ok:
            raise ValueError(
                f"AdaptiveConcurrency: {attribute.name!r} must be a number in "
                f"{left}{low:g}, {high:g}{right}, got {value!r}"
            )

    return check


@attrs.define(slots=True, eq=False)
class AdaptiveConcurrency:
    """A tool's concurrency limit, adapted after every call; see the module docstring.

    Args:
        initial: the limit before any sample.
        min_limit / max_limit: the range the limit stays in (``min_limit <= initial <=
            max_limit``).
        algorithm: ``"gradient2"`` (latency-driven) or ``"aimd"`` (drop-driven).
        smoothing: gradient2: the weight of each new estimate (0 < smoothing <= 1).
        queue_size: gradient2: the allowance added to each estimate while latency is low
            (the limit's growth per sample is ``smoothing * queue_size``).
        long_window: gradient2: the samples the long-term latency average spans.
        backoff_ratio: aimd: the factor a drop multiplies the limit by (0.5 <= r < 1).

    Example::

        spec.max_concurrency = AdaptiveConcurrency(initial=8, max_limit=64)

    Used as ``spec.max_concurrency``: the tool's worker pool grows up to :attr:`limit` and
    shrinks when it falls (a worker finishing a call above the limit retires), and no call
    starts while ``limit`` calls run. One instance on several specs is one limit they share:
    every tool's samples move it and each tool's own pool follows it (give each spec its
    own instance for independent limits).
    """

    # The configuration is fixed once built (the estimate derives from it).
    initial: int = attrs.field(
        default=16, validator=_int_at_least_one, on_setattr=attrs.setters.frozen
    )
    min_limit: int = attrs.field(
        default=1, validator=_int_at_least_one, on_setattr=attrs.setters.frozen
    )
    max_limit: int = attrs.field(
        default=256, validator=_int_at_least_one, on_setattr=attrs.setters.frozen
    )
    algorithm: Literal["gradient2", "aimd"] = attrs.field(
        default="gradient2", validator=_algorithm, on_setattr=attrs.setters.frozen
    )
    smoothing: float = attrs.field(
        default=0.2,
        validator=_number(0, 1, low_open=True, high_open=False),
        on_setattr=attrs.setters.frozen,
        kw_only=True,
    )
    queue_size: float = attrs.field(
        default=4.0,
        validator=_number(0, 1e6, low_open=False, high_open=False),
        on_setattr=attrs.setters.frozen,
        kw_only=True,
    )
    long_window: int = attrs.field(
        default=600, validator=_int_at_least_one, on_setattr=attrs.setters.frozen, kw_only=True
    )
    backoff_ratio: float = attrs.field(
        default=0.9,
        validator=_number(0.5, 1, low_open=False, high_open=True),
        on_setattr=attrs.setters.frozen,
        kw_only=True,
    )
    _estimate: float = attrs.field(init=False, repr=False)
    _limit: int = attrs.field(init=False, repr=False)
    _long_rtt: float = attrs.field(default=0.0, init=False, repr=False)
    _samples: int = attrs.field(default=0, init=False, repr=False)
    _decay: float = attrs.field(init=False, repr=False)
    # Per-sample arithmetic precomputed (the configuration is fixed).
    _aimd: bool = attrs.field(init=False, repr=False)
    _low: float = attrs.field(init=False, repr=False)
    _high: float = attrs.field(init=False, repr=False)
    _keep: float = attrs.field(init=False, repr=False)
    _drop: float = attrs.field(init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        if self.max_limit < self.min_limit:
            raise ValueError(
                f"AdaptiveConcurrency: 'max_limit' must be >= min_limit ({self.min_limit}), "
                f"got {self.max_limit!r}"
            )
        if not self.min_limit <= self.initial <= self.max_limit:
            raise ValueError(
                f"AdaptiveConcurrency: 'initial' must be within [min_limit, max_limit] = "
                f"[{self.min_limit}, {self.max_limit}], got {self.initial!r}"
            )
        self._estimate = float(self.initial)
        self._limit = self.initial
        self._decay = 2.0 / (self.long_window + 1)
        self._aimd = self.algorithm == "aimd"
        self._low = float(self.min_limit)
        self._high = float(self.max_limit)
        self._keep = 1 - self.smoothing
        self._drop = 1 - self.smoothing / 2

    @property
    def limit(self) -> int:
        """The concurrency limit now."""
        return self._limit

    @property
    def long_rtt(self) -> float:
        """gradient2's long-term latency average (seconds; 0 before any sample)."""
        return self._long_rtt

    def on_sample(self, rtt_s: float, inflight: int, dropped: bool, now: float) -> int:
        """Account for one call that ended; return the limit from now on.

        Args:
            rtt_s: seconds the call held its slot (its attempts and the waits between).
            inflight: the calls running when it started, itself included.
            dropped: it timed out, or was refused without running.
            now: trio time of the sample (the algorithms here update on every sample and
                do not depend on it; it is part of the protocol for ones that window).
        """
        if self._aimd:
            limit = self._limit
            if dropped:
                new = int(limit * self.backoff_ratio)
                if new > limit - 1:
                    new = limit - 1
            elif inflight * 2 >= limit:
                new = limit + 1
            else:
                return limit
            if new < self.min_limit:
                new = self.min_limit
            elif new > self.max_limit:
                new = self.max_limit
            self._estimate = float(new)
        else:
            estimate = self._estimate
            if dropped:
                estimate *= self._drop
            else:
                estimate = self._gradient2(estimate, rtt_s, inflight)
                if estimate < 0:
                    return self._limit  # app-limited: the callers set the pace
            if estimate < self._low:
                estimate = self._low
            elif estimate > self._high:
                estimate = self._high
            self._estimate = estimate
            new = int(estimate)
        self._limit = new
        return new

    def _gradient2(self, estimate: float, rtt_s: float, inflight: int) -> float:
        """gradient2's new estimate after a sample that was not dropped (-1: app-limited)."""
        rtt = rtt_s if rtt_s > _MIN_RTT else _MIN_RTT
        n = self._samples
        if n < _WARMUP:
            self._samples = n + 1
            long_rtt = (self._long_rtt * n + rtt) / (n + 1)
        else:
            decay = self._decay
            long_rtt = self._long_rtt * (1 - decay) + rtt * decay
        ratio = long_rtt / rtt
        if ratio > 2:
            long_rtt *= 0.9  # back from a long slow period: forget it faster
            ratio *= 0.9
        self._long_rtt = long_rtt
        if inflight < estimate / 2:
            return -1.0
        gradient = 0.5 if ratio < 0.5 else 1.0 if ratio > 1.0 else ratio
        target = estimate * gradient + self.queue_size
        return estimate * self._keep + target * self.smoothing
