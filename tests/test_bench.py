"""The benchmark suite runs end to end (--quick) and writes a complete report.

Checks the JSON's structure only, never timings (benchmarks are not timed assertions).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

for _module in ("tenacity", "aiobreaker", "psutil", "matplotlib"):
    pytest.importorskip(_module, reason="needs the bench extra: pip install -e '.[bench]'")

from toolvisor._bench import main  # noqa: E402 - after the skips
from toolvisor._bench._config import SECTIONS  # noqa: E402

pytestmark = pytest.mark.slow  # a whole benchmark run: .ci/run includes it


def _finite_ratios(ratios: dict[str, float]) -> None:
    assert ratios
    for key, value in ratios.items():
        assert isinstance(value, float), key
        assert math.isfinite(value) and value > 0, (key, value)


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    tmp = tmp_path_factory.mktemp("bench")
    code = main(["--quick", "--plain", "--json", str(tmp / "r.json"), "--plot", str(tmp / "p.png")])
    assert code == 0
    return json.loads((tmp / "r.json").read_text()), tmp / "p.png"


def test_every_section_present(report: tuple[dict, Path]) -> None:
    data, _ = report
    assert data["schema"] == "toolvisor-bench/1"
    assert data["quick"] is True
    assert set(data["sections"]) == set(SECTIONS)


def test_machine_described(report: tuple[dict, Path]) -> None:
    machine = report[0]["machine"]
    for key in ("platform", "python", "cpu_count", "cpu_model", "packages"):
        assert machine[key], key
    assert machine["packages"]["trio"]
    assert machine["packages"]["toolvisor"]


def test_per_call_sections_have_rounds_medians_and_ratios(report: tuple[dict, Path]) -> None:
    sections = report[0]["sections"]
    for name in ("overhead", "failure", "open_breaker", "idempotency"):
        section = sections[name]
        assert section["series"], name
        for series in section["series"]:
            assert set(series["runs"]) == set(section["contenders"])
            for run in series["runs"].values():
                assert run["rounds"]  # every round's raw figures, not just the median
                for key in ("calls_per_s", "p50_us", "p99_us"):
                    assert run["median"][key] > 0
                for figures in run["rounds"]:
                    assert figures["calls"] > 0
            _finite_ratios(series["ratios"])
    assert {"toolvisor", "executor", "trio", "asyncio"} <= set(sections["overhead"]["contenders"])
    assert {"plain", "memory_hit", "memory_first", "sqlite_hit", "sqlite_first"} <= set(
        sections["idempotency"]["contenders"]
    )


def test_scale_timers_actors(report: tuple[dict, Path]) -> None:
    sections = report[0]["sections"]
    scale = sections["scale"]
    assert set(scale["runs"]) == {"toolvisor", "asyncio", "trio"}
    for run in scale["runs"].values():
        assert run["median"]["wall_s"] > 0
        assert run["median"]["peak_rss_increase_mb"] > 0
    _finite_ratios(scale["ratios"])
    timers = sections["timers"]
    assert set(timers["runs"]) == {"toolvisor", "trio", "asyncio"}
    for run in timers["runs"].values():
        assert run["rounds"][0]["timeouts"] == timers["calls"]
    _finite_ratios(timers["ratios"])
    actors = sections["actors"]
    for run in actors["runs"].values():
        assert run["median"]["traced_bytes"] > 0
    _finite_ratios(actors["ratios"])


def test_targets_evaluated(report: tuple[dict, Path]) -> None:
    data = report[0]
    ids = {t["id"] for t in data["targets"]}
    assert {
        "overhead_vs_asyncio_c1",
        "overhead_vs_trio_c1",
        "overhead_vs_asyncio_c100",
        "overhead_vs_trio_c100",
        "scale_wall",
        "scale_rss",
        "open_breaker_c1",
        "timers_p99",
        "idempotency_hit_c1",
        "idempotency_first_c1",
        "actors_memory_traced",
    } <= ids
    for target in data["targets"]:
        assert target["met"] in (True, False), target
    summary = data["summary"]
    assert summary["met"] + summary["not_met"] == len(data["targets"])


def test_plot_written(report: tuple[dict, Path]) -> None:
    plot = report[1]
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert report[0]["plot"] == str(plot)


def test_plot_has_a_panel_per_section_drawn_from_the_medians(report: tuple[dict, Path]) -> None:
    from test_bench_report import check_plot  # the same check as on the saved full runs

    check_plot(report[0])


def _figure_keys(section: dict) -> set[str]:
    """The names of the figures in a section's JSON (medians, derived per-series figures)."""
    keys: set[str] = set()
    for series in section.get("series", []):
        keys |= set(series) - {"runs", "ratios", "concurrency"}
        for run in series["runs"].values():
            keys |= set(run["median"])
    for run in section.get("runs", {}).values():
        keys |= set(run["median"])
    return keys


def test_notes_name_only_columns_the_table_shows(report: tuple[dict, Path]) -> None:
    """A note quotes a column ("p99 ratio vs": ...) only if the section's table has it."""
    import re

    from toolvisor._bench._report import section_table

    for name, section in report[0]["sections"].items():
        headers = {str(c.header) for c in section_table(name, section).columns}
        json_keys = {k for k in _figure_keys(section) if "_" in k}
        for note in section.get("notes", ()):
            for quoted in re.findall(r'"([^"]+)"', note):
                assert quoted in headers, (name, quoted, sorted(headers))
            # The JSON's own keys (vs_success_path, e2e_p99_ms, ...) are not columns: a note
            # must not send the reader of the table looking for them, nor for a glob of them.
            for key in json_keys:
                assert not re.search(rf"\b{re.escape(key)}\b", note), (name, key, note)
            assert not re.search(r"\b[a-z0-9]+_\*", note), (name, note)


def test_paired_ratios_agree_both_ways(report: tuple[dict, Path]) -> None:
    sections = report[0]["sections"]
    for name in ("overhead", "failure", "open_breaker", "idempotency"):
        for series in sections[name]["series"]:
            ratios = series["ratios"]
            for key, value in ratios.items():
                a, b = key.split("/")
                assert value * ratios[f"{b}/{a}"] == pytest.approx(1.0), (name, key)
            for contender, cost in series.get("cost_vs_plain", {}).items():
                assert cost == pytest.approx(ratios[f"plain/{contender}"]), contender
