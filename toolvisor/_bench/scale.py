"""Section 2: many concurrent calls over many tool actors to a tool that sleeps.

``calls`` concurrent calls, spread evenly over ``tools`` tools (calls / tools each), to a
tool that sleeps ``sleep_s`` on the real clock. Each contender runs in a fresh
interpreter (``python -m toolvisor._bench.scale CONTENDER CALLS TOOLS SLEEP_S``), which
prints one JSON line: wall time of the load (ideal: ``sleep_s``), set-up time, and the
peak RSS increase (the peak RSS at the end, ``VmHWM`` on Linux, minus the RSS after the
imports, before the set-up): peak RSS cannot be reset in-process, hence one process per
run.

- ``toolvisor``: one caller task per call doing ``Supervisor.execute()``; the tools are
  spawned with ``max_concurrency = calls / tools`` (the default is 16 per tool), so every
  call runs at once, as on the other contenders; Standard breaker + exponential retry +
  timeout_s=30, as in section 1.
- ``asyncio``: one task per call, each through its tool's tenacity ``@retry`` +
  ``asyncio.timeout(30)`` + ``aiobreaker.CircuitBreaker`` (one breaker per tool).
- ``trio``: one bare trio task per call awaiting the tool directly (no policies).
"""

from __future__ import annotations

import asyncio
import gc
import json
import resource
import sys
import time
from collections import Counter
from typing import Any

import trio

from ._config import Config, Target, make_target
from ._harness import Args, Tick, run_fresh
from ._stats import paired_ratio, summarize

__all__ = ["main", "run_scale", "steps_scale"]

CONTENDERS = {
    "toolvisor": "toolvisor execute()",
    "asyncio": "asyncio+tenacity+aiobreaker",
    "trio": "bare trio tasks",
}
KEYS = ("wall_s", "peak_rss_increase_mb", "setup_s")


def current_rss() -> int:
    """This process's resident set size in bytes."""
    psutil = _psutil()
    return int(psutil.Process().memory_info().rss)


def _psutil() -> Any:
    from ._deps import require

    return require("psutil")


def peak_rss() -> int:
    """This process's peak resident set size in bytes.

    On Linux ``VmHWM`` from /proc/self/status: ``ru_maxrss`` would not do, as Linux
    carries it over from the parent across fork+exec (a fresh interpreter started by a
    big parent would report the parent's peak).
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


async def _toolvisor(calls: int, tools: int, sleep_s: float) -> dict[str, Any]:
    import functools

    from .. import open_supervisor
    from ._contenders import STANDARD, tool_spec

    per_tool = calls // tools
    errors: Counter[str] = Counter()

    async def tool(args: Args) -> object:
        await trio.sleep(sleep_s)
        return args["i"]

    async with open_supervisor() as sup:
        started = time.perf_counter()
        executes = []
        for t in range(tools):
            spec = tool_spec(STANDARD, name=f"tool_{t}", max_concurrency=per_tool)
            await sup.spawn(spec, tool)
            executes.append(functools.partial(sup.execute, spec.tool_name))
        setup = time.perf_counter() - started

        async def one(k: int) -> None:
            try:
                await executes[k % tools]({"i": k})
            except Exception as exc:
                errors[type(exc).__name__] += 1

        gc.collect()
        started = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for k in range(per_tool * tools):
                nursery.start_soon(one, k)
        wall = time.perf_counter() - started
    return {"wall_s": wall, "setup_s": setup, "errors": dict(errors)}


async def _asyncio(calls: int, tools: int, sleep_s: float) -> dict[str, Any]:
    from ._contenders import STANDARD, make_guarded, new_breaker

    per_tool = calls // tools
    errors: Counter[str] = Counter()

    async def tool(args: Args) -> object:
        await asyncio.sleep(sleep_s)
        return args["i"]

    started = time.perf_counter()
    guarded = [make_guarded(tool, new_breaker(STANDARD), STANDARD) for _ in range(tools)]
    setup = time.perf_counter() - started

    async def one(k: int) -> None:
        try:
            await guarded[k % tools]({"i": k})
        except Exception as exc:
            errors[type(exc).__name__] += 1

    gc.collect()
    started = time.perf_counter()
    async with asyncio.TaskGroup() as group:
        for k in range(per_tool * tools):
            group.create_task(one(k))
    wall = time.perf_counter() - started
    return {"wall_s": wall, "setup_s": setup, "errors": dict(errors)}


async def _trio(calls: int, tools: int, sleep_s: float) -> dict[str, Any]:
    per_tool = calls // tools
    errors: Counter[str] = Counter()

    async def tool(args: Args) -> object:
        await trio.sleep(sleep_s)
        return args["i"]

    async def one(k: int) -> None:
        try:
            await tool({"i": k})
        except Exception as exc:
            errors[type(exc).__name__] += 1

    gc.collect()
    started = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for k in range(per_tool * tools):
            nursery.start_soon(one, k)
    wall = time.perf_counter() - started
    return {"wall_s": wall, "setup_s": 0.0, "errors": dict(errors)}


def measure(contender: str, calls: int, tools: int, sleep_s: float) -> dict[str, Any]:
    """Run one contender's load in this process; return its figures."""
    gc.collect()
    before = current_rss()
    peak_before = peak_rss()
    if contender == "toolvisor":
        figures = trio.run(_toolvisor, calls, tools, sleep_s)
    elif contender == "trio":
        figures = trio.run(_trio, calls, tools, sleep_s)
    elif contender == "asyncio":
        figures = asyncio.run(_asyncio(calls, tools, sleep_s))
    else:
        raise ValueError(f"unknown contender {contender!r}; one of {sorted(CONTENDERS)}")
    peak = peak_rss()
    figures.update(
        contender=contender,
        calls=calls // tools * tools,
        tools=tools,
        sleep_s=sleep_s,
        rss_before_mb=before / 2**20,
        peak_rss_before_mb=peak_before / 2**20,
        peak_rss_mb=peak / 2**20,
        peak_rss_increase_mb=(peak - before) / 2**20,
    )
    return figures


def run_in_subprocess(contender: str, calls: int, tools: int, sleep_s: float) -> dict[str, Any]:
    """Run :func:`measure` in a fresh interpreter and return its figures."""
    return run_fresh("toolvisor._bench.scale", contender, calls, tools, repr(sleep_s))


def steps_scale(cfg: Config) -> int:
    return len(CONTENDERS) * cfg.scale_rounds


def run_scale(
    cfg: Config, tick: Tick, _done: dict[str, Any]
) -> tuple[dict[str, Any], list[Target]]:
    """Alternate fresh-process runs of each contender, round by round."""
    _psutil()  # fail early, in this process, if psutil is missing
    names = list(CONTENDERS)
    rounds: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    calls, tools, sleep_s = cfg.scale_calls, cfg.scale_tools, cfg.scale_sleep_s
    for r in range(cfg.scale_rounds):
        for name in names[r % 3 :] + names[: r % 3]:
            figures = run_in_subprocess(name, calls, tools, sleep_s)
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
    ratios: dict[str, float] = {}
    for a in names:
        for b in names:
            if a != b:
                ratios[f"{a}/{b}:wall_s"] = paired_ratio(rounds[a], rounds[b], "wall_s")
                ratios[f"{a}/{b}:peak_rss_increase_mb"] = paired_ratio(
                    rounds[a], rounds[b], "peak_rss_increase_mb"
                )
    per_tool = calls // tools
    section = {
        "title": (
            f"Scale: {calls:,} concurrent calls over {tools:,} tools to a tool that "
            f"sleeps {sleep_s:g} s"
        ),
        "notes": [
            f"toolvisor tools spawned with max_concurrency={per_tool} (the default is 16 "
            "per tool) so that every call runs at once, as on the other contenders",
            'one fresh interpreter per contender and round; "peak RSS +MB" = peak RSS '
            '(VmHWM) at the end - RSS after the imports; "wall s" = the load only (ideal: '
            'the sleep); "set-up s" = spawning the tools before the load',
            "toolvisor: Standard breaker + exponential retry + timeout_s=30; asyncio: "
            f"{tools:,} aiobreaker breakers with tenacity and asyncio.timeout(30)",
        ],
        "calls": calls,
        "tools": tools,
        "sleep_s": sleep_s,
        "contenders": CONTENDERS,
        "runs": runs,
        "ratios": ratios,
    }
    targets = [
        make_target(
            "scale_wall",
            "scale",
            "wall time <= 1.0x asyncio+tenacity+aiobreaker on the same load",
            ratios["toolvisor/asyncio:wall_s"],
            "<=",
            1.0,
        ),
        make_target(
            "scale_rss",
            "scale",
            "peak RSS increase <= 1.0x asyncio+tenacity+aiobreaker on the same load",
            ratios["toolvisor/asyncio:peak_rss_increase_mb"],
            "<=",
            1.0,
        ),
    ]
    return section, targets


def main(argv: list[str] | None = None) -> int:
    """``python -m toolvisor._bench.scale CONTENDER CALLS TOOLS SLEEP_S``: one JSON line."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 4:
        print(__doc__, file=sys.stderr)
        print(
            "usage: python -m toolvisor._bench.scale CONTENDER CALLS TOOLS SLEEP_S", file=sys.stderr
        )
        return 2
    figures = measure(args[0], int(args[1]), int(args[2]), float(args[3]))
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
