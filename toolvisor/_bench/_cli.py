"""``toolvisor bench``: run the sections, show progress, print tables, write JSON and a plot."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from ._config import SECTIONS, Config, Target
from ._deps import BenchDependencyError, require
from ._harness import Tick
from ._machine import describe_machine, load_average

__all__ = ["run"]

Steps = Callable[[Config], int]
Runner = Callable[[Config, Tick, dict[str, Any]], tuple[dict[str, Any], list[Target]]]


def _registry() -> dict[str, tuple[Steps, Runner]]:
    from . import actors, idempotency, percall, scale, timers

    return {
        "overhead": (percall.steps_overhead, percall.run_overhead),
        "failure": (percall.steps_failure, percall.run_failure),
        "open_breaker": (percall.steps_open_breaker, percall.run_open_breaker),
        "idempotency": (idempotency.steps_idempotency, idempotency.run_idempotency),
        "timers": (timers.steps_timers, timers.run_timers),
        "scale": (scale.steps_scale, scale.run_scale),
        "actors": (actors.steps_actors, actors.run_actors),
    }


class _UsageError(Exception):
    """Bad options: one line on stderr, exit status 2 (as the other toolvisor commands)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise _UsageError(f"{message} (see {self.prog} --help)")


def _rounds(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text!r}")
    return value


def _error(message: str) -> None:
    print(f"toolvisor: error: {message}", file=sys.stderr)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="toolvisor bench",
        description=(
            "Side-by-side benchmarks of toolvisor against bare trio and asyncio + tenacity + "
            "aiobreaker. Contenders alternate round by round in one run; figures are "
            "medians over rounds, compared as ratios. To load-test your own tool instead: "
            "toolvisor bench --tool MODULE:ATTR (toolvisor bench --tool X --help)."
        ),
    )
    parser.add_argument("--quick", action="store_true", help="a short run (under a minute)")
    parser.add_argument("--json", type=Path, metavar="PATH", help="write every figure here")
    parser.add_argument(
        "--plot",
        type=Path,
        metavar="PATH.png",
        help="one panel per section (its contenders' medians and its targets)",
    )
    parser.add_argument(
        "--markdown",
        type=Path,
        metavar="PATH",
        help=(
            "the README's performance tables, naming the run's JSON (so needs --json or "
            "--from-json): replaces the generated tables in PATH, or writes a new file; "
            "'-' prints them"
        ),
    )
    parser.add_argument(
        "--from-json",
        type=Path,
        metavar="PATH",
        help="report on a run saved with --json instead of running (tables, --plot, --markdown)",
    )
    parser.add_argument(
        "--plain", action="store_true", help="no progress bar (also when not on a terminal)"
    )
    parser.add_argument(
        "--sections",
        default=",".join(SECTIONS),
        help=f"comma-separated subset of: {','.join(SECTIONS)} (default: all)",
    )
    parser.add_argument(
        "--rounds",
        type=_rounds,
        default=None,
        help="alternated rounds of the in-process sections (an integer >= 1)",
    )
    return parser


def _check_dependencies(sections: list[str], plot: bool) -> None:
    needed = ["rich"]
    if {"overhead", "failure", "open_breaker", "scale"} & set(sections):
        needed += ["tenacity", "aiobreaker"]
    if {"scale", "actors"} & set(sections):
        needed.append("psutil")
    if plot:
        needed.append("matplotlib")
    for module in needed:
        require(module)


def _levels(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    if not 1 <= value <= 100_000:
        raise argparse.ArgumentTypeError(f"must be in 1-100000, got {text!r}")
    return value


def _tool_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="toolvisor bench --tool",
        description=(
            "Load-test your own tool through its policies: for each concurrency level, in "
            "its own trio.run, spawn the tool on a fresh supervisor and send --calls calls "
            "over that many caller tasks. Reports calls/s, p50/p99, outcomes (succeeded, "
            "failed, rejected, cancelled), the errors callers saw, retries, timeouts and "
            "breaker transitions."
        ),
    )
    parser.add_argument(
        "--tool",
        required=True,
        metavar="MODULE:ATTR",
        help="a list/tuple/dict of (spec, fn) pairs, or an async setup(sup) that spawns the tools",
    )
    parser.add_argument(
        "--tool-name", metavar="NAME", help="which tool, when the target has several"
    )
    parser.add_argument(
        "--concurrency",
        type=_levels,
        nargs="+",
        default=[1, 10, 100],
        metavar="N",
        help="concurrent callers, one level after the other (default: 1 10 100)",
    )
    parser.add_argument(
        "--calls", type=_levels, default=1000, metavar="N", help="calls per level (default 1000)"
    )
    parser.add_argument(
        "--args",
        metavar="JSON",
        help='the arguments of every call, a JSON object; "{i}" in its strings is the '
        "call's number (default: each parameter's default, else a value made from it)",
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="write every figure here")
    parser.add_argument("--plot", type=Path, metavar="PATH.png", help="write the plot here")
    parser.add_argument(
        "--plain", action="store_true", help="no progress bar (also when not on a terminal)"
    )
    return parser


def _wants_tool(argv: list[str]) -> bool:
    return any(a == "--tool" or a.startswith("--tool=") for a in argv)


def _first_error(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def run_tool(argv: list[str]) -> int:
    """``toolvisor bench --tool ...``: 0 on success, 2 on bad usage, 1 if the set-up fails."""
    from .._target import TargetError, load_target
    from . import tool

    try:
        options = _tool_parser().parse_args(argv)
        require("rich")
        if options.plot is not None:
            require("matplotlib")
        args = tool.parse_args_json(options.args) if options.args is not None else None
        target = load_target(options.tool)
    except (_UsageError, BenchDependencyError, TargetError, tool.ArgsError) as exc:
        _error(str(exc))
        return 2
    load = tool.LoadOptions(
        target=target,
        concurrency=tuple(options.concurrency),
        calls=options.calls,
        tool=options.tool_name,
        args=args,
    )
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    plain = options.plain or not sys.stderr.isatty()
    progress = Progress(
        "[bold]calls",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        disable=plain,
    )
    try:
        with progress:
            bar = progress.add_task("calls", total=load.calls * len(load.concurrency))
            report = tool.run_load(load, lambda: progress.advance(bar))
    except BaseException as exc:
        first = _first_error(exc)
        if isinstance(first, TargetError) and first.__cause__ is not None:
            _error(str(first))  # the user's setup(sup) raised: a failure while running
            return 1
        if isinstance(first, TargetError | tool.ArgsError):
            _error(str(first))
            return 2
        if isinstance(first, Exception):
            _error(f"{options.tool} failed: {type(first).__name__}: {first}")
            return 1
        raise
    console = Console() if sys.stdout.isatty() else Console(width=150)
    tool.print_table(report, console)
    if options.plot is not None:
        tool.write_plot(report, options.plot)
        console.print(f"plot: {options.plot}")
    if options.json is not None:
        options.json.parent.mkdir(parents=True, exist_ok=True)
        options.json.write_text(json.dumps(report, indent=2) + "\n")
        console.print(f"json: {options.json}")
    return 0


def run(argv: list[str] | None = None) -> int:
    """Parse ``argv``, run the sections, report; 0 on success, 2 on a usage problem."""
    if _wants_tool(list(sys.argv[1:] if argv is None else argv)):
        return run_tool(list(sys.argv[1:] if argv is None else argv))
    parser = _parser()
    try:
        options = parser.parse_args(argv)
        sections = [s.strip() for s in options.sections.split(",") if s.strip()]
        unknown = sorted(set(sections) - set(SECTIONS))
        if unknown:
            parser.error(f"unknown section(s) {', '.join(unknown)}; known: {', '.join(SECTIONS)}")
        if options.from_json is not None:
            given = [
                flag
                for flag, value in (
                    ("--quick", options.quick),
                    ("--rounds", options.rounds is not None),
                    ("--json", options.json is not None),
                    ("--sections", options.sections != ",".join(SECTIONS)),
                )
                if value
            ]
            if given:
                parser.error(
                    f"--from-json reports on a finished run: {', '.join(given)} "
                    f"{'does' if len(given) == 1 else 'do'} not apply"
                )
        elif options.markdown is not None and options.json is None:
            parser.error("--markdown names the JSON its tables come from: add --json PATH")
        _check_dependencies(
            [] if options.from_json is not None else sections, options.plot is not None
        )
        from ._report import check_markdown_target, read_json

        if options.markdown is not None and str(options.markdown) != "-":
            check_markdown_target(options.markdown)
        saved = read_json(options.from_json) if options.from_json is not None else None
    except (_UsageError, BenchDependencyError, ValueError) as exc:
        _error(str(exc))
        return 2
    if saved is None:
        cfg = (Config.quick_run() if options.quick else Config.full()).with_rounds(options.rounds)
        report = _run_sections(cfg, sections, plain=options.plain or not sys.stderr.isatty())
        report["argv"] = list(sys.argv[1:] if argv is None else argv)
    else:
        report = saved

    from rich.console import Console

    from ._plot import write_plot
    from ._report import markdown_block, print_tables, write_json, write_markdown

    console = Console() if sys.stdout.isatty() else Console(width=150)
    print_tables(report, console)
    if options.plot is not None:
        if write_plot(report, options.plot):
            if saved is None:
                report["plot"] = str(options.plot)
            console.print(f"plot: {options.plot}")
        else:
            console.print("plot: nothing to plot (no section was run)")
    if options.json is not None:
        write_json(report, options.json)
        console.print(f"json: {options.json}")
    if options.markdown is not None:
        block = markdown_block(report, str(options.from_json or options.json))
        if str(options.markdown) == "-":
            sys.stdout.write(block)
        else:
            write_markdown(options.markdown, block)
            console.print(f"markdown: {options.markdown}")
    return 0


def _run_sections(cfg: Config, sections: list[str], *, plain: bool) -> dict[str, Any]:
    registry = _registry()
    machine = describe_machine()
    started_wall = dt.datetime.now(dt.UTC)
    started = time.perf_counter()
    results: dict[str, Any] = {}
    targets: list[Target] = []
    durations: dict[str, float] = {}
    total = sum(registry[name][0](cfg) for name in sections)

    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    err = Console(stderr=True)
    progress = Progress(
        TextColumn("[bold]{task.description:<58}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        disable=plain,
        transient=False,
    )
    with progress:
        bar = progress.add_task("starting", total=total)
        for name in sections:
            steps, runner = registry[name]
            if plain:
                err.print(f"[{name}] {steps(cfg)} steps ...", highlight=False, markup=False)

            def tick(label: str, _section: str = name) -> None:
                progress.update(bar, advance=1, description=f"{_section}: {label}"[:58])

            section_started = time.perf_counter()
            section, section_targets = runner(cfg, tick, results)
            durations[name] = time.perf_counter() - section_started
            section["duration_s"] = durations[name]
            results[name] = section
            targets.extend(section_targets)
            if plain:
                err.print(
                    f"[{name}] done in {durations[name]:.1f} s", highlight=False, markup=False
                )
    machine["load_average_end"] = load_average()
    return {
        "schema": "toolvisor-bench/1",
        "started_at": started_wall.isoformat(timespec="seconds"),
        "duration_s": time.perf_counter() - started,
        "quick": cfg.quick,
        "config": cfg.as_dict(),
        "machine": machine,
        "method": (
            "every round of every contender runs in its own trio.run / asyncio.run (or its "
            "own interpreter for scale and actors); contenders alternate round by round, "
            "the order rotating; figures are medians over rounds; ratios are the median over "
            "rounds of the within-round ratio"
        ),
        "sections": results,
        "targets": targets,
        "summary": {
            "met": sum(1 for t in targets if t["met"] is True),
            "not_met": sum(1 for t in targets if t["met"] is False),
            "not_measured": sum(1 for t in targets if t["met"] is None),
        },
    }
