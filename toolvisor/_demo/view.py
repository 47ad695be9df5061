"""The demo's views: a rich live table laid out for the terminal, or plain log lines.

The live table picks a layout for the terminal's width:

* ``wide`` (about 150 columns and more): one row per tool, every column header a word;
* ``medium`` (about 120): one row per tool, short headers explained by a key under the
  table;
* ``narrow`` (down to :data:`MIN_WIDTH`): one column per tool, one row per figure;
* below :data:`MIN_WIDTH` the demo prints plain log lines instead (as with ``--plain``).

The widest layout whose table fits whole is taken (:func:`choose_layout`).

The policies of each tool are a legend under the table, and the event box keeps what tells
the story (breaker transitions, back-end phases, adaptive thresholds) while retries are
summarised per tool. Everything is rendered from a :class:`Snapshot`, so the layouts are
tested at fixed widths without running the demo.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Protocol, TextIO

import attrs
import trio

from .report import (
    PAYMENT_RESEND_S,
    PER_WORKER,
    DemoReport,
    ToolSummary,
    Tracker,
    percentile,
    plural,
)

if TYPE_CHECKING:
    from rich.console import Console, RenderableType
    from rich.table import Table

    from ..actors.stats import ToolStats
    from .tools import DemoTool

__all__ = [
    "MIN_WIDTH",
    "LiveView",
    "PlainView",
    "Snapshot",
    "StatsSource",
    "ToolRow",
    "View",
    "choose_layout",
    "layout_for",
    "plain_summary",
    "render_live",
    "render_summary",
    "snapshot",
]

MIN_WIDTH = 72

_STATE_STYLE = {"closed": "green", "open": "bold red", "half_open": "yellow"}


class StatsSource(Protocol):
    """Where the views read each tool's counters: a ``Supervisor``, or the caller's
    tallies of a fleet of workers."""

    def stats(self, tool: str) -> ToolStats:
        """The counters of ``tool`` now."""
        ...


@attrs.frozen
class ToolRow:
    """One tool's figures at a moment of the demo."""

    tool: str
    policies: str
    policies_short: str
    backend: str
    calls: int
    successes: int
    failures: int
    rejected: int
    retries: int
    timeouts: int
    cache_hits: int
    breaker: str
    breaker_since: float | None  # seconds into the demo of its last transition
    opens_after: int | None  # consecutive failures that open the breaker now
    in_flight: int
    p50_ms: float
    p99_ms: float
    concurrency_limit: int = 0  # the bulkhead's limit now (ToolStats.concurrency_limit)


@attrs.frozen
class Snapshot:
    """What the live view shows at one moment."""

    elapsed_s: float
    duration_s: float
    rows: tuple[ToolRow, ...]
    events: tuple[tuple[float, str, str], ...]  # the story so far, oldest first
    retries: Mapping[str, Mapping[str, int]]  # per tool: retries by the error that caused them


def snapshot(
    sup: StatsSource, tools: Sequence[DemoTool], tracker: Tracker, duration: float
) -> Snapshot:
    """The :class:`Snapshot` of the running demo."""
    rows = []
    for t in tools:
        name = t.spec.tool_name
        s = sup.stats(name)
        transitions = tracker.transitions.get(name, [])
        latencies = tracker.latencies.get(name, [])
        rows.append(
            ToolRow(
                tool=name,
                policies=t.policies,
                policies_short=t.policies_short,
                backend=t.backend_state(),
                calls=s.calls,
                successes=s.successes,
                failures=s.failures,
                rejected=s.rejected,
                retries=s.retries,
                timeouts=s.timeouts,
                cache_hits=s.cache_hits,
                breaker=str(s.breaker_state),
                breaker_since=transitions[-1].at if transitions else None,
                opens_after=t.opens_after(),
                in_flight=s.in_flight,
                p50_ms=percentile(latencies, 0.5) * 1000,
                p99_ms=percentile(latencies, 0.99) * 1000,
                concurrency_limit=s.concurrency_limit,
            )
        )
    return Snapshot(
        elapsed_s=tracker.elapsed(),
        duration_s=duration,
        rows=tuple(rows),
        events=tuple(tracker.recent),
        retries={k: dict(v) for k, v in tracker.retry_errors.items()},
    )


def layout_for(width: int) -> str:
    """``"plain"`` below :data:`MIN_WIDTH` columns, else ``"live"``."""
    return "plain" if width < MIN_WIDTH else "live"


# --------------------------------------------------------------------------- cells

# The per-tool figures: key, full header, short header (medium layout), its key text.
_FIGURES: tuple[tuple[str, str, str, str], ...] = (
    ("backend", "back end", "back end", ""),
    ("calls", "calls", "calls", ""),
    ("ok", "ok", "ok", "ok: succeeded"),
    ("failed", "failed", "fail", "fail: the tool ran and failed"),
    ("rejected", "rejected", "rej", "rej: refused, not run (breaker open)"),
    ("retries", "retries", "retry", "retry: attempts after the first"),
    ("timeouts", "timeouts", "t/o", "t/o: timeouts"),
    ("hits", "cache hits", "hits", "hits: answered by the idempotency cache, not run"),
    ("breaker", "breaker", "breaker", "breaker: its state and when it got there (s)"),
    ("since", "since", "since", ""),
    ("opens", "opens after", "opens", "opens: consecutive failures that open it now"),
    ("in_flight", "in flight", "now", "now: calls in flight"),
    ("limit", "limit", "limit", "limit: calls it may run at once now"),
    ("load", "now/limit", "in/lim", "in/lim: calls in flight / calls it may run at once"),
    ("p50", "p50 ms", "p50", "p50/p99: ms over every call, cache hits and failures included"),
    ("p99", "p99 ms", "p99", ""),
    ("latency", "p50/p99 ms", "p50/p99", ""),
)

# Which figures each layout shows (the narrow one must fit 24 rows).
_LAYOUT_FIGURES = {
    "wide": ("backend", "calls", "ok", "failed", "rejected", "retries", "timeouts", "hits",
             "breaker", "since", "opens", "load", "p50", "p99"),
    "medium": ("backend", "calls", "ok", "failed", "rejected", "retries", "timeouts", "hits",
               "breaker", "opens", "load", "p50", "p99"),
    "narrow": ("backend", "calls", "ok", "failed", "rejected", "retries", "timeouts", "hits",
               "breaker", "opens", "limit", "latency"),
}  # fmt: skip

# Row labels of the narrow layout, where there is room for words.
_NARROW_LABELS = {
    "breaker": "breaker, since",
    "p50": "p50 ms, all calls",
    "p99": "p99 ms, all calls",
    "latency": "p50/p99 ms, all",
    "limit": "concurrency limit",
}


def _cell(row: ToolRow, key: str, *, with_since: bool) -> str:
    if key == "backend":
        return row.backend if row.backend == "normal" else f"[red]{row.backend}[/red]"
    if key == "ok":
        return f"[green]{row.successes}[/green]"
    if key == "failed":
        return f"[red]{row.failures}[/red]" if row.failures else "0"
    if key == "rejected":
        return f"[yellow]{row.rejected}[/yellow]" if row.rejected else "0"
    if key == "hits":
        return f"[cyan]{row.cache_hits}[/cyan]"
    if key == "breaker":
        style = _STATE_STYLE.get(row.breaker, "")
        state = f"[{style}]{row.breaker}[/{style}]" if style else row.breaker
        if with_since and row.breaker_since is not None:
            state += f" {row.breaker_since:.1f} s"
        return state
    if key == "since":
        return "start" if row.breaker_since is None else f"{row.breaker_since:.1f} s"
    if key == "opens":
        return "-" if row.opens_after is None else str(row.opens_after)
    if key == "p50":
        return f"{row.p50_ms:.0f}"
    if key == "p99":
        return f"{row.p99_ms:.0f}"
    if key == "latency":
        return f"{row.p50_ms:.0f}/{row.p99_ms:.0f}"
    if key == "limit":
        return str(row.concurrency_limit)
    if key == "load":
        return f"{row.in_flight}/{row.concurrency_limit}"
    value: int = getattr(row, key)
    return str(value)


def _table(title: str) -> Table:
    from rich import box
    from rich.table import Table

    return Table(
        title=title,
        title_justify="left",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        collapse_padding=True,  # two spaces between columns, not three
    )


_HEADERS = {key: (full, short) for key, full, short, _k in _FIGURES}


def _by_tool(snap: Snapshot, layout: str) -> Table:
    keys = _LAYOUT_FIGURES[layout]
    with_since = "since" not in keys
    table = _table(_title(snap))
    table.add_column("tool", no_wrap=True)
    for key in keys:
        full, short = _HEADERS[key]
        header = short if layout == "medium" else full
        table.add_column(header, justify="left" if key == "backend" else "right", no_wrap=True)
    for row in snap.rows:
        table.add_row(row.tool, *(_cell(row, key, with_since=with_since) for key in keys))
    return table


def _by_figure(snap: Snapshot) -> Table:
    keys = _LAYOUT_FIGURES["narrow"]
    table = _table(_title(snap))
    table.add_column("", no_wrap=True)
    for row in snap.rows:
        table.add_column(row.tool, justify="right", no_wrap=True)
    for key in keys:
        label = _NARROW_LABELS.get(key, _HEADERS[key][0])
        table.add_row(label, *(_cell(row, key, with_since=True) for row in snap.rows))
    return table


def _title(snap: Snapshot) -> str:
    return f"toolvisor demo: {snap.elapsed_s:4.1f} s of {snap.duration_s:g} s"


def _legend(snap: Snapshot, layout: str) -> list[str]:
    if layout == "narrow":
        return [f"[dim]{row.tool}: {row.policies_short}[/dim]" for row in snap.rows]
    lines = [f"[dim]{row.tool}: {row.policies}[/dim]" for row in snap.rows]
    if layout == "medium":
        keys = _LAYOUT_FIGURES[layout]
        texts = [text for key, _f, _s, text in _FIGURES if text and key in keys]
        lines.append("[dim]key: " + "; ".join(texts) + "[/dim]")
    else:
        lines.append(
            "[dim]since: the breaker's last transition (s into the demo); opens after: "
            "consecutive failures that open it now; now/limit: calls in flight / calls it "
            "may run at once (the bulkhead, adaptive or fixed); "
            "p50/p99 ms: every call, cache hits and failures included[/dim]"
        )
    return lines


def _retry_line(snap: Snapshot, *, causes: bool) -> str:
    """The retries that ran so far per tool (``ToolStats.retries``), with, when there is
    room, the errors they were scheduled after (``RetryScheduled`` events: a retry the
    breaker then refused was scheduled but did not run)."""
    parts = []
    for row in snap.rows:
        by_error = snap.retries.get(row.tool, {})
        if not row.retries and not by_error:
            continue
        part = f"{row.tool} {row.retries}"
        if causes and by_error:
            ranked = sorted(by_error.items(), key=lambda x: -x[1])
            part += " (scheduled after " + ", ".join(f"{e} {n}" for e, n in ranked) + ")"
        parts.append(part)
    return "retries: " + (("; " if causes else ", ").join(parts) if parts else "none yet")


def choose_layout(snap: Snapshot, width: int, console: Console) -> tuple[str, Table]:
    """The widest layout whose table fits ``width`` whole: ``wide``, ``medium`` or ``narrow``.

    Decided on the figures themselves, so a long run whose counts grow a digit moves to a
    narrower layout instead of cutting a number.
    """
    for layout in ("wide", "medium"):
        table = _by_tool(snap, layout)
        unlimited = console.options.update(width=10_000)  # the width it needs, uncapped
        if console.measure(table, options=unlimited).maximum <= width:
            return layout, table
    return "narrow", _by_figure(snap)


def render_live(snap: Snapshot, width: int, height: int) -> RenderableType:
    """The live view of ``snap`` for a terminal of ``width`` x ``height``.

    The event box gets the lines left under the table and its legend (at least three),
    newest last, so breaker transitions and phase changes stay visible.
    """
    from rich.console import Console, Group
    from rich.text import Text

    measure = Console(width=width, height=height, file=io.StringIO(), color_system=None)
    layout, table = choose_layout(snap, width, measure)
    legend = [Text.from_markup(line) for line in _legend(snap, layout)]
    # 80x24: the retries on one line, without their causes (the summary has them all).
    retries = Text(_retry_line(snap, causes=layout != "narrow"))
    if layout == "narrow":
        retries.no_wrap = True
        retries.overflow = "ellipsis"
    head = Group(table, *legend, retries)
    used = _lines(measure, head, width)
    title = Text("latest events (s into the demo):", style="bold")
    # The newest events that fit under the head, one line under it all kept free; at
    # least the three newest, so a transition or a phase change is always on screen.
    shown: list[Text] = []
    for at, tool, text in reversed(snap.events):
        # One line each (the demo's texts fit 80 columns; a narrower terminal cuts them).
        line = Text(f"{at:5.1f}  {tool:<15} {text}", no_wrap=True, overflow="ellipsis")
        if len(shown) >= 3 and used + 1 + _lines(measure, Group(*shown, line), width) > height - 1:
            break
        shown.append(line)
    return Group(head, title, *reversed(shown))


def _lines(console: Console, renderable: RenderableType, width: int) -> int:
    return len(console.render_lines(renderable, console.options.update(width=width), pad=False))


# --------------------------------------------------------------------------- summary

# (label, value) of the summary's rows, one column per tool.
_SUMMARY_ROWS: tuple[tuple[str, str], ...] = (
    ("calls", "calls"),
    ("successes", "successes"),
    ("failures (ran)", "failures"),
    ("rejected (not run)", "rejected"),
    ("cancelled", "cancelled"),
    ("retries", "retries"),
    ("timeouts", "timeouts"),
    ("cache hits", "cache_hits"),
    ("breaker transitions", "transitions"),
    ("breaker at the end", "breaker"),
    ("  in that state", "since"),
    ("back-end attempts", "backend_attempts"),
    ("concurrency limit (end)", "concurrency_limit"),
    ("p50 ms (every call)", "p50"),
    ("p99 ms (every call)", "p99"),
)


def _summary_cell(t: ToolSummary, key: str) -> str:
    if t.breaker_state == PER_WORKER and key in ("transitions", "since"):
        return "-"  # each worker's own, not seen by the caller
    if key == "transitions":
        return str(len(t.breaker_transitions))
    if key == "breaker":
        return t.breaker_state
    if key == "since":
        return t.breaker_since
    if key == "p50":
        return f"{t.latency_p50_s * 1000:.0f}"
    if key == "p99":
        return f"{t.latency_p99_s * 1000:.0f}"
    return str(getattr(t, key))


def _summary_grid(report: DemoReport) -> list[list[str]]:
    header = ["summary", *(t.tool for t in report.tools)]
    rows = [[label, *(_summary_cell(t, key) for t in report.tools)] for label, key in _SUMMARY_ROWS]
    return [header, *rows]


def _closing_lines(report: DemoReport) -> list[str]:
    p = report.payments
    consistent = all(t.consistent for t in report.tools)
    lines = []
    lines.append(
        "check: calls = successes + failures + rejected + cancelled for every tool: "
        + ("yes" if consistent else "NO")
    )
    if report.workers:
        answered = ", ".join(f"{w} {n}" for w, n in report.workers)
        total = sum(n for _, n in report.workers) + report.unanswered
        lines.append(
            f"calls answered by each worker: {answered}; without a reply: {report.unanswered} "
            f"(of {plural(total, 'call')})"
        )
        lines.append(
            "breakers: each worker process keeps its own for each tool (the caller sees "
            "their refusals as CircuitOpenError)"
        )
    for t in () if report.workers else report.tools:
        if t.breaker_transitions:
            story = ", ".join(str(x) for x in t.breaker_transitions[-6:])
            more = "" if len(t.breaker_transitions) <= 6 else "..., "
            lines.append(f"breaker of {t.tool}: {more}{story}")
        else:
            lines.append(f"breaker of {t.tool}: {t.breaker_state} throughout")
    for t in report.tools:
        if t.limit_changes:
            story = ", ".join(f"{n} at {at:.1f} s" for at, n in t.limit_changes[-8:])
            more = "" if len(t.limit_changes) <= 8 else "..., "
            lines.append(
                f"adaptive concurrency limit of {t.tool}: {more}{story} "
                f"({t.concurrency_limit} at the end)"
            )
    lines.append(
        f"payments: {plural(len(p.sent), 'transaction id')} in {plural(p.sends, 'answered call')}; "
        f"{len(p.charged_now)} charged by the gateway in this run"
        f"{' (as the replies show)' if report.workers else ''}; "
        f"{plural(p.duplicate_hits, 'resend')} answered from the cache without a charge; "
        f"{len(p.from_store)} answered from the store (charged by an earlier run) in "
        f"{plural(p.from_store_sends, 'call')}; "
        f"double charges: {p.double_charges}"
    )
    failed_ever = len(p.recovered) + len(p.failed)
    if failed_ever:
        lines.append(
            "failed payments store nothing, so a later call with the same id runs the charge "
            f"again: of {plural(failed_ever, 'id')} that failed, {len(p.recovered)} "
            f"{'was' if len(p.recovered) == 1 else 'were'} charged by a later send in this "
            f"run (the client sends a failed payment again {PAYMENT_RESEND_S:g} s later) and "
            f"{len(p.failed)} never succeeded"
        )
    else:
        lines.append("failed payments: none")
    for t in report.tools:
        if t.errors:
            listed = ", ".join(f"{name} {n}" for name, n in sorted(t.errors.items()))
            lines.append(f"errors of {t.tool}: {listed}")
        if t.retry_errors:
            listed = ", ".join(f"{name} {n}" for name, n in sorted(t.retry_errors.items()))
            lines.append(
                f"retries of {t.tool} scheduled, by the error before them (a retry the "
                f"breaker refused was scheduled but did not run): {listed}"
            )
    if report.events_dropped:
        lines.append(f"events dropped by the supervisor: {report.events_dropped}")
    lines.append(f"idempotency store: {report.db_path}")
    again = "--redis" if report.workers else "--db"
    lines.append(
        f"ran {report.elapsed_s:.1f} s (seed {report.seed}); run it again with the same "
        f"{again} to see the stored payments answered without charging"
    )
    return lines


def plain_summary(report: DemoReport) -> str:
    """The summary as aligned plain text: one column per tool (fits 80 columns)."""
    grid = _summary_grid(report)
    widths = [max(len(r[i]) for r in grid) for i in range(len(grid[0]))]
    table = [
        "  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(r, widths, strict=True))
        ).rstrip()
        for r in grid
    ]
    return "\n".join([*_interrupted(report), *table, *_closing_lines(report)])


def _interrupted(report: DemoReport) -> list[str]:
    if not report.interrupted:
        return []
    return [f"interrupted (Ctrl-C) after {report.elapsed_s:.1f} s: the summary so far"]


def render_summary(report: DemoReport) -> RenderableType:
    """The summary for a terminal: one column per tool, then the closing lines."""
    from rich.console import Group
    from rich.text import Text

    grid = _summary_grid(report)
    table = _table("summary")
    table.add_column("", no_wrap=True)
    for tool in grid[0][1:]:
        table.add_column(tool, justify="right", no_wrap=True)
    for row in grid[1:]:
        table.add_row(*row)
    return Group(
        *(Text(line, style="bold") for line in _interrupted(report)),
        table,
        *(Text(line) for line in _closing_lines(report)),
    )


# --------------------------------------------------------------------------- views


class View(Protocol):
    """What the demo needs from a view."""

    async def run(
        self, sup: StatsSource, tools: Sequence[DemoTool], tracker: Tracker, duration: float
    ) -> None:
        """Show the progress until cancelled."""

    def close(self) -> None:
        """Stop showing progress (before the summary)."""

    def intro(self, lines: Sequence[str]) -> None:
        """Print the lines that come before the progress."""

    def summary(self, report: DemoReport) -> None:
        """Print the final summary."""


def _status(row: ToolRow) -> str:
    return (
        f"calls={row.calls} ok={row.successes} failed={row.failures} "
        f"rejected={row.rejected} retries={row.retries} timeouts={row.timeouts} "
        f"cache_hits={row.cache_hits} breaker={row.breaker} in_flight={row.in_flight} "
        f"limit={row.concurrency_limit} backend={row.backend}"
    )


class PlainView:
    """Log lines: the story (transitions, phases) as it happens, a status line each second."""

    def __init__(self, out: TextIO, *, every_s: float = 1.0) -> None:
        self.out = out
        self.every_s = every_s

    def _print(self, line: str) -> None:
        print(line, file=self.out, flush=True)

    def intro(self, lines: Sequence[str]) -> None:
        for line in lines:
            self._print(line)

    async def run(
        self, sup: StatsSource, tools: Sequence[DemoTool], tracker: Tracker, duration: float
    ) -> None:
        shown = 0
        next_status = trio.current_time() + self.every_s
        while True:
            await trio.sleep(0.1)
            for at, tool, text in tracker.printed[shown:]:
                self._print(f"[{at:5.1f}s] {tool:<16} {text}")
            shown = len(tracker.printed)
            if trio.current_time() >= next_status:
                next_status += self.every_s
                snap = snapshot(sup, tools, tracker, duration)
                for row in snap.rows:
                    self._print(f"[{snap.elapsed_s:5.1f}s] {row.tool:<16} " + _status(row))

    def close(self) -> None:
        pass

    def summary(self, report: DemoReport) -> None:
        self._print(plain_summary(report))


class LiveView:
    """A rich live table laid out for the terminal (see :func:`render_live`)."""

    def __init__(self, console: Console) -> None:
        from rich.live import Live

        self.console = console
        self.live = Live(console=console, auto_refresh=False, transient=False)
        self._take: Callable[[], Snapshot] | None = None

    def intro(self, lines: Sequence[str]) -> None:
        for line in lines:
            self.console.print(line, highlight=False)

    def _show(self, snap: Snapshot) -> None:
        size = self.console.size  # read each time: the terminal may be resized
        self.live.update(render_live(snap, size.width, size.height), refresh=True)

    async def run(
        self, sup: StatsSource, tools: Sequence[DemoTool], tracker: Tracker, duration: float
    ) -> None:
        self._take = lambda: snapshot(sup, tools, tracker, duration)
        self.live.start()
        while True:
            self._show(self._take())
            await trio.sleep(0.25)

    def close(self) -> None:
        if self._take is not None:
            self._show(self._take())  # the final numbers stay on screen
        self.live.stop()

    def summary(self, report: DemoReport) -> None:
        self.console.print(render_summary(report), highlight=False)
