"""The end-of-run tables (rich), the JSON file and the plot (matplotlib, Agg)."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ._deps import require

__all__ = ["print_tables", "section_table", "write_json", "write_plot"]

#: Sections measured as calls per second at one or more concurrency levels.
PER_CALL = ("overhead", "failure", "open_breaker", "idempotency")


def _num(value: float, digits: int = 0) -> str:
    if value != value:
        return "-"
    if abs(value) >= 1000 and digits == 0:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


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


def write_plot(report: Mapping[str, Any], path: Path) -> bool:
    """Throughput against concurrency for each contender of each per-call section.

    Returns False (and writes nothing) when no section has more than one concurrency.
    """
    matplotlib = require("matplotlib")
    matplotlib.use("Agg")
    plt = require("matplotlib.pyplot")
    panels = [
        (name, report["sections"][name])
        for name in PER_CALL
        if name in report["sections"] and len(report["sections"][name]["series"]) > 1
    ]
    if not panels:
        return False
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.8), squeeze=False)
    for ax, (_name, section) in zip(axes[0], panels, strict=True):
        levels = [s["concurrency"] for s in section["series"]]
        for contender, label in section["contenders"].items():
            values = [s["runs"][contender]["median"]["calls_per_s"] for s in section["series"]]
            ax.plot(levels, values, marker="o", label=label)
        ax.set_xscale("log")
        ax.set_xticks(levels, [str(c) for c in levels])
        ax.set_xlabel("concurrent callers")
        ax.set_ylabel("calls / s (median of rounds)")
        ax.set_title(section["title"], fontsize=8.5)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    machine = report["machine"]
    fig.suptitle(
        f"toolvisor benchmarks{' (--quick)' if report['quick'] else ''}: "
        f"{machine['cpu_model']}, {machine['cpu_usable']} CPUs, Python {machine['python']}",
        fontsize=9,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return True
