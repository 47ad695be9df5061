"""The demo's two views: a rich live table, or plain log lines (no terminal needed)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol, TextIO

import trio

from ..actors.stats import ToolStats
from .report import DemoReport, ToolSummary, Tracker

if TYPE_CHECKING:
    from rich.console import Console, RenderableType

    from ..supervisor import Supervisor
    from .tools import DemoTool

__all__ = ["LiveView", "PlainView", "View", "plain_summary"]

_STATE_STYLE = {"closed": "green", "open": "bold red", "half_open": "yellow"}

SUMMARY_COLUMNS = (
    "tool",
    "calls",
    "successes",
    "failures",
    "rejected",
    "retries",
    "timeouts",
    "cache_hits",
    "transitions",
    "breaker",
    "backend_attempts",
    "p50_ms",
    "p99_ms",
)


class View(Protocol):
    """What the demo needs from a view."""

    async def run(self, sup: Supervisor, tools: Sequence[DemoTool], tracker: Tracker) -> None:
        """Show the progress until cancelled."""

    def close(self) -> None:
        """Stop showing progress (before the summary)."""

    def intro(self, lines: Sequence[str]) -> None:
        """Print the lines that come before the progress."""

    def summary(self, report: DemoReport) -> None:
        """Print the final summary."""


def _row(s: ToolSummary) -> list[str]:
    return [
        s.tool,
        str(s.calls),
        str(s.successes),
        str(s.failures),
        str(s.rejected),
        str(s.retries),
        str(s.timeouts),
        str(s.cache_hits),
        str(s.breaker_transitions),
        s.breaker_state,
        str(s.backend_attempts),
        f"{s.latency_p50_s * 1000:.0f}",
        f"{s.latency_p99_s * 1000:.0f}",
    ]


def _closing_lines(report: DemoReport) -> list[str]:
    p = report.payments
    lines = [
        "check: calls = successes + failures + rejected + cancelled for every tool: "
        + ("yes" if all(t.consistent for t in report.tools) else "NO"),
        f"payments: {len(p.sent)} transaction ids sent in {p.sends} calls; "
        f"{len(p.charged_now)} charged by the gateway now; "
        f"{len(p.from_store)} answered from the store in {p.from_store_sends} calls "
        "(charged by an earlier run); "
        f"{p.duplicate_hits} resends answered from the cache; "
        f"{len(p.failed)} failed (not stored: a later run charges them); "
        f"double charges: {p.double_charges}",
    ]
    for t in report.tools:
        if t.errors:
            listed = ", ".join(f"{name} {n}" for name, n in sorted(t.errors.items()))
            lines.append(f"errors of {t.tool}: {listed}")
    lines.append(f"idempotency store: {report.db_path}")
    lines.append(
        f"ran {report.elapsed_s:.1f} s (seed {report.seed}); run it again with the same "
        "--db to see the stored payments answered without charging"
    )
    return lines


def plain_summary(report: DemoReport) -> str:
    """The summary as aligned plain text (also what ``--plain`` prints)."""
    rows = [list(SUMMARY_COLUMNS), *(_row(t) for t in report.tools)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(SUMMARY_COLUMNS))]
    table = [
        "  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in rows
    ]
    return "\n".join(["summary", *table, *_closing_lines(report)])


def _status(stats: ToolStats, tracker: Tracker, backend: str) -> str:
    return (
        f"calls={stats.calls} ok={stats.successes} failed={stats.failures} "
        f"rejected={stats.rejected} retries={stats.retries} timeouts={stats.timeouts} "
        f"cache_hits={stats.cache_hits} breaker={stats.breaker_state} "
        f"in_flight={stats.in_flight} backend={backend}"
    )


class PlainView:
    """Log lines: breaker transitions and back-end phases as they happen, status each second."""

    def __init__(self, out: TextIO, *, every_s: float = 1.0) -> None:
        self.out = out
        self.every_s = every_s

    def _print(self, line: str) -> None:
        print(line, file=self.out, flush=True)

    def intro(self, lines: Sequence[str]) -> None:
        for line in lines:
            self._print(line)

    async def run(self, sup: Supervisor, tools: Sequence[DemoTool], tracker: Tracker) -> None:
        shown = 0
        phases = {t.spec.tool_name: "normal" for t in tools}
        next_status = trio.current_time() + self.every_s
        while True:
            await trio.sleep(0.1)
            for t in tools:
                phase = t.backend_state()
                if phase != phases[t.spec.tool_name]:
                    phases[t.spec.tool_name] = phase
                    tracker.note(t.spec.tool_name, f"back end: {phase}")
            for at, tool, text in tracker.printed[shown:]:
                self._print(f"[{at:5.1f}s] {tool:<16} {text}")
            shown = len(tracker.printed)
            if trio.current_time() >= next_status:
                next_status += self.every_s
                at = trio.current_time() - tracker.t0
                for t in tools:
                    name = t.spec.tool_name
                    self._print(
                        f"[{at:5.1f}s] {name:<16} "
                        + _status(sup.stats(name), tracker, t.backend_state())
                    )

    def close(self) -> None:
        pass

    def summary(self, report: DemoReport) -> None:
        self._print(plain_summary(report))


class LiveView:
    """A rich live table per tool, with the latest events underneath."""

    def __init__(self, console: Console) -> None:
        from rich.live import Live

        self.console = console
        self.live = Live(console=console, auto_refresh=False, transient=False)
        self._last: Callable[[], RenderableType] | None = None

    def intro(self, lines: Sequence[str]) -> None:
        for line in lines:
            self.console.print(line, highlight=False)

    def _render(
        self, sup: Supervisor, tools: Sequence[DemoTool], tracker: Tracker
    ) -> RenderableType:
        from rich.console import Group
        from rich.table import Table

        elapsed = trio.current_time() - tracker.t0
        table = Table(title=f"toolvisor demo: {elapsed:4.1f} s", title_justify="left")
        for column in (
            "tool",
            "back end",
            "calls",
            "ok",
            "failed",
            "rejected",
            "retries",
            "timeouts",
            "cache hits",
            "breaker",
            "in flight",
            "p50 ms",
            "p99 ms",
        ):
            table.add_column(column, justify="left" if column in ("tool", "back end") else "right")
        for t in tools:
            s = sup.stats(t.spec.tool_name)
            backend = t.backend_state()
            style = _STATE_STYLE.get(s.breaker_state, "")
            table.add_row(
                f"{s.tool}\n[dim]{t.policies}[/dim]",
                backend if backend == "normal" else f"[red]{backend}[/red]",
                str(s.calls),
                f"[green]{s.successes}[/green]",
                f"[red]{s.failures}[/red]" if s.failures else "0",
                f"[yellow]{s.rejected}[/yellow]" if s.rejected else "0",
                str(s.retries),
                str(s.timeouts),
                f"[cyan]{s.cache_hits}[/cyan]",
                f"[{style}]{s.breaker_state}[/{style}] ({tracker.transitions[s.tool]})",
                str(s.in_flight),
                f"{s.latency_p50_s * 1000:.0f}",
                f"{s.latency_p99_s * 1000:.0f}",
            )
        log = Table(title="latest events", title_justify="left", show_header=False, box=None)
        for at, tool, text in tracker.recent:
            log.add_row(f"{at:5.1f}s", tool, text)
        return Group(table, log)

    async def run(self, sup: Supervisor, tools: Sequence[DemoTool], tracker: Tracker) -> None:
        phases = {t.spec.tool_name: "normal" for t in tools}
        self._last = lambda: self._render(sup, tools, tracker)
        self.live.start()
        while True:
            for t in tools:
                phase = t.backend_state()
                if phase != phases[t.spec.tool_name]:
                    phases[t.spec.tool_name] = phase
                    tracker.note(t.spec.tool_name, f"back end: {phase}")
            self.live.update(self._render(sup, tools, tracker), refresh=True)
            await trio.sleep(0.25)

    def close(self) -> None:
        if self._last is not None:
            self.live.update(self._last(), refresh=True)  # the final numbers stay on screen
        self.live.stop()

    def summary(self, report: DemoReport) -> None:
        from rich.table import Table

        table = Table(title="summary", title_justify="left")
        for column in SUMMARY_COLUMNS:
            table.add_column(column, justify="left" if column == "tool" else "right")
        for t in report.tools:
            table.add_row(*_row(t))
        self.console.print(table)
        for line in _closing_lines(report):
            self.console.print(line, highlight=False)
