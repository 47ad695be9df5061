"""The benchmark report: its plot (one panel per section, drawn from the JSON's medians,
with the targets), and the README's tables, generated from the committed JSON they name.

Runs on saved JSON reports of real full runs (benchmarks/results/), so no benchmark runs
here; tests/test_bench.py checks the same plot on a fresh --quick run.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("matplotlib", reason="needs the bench extra: pip install -e '.[bench]'")
pytest.importorskip("rich", reason="needs the bench extra: pip install -e '.[bench]'")

from toolvisor._bench import main
from toolvisor._bench._plot import BARS, build_figure
from toolvisor._bench._report import (
    generated_block,
    markdown_block,
    markdown_source,
    read_json,
)

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
FULL_RUNS = sorted(RESULTS.glob("*-full.json"))
OLDEST = FULL_RUNS[0]

#: Independently of the plot's matching: the line each target of the suite is drawn as,
#: by id prefix: (the reference contender, the figure, the factor), or (None, key, value)
#: for an absolute target. "first execution <= 2x a plain call's cost" is the first
#: execution's throughput >= 0.5x the plain call's.
EXPECTED_LINES: dict[str, tuple[str | None, str, float]] = {
    "overhead_vs_asyncio_c": ("asyncio", "calls_per_s", 1.0),
    "overhead_vs_trio_c": ("trio", "calls_per_s", 0.6),
    "open_breaker_c": ("tv_ok", "calls_per_s", 2.0),
    "idempotency_hit_c": ("plain", "calls_per_s", 1.0),
    "idempotency_first_c": ("plain", "calls_per_s", 0.5),
    "timers_p99": (None, "p99_ms", 10.0),
    "scale_wall": ("asyncio", "wall_s", 1.0),
    "scale_rss": ("asyncio", "peak_rss_increase_mb", 1.0),
    "actors_memory_traced": ("trio", "traced_bytes", 3.0),
    "actors_memory_rss": ("trio", "rss_bytes", 3.0),
}


def _artists(fig: Any) -> Iterator[tuple[str, Any]]:
    for ax in fig.axes:
        for artist in [*ax.get_lines(), *ax.patches]:
            gid = artist.get_gid()
            if gid:
                yield gid, artist


def check_plot(report: Mapping[str, Any]) -> None:
    """One panel per section; every contender's medians plotted as they are in the JSON."""
    fig = build_figure(report)
    assert fig is not None
    sections = report["sections"]
    panels = [ax.get_label() for ax in fig.axes if ax.get_label()]
    assert sorted(panels) == sorted(sections)  # one labelled axes per section, no more
    artists = dict(_artists(fig))
    for name, section in sections.items():
        if "series" in section:
            levels = [s["concurrency"] for s in section["series"]]
            for contender in section["contenders"]:
                line = artists.pop(f"{name}|{contender}|calls_per_s")
                assert list(line.get_xdata()) == levels
                assert list(line.get_ydata()) == [
                    s["runs"][contender]["median"]["calls_per_s"] for s in section["series"]
                ]
        else:
            for contender, run in section["runs"].items():
                for key, _label, _side in BARS[name]:
                    bar = artists.pop(f"{name}|{contender}|{key}")
                    assert bar.get_height() == run["median"][key], (name, contender, key)
    assert [g for g in artists if not g.startswith("target|")] == []  # nothing else plotted


@pytest.fixture(scope="module")
def oldest() -> dict[str, Any]:
    return read_json(OLDEST)


@pytest.mark.parametrize("path", FULL_RUNS, ids=lambda p: p.name)
def test_the_plot_of_a_full_run_has_every_section_and_its_medians(path: Path) -> None:
    report = read_json(path)
    assert len(report["sections"]) == 7
    check_plot(report)


def _expected_y(report: Mapping[str, Any], target: Mapping[str, Any]) -> dict[int | None, float]:
    """The line's height for ``target`` (by concurrency, None for a bar panel)."""
    prefix = next(p for p in EXPECTED_LINES if target["id"].startswith(p))
    reference, key, factor = EXPECTED_LINES[prefix]
    section = report["sections"][target["section"]]
    if reference is None:
        return {None: factor}
    if "series" not in section:
        return {None: factor * section["runs"][reference]["median"][key]}
    c = int(target["id"].rsplit("_c", 1)[1])
    (series,) = [s for s in section["series"] if s["concurrency"] == c]
    return {c: factor * series["runs"][reference]["median"][key]}


def test_every_target_is_drawn_as_its_threshold_times_its_reference(
    oldest: dict[str, Any],
) -> None:
    fig = build_figure(oldest)
    lines = {gid: line for gid, line in _artists(fig) if gid.startswith("target|")}
    drawn: set[str] = set()
    for target in oldest["targets"]:
        (gid,) = [g for g in lines if target["id"] in g.removeprefix("target|").split(",")]
        line = lines[gid]
        drawn.add(target["id"])
        ((c, y),) = _expected_y(oldest, target).items()
        if c is None:  # a bar panel: a level segment over the figure's group of bars
            assert list(line.get_ydata()) == pytest.approx([y, y])
        else:
            heights = dict(zip(line.get_xdata(), line.get_ydata(), strict=True))
            assert heights[c] == pytest.approx(y)
        verdict = "met" if target["met"] else "NOT MET"
        assert line.get_label().endswith(f"({verdict})"), line.get_label()
    assert drawn == {t["id"] for t in oldest["targets"]}


def test_a_target_that_matches_no_figure_is_written_in_its_panel(
    oldest: dict[str, Any],
) -> None:
    report = copy.deepcopy(oldest)
    report["targets"].append(
        {
            "id": "timers_made_up",
            "section": "timers",
            "text": "a made-up target",
            "value": 123.456,
            "op": "<=",
            "threshold": 1.0,
            "met": False,
            "detail": "",
        }
    )
    fig = build_figure(report)
    (timers,) = [ax for ax in fig.axes if ax.get_label() == "timers"]
    texts = " ".join(t.get_text() for t in timers.texts)
    assert "a made-up target: 123 <= 1, NOT MET" in texts
    assert not any("timers_made_up" in gid for gid, _a in _artists(fig))


def test_the_readme_tables_are_generated_from_the_json_they_name() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    source = markdown_source(readme)
    assert source is not None, "README.md has no generated benchmark tables"
    report = read_json(ROOT / source)
    assert report["quick"] is False  # a full run, not a smoke run
    assert generated_block(readme) == markdown_block(report, source)
    # The README's own words around the tables name the same run and its plot.
    plot = source.removesuffix(".json") + ".png"
    assert (ROOT / plot).exists()
    assert plot in readme


def test_the_tables_follow_the_json(oldest: dict[str, Any]) -> None:
    report = copy.deepcopy(oldest)
    (c1,) = [s for s in report["sections"]["overhead"]["series"] if s["concurrency"] == 1]
    c1["ratios"]["toolvisor/asyncio"] = 9.876
    report["targets"][0]["met"] = False
    del report["sections"]["actors"]
    block = markdown_block(report, "x.json")
    assert "| per-call overhead, 1 caller | 38,334 calls/s | 9.88x | 0.72x |" in block
    first = report["targets"][0]["text"]
    assert f"| {first} | 2.37 | **NOT MET** |" in block
    assert "idle tool actor" not in block  # a section not run has no row
    assert "from x.json by toolvisor bench" in block.splitlines()[0]


@pytest.mark.parametrize(
    ("value", "shown"),
    [(1221.18, "1,221"), (12345.6, "12,346"), (0.5664, "0.566"), (2.0, "2"), (float("nan"), "-")],
)
def test_a_target_shows_its_value_in_plain_digits(
    oldest: dict[str, Any], value: float, shown: str
) -> None:
    report = copy.deepcopy(oldest)
    target = report["targets"][0]
    target["value"] = value
    block = markdown_block(report, "x.json")
    assert f"| {target['text']} | {shown} |" in block


def test_cli_writes_the_tables_and_the_plot_from_a_saved_run(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    assert main(["--from-json", str(OLDEST), "--markdown", str(page)]) == 0
    block = markdown_block(read_json(OLDEST), str(OLDEST))
    assert page.read_text() == block
    # Written again into a page around it: only the block is replaced.
    page.write_text("# Title\n\nbefore\n\n" + block.replace("2.37x", "0.01x") + "\nafter\n")
    assert (
        main(
            ["--from-json", str(OLDEST), "--markdown", str(page), "--plot", str(tmp_path / "p.png")]
        )
        == 0
    )
    assert page.read_text() == "# Title\n\nbefore\n\n" + block + "\nafter\n"
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_prints_the_tables_with_a_dash(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--from-json", str(OLDEST), "--markdown", "-"]) == 0
    out = capsys.readouterr().out
    assert markdown_block(read_json(OLDEST), str(OLDEST)) in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--markdown", "t.md"], "add --json PATH"),
        (["--from-json", str(OLDEST), "--quick"], "--quick does not apply"),
        (["--from-json", str(OLDEST), "--json", "x.json", "--rounds", "3"], "do not apply"),
        (["--from-json", "missing.json"], "cannot read missing.json"),
        (["--from-json", str(ROOT / "pyproject.toml")], "cannot read"),
    ],
)
def test_cli_refuses_options_that_do_not_fit(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(args) == 2
    assert message in capsys.readouterr().err


def test_cli_does_not_overwrite_a_page_without_generated_tables(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    page = tmp_path / "notes.md"
    page.write_text("my notes\n")
    assert main(["--from-json", str(OLDEST), "--markdown", str(page)]) == 2
    assert "has no generated benchmark table" in capsys.readouterr().err
    assert page.read_text() == "my notes\n"


def test_a_report_of_another_schema_is_refused(tmp_path: Path) -> None:
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"schema": "something-else"}))
    with pytest.raises(ValueError, match="not a toolvisor bench report"):
        read_json(other)
