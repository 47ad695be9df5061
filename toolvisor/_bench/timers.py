"""Section 5: how late per-attempt timeouts fire with many calls waiting on them.

``calls`` concurrent calls to a tool that sleeps forever, each with a 0.5 s timeout; each
caller records when its timeout error arrives, relative to its own start + 0.5 s.

- ``toolvisor``: ``calls / tools`` calls to each of ``tools`` tool actors, spawned with
  ``timeout_s=0.5``, ``max_concurrency=calls / tools`` (so every call has its own worker
  at once and the 0.5 s is the per-attempt timeout, not a queue wait), no retry and no
  breaker; the error is ``ToolTimeoutError``. The caller's start is taken before
  ``execute()``, so the lateness includes the hop into the actor.
- ``trio``: bare trio tasks in ``trio.fail_after(0.5)`` around ``trio.sleep_forever()``.
- ``asyncio``: asyncio tasks in ``asyncio.timeout(0.5)`` around a future never set.
"""

from __future__ import annotations

import asyncio
import gc
import math
import time
from typing import Any

import trio

from .. import FunctionToolSpec, IntegerParameter, ToolTimeoutError, open_supervisor
from ._config import Config, Target, make_target
from ._harness import Args, Tick
from ._stats import paired_ratio, percentile, summarize

__all__ = ["Log", "run_timers", "steps_timers"]

KEYS = ("p50_ms", "p99_ms", "max_ms", "e2e_p50_ms", "e2e_p99_ms", "e2e_max_ms", "wait_p99_ms")


class Log:
    """What one round saw: per call, its start, its attempt's start and its error's arrival
    (``time.perf_counter()``; NaN where it did not happen)."""

    def __init__(self, calls: int) -> None:
        self.started = [math.nan] * calls
        self.entered = [math.nan] * calls
        self.arrived = [math.nan] * calls
        self.errors = 0

    def window(self, timeout_s: float) -> tuple[float, float]:
        """When the errors were due and came: from the first attempt's deadline to the
        last error's arrival (``time.perf_counter()``)."""
        entered = [e for e in self.entered if e == e]
        arrived = [a for a in self.arrived if a == a]
        return min(entered) + timeout_s, max(arrived)

    def figures(self, wall: float, timeout_s: float) -> dict[str, Any]:
        late: list[float] = []
        e2e: list[float] = []
        wait: list[float] = []
        for s, e, a in zip(self.started, self.entered, self.arrived, strict=True):
            if a == a and e == e:
                late.append(a - e - timeout_s)
                e2e.append(a - s - timeout_s)
                wait.append(e - s)
        for values in (late, e2e, wait):
            values.sort()

        def ms(values: list[float], q: float) -> float:
            return percentile(values, q) * 1000.0

        return {
            "calls": len(self.started),
            "timeouts": len(late),
            "other_outcomes": self.errors,
            "wall_s": wall,
            "p50_ms": ms(late, 50),
            "p99_ms": ms(late, 99),
            "max_ms": ms(late, 100),
            "min_ms": ms(late, 0),
            "e2e_p50_ms": ms(e2e, 50),
            "e2e_p99_ms": ms(e2e, 99),
            "e2e_max_ms": ms(e2e, 100),
            "wait_p50_ms": ms(wait, 50),
            "wait_p99_ms": ms(wait, 99),
        }


async def _toolvisor(
    calls: int, tools: int, timeout_s: float, log: Log | None = None
) -> dict[str, Any]:
    per_tool = calls // tools
    calls = per_tool * tools
    log = Log(calls) if log is None else log
    clock = time.perf_counter

    async def hang(args: Args) -> object:
        log.entered[args["i"]] = clock()
        await trio.sleep_forever()
        raise AssertionError("unreachable")

    async with open_supervisor(grace_s=0) as sup:
        names = []
        for t in range(tools):
            spec = FunctionToolSpec(
                id=f"hang-{t}",
                tool_name=f"hang_{t}",
                description="sleeps forever",
                parameters=[IntegerParameter(name="i", required=True)],
                timeout_s=timeout_s,
                max_concurrency=per_tool,
            )
            await sup.spawn(spec, hang)
            names.append(spec.tool_name)

        async def one(name: str, k: int) -> None:
            log.started[k] = clock()
            try:
                await sup.execute(name, {"i": k})
            except ToolTimeoutError:
                log.arrived[k] = clock()
            except Exception:
                log.errors += 1

        gc.collect()
        started = clock()
        async with trio.open_nursery() as nursery:
            for k in range(calls):
                nursery.start_soon(one, names[k % tools], k)
        wall = clock() - started
    return log.figures(wall, timeout_s)


async def _trio(calls: int, timeout_s: float, log: Log | None = None) -> dict[str, Any]:
    log = Log(calls) if log is None else log
    clock = time.perf_counter

    async def one(k: int) -> None:
        log.started[k] = clock()
        try:
            with trio.fail_after(timeout_s):
                log.entered[k] = clock()
                await trio.sleep_forever()
        except trio.TooSlowError:
            log.arrived[k] = clock()
        except Exception:
            log.errors += 1

    gc.collect()
    started = clock()
    async with trio.open_nursery() as nursery:
        for k in range(calls):
            nursery.start_soon(one, k)
    return log.figures(clock() - started, timeout_s)


async def _asyncio(calls: int, timeout_s: float) -> dict[str, Any]:
    log = Log(calls)
    clock = time.perf_counter
    loop = asyncio.get_running_loop()

    async def one(k: int) -> None:
        log.started[k] = clock()
        try:
            async with asyncio.timeout(timeout_s):
                log.entered[k] = clock()
                await loop.create_future()
        except TimeoutError:
            log.arrived[k] = clock()
        except Exception:
            log.errors += 1

    gc.collect()
    started = clock()
    async with asyncio.TaskGroup() as group:
        for k in range(calls):
            group.create_task(one(k))
    return log.figures(clock() - started, timeout_s)


def steps_timers(cfg: Config) -> int:
    return 3 * cfg.timer_rounds


def run_timers(
    cfg: Config, tick: Tick, _done: dict[str, Any]
) -> tuple[dict[str, Any], list[Target]]:
    """Alternate rounds of the three contenders; each round in its own event loop."""
    calls, tools, timeout_s = cfg.timer_calls, cfg.timer_tools, cfg.timer_timeout_s
    runners = {
        "toolvisor": lambda: trio.run(_toolvisor, calls, tools, timeout_s),
        "trio": lambda: trio.run(_trio, calls, timeout_s),
        "asyncio": lambda: asyncio.run(_asyncio(calls, timeout_s)),
    }
    labels = {
        "toolvisor": f"toolvisor ({tools} tools x {calls // tools} calls)",
        "trio": "bare trio fail_after",
        "asyncio": "asyncio.timeout",
    }
    names = list(runners)
    rounds: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    for r in range(cfg.timer_rounds):
        for name in names[r % 3 :] + names[: r % 3]:
            figures = runners[name]()
            figures["round"] = r
            rounds[name].append(figures)
            tick(labels[name])
    medians = {name: summarize(rounds[name], KEYS) for name in names}
    runs = {
        name: {"label": labels[name], "rounds": rounds[name], "median": medians[name]}
        for name in names
    }
    ratios = {
        f"{a}/{b}": paired_ratio(rounds[a], rounds[b], "p99_ms")
        for a in names
        for b in names
        if a != b
    }
    section = {
        "title": f"Timers: lateness of {calls:,} concurrent {timeout_s:g} s timeouts",
        "notes": [
            f"toolvisor: {tools} tools spawned with timeout_s={timeout_s:g} and "
            f"max_concurrency={calls // tools} ({calls // tools} calls each), so every "
            "call runs at once and the timeout is the per-attempt one, not a queue wait; "
            "no retry, no breaker",
            '"p50 ms", "p99 ms", "max ms": lateness = arrival of the timeout error at the '
            "caller - (the "
            "attempt's start + timeout), the attempt's start taken by the tool itself "
            "(bare trio/asyncio: on entering the timeout block)",
            '"from call start p99 ms": the same from the caller\'s start (includes the '
            "spawn burst of the callers and the wait before a worker takes the call)",
            '"p99 ratio vs": p99 lateness compared, paired by round',
        ],
        "calls": calls,
        "timeout_s": timeout_s,
        "contenders": labels,
        "runs": runs,
        "ratios": ratios,
    }
    p99 = medians["toolvisor"]["p99_ms"]
    target = make_target(
        "timers_p99",
        "timers",
        f"p99 lateness < 10 ms at {calls:,} concurrent calls",
        p99,
        "<",
        10.0,
        detail=(
            "median over rounds of each round's p99, from the attempt's start; from the "
            f"caller's start: {medians['toolvisor']['e2e_p99_ms']:.1f} ms"
        ),
    )
    return section, [target]
