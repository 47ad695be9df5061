"""The suite's settings: the full run and the ``--quick`` run."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

__all__ = ["SECTIONS", "Config", "Target", "make_target"]

SECTIONS = ("overhead", "failure", "open_breaker", "idempotency", "timers", "scale", "actors")


@dataclass(frozen=True)
class Config:
    """Sizes of every section (see ``full()`` and ``quick()``)."""

    quick: bool
    rounds: int  # alternated rounds of the in-process sections
    round_s: float  # target duration of one timed round (calls are calibrated to it)
    probe: int  # calls of a calibration run
    concurrency: tuple[int, ...]
    open_concurrency: tuple[int, ...]
    idem_concurrency: tuple[int, ...]
    scale_calls: int
    scale_tools: int
    scale_sleep_s: float
    scale_rounds: int
    timer_calls: int
    timer_tools: int
    timer_timeout_s: float
    timer_rounds: int
    actors_n: int
    actors_rounds: int

    @classmethod
    def full(cls) -> Config:
        return cls(
            quick=False,
            # 15, not fewer: on a shared 2-core VM single 0.25 s rounds of the 1-caller
            # series range from 0.4x to 1.3x of their median, and medians of 7 rounds
            # moved by 0.13x from one run to the next (benchmarks/README.md).
            rounds=15,
            round_s=0.25,
            probe=2000,
            concurrency=(1, 10, 100),
            open_concurrency=(1, 100),
            idem_concurrency=(1, 100),
            scale_calls=100_000,
            scale_tools=1000,
            scale_sleep_s=1.0,
            scale_rounds=3,
            timer_calls=10_000,
            timer_tools=100,
            timer_timeout_s=0.5,
            timer_rounds=5,
            actors_n=1000,
            actors_rounds=5,
        )

    @classmethod
    def quick_run(cls) -> Config:
        return cls(
            quick=True,
            rounds=2,
            round_s=0.04,
            probe=300,
            concurrency=(1, 100),
            open_concurrency=(1,),
            idem_concurrency=(1,),
            scale_calls=5000,
            scale_tools=50,
            scale_sleep_s=0.2,
            scale_rounds=1,
            timer_calls=2000,
            timer_tools=20,
            timer_timeout_s=0.5,
            timer_rounds=1,
            actors_n=1000,
            actors_rounds=1,
        )

    def with_rounds(self, rounds: int | None) -> Config:
        return self if rounds is None else replace(self, rounds=rounds)

    def as_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self.__dict__.items()}


Target = dict[str, Any]


def make_target(
    target_id: str,
    section: str,
    text: str,
    value: float,
    op: str,
    threshold: float,
    *,
    detail: str = "",
) -> Target:
    """A target record: ``value op threshold`` (op is ``>=``, ``<=`` or ``<``), met or not."""
    if value != value:  # NaN: not measured
        met: bool | None = None
    elif op == ">=":
        met = value >= threshold
    elif op == "<=":
        met = value <= threshold
    elif op == "<":
        met = value < threshold
    else:
        raise ValueError(f"unknown comparison {op!r}")
    return {
        "id": target_id,
        "section": section,
        "text": text,
        "value": value,
        "op": op,
        "threshold": threshold,
        "met": met,
        "detail": detail,
    }
