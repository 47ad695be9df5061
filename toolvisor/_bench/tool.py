"""``toolvisor bench --tool MODULE:ATTR``: load-test the user's own tool through its policies.

For each concurrency level, in its own ``trio.run``: open a supervisor, spawn the target
(see ``toolvisor._target``), and send ``calls`` calls over ``concurrency`` caller tasks,
each awaiting its calls one after the other through ``Supervisor.execute``. Call ``k``
gets the arguments its schema gives (each property's default, else a value made from
``k``) or the ``--args`` object (``{i}`` in its strings replaced by ``k``). Measured per
level: calls/s, p50/p99 latency, outcomes from the tool's counters (succeeded, failed,
rejected, cancelled), the errors callers saw by type, retries, timeouts, breaker
transitions, and outcomes per tenth of the run.
"""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from .._json import loads
from .._target import Target, TargetError, spawn_target
from ..errors import shown
from ._stats import percentile

__all__ = ["ArgsError", "LoadOptions", "make_args", "parse_args_json", "run_load"]

#: Outcomes over time: the run is cut into this many equal slices.
SLICES = 10
OUTCOMES = ("succeeded", "failed", "rejected", "cancelled")


class ArgsError(ValueError):
    """``--args`` is not a JSON object, or the schema cannot give arguments."""


@dataclass(frozen=True)
class LoadOptions:
    """What to run: the target, which of its tools, levels, calls per level, arguments."""

    target: Target
    concurrency: tuple[int, ...]
    calls: int
    tool: str | None = None
    args: Mapping[str, Any] | None = None


def parse_args_json(text: str) -> dict[str, Any]:
    """``--args``: a JSON object.

    Raises:
        ArgsError: not JSON, or not an object.
    """
    try:
        value = loads(text)
    except json.JSONDecodeError as exc:
        raise ArgsError(f"--args is not valid JSON: {exc.msg} at character {exc.pos}") from None
    except ValueError as exc:  # NaN, a 5,000-digit number, nested past the stack
        raise ArgsError(f"--args is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ArgsError(f"--args must be a JSON object, got {type(value).__name__}: {shown(text)}")
    return value


def _fill(template: Any, i: int) -> Any:
    if isinstance(template, str):
        return template.replace("{i}", str(i))
    if isinstance(template, list):
        return [_fill(v, i) for v in template]
    if isinstance(template, dict):
        return {k: _fill(v, i) for k, v in template.items()}
    return template


def _bound(
    schema: Mapping[str, Any],
    inclusive: str,
    exclusive: str,
    to_int: Callable[[float], int],
    step: int,
) -> int | None:
    if inclusive in schema:
        return int(to_int(schema[inclusive]))
    if exclusive in schema:
        bound = float(schema[exclusive])
        return math.floor(bound) + 1 if step > 0 else math.ceil(bound) - 1
    return None


def _value(name: str, schema: Mapping[str, Any], i: int) -> Any:
    if "default" in schema:
        return schema["default"]
    enum = schema.get("enum")
    if enum:
        return enum[i % len(enum)]
    kind = schema.get("type")
    if kind == "string":
        text = f"{name}-{i}"
        low, high = schema.get("minLength", 0), schema.get("maxLength")
        text = text.ljust(low, "x")
        return text if high is None else text[-high:] if high else ""
    if kind in ("integer", "number"):
        low = _bound(schema, "minimum", "exclusiveMinimum", math.ceil, 1)
        high = _bound(schema, "maximum", "exclusiveMaximum", math.floor, -1)
        if low is not None and high is not None and high >= low:
            value = low + i % (high - low + 1)
        elif low is not None:
            value = low + i
        elif high is not None:
            value = high - i
        else:
            value = i
        return value if kind == "integer" else float(value)
    if kind == "boolean":
        return i % 2 == 0
    if kind == "array":
        return []
    if kind == "object":
        return {}
    raise ArgsError(
        f"parameter {name!r} has no default and a type the bench cannot fill "
        f"({kind!r}): give the arguments with --args"
    )


def make_args(
    schema: Mapping[str, Any], template: Mapping[str, Any] | None
) -> Callable[[int], dict[str, Any]]:
    """The arguments of call ``i``: from ``template`` (``--args``) or from the schema.

    From the schema: every property's default, else a value made from ``i`` (a string
    ``"<name>-<i>"``, a number ``i`` within its bounds, an enum's ``i``-th value, ...).

    Raises:
        ArgsError: a property the schema cannot fill (only ``--args`` can).
    """
    if template is not None:
        fixed = dict(template)
        return lambda i: _fill(fixed, i)
    properties: Mapping[str, Any] = schema.get("parameters", {}).get("properties", {})
    for name, prop in properties.items():
        _value(name, prop, 0)  # fails now, not in the middle of a run
    return lambda i: {name: _value(name, prop, i) for name, prop in properties.items()}


async def _level(
    options: LoadOptions, concurrency: int, tick: Callable[[], None]
) -> dict[str, Any]:
    from .. import errors
    from ..events import BreakerTransition, RetryScheduled
    from ..supervisor import open_supervisor

    async with open_supervisor() as sup:
        names = await spawn_target(sup, options.target)
        tool = _choose(options, names)
        args_of = make_args(sup.function_schemas()[tool], options.args)
        transitions: list[dict[str, Any]] = []
        retry_events = [0]
        t0 = trio.current_time()

        def on_event(event: Any) -> None:
            if getattr(event, "tool", None) != tool:
                return
            if isinstance(event, BreakerTransition):
                transitions.append(
                    {"at_s": round(event.at - t0, 6), "old": event.old, "new": event.new}
                )
            elif isinstance(event, RetryScheduled):
                retry_events[0] += 1

        unsubscribe = sup.subscribe(on_event)
        before = sup.stats(tool)
        latencies: list[float] = []
        ends: list[tuple[float, str]] = []
        errors_seen: Counter[str] = Counter()
        invalid = [0]
        counter = iter(range(options.calls))
        started = time.perf_counter()

        async def caller() -> None:
            for i in counter:
                args = args_of(i)
                begin = time.perf_counter()
                kind = "succeeded"
                try:
                    await sup.execute(tool, args)
                except errors.ValidationError as exc:
                    invalid[0] += 1
                    errors_seen[type(exc).__name__] += 1
                    kind = "invalid"
                except Exception as exc:  # every error is an outcome here
                    errors_seen[type(exc).__name__] += 1
                    kind = "error"
                end = time.perf_counter()
                latencies.append(end - begin)
                ends.append((end - started, kind))
                tick()

        async with trio.open_nursery() as nursery:
            for _ in range(concurrency):
                nursery.start_soon(caller)
        elapsed = time.perf_counter() - started
        after = sup.stats(tool)
        unsubscribe()
    outcomes = {k: getattr(after, _STAT[k]) - getattr(before, _STAT[k]) for k in OUTCOMES}
    latencies.sort()
    width = elapsed / SLICES if elapsed > 0 else 1.0
    over_time = [{"ok": 0, "error": 0} for _ in range(SLICES)]
    for at, kind in ends:
        over_time[min(SLICES - 1, int(at / width))]["ok" if kind == "succeeded" else "error"] += 1
    return {
        "concurrency": concurrency,
        "tool": tool,
        "calls": options.calls,
        "counted_calls": after.calls - before.calls,
        "invalid": invalid[0],
        "duration_s": elapsed,
        "calls_per_s": options.calls / elapsed if elapsed > 0 else math.nan,
        "p50_ms": percentile(latencies, 50) * 1e3,
        "p99_ms": percentile(latencies, 99) * 1e3,
        "outcomes": outcomes,
        "errors": dict(errors_seen.most_common()),
        "retries": after.retries - before.retries,
        "timeouts": after.timeouts - before.timeouts,
        "cache_hits": after.cache_hits - before.cache_hits,
        "breaker_transitions": transitions,
        "breaker_state": after.breaker_state,
        "slice_s": width,
        "over_time": over_time,
    }


_STAT = {
    "succeeded": "successes",
    "failed": "failures",
    "rejected": "rejected",
    "cancelled": "cancelled",
}


def _choose(options: LoadOptions, names: Sequence[str]) -> str:
    if options.tool is not None:
        if options.tool not in names:
            raise TargetError(
                f"{options.target.text} has no tool {options.tool!r} (its tools: "
                f"{', '.join(names)})"
            )
        return options.tool
    if len(names) > 1:
        raise TargetError(
            f"{options.target.text} has {len(names)} tools ({', '.join(names)}): choose one "
            "with --tool-name NAME"
        )
    return names[0]


def run_load(options: LoadOptions, tick: Callable[[], None]) -> dict[str, Any]:
    """Run every level (each in its own ``trio.run``); the report ``--json`` writes."""
    levels = [trio.run(_level, options, c, tick) for c in options.concurrency]
    return {
        "schema": "toolvisor-bench-tool/1",
        "target": options.target.text,
        "tool": levels[0]["tool"] if levels else options.tool,
        "calls_per_level": options.calls,
        "args": dict(options.args) if options.args is not None else "from the schema",
        "levels": levels,
    }


def print_table(report: Mapping[str, Any], console: Any) -> None:
    """The results, one row per concurrency level."""
    from rich.table import Table

    table = Table(
        title=f"{report['tool']} ({report['target']}): {report['calls_per_level']} calls per level",
        title_justify="left",
    )
    for column in (
        "concurrency",
        "calls/s",
        "p50 ms",
        "p99 ms",
        *OUTCOMES,
        "retries",
        "timeouts",
        "breaker",
    ):
        table.add_column(column, justify="left" if column == "breaker" else "right")
    for level in report["levels"]:
        moves = level["breaker_transitions"]
        breaker = (
            ", ".join(f"{m['old']}->{m['new']} {m['at_s']:.2f}s" for m in moves[:3])
            + (f" (+{len(moves) - 3})" if len(moves) > 3 else "")
            if moves
            else f"{level['breaker_state']}, no transition"
        )
        table.add_row(
            str(level["concurrency"]),
            f"{level['calls_per_s']:,.0f}",
            f"{level['p50_ms']:.2f}",
            f"{level['p99_ms']:.2f}",
            *(str(level["outcomes"][k]) for k in OUTCOMES),
            str(level["retries"]),
            str(level["timeouts"]),
            breaker,
        )
    console.print(table)
    for level in report["levels"]:
        if level["errors"]:
            seen = ", ".join(f"{name} {n}" for name, n in level["errors"].items())
            console.print(f"concurrency {level['concurrency']}: errors callers saw: {seen}")
        if level["invalid"]:
            console.print(
                f"concurrency {level['concurrency']}: {level['invalid']} calls had invalid "
                "arguments (not counted by the tool): check --args"
            )


def write_plot(report: Mapping[str, Any], path: Path) -> None:
    """Throughput and p99 against concurrency; outcomes over time per level."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    levels = report["levels"]
    xs = [lv["concurrency"] for lv in levels]
    fig, (ax_rate, ax_time) = plt.subplots(1, 2, figsize=(10, 3.8))
    ax_rate.plot(xs, [lv["calls_per_s"] for lv in levels], marker="o", color="C0")
    ax_rate.set_xscale("log")
    ax_rate.set_xticks(xs, [str(x) for x in xs])
    ax_rate.set_xlabel("concurrent callers")
    ax_rate.set_ylabel("calls / s", color="C0")
    ax_rate.set_ylim(bottom=0)
    ax_p99 = ax_rate.twinx()
    ax_p99.plot(xs, [lv["p99_ms"] for lv in levels], marker="s", color="C3")
    ax_p99.set_ylabel("p99 ms", color="C3")
    ax_p99.set_ylim(bottom=0)
    ax_rate.set_title("throughput and p99 against concurrency", fontsize=9)
    ax_rate.grid(alpha=0.3)
    for n, lv in enumerate(levels):
        fractions = [(i + 0.5) / SLICES for i in range(SLICES)]
        share = [s["error"] / max(1, s["ok"] + s["error"]) for s in lv["over_time"]]
        ax_time.plot(fractions, share, marker=".", color=f"C{n}", label=f"{lv['concurrency']}")
    ax_time.set_xlabel("fraction of the level's run")
    ax_time.set_ylabel("share of calls ending in an error")
    ax_time.set_ylim(-0.02, 1.02)
    ax_time.set_title("outcomes over time", fontsize=9)
    ax_time.legend(title="concurrency", fontsize=7)
    ax_time.grid(alpha=0.3)
    fig.suptitle(f"toolvisor bench --tool {report['target']} ({report['tool']})", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
