"""``toolvisor demo --plot``: the figure's data is every call's end, by outcome."""

from __future__ import annotations

import io
from collections import Counter
from pathlib import Path

import pytest
import trio

from toolvisor import MemoryStore
from toolvisor._demo import DemoOptions, DemoReport, run_demo
from toolvisor._demo.plot import bins, breaker_spans, write_plot
from toolvisor._demo.report import Transition
from toolvisor.cli import main


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> DemoReport:
    options = DemoOptions(
        duration=15.0, seed=7, db=tmp_path_factory.mktemp("demo") / "d.db", plain=True
    )
    return run_demo(
        options,
        out=io.StringIO(),
        clock=trio.testing.MockClock(autojump_threshold=0),
        store=MemoryStore(),
    )


def test_the_outcomes_are_every_counted_end_of_every_tool(report: DemoReport) -> None:
    assert report.events_dropped == 0
    counts = Counter((tool, word) for _, tool, word in report.outcomes)
    for summary in report.tools:
        assert counts[summary.tool, "succeeded"] == summary.successes, summary.tool
        assert counts[summary.tool, "failed"] == summary.failures, summary.tool
        assert counts[summary.tool, "rejected"] == summary.rejected, summary.tool
    assert all(0 <= at <= report.elapsed_s for at, _, _ in report.outcomes)


def test_the_bins_keep_every_call(report: DemoReport) -> None:
    width = 0.5
    for summary in report.tools:
        starts, rates = bins(report.outcomes, summary.tool, report.elapsed_s, width)
        assert starts[0] == 0 and starts[1] == width
        assert round(sum(rates["failed"]) * width) == summary.failures
        assert round(sum(sum(r) for r in rates.values()) * width) == (
            summary.successes + summary.failures + summary.rejected
        )


def test_breaker_spans_are_the_time_not_closed() -> None:
    transitions = [
        Transition(2.0, "closed", "open"),
        Transition(3.5, "open", "half_open"),
        Transition(3.6, "half_open", "closed"),
        Transition(9.0, "closed", "open"),
    ]
    assert breaker_spans(transitions, 12.0) == [
        (2.0, 3.5, "open"),
        (3.5, 3.6, "half_open"),
        (9.0, 12.0, "open"),
    ]
    assert breaker_spans([], 12.0) == []


def test_the_figure_is_written(report: DemoReport, tmp_path: Path) -> None:
    path = tmp_path / "out" / "demo.png"
    write_plot(report, path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_size > 20_000  # three panels, not an empty canvas


@pytest.mark.slow  # a real one-second demo run
def test_the_command_writes_the_plot_and_names_an_unwritable_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = str(tmp_path / "demo.db")
    plot = tmp_path / "demo.png"
    assert main(["demo", "--duration", "1", "--db", db, "--plot", str(plot)]) == 0
    assert plot.read_bytes()[:4] == b"\x89PNG"
    assert f"plot written to {plot}" in capsys.readouterr().err
    blocked = tmp_path / "file"
    blocked.write_text("")
    code = main(["demo", "--duration", "1", "--db", db, "--plot", str(blocked / "x.png")])
    assert code != 0
    assert f"--plot {blocked / 'x.png'}: cannot write it" in capsys.readouterr().err
