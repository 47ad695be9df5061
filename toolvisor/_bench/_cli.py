"""``toolvisor bench``: run the sections, show progress, print tables, write JSON and a plot."""

from __future__ import annotations

import argparse
import datetime as dt
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
            "medians over rounds, compared as ratios."
        ),
    )
    parser.add_argument("--quick", action="store_true", help="a short run (under a minute)")
    parser.add_argument("--json", type=Path, metavar="PATH", help="write every figure here")
    parser.add_argument("--plot", type=Path, metavar="PATH.png", help="throughput plot")
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


def run(argv: list[str] | None = None) -> int:
    """Parse ``argv``, run the sections, report; 0 on success, 2 on a usage problem."""
    parser = _parser()
    try:
        options = parser.parse_args(argv)
        sections = [s.strip() for s in options.sections.split(",") if s.strip()]
        unknown = sorted(set(sections) - set(SECTIONS))
        if unknown:
            parser.error(f"unknown section(s) {', '.join(unknown)}; known: {', '.join(SECTIONS)}")
        _check_dependencies(sections, options.plot is not None)
    except (_UsageError, BenchDependencyError) as exc:
        _error(str(exc))
        return 2
    cfg = (Config.quick_run() if options.quick else Config.full()).with_rounds(options.rounds)
    report = _run_sections(cfg, sections, plain=options.plain or not sys.stderr.isatty())
    report["argv"] = list(sys.argv[1:] if argv is None else argv)

    from rich.console import Console

    from ._report import print_tables, write_json, write_plot

    console = Console() if sys.stdout.isatty() else Console(width=150)
    print_tables(report, console)
    if options.plot is not None:
        if write_plot(report, options.plot):
            report["plot"] = str(options.plot)
            console.print(f"plot: {options.plot}")
        else:
            console.print("plot: nothing to plot (no section measured at several concurrencies)")
    if options.json is not None:
        write_json(report, options.json)
        console.print(f"json: {options.json}")
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
