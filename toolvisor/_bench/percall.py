"""Sections 1 and 3: per-call overhead, the failure path and the open breaker."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

from ..supervisor import Supervisor
from ._config import Config, Target, make_target
from ._contenders import (
    OPEN,
    RETRY_NOW,
    STANDARD,
    TOOL,
    asyncio_contender,
    ceiling_contender,
    executor_contender,
    failing,
    flaky_attempts,
    instant,
    toolvisor_contender,
)
from ._deps import require
from ._harness import Args, Contender, Tick, measure_series

__all__ = [
    "run_failure",
    "run_open_breaker",
    "run_overhead",
    "steps_failure",
    "steps_open_breaker",
    "steps_overhead",
]


def _instant() -> Callable[[Args], Awaitable[object]]:
    return instant


def _failing() -> Callable[[Args], Awaitable[object]]:
    return failing


def _overhead_contenders() -> list[Contender]:
    return [
        toolvisor_contender(STANDARD, _instant),
        executor_contender(STANDARD, _instant),
        ceiling_contender(_instant),
        asyncio_contender(STANDARD, _instant),
    ]


def steps_overhead(cfg: Config) -> int:
    return len(cfg.concurrency) * 4 * (cfg.rounds + 1)


def run_overhead(
    cfg: Config, tick: Tick, _done: dict[str, Any]
) -> tuple[dict[str, Any], list[Target]]:
    """Per-call overhead of a tool that returns at once, at each concurrency."""
    contenders = _overhead_contenders()
    series = [
        measure_series(
            contenders, c, rounds=cfg.rounds, round_s=cfg.round_s, probe=cfg.probe, tick=tick
        )
        for c in cfg.concurrency
    ]
    section = {
        "title": "Per-call overhead (tool returns at once)",
        "policies": STANDARD.description,
        "notes": [
            "every contender calls the same `async def tool(args): return args['i']`",
            "toolvisor and the executor validate the arguments against the spec's JSON "
            "Schema (one required integer); the others do not validate",
            "toolvisor uses the default bulkhead (max_concurrency=16 workers per tool); the "
            "bare trio ceiling has ONE server task and no policies",
            '"throughput ratio (paired) vs": the median over rounds of a/b within each round',
        ],
        "contenders": {c.name: c.label for c in contenders},
        "series": series,
    }
    targets: list[Target] = []
    for s in series:
        c = s["concurrency"]
        if c not in (1, 100):
            continue
        targets.append(
            make_target(
                f"overhead_vs_asyncio_c{c}",
                "overhead",
                f"execute() >= 1.0x asyncio+tenacity+aiobreaker ({c} caller{'s' * (c > 1)})",
                s["ratios"]["toolvisor/asyncio"],
                ">=",
                1.0,
            )
        )
        targets.append(
            make_target(
                f"overhead_vs_trio_c{c}",
                "overhead",
                f"execute() >= 0.6x the bare trio one-hop ceiling ({c} caller{'s' * (c > 1)})",
                s["ratios"]["toolvisor/trio"],
                ">=",
                0.6,
            )
        )
    return section, targets


def steps_failure(cfg: Config) -> int:
    return len(cfg.concurrency) * 3 * (cfg.rounds + 1)


def run_failure(
    cfg: Config, tick: Tick, done: dict[str, Any]
) -> tuple[dict[str, Any], list[Target]]:
    """30 % of calls fail their first attempt; the retry (no delay) succeeds."""
    contenders = [
        toolvisor_contender(RETRY_NOW, flaky_attempts),
        executor_contender(RETRY_NOW, flaky_attempts),
        asyncio_contender(RETRY_NOW, flaky_attempts),
    ]
    series = [
        measure_series(
            contenders, c, rounds=cfg.rounds, round_s=cfg.round_s, probe=cfg.probe, tick=tick
        )
        for c in cfg.concurrency
    ]
    # Throughput relative to each contender's own success path (section "overhead").
    overhead = done.get("overhead")
    if overhead is not None:
        by_c = {s["concurrency"]: s for s in overhead["series"]}
        for s in series:
            ok = by_c.get(s["concurrency"])
            if ok is None:
                continue
            s["vs_success_path"] = {
                name: run["median"]["calls_per_s"] / ok["runs"][name]["median"]["calls_per_s"]
                for name, run in s["runs"].items()
                if name in ok["runs"]
            }
    section = {
        "title": "Failure path: 30 % of attempts fail, retried at once",
        "policies": RETRY_NOW.description,
        "notes": [
            "attempt n of the tool (counted in the order it runs them) fails when "
            "n % 10 < 3: 30 % of attempts, never more than 3 in a row, so the breaker "
            "(5 consecutive failures) never opens; about 30 % of calls need a retry",
            '"vs own success path": median calls/s here over the same contender\'s median '
            "in section 'overhead' (different rounds: indicative only)",
        ],
        "contenders": {c.name: c.label for c in contenders},
        "series": series,
    }
    return section, []


async def _trip_toolvisor(sup: Supervisor) -> None:
    with contextlib.suppress(Exception):
        await sup.execute(TOOL, {"i": 0})
    state = sup.stats(TOOL).breaker_state
    if state != "open":
        raise RuntimeError(f"could not open toolvisor's breaker (state {state!r})")


async def _trip_aiobreaker(guarded: Callable[[Args], Awaitable[object]], breaker: Any) -> None:
    aiobreaker = require("aiobreaker")
    with contextlib.suppress(Exception):
        await guarded({"i": 0})
    if breaker.current_state != aiobreaker.CircuitBreakerState.OPEN:
        raise RuntimeError(f"could not open aiobreaker (state {breaker.current_state!r})")


def steps_open_breaker(cfg: Config) -> int:
    return len(cfg.open_concurrency) * 4 * (cfg.rounds + 1)


def run_open_breaker(
    cfg: Config, tick: Tick, _done: dict[str, Any]
) -> tuple[dict[str, Any], list[Target]]:
    """Rejections per second of an open breaker against successful calls per second."""
    contenders = [
        toolvisor_contender(
            OPEN, _failing, name="tv_open", label="toolvisor rejections", prepare=_trip_toolvisor
        ),
        toolvisor_contender(OPEN, _instant, name="tv_ok", label="toolvisor successes"),
        asyncio_contender(
            OPEN, _failing, name="aio_open", label="aiobreaker rejections", prepare=_trip_aiobreaker
        ),
        asyncio_contender(OPEN, _instant, name="aio_ok", label="asyncio successes"),
    ]
    series = [
        measure_series(
            contenders, c, rounds=cfg.rounds, round_s=cfg.round_s, probe=cfg.probe, tick=tick
        )
        for c in cfg.open_concurrency
    ]
    section = {
        "title": "Open breaker: rejections per second vs successful calls per second",
        "policies": OPEN.description,
        "notes": [
            "the breaker is tripped during set-up (5 failing attempts); every timed call "
            "of a *_open contender is rejected (CircuitOpenError / CircuitBreakerError)",
            "successes: the same policies on a tool that returns at once",
        ],
        "contenders": {c.name: c.label for c in contenders},
        "series": series,
    }
    targets = [
        make_target(
            f"open_breaker_c{s['concurrency']}",
            "open_breaker",
            f"rejections/s >= 2x successful calls/s ({s['concurrency']} caller"
            f"{'s' * (s['concurrency'] > 1)})",
            s["ratios"]["tv_open/tv_ok"],
            ">=",
            2.0,
        )
        for s in series
    ]
    return section, targets
