"""Alternated rounds of request loads: one event loop per round, contenders in turn.

Every round of every contender runs in its own ``trio.run`` or ``asyncio.run`` (set-up
untimed, a short warm-up, then the timed load), and the contenders take turns round by
round, the order rotating, so the machine's drift hits them all alike. A load is
``calls`` calls spread over ``concurrency`` caller tasks, each awaiting its calls one
after the other; each call's latency is taken with ``perf_counter_ns``. Call k gets the
arguments ``{"i": k}``; caller w makes calls ``base + w``, ``base + w + concurrency``, ...
so the calls in flight at any moment have consecutive indices.
"""

from __future__ import annotations

import asyncio
import gc
import json
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Literal

import trio

from ._stats import paired_ratio, percentile, summarize

__all__ = [
    "Call",
    "Contender",
    "Tick",
    "alternate",
    "calibrate",
    "measure_series",
    "run_round",
]

Args = dict[str, Any]
Call = Callable[[Args], Awaitable[object]]
Setup = Callable[[], AbstractAsyncContextManager[Call]]
Tick = Callable[[str], None]

#: Call indices are unique over the whole process run, so that "fresh key" loads
#: (idempotency first executions) never meet a key twice, even across rounds.
_next_index = [1]

ROUND_KEYS = ("calls_per_s", "p50_us", "p99_us")


@dataclass(frozen=True)
class Contender:
    """One way of serving the same calls.

    Attributes:
        name: short key used in the JSON and the ratios.
        label: what the table shows.
        loop: which event loop the set-up and the load run in.
        setup: an async context manager (for that loop) that yields the call function.
    """

    name: str
    label: str
    loop: Literal["trio", "asyncio"]
    setup: Setup


def _callers(
    call: Call, calls: int, concurrency: int
) -> tuple[Callable[[int], Coroutine[Any, Any, None]], list[int], Counter[str]]:
    """The caller coroutine both event loops run, with where it records what it saw."""
    latencies: list[int] = []
    errors: Counter[str] = Counter()
    per = calls // concurrency

    async def caller(first: int) -> None:
        clock = time.perf_counter_ns
        record = latencies.append
        for k in range(first, first + per * concurrency, concurrency):
            started = clock()
            try:
                await call({"i": k})
            except Exception as exc:
                errors[type(exc).__name__] += 1
            record(clock() - started)

    return caller, latencies, errors


async def _drive_trio(call: Call, calls: int, concurrency: int, base: int) -> dict[str, Any]:
    caller, latencies, errors = _callers(call, calls, concurrency)
    started = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for w in range(concurrency):
            nursery.start_soon(caller, base + w)
    return _round_figures(time.perf_counter() - started, latencies, errors)


async def _drive_asyncio(call: Call, calls: int, concurrency: int, base: int) -> dict[str, Any]:
    caller, latencies, errors = _callers(call, calls, concurrency)
    started = time.perf_counter()
    async with asyncio.TaskGroup() as group:
        for w in range(concurrency):
            group.create_task(caller(base + w))
    return _round_figures(time.perf_counter() - started, latencies, errors)


def _round_figures(wall: float, latencies: list[int], errors: Counter[str]) -> dict[str, Any]:
    latencies.sort()
    return {
        "calls": len(latencies),
        "wall_s": wall,
        "calls_per_s": len(latencies) / wall if wall > 0 else 0.0,
        "p50_us": percentile(latencies, 50) / 1000.0,
        "p99_us": percentile(latencies, 99) / 1000.0,
        "errors": dict(errors),
    }


async def _round(
    contender: Contender, calls: int, concurrency: int, warmup: int, trio_loop: bool
) -> dict[str, Any]:
    drive = _drive_trio if trio_loop else _drive_asyncio
    async with contender.setup() as call:
        if warmup:
            await drive(call, warmup, concurrency, _take(warmup))
        gc.collect()
        return await drive(call, calls, concurrency, _take(calls))


def _take(n: int) -> int:
    first = _next_index[0]
    _next_index[0] = first + n
    return first


def run_round(contender: Contender, calls: int, concurrency: int, warmup: int) -> dict[str, Any]:
    """One round in a fresh event loop; return its figures (throughput, p50, p99)."""
    calls = max(concurrency, calls - calls % concurrency)
    warmup = warmup - warmup % concurrency
    if contender.loop == "trio":
        return trio.run(_round, contender, calls, concurrency, warmup, True)
    return asyncio.run(_round(contender, calls, concurrency, warmup, False))


def calibrate(contender: Contender, concurrency: int, round_s: float, probe: int) -> int:
    """How many calls make a round of about ``round_s`` seconds for this contender."""
    probe = max(probe, concurrency * 4)
    figures = run_round(contender, probe, concurrency, 0)
    per_call = figures["wall_s"] / max(1, figures["calls"])
    calls = int(round_s / per_call) if per_call > 0 else probe
    calls = max(concurrency * 10, min(calls, 2_000_000))
    return calls - calls % concurrency


def alternate(
    contenders: Sequence[Contender],
    rounds: int,
    run_one: Callable[[Contender], dict[str, Any]],
    tick: Tick,
) -> dict[str, list[dict[str, Any]]]:
    """Run ``rounds`` rounds of every contender, in turns, the order rotating per round."""
    results: dict[str, list[dict[str, Any]]] = {c.name: [] for c in contenders}
    n = len(contenders)
    for r in range(rounds):
        order = [*contenders[r % n :], *contenders[: r % n]]
        for contender in order:
            figures = run_one(contender)
            figures["round"] = r
            results[contender.name].append(figures)
            tick(contender.label)
    return results


def measure_series(
    contenders: Sequence[Contender],
    concurrency: int,
    *,
    rounds: int,
    round_s: float,
    probe: int,
    tick: Tick,
) -> dict[str, Any]:
    """Calibrate each contender, then alternate ``rounds`` timed rounds at ``concurrency``.

    Returns ``{"runs": {name: {...}}, "ratios": {"a/b": x}}`` where the ratios are paired
    throughput ratios (see :func:`paired_ratio`).
    """
    sizes: dict[str, int] = {}
    for contender in contenders:
        sizes[contender.name] = calibrate(contender, concurrency, round_s, probe)
        tick(f"calibrating {contender.label}")

    def one(contender: Contender) -> dict[str, Any]:
        calls = sizes[contender.name]
        warmup = max(concurrency * 2, calls // 20)
        return run_round(contender, calls, concurrency, warmup)

    rounds_by_name = alternate(contenders, rounds, one, tick)
    runs: dict[str, Any] = {}
    for contender in contenders:
        series = rounds_by_name[contender.name]
        errors: Counter[str] = Counter()
        for figures in series:
            errors.update(figures["errors"])
        runs[contender.name] = {
            "label": contender.label,
            "calls_per_round": sizes[contender.name],
            "rounds": series,
            "median": summarize(series, ROUND_KEYS),
            "errors": dict(errors),
        }
    ratios = {
        f"{a.name}/{b.name}": paired_ratio(
            rounds_by_name[a.name], rounds_by_name[b.name], "calls_per_s"
        )
        for a in contenders
        for b in contenders
        if a is not b
    }
    return {"concurrency": concurrency, "runs": runs, "ratios": ratios}


def run_fresh(module: str, *args: object) -> dict[str, Any]:
    """Run ``python -m module args...`` in a fresh interpreter; its last line is JSON."""
    done = subprocess.run(
        [sys.executable, "-m", module, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{module} {args!r} failed (exit {done.returncode}):\n{done.stderr}")
    figures: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures
