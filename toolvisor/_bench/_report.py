"""The end-of-run tables (rich), the JSON file, and the Markdown summary the README shows."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ._deps import require

__all__ = [
    "MARKDOWN_BEGIN",
    "MARKDOWN_END",
    "check_markdown_target",
    "generated_block",
    "markdown_block",
    "markdown_source",
    "print_tables",
    "read_json",
    "section_table",
    "write_json",
    "write_markdown",
]

#: Sections measured as calls per second at one or more concurrency levels.
PER_CALL = ("overhead", "failure", "open_breaker", "idempotency")


def _num(value: float, digits: int = 0) -> str:
    if value != value:
        return "-"
    if abs(value) >= 1000 and digits == 0:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def measured_text(value: object) -> str:
    """A target's measured value in three significant digits, never in exponent form
    (a lateness of 1221 ms reads "1,221", not "1.22e+03"); "-" when not measured."""
    if not isinstance(value, int | float) or not math.isfinite(value):
        return "-"
    return _num(value) if abs(value) >= 100 else f"{value:.3g}"


def _ratio_text(
    ratios: Mapping[str, float], name: str, others: Sequence[str], key: str = ""
) -> str:
    parts = []
    for other in others:
        value = ratios.get(f"{name}/{other}{key}", math.nan)
        parts.append(f"{_num(value, 2)}x {other}")
    return ", ".join(parts)


def _per_call_table(section: Mapping[str, Any]) -> Any:
    rich_table = require("rich.table")
    table = rich_table.Table(title=section["title"], title_justify="left", show_lines=False)
    for column, justify in (
        ("contender", "left"),
        ("callers", "right"),
        ("calls/s", "right"),
        ("p50 µs", "right"),
        ("p99 µs", "right"),
        ("throughput ratio (paired) vs", "left"),
    ):
        table.add_column(column, justify=justify)
    # Figures some sections derive per contender (see their notes), as extra columns.
    derived = [
        (key, header)
        for key, header in (
            ("vs_success_path", "vs own success path"),
            ("cost_vs_plain", "cost vs plain call"),
        )
        if any(key in s for s in section["series"])
    ]
    for _key, header in derived:
        table.add_column(header, justify="right")
    names = list(section["contenders"])
    for s in section["series"]:
        for i, name in enumerate(names):
            run = s["runs"][name]
            median = run["median"]
            extra = ""
            if run["errors"]:
                extra = " [errors: " + ", ".join(f"{k} {v}" for k, v in run["errors"].items()) + "]"
            cells = [
                _num(s[key][name], 2) + "x" if name in s.get(key, {}) else ""
                for key, _header in derived
            ]
            table.add_row(
                run["label"],
                str(s["concurrency"]),
                _num(median["calls_per_s"]),
                _num(median["p50_us"], 1),
                _num(median["p99_us"], 1),
                _ratio_text(s["ratios"], name, [n for n in names if n != name]) + extra,
                *cells,
                end_section=i == len(names) - 1,
            )
    return table


def _scale_table(section: Mapping[str, Any]) -> Any:
    rich_table = require("rich.table")
    table = rich_table.Table(title=section["title"], title_justify="left")
    for column in (
        "contender",
        "wall s",
        "peak RSS +MB",
        "set-up s",
        "wall ratio vs",
        "RSS ratio vs",
    ):
        table.add_column(
            column, justify="left" if "vs" in column or column == "contender" else "right"
        )
    names = list(section["contenders"])
    for name in names:
        run = section["runs"][name]
        others = [n for n in names if n != name]
        table.add_row(
            run["label"],
            _num(run["median"]["wall_s"], 2),
            _num(run["median"]["peak_rss_increase_mb"], 0),
            _num(run["median"]["setup_s"], 2),
            _ratio_text(section["ratios"], name, others, ":wall_s"),
            _ratio_text(section["ratios"], name, others, ":peak_rss_increase_mb"),
        )
    return table


def _timers_table(section: Mapping[str, Any]) -> Any:
    rich_table = require("rich.table")
    table = rich_table.Table(title=section["title"], title_justify="left")
    for column in (
        "contender",
        "p50 ms",
        "p99 ms",
        "max ms",
        "from call start p99 ms",
        "p99 ratio vs",
    ):
        table.add_column(
            column, justify="left" if column in ("contender", "p99 ratio vs") else "right"
        )
    names = list(section["contenders"])
    for name in names:
        run = section["runs"][name]
        median = run["median"]
        table.add_row(
            run["label"],
            _num(median["p50_ms"], 1),
            _num(median["p99_ms"], 1),
            _num(median["max_ms"], 1),
            _num(median["e2e_p99_ms"], 1),
            _ratio_text(section["ratios"], name, [n for n in names if n != name]),
        )
    return table


def _actors_table(section: Mapping[str, Any]) -> Any:
    rich_table = require("rich.table")
    table = rich_table.Table(title=section["title"], title_justify="left")
    for column in ("contender", "spawn µs", "RSS B/actor", "heap B/actor", "ratio"):
        table.add_column(column, justify="left" if column in ("contender", "ratio") else "right")
    for name, run in section["runs"].items():
        median = run["median"]
        ratio = ""
        if name == "toolvisor":
            r = section["ratios"]
            ratio = (
                f"spawn {_num(r['toolvisor/trio:spawn_us'], 2)}x, RSS "
                f"{_num(r['toolvisor/trio:rss_bytes'], 2)}x, heap "
                f"{_num(r['toolvisor/trio:traced_bytes'], 2)}x the bare task"
            )
        table.add_row(
            run["label"],
            _num(median["spawn_us"], 1),
            _num(median["rss_bytes"]),
            _num(median["traced_bytes"]),
            ratio,
        )
    return table


def _targets_table(targets: Sequence[Mapping[str, Any]]) -> Any:
    rich_table = require("rich.table")
    table = rich_table.Table(title="Targets", title_justify="left")
    for column in ("target", "value", "", "threshold", "result", "detail"):
        table.add_column(column)
    for t in targets:
        met = t["met"]
        result = "[green]met[/]" if met else ("not measured" if met is None else "[red]NOT MET[/]")
        table.add_row(
            t["text"],
            _num(t["value"], 2),
            t["op"],
            _num(t["threshold"], 2),
            result,
            t.get("detail", ""),
        )
    return table


def section_table(name: str, section: Mapping[str, Any]) -> Any:
    """The rich table of section ``name`` (its notes name only columns of this table)."""
    if name in PER_CALL:
        return _per_call_table(section)
    if name == "scale":
        return _scale_table(section)
    if name == "timers":
        return _timers_table(section)
    if name == "actors":
        return _actors_table(section)
    raise KeyError(f"no table for section {name!r}")


def print_tables(report: Mapping[str, Any], console: Any) -> None:
    """Print one table per section, then the targets."""
    sections = report["sections"]
    for name, section in sections.items():
        console.print(section_table(name, section))
        for note in section.get("notes", ()):
            console.print(f"  [dim]- {note}[/]", highlight=False)
        if "policies" in section:
            console.print(f"  [dim]- policies: {section['policies']}[/]", highlight=False)
        console.print()
    console.print(_targets_table(report["targets"]))
    machine = report["machine"]
    console.print(
        f"[dim]{machine['cpu_model']} ({machine['cpu_usable']} usable CPUs), "
        f"Python {machine['python']}, {machine['platform']}; load average at start "
        f"{machine['load_average_start']}, at end {machine.get('load_average_end')}[/]",
        highlight=False,
    )


def write_json(report: Mapping[str, Any], path: Path) -> None:
    """Write the report (every round's raw figures included)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(report, indent=1, allow_nan=True, default=str)
    path.write_text(text + "\n", encoding="utf-8")


def read_json(path: Path) -> dict[str, Any]:
    """A report written by :func:`write_json` (ValueError if the file is not one)."""
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"cannot read {path}: {exc}") from None
    if not isinstance(report, dict) or report.get("schema") != "toolvisor-bench/1":
        raise ValueError(f"{path} is not a toolvisor bench report (schema toolvisor-bench/1)")
    return report


#: The lines around the generated Markdown: :func:`write_markdown` replaces what is between
#: them, and the first names the JSON the table comes from.
MARKDOWN_BEGIN = "<!-- benchmark table: generated from {source} by toolvisor bench; do not edit -->"
MARKDOWN_END = "<!-- end of benchmark table -->"
_BEGIN_RE = re.compile(
    r"^<!-- benchmark table: generated from (\S+) by toolvisor bench; .*-->$", re.M
)


def _x(value: object, digits: int = 2) -> str:
    if value is None:  # the section has no such contender
        return ""
    if not isinstance(value, int | float) or not math.isfinite(value):
        return "-"
    return f"{value:.{digits}f}x"


def _ms(value: object) -> str:
    if not isinstance(value, int | float) or not math.isfinite(value):
        return "-"
    return f"{value:.0f} ms" if value >= 10 else f"{value:.1f} ms"


def _callers(c: int) -> str:
    return f"{c} caller{'s' * (c != 1)}"


def _median_of(section: Mapping[str, Any], contender: str, key: str) -> float:
    run = section.get("runs", {}).get(contender)
    return float(run["median"].get(key, math.nan)) if run else math.nan


def _figure_rows(sections: Mapping[str, Any]) -> list[tuple[str, str, str, str]]:
    """(what, toolvisor's figure, ratio vs asyncio + tenacity + aiobreaker, ratio vs bare trio)."""
    rows: list[tuple[str, str, str, str]] = []
    for name, what in (("overhead", "per-call overhead"), ("failure", "failure path (30 % fail)")):
        for s in sections.get(name, {}).get("series", ()):
            ratios = s["ratios"]
            rows.append(
                (
                    f"{what}, {_callers(s['concurrency'])}",
                    f"{_num(_median_of(s, 'toolvisor', 'calls_per_s'))} calls/s",
                    _x(ratios.get("toolvisor/asyncio")),
                    _x(ratios.get("toolvisor/trio")),
                )
            )
    for s in sections.get("open_breaker", {}).get("series", ()):
        ratios = s["ratios"]
        rows.append(
            (
                f"open breaker, {_callers(s['concurrency'])}",
                f"rejections {_x(ratios.get('tv_open/tv_ok'))} its successful calls/s",
                f"{_x(ratios.get('tv_open/aio_open'))} aiobreaker's rejections/s",
                "",
            )
        )
    for s in sections.get("idempotency", {}).get("series", ()):
        ratios, cost = s["ratios"], s.get("cost_vs_plain", {})
        rows.append(
            (
                f"idempotency (MemoryStore), {_callers(s['concurrency'])}",
                f"cache hit {_x(ratios.get('memory_hit/plain'))} a plain call's throughput; "
                f"first execution {_x(cost.get('memory_first'))} its cost",
                "",
                "",
            )
        )
    timers = sections.get("timers")
    if timers:
        ratios = timers["ratios"]
        rows.append(
            (
                f"{timers['calls']:,} concurrent {timers['timeout_s']:g} s timeouts: p99 lateness",
                _ms(_median_of(timers, "toolvisor", "p99_ms")),
                f"{_x(ratios.get('toolvisor/asyncio'))} "
                f"(asyncio.timeout: {_ms(_median_of(timers, 'asyncio', 'p99_ms'))})",
                f"{_x(ratios.get('toolvisor/trio'))} "
                f"(fail_after: {_ms(_median_of(timers, 'trio', 'p99_ms'))})",
            )
        )
    scale = sections.get("scale")
    if scale:
        ratios = scale["ratios"]

        def both(other: str) -> str:
            wall = ratios.get(f"toolvisor/{other}:wall_s")
            rss = ratios.get(f"toolvisor/{other}:peak_rss_increase_mb")
            return f"{_x(wall)} / {_x(rss)}"

        rows.append(
            (
                f"{scale['calls']:,} concurrent calls over {scale['tools']:,} actors "
                f"({scale['sleep_s']:g} s tool): wall time / peak RSS increase",
                f"{_median_of(scale, 'toolvisor', 'wall_s'):.1f} s / "
                f"{_num(_median_of(scale, 'toolvisor', 'peak_rss_increase_mb'))} MB",
                both("asyncio"),
                both("trio"),
            )
        )
    actors = sections.get("actors")
    if actors:
        ratios = actors["ratios"]
        rows.append(
            (
                "an idle tool actor's memory: heap / RSS",
                f"{_num(_median_of(actors, 'toolvisor', 'traced_bytes'))} B / "
                f"{_num(_median_of(actors, 'toolvisor', 'rss_bytes'))} B",
                "",
                f"{_x(ratios.get('toolvisor/trio:traced_bytes'))} / "
                f"{_x(ratios.get('toolvisor/trio:rss_bytes'))} a blocked task",
            )
        )
    return rows


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def markdown_block(report: Mapping[str, Any], source: str) -> str:
    """The README's performance tables for ``report``, read from ``source`` (a JSON path).

    Two tables: toolvisor's figure in each section with its paired ratios against
    asyncio + tenacity + aiobreaker and bare trio, then every target of the run with its
    verdict. Between the :data:`MARKDOWN_BEGIN` and :data:`MARKDOWN_END` lines.
    """
    cfg = report.get("config", {})
    machine = report["machine"]
    commit = str(machine.get("git_commit") or "unknown")
    started = str(report.get("started_at", "?")).replace("T", " ").replace("+00:00", " UTC")
    load_start = (machine.get("load_average_start") or ["?"])[0]
    load_end = (machine.get("load_average_end") or ["?"])[0]
    lines = [
        MARKDOWN_BEGIN.format(source=source),
        f"{'A quick (`--quick`)' if report.get('quick') else 'A full'} run, `{source}`, started "
        f"{started}: {cfg.get('rounds', '?')} alternated rounds per per-call figure, "
        f"{cfg.get('timer_rounds', '?')} for timers, {cfg.get('scale_rounds', '?')} for scale, "
        f"{cfg.get('actors_rounds', '?')} for actors; {machine['cpu_model']}, "
        f"{machine['cpu_usable']} usable CPUs, Python {machine['python']}, commit "
        f"`{commit[:12]}`; load average {load_start} at the start, {load_end} at the end. "
        "Ratios are toolvisor's figure over the other's, paired by round: above 1 is better "
        "for throughput, below 1 for times and memory.",
        "",
        "| what | toolvisor | vs asyncio + tenacity + aiobreaker | vs bare trio |",
        "|---|---|---|---|",
    ]
    lines += ["| " + " | ".join(map(_cell, row)) + " |" for row in _figure_rows(report["sections"])]
    lines += ["", "| target | measured | result |", "|---|---|---|"]
    for t in report.get("targets", ()):
        met = t["met"]
        result = "met" if met is True else ("**NOT MET**" if met is False else "not measured")
        lines.append(f"| {_cell(t['text'])} | {measured_text(t['value'])} | {result} |")
    lines.append(MARKDOWN_END)
    return "\n".join(lines) + "\n"


def markdown_source(text: str) -> str | None:
    """The JSON path named by the generated block in ``text``, or None if it has none."""
    found = _BEGIN_RE.search(text)
    return found.group(1) if found else None


def generated_block(text: str) -> str | None:
    """The generated block of ``text`` (both marker lines included), or None."""
    found = _BEGIN_RE.search(text)
    if not found:
        return None
    end = text.find(MARKDOWN_END, found.start())
    if end < 0:
        return None
    return text[found.start() : end + len(MARKDOWN_END)] + "\n"


def write_markdown(path: Path, block: str) -> None:
    """Put ``block`` in ``path``: in place of its generated block, or as a new file.

    Raises ValueError for an existing file without a generated block (it is not
    overwritten: the block goes where its marker lines are).
    """
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(block, encoding="utf-8")
        return
    text = path.read_text(encoding="utf-8")
    old = generated_block(text)
    if old is None:
        raise ValueError(
            f"{path} has no generated benchmark table to replace (its first line starts "
            f"'<!-- benchmark table: generated from', its last is {MARKDOWN_END!r})"
        )
    path.write_text(text.replace(old, block, 1), encoding="utf-8")


def check_markdown_target(path: Path) -> None:
    """Raise ValueError now if :func:`write_markdown` would refuse ``path`` later."""
    if path.exists() and generated_block(path.read_text(encoding="utf-8")) is None:
        write_markdown(path, "")
