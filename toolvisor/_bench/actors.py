"""Section "actors": spawning idle tool actors, and what an idle actor costs in memory.

Against the cheapest thing an actor could be: a bare trio task blocked on the receive
of its own memory channel. Each contender runs in a fresh interpreter
(``python -m toolvisor._bench.actors CONTENDER N``), in two phases:

1. spawn ``n`` (timed, until every task is blocked), then the RSS increase per actor;
2. in a second ``trio.run``, with ``tracemalloc`` on, the Python heap allocated per
   actor by the same spawn (tracemalloc slows the spawn, hence the separate phase).

The toolvisor actors run the policies of section 1 (Standard breaker, exponential retry,
timeout_s=30) and a spec with one integer parameter; the specs are built before the
measurement (they are the user's objects); ``spawn()`` takes its snapshot (compiling the
argument validator) inside it. tracemalloc only sees Python's heap: the RSS figure also
counts memory allocated in C or Rust (e.g. jsonschema-rs's compiled validator).
"""

from __future__ import annotations

import gc
import json
import sys
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import trio
import trio.testing

from ._config import Config, Target, make_target
from ._harness import run_fresh
from ._stats import paired_ratio, summarize

__all__ = ["main", "measure", "run_actors", "steps_actors"]

CONTENDERS = {
    "toolvisor": "toolvisor idle actor",
    "trio": "bare trio task on a channel receive",
}
KEYS = ("spawn_us", "rss_bytes", "traced_bytes")


async def _spawn_toolvisor(n: int, measure: Any) -> None:
    from .. import open_supervisor
    from ._contenders import STANDARD, instant, tool_spec

    specs = [tool_spec(STANDARD, name=f"tool_{k}") for k in range(n)]
    async with open_supervisor(grace_s=0) as sup:
        await trio.testing.wait_all_tasks_blocked()
        start = measure.begin()
        for spec in specs:
            await sup.spawn(spec, instant)
        await trio.testing.wait_all_tasks_blocked()
        measure.end(start)


async def _spawn_trio(n: int, measure: Any) -> None:
    async def idle(receive: trio.MemoryReceiveChannel[object]) -> None:
        async for _ in receive:
            pass

    async with trio.open_nursery() as nursery:
        await trio.testing.wait_all_tasks_blocked()
        start = measure.begin()
        senders = []
        for _ in range(n):
            send, receive = trio.open_memory_channel[object](1024)
            senders.append(send)
            nursery.start_soon(idle, receive)
        await trio.testing.wait_all_tasks_blocked()
        measure.end(start)
        nursery.cancel_scope.cancel()


class _Timed:
    def __init__(self) -> None:
        self.rss_before = 0
        self.rss_after = 0
        self.elapsed = 0.0

    def begin(self) -> float:
        from .scale import current_rss

        gc.collect()
        self.rss_before = current_rss()
        return time.perf_counter()

    def end(self, start: float) -> None:
        from .scale import current_rss

        self.elapsed = time.perf_counter() - start
        gc.collect()
        self.rss_after = current_rss()


class _Traced:
    def __init__(self) -> None:
        self.before = 0
        self.after = 0

    def begin(self) -> float:
        gc.collect()
        tracemalloc.start()
        self.before = tracemalloc.get_traced_memory()[0]
        return 0.0

    def end(self, _start: float) -> None:
        gc.collect()
        self.after = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()


def measure(contender: str, n: int) -> dict[str, Any]:
    """Both phases for one contender in this process; figures per actor."""
    spawn = {"toolvisor": _spawn_toolvisor, "trio": _spawn_trio}.get(contender)
    if spawn is None:
        raise ValueError(f"unknown contender {contender!r}; one of {sorted(CONTENDERS)}")
    timed = _Timed()
    trio.run(spawn, n, timed)
    traced = _Traced()
    trio.run(spawn, n, traced)
    return {
        "contender": contender,
        "n": n,
        "spawn_us": timed.elapsed / n * 1e6,
        "rss_bytes": (timed.rss_after - timed.rss_before) / n,
        "traced_bytes": (traced.after - traced.before) / n,
    }


def run_in_subprocess(contender: str, n: int) -> dict[str, Any]:
    """Run :func:`measure` in a fresh interpreter and return its figures."""
    return run_fresh("toolvisor._bench.actors", contender, n)


def steps_actors(cfg: Config) -> int:
    return len(CONTENDERS) * cfg.actors_rounds


def run_actors(
    cfg: Config, tick: Callable[[str], None], _done: dict[str, Any]
) -> tuple[dict[str, Any], list[Target]]:
    """Alternate fresh-process runs of both contenders, round by round."""
    from .scale import _psutil

    _psutil()
    names = list(CONTENDERS)
    rounds: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    for r in range(cfg.actors_rounds):
        for name in names[r % 2 :] + names[: r % 2]:
            figures = run_in_subprocess(name, cfg.actors_n)
            figures["round"] = r
            rounds[name].append(figures)
            tick(CONTENDERS[name])
    runs = {
        name: {
            "label": CONTENDERS[name],
            "rounds": rounds[name],
            "median": summarize(rounds[name], KEYS),
        }
        for name in names
    }
    ratios = {
        f"toolvisor/trio:{key}": paired_ratio(rounds["toolvisor"], rounds["trio"], key)
        for key in KEYS
    }
    section = {
        "title": f"Actors: {cfg.actors_n:,} idle tool actors vs bare blocked trio tasks",
        "notes": [
            'one fresh interpreter per contender and round; "spawn µs": time per actor until '
            'every task is blocked; "RSS B/actor": the RSS increase (everything, incl. '
            'C/Rust allocations); "heap B/actor": tracemalloc (Python heap only, a '
            "separate spawn)",
            "toolvisor: Standard breaker + exponential retry + timeout_s=30, one integer "
            "parameter (validator compiled by spawn()); bare task: its own memory channel "
            "(buffer 1024, like a tool inbox) and `async for` on the receive side",
        ],
        "n": cfg.actors_n,
        "contenders": CONTENDERS,
        "runs": runs,
        "ratios": ratios,
    }
    targets = [
        make_target(
            "actors_memory_traced",
            "actors",
            "idle actor memory <= 3x a bare blocked trio task (Python heap, tracemalloc)",
            ratios["toolvisor/trio:traced_bytes"],
            "<=",
            3.0,
        ),
        make_target(
            "actors_memory_rss",
            "actors",
            "idle actor memory <= 3x a bare blocked trio task (RSS increase / n)",
            ratios["toolvisor/trio:rss_bytes"],
            "<=",
            3.0,
            detail="RSS also counts C/Rust allocations (e.g. the compiled validator)",
        ),
    ]
    return section, targets


def main(argv: list[str] | None = None) -> int:
    """``python -m toolvisor._bench.actors CONTENDER N``: one JSON line."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m toolvisor._bench.actors CONTENDER N", file=sys.stderr)
        return 2
    print(json.dumps(measure(args[0], int(args[1]))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
