"""``toolvisor demo`` on screen: readable at 80x24, 120x40 and 160 columns; Ctrl-C.

The layouts are rendered with rich's Console at fixed sizes, from every frame of a real
demo run on trio's MockClock and from a worst case (four-digit counts, the longest
phase names and breaker states), and checked for complete tool names and headers.
"""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import trio
import trio.testing
from rich.console import Console

from toolvisor import MemoryStore
from toolvisor._demo import DemoOptions, DemoReport, run_demo
from toolvisor._demo.report import Tracker, plural
from toolvisor._demo.view import (
    _FIGURES,
    _LAYOUT_FIGURES,
    _NARROW_LABELS,
    _SUMMARY_ROWS,
    MIN_WIDTH,
    PlainView,
    Snapshot,
    ToolRow,
    choose_layout,
    plain_summary,
    render_live,
    render_summary,
    snapshot,
)

TOOLS = ("process_payment", "search_catalog", "record_order")
SIZES = [(80, 24), (120, 40), (160, 40)]
EXPECTED_LAYOUT = {80: "narrow", 120: "medium", 160: "wide"}


class _Recorder(PlainView):
    """The plain view, keeping a snapshot of every frame the live view would show."""

    def __init__(self) -> None:
        super().__init__(io.StringIO())
        self.frames: list[Snapshot] = []

    async def run(self, sup, tools, tracker: Tracker, duration: float) -> None:  # type: ignore[no-untyped-def]
        while True:
            self.frames.append(snapshot(sup, tools, tracker, duration))
            await trio.sleep(0.25)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Snapshot], DemoReport]:
    """Every frame of the default 15 s demo (seed 7), on trio's MockClock."""
    recorder = _Recorder()
    report = run_demo(
        DemoOptions(duration=15.0, seed=7, db=tmp_path_factory.mktemp("demo") / "demo.db"),
        clock=trio.testing.MockClock(autojump_threshold=0),
        store=MemoryStore(),
        view=recorder,
    )
    assert len(recorder.frames) > 50
    return recorder.frames, report


def worst_case() -> Snapshot:
    """The widest cells the demo shows in a default run, with counts a digit longer."""
    pay = "idempotent (SQLite); Standard(5, 1.5 s); Exponential(3)"
    search = "Adaptive(8 to 3); Exponential(4); RateLimit(6/s, burst 4)"
    orders = "idempotent; Standard(3, 1 s); Fixed(2, 50 ms); AIMD(4 in 1-8)"
    figures = (
        (1234, 1100, 34, 100, 120, 0, 300, "half_open", 10.9, 5, 12, 43.0, 444.0),
        (999, 900, 50, 49, 2600, 100, 0, "open", 9.7, 3, 4, 86.0, 1605.0),
        (68, 51, 3, 14, 2, 0, 10, "closed", None, 3, 0, 7.0, 81.0),
    )
    rows = tuple(
        ToolRow(tool, "words " * 30, short, backend, *f, concurrency_limit=limit)  # type: ignore[arg-type]
        for tool, short, backend, f, limit in zip(
            TOOLS,
            (pay, search, orders),
            ("outage (503)", "slow (overloaded)", "failover"),
            figures,
            (16, 16, 8),  # the demo's bulkheads at their widest (orders: max_limit)
            strict=True,
        )
    )
    story = (
        *((i * 0.5, TOOLS[i % 3], "adaptive: opens after 10 failures (was 20; 45% errors)")
          for i in range(40)),
        (20.0, "record_order", "back end: failover"),
        (20.5, "search_catalog", "breaker open -> half_open"),
    )  # fmt: skip
    retries = {"search_catalog": {"RateLimitError": 1900, "ToolTimeoutError": 700}}
    return Snapshot(12.3, 15.0, rows, story, retries)


def _screen(snap: Snapshot, width: int, height: int) -> list[str]:
    console = Console(
        width=width, height=height, record=True, color_system=None, file=io.StringIO()
    )
    console.print(render_live(snap, width, height))
    return console.export_text().splitlines()


def _check_screen(snap: Snapshot, lines: list[str], width: int, height: int) -> None:
    layout, _table = choose_layout(snap, width, Console(width=width, file=io.StringIO()))
    assert layout == EXPECTED_LAYOUT[width]
    assert all(len(line) <= width for line in lines)
    assert len(lines) <= height - 1, "the live view fits the terminal, one line to spare"
    table_end = next(i for i, line in enumerate(lines) if line.startswith(f"{TOOLS[0]}:"))
    table = lines[:table_end]
    assert not any("…" in line for line in table), "\n".join(table)  # nothing cut
    header = table[1].split()
    if layout == "narrow":
        assert header == list(TOOLS)  # every tool name complete, as a column header
        keys = _LAYOUT_FIGURES["narrow"]
        labels = {key: _NARROW_LABELS.get(key, full) for key, full, _s, _t in _FIGURES}
        body = table[3:]
        assert [labels[k] for k in keys] == [re.split(r"\s{2,}", line)[0] for line in body]
    else:
        keys = _LAYOUT_FIGURES[layout]
        want = [
            full if layout == "wide" else short for key, full, short, _t in _FIGURES if key in keys
        ]
        assert " ".join(header) == " ".join(["tool", *want])  # every header complete
        assert [line.split()[0] for line in table[3:6]] == list(TOOLS)
    # The legend: every tool's policies, and (medium) the key of every short header.
    legend = "\n".join(lines[table_end:])
    for tool in TOOLS:
        assert f"{tool}: " in legend
    if layout == "medium":
        for key, _full, short, text in _FIGURES:
            if text and key in keys:
                assert text in " ".join(legend.split()), short
    # The event box ends with the newest events: a phase change and a transition here.
    if snap.events:
        newest = snap.events[-1]
        assert lines[-1].split()[1:] == [newest[1], *newest[2].split()]


@pytest.mark.parametrize(("width", "height"), SIZES)
def test_the_worst_case_is_complete(width: int, height: int) -> None:
    snap = worst_case()
    lines = _screen(snap, width, height)
    _check_screen(snap, lines, width, height)
    assert "20.0  record_order    back end: failover" in lines[-2]


@pytest.mark.parametrize(("width", "height"), SIZES)
def test_every_frame_of_a_run_is_complete(
    recorded: tuple[list[Snapshot], DemoReport], width: int, height: int
) -> None:
    frames, _report = recorded
    for snap in frames[::8]:
        _check_screen(snap, _screen(snap, width, height), width, height)


def test_retries_do_not_flood_the_event_box(recorded: tuple[list[Snapshot], DemoReport]) -> None:
    frames, report = recorded
    last = frames[-1]
    assert sum(t.retries for t in report.tools) > 10
    assert not any("retry" in text for _at, _tool, text in last.events)  # summarised ...
    line = next(line for line in _screen(last, 80, 24) if line.startswith("retries: "))
    for tool in TOOLS:  # ... on one line (a tool without retries is left out)
        retries = report.tool(tool).retries
        assert (f"{tool} {retries}" in line) if retries else (tool not in line)
    # Every breaker transition of the run reached the story.
    transitions = [e for e in last.events if e[2].startswith("breaker ")]
    assert len(transitions) == sum(len(t.breaker_transitions) for t in report.tools)


@pytest.mark.parametrize("width", [80, 120, 160])
def test_the_summary_is_complete_at_every_width(
    recorded: tuple[list[Snapshot], DemoReport], width: int
) -> None:
    _frames, report = recorded
    console = Console(width=width, record=True, color_system=None, file=io.StringIO())
    console.print(render_summary(report))
    lines = console.export_text().splitlines()
    assert all(len(line) <= width for line in lines)
    top = next(i for i, line in enumerate(lines) if line.strip() == "summary")  # the title
    assert lines[top + 1].split() == list(TOOLS)  # every tool name complete
    body = lines[top + 3 : top + 3 + len(_SUMMARY_ROWS)]
    assert [re.split(r"\s{2,}", line.strip())[0] for line in body] == [
        label.strip() for label, _key in _SUMMARY_ROWS
    ]
    assert not any("…" in line for line in lines)


def test_the_plain_summary_fits_80_columns(recorded: tuple[list[Snapshot], DemoReport]) -> None:
    _frames, report = recorded
    table = plain_summary(report).split("\ncheck:")[0].splitlines()
    assert max(len(line) for line in table) <= 80


def test_plurals() -> None:
    assert plural(1, "call") == "1 call"
    assert plural(2, "call") == "2 calls"
    assert plural(0, "id") == "0 ids"


class _Terminal(io.StringIO):
    """A stream that says it is a terminal (rich sizes it from COLUMNS and LINES)."""

    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(("columns", "live"), [(60, False), (100, True)])
def test_below_the_minimum_width_the_demo_prints_plain_lines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, columns: int, live: bool
) -> None:
    monkeypatch.setenv("COLUMNS", str(columns))
    monkeypatch.setenv("LINES", "30")
    out = _Terminal()
    run_demo(
        DemoOptions(duration=3.0, db=tmp_path / "demo.db"),
        out=out,
        clock=trio.testing.MockClock(autojump_threshold=0),
        store=MemoryStore(),
    )
    text = out.getvalue()
    said = f"(a {columns}-column terminal: plain log lines; the live table needs {MIN_WIDTH}"
    assert (said in text) is not live
    assert ("latest events (s into the demo):" in text) is live
    assert "check: calls = successes + failures + rejected + cancelled for every tool: yes" in text


# --------------------------------------------------------------------------- Ctrl-C


def _wait_for(proc: subprocess.Popen[str], what: str, lines: list[str], timeout: float) -> None:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if what in line:
            return
    raise AssertionError(f"{what!r} not printed: {''.join(lines)}")


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child process")
def test_ctrl_c_prints_one_line_and_the_summary_so_far_and_exits_130(tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    argv = [sys.executable, "-m", "toolvisor", "demo", "--plain", "--duration", "30"]
    with subprocess.Popen(
        [*argv, "--db", str(tmp_path / "demo.db")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    ) as proc:
        lines: list[str] = []
        _wait_for(proc, "calls=", lines, timeout=30)  # the first status line: it is running
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    text = "".join(lines) + out
    assert proc.returncode == 130, (text, err)
    assert "Traceback" not in err and "KeyboardInterrupt" not in err + text
    said = [line for line in text.splitlines() if "interrupted" in line]
    assert len(said) == 1 and said[0].startswith("interrupted (Ctrl-C) after ")
    after = text.split(said[0], 1)[1]
    assert after.lstrip().startswith("summary ")  # the summary so far follows
    assert "check: calls = successes + failures + rejected + cancelled for every tool: yes" in after


def test_docs_show_the_80_column_screen(recorded: tuple[list[Snapshot], DemoReport]) -> None:
    """docs/cli.md has the 80x24 screen 10 s into the default run, as rendered today.

    Figures may move with the core's counting; the layout (every label, header and line)
    must be the one shown. On a mismatch, the message is the current screen.
    """
    frames, _report = recorded
    frame = next(f for f in frames if f.elapsed_s >= 10.0)
    screen = [line.rstrip() for line in _screen(frame, 80, 24)]
    text = (Path(__file__).resolve().parent.parent / "docs" / "cli.md").read_text()
    documented = text.split("10 s into the default run (`toolvisor demo`, seed 7):\n\n```text\n")[1]
    documented = documented.split("\n```", 1)[0]

    def shape(lines: list[str]) -> list[list[str]]:
        return [re.sub(r"\d+", "#", line).split() for line in lines]

    assert shape(documented.splitlines()) == shape(screen), "\n".join(screen)
    assert max(len(line) for line in documented.splitlines()) <= 80
