"""The suite's plot: one panel per section of a report, its targets drawn in (matplotlib, Agg).

Per-call sections (a ``series`` of concurrency levels) are lines of calls/s against
concurrent callers, one per contender. Sections measured once per contender (timers,
scale, actors) are grouped bars, one group per figure, one bar per contender; figures
in other units than the panel's first go on a right-hand axis.

A target is drawn where the panel shows what it compares. Targets carry no pointer to
the figures they judge, only their value, so :func:`place_target` finds the figure of
the section whose value *is* the target's (the ratio or the median it was computed
from): a ratio target ``a/b op t`` becomes the line ``t x b`` that ``a`` has to stay
above (``>=``) or below (``<=``), drawn in ``b``'s colour; an absolute one (a median
``op t``) the line at ``t``. The line is the threshold times ``b``'s median; the verdict
in its label is the target's own (a paired ratio, so a point can sit a little on the
wrong side of its line while the paired ratio meets the target). A target that matches no
figure is written in its panel as text, so none goes missing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._deps import require
from ._report import measured_text

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["BARS", "Placed", "build_figure", "place_target", "write_plot"]

#: The figures a section measured once per contender is drawn with: (median key, group
#: label, axis). "right" figures are in other units and get the panel's right-hand axis.
BARS: dict[str, tuple[tuple[str, str, str], ...]] = {
    "timers": (
        ("p50_ms", "p50", "left"),
        ("p99_ms", "p99", "left"),
        ("max_ms", "max", "left"),
        ("e2e_p99_ms", "p99 from the\ncaller's start", "left"),
    ),
    "scale": (
        ("wall_s", "wall s", "left"),
        ("peak_rss_increase_mb", "peak RSS +MB", "right"),
    ),
    "actors": (
        ("rss_bytes", "RSS B/actor", "left"),
        ("traced_bytes", "heap B/actor", "left"),
        ("spawn_us", "spawn µs", "right"),
    ),
}

#: The axis labels of the bar panels: (left, right).
_AXES = {
    "timers": ("lateness ms (median of rounds; log)", ""),
    "scale": ("wall s (median of rounds)", "peak RSS increase MB (median)"),
    "actors": ("bytes per actor (median of rounds)", "spawn µs per actor (median)"),
}

#: The figure a section's ratios compare when their key names none (``a/b``, not ``a/b:key``).
_RATIO_KEY = {"timers": "p99_ms"}
_PER_CALL_KEY = "calls_per_s"
_FLIP = {">=": "<=", "<=": ">=", ">": "<", "<": ">"}


@dataclass(frozen=True)
class Placed:
    """Where a target goes in its section's panel.

    The subject's ``key`` figure (at ``concurrency`` for a per-call section) must be
    ``op`` the line: ``factor`` times the reference's figure, or ``factor`` itself when
    ``reference`` is None (an absolute target).
    """

    subject: str
    reference: str | None
    key: str
    op: str
    factor: float
    concurrency: int | None


def _scopes(section: Mapping[str, Any]) -> list[tuple[int | None, Mapping[str, Any]]]:
    if "series" in section:
        return [(s["concurrency"], s) for s in section["series"]]
    return [(None, section)]


def place_target(name: str, section: Mapping[str, Any], target: Mapping[str, Any]) -> Placed | None:
    """The figures of ``section`` that ``target`` was computed from, or None if none match.

    Tried in this order in each series (or the section): ``cost_vs_plain`` (time per call
    relative to ``plain``, so ``plain/x op t`` is ``x`` op-flipped ``plain / t``), the
    paired ratios, then the medians (an absolute target).
    """
    value = target["value"]
    if not isinstance(value, int | float) or not math.isfinite(value):
        return None
    op, threshold = target["op"], float(target["threshold"])

    def same(x: object) -> bool:
        return isinstance(x, int | float) and math.isclose(x, value, rel_tol=1e-9)

    default_key = _PER_CALL_KEY if "series" in section else _RATIO_KEY.get(name)
    for concurrency, scope in _scopes(section):
        for subject, cost in scope.get("cost_vs_plain", {}).items():
            if same(cost) and threshold > 0:
                return Placed(
                    subject, "plain", _PER_CALL_KEY, _FLIP[op], 1 / threshold, concurrency
                )
        for ratio_key, ratio in scope.get("ratios", {}).items():
            pair, _, key = ratio_key.partition(":")
            subject, _, reference = pair.partition("/")
            key = key or default_key or ""
            if same(ratio) and key:
                return Placed(subject, reference, key, op, threshold, concurrency)
        for contender, run in scope.get("runs", {}).items():
            for key, median in run["median"].items():
                if same(median):
                    return Placed(contender, None, key, op, threshold, concurrency)
    return None


def _median(section: Mapping[str, Any], contender: str, key: str, concurrency: int | None) -> float:
    for c, scope in _scopes(section):
        if c == concurrency:
            return float(scope["runs"][contender]["median"][key])
    raise KeyError(concurrency)


def _word(met: object) -> str:
    return "met" if met is True else ("NOT MET" if met is False else "not measured")


def _verdict(group: Sequence[tuple[Placed, Mapping[str, Any]]]) -> str:
    words = {_word(t["met"]) for _p, t in group}
    if len(words) == 1:
        return words.pop()
    return "; ".join(f"{_word(t['met'])} at {p.concurrency}" for p, t in group)


def _target_label(placed: Placed, labels: Mapping[str, str], key_label: str, verdict: str) -> str:
    subject = labels.get(placed.subject, placed.subject)
    if placed.reference is None:
        return f"target: {subject} {key_label} {placed.op} {placed.factor:g} ({verdict})"
    reference = labels.get(placed.reference, placed.reference)
    return f"target: {subject} {key_label} {placed.op} {placed.factor:g}x {reference} ({verdict})"


def _colours(section: Mapping[str, Any]) -> dict[str, str]:
    return {name: f"C{i}" for i, name in enumerate(section["contenders"])}


def _place_all(
    name: str, section: Mapping[str, Any], targets: Sequence[Mapping[str, Any]]
) -> tuple[dict[Placed, list[tuple[Placed, Mapping[str, Any]]]], list[Mapping[str, Any]]]:
    """The section's targets grouped by line (same comparison at several levels), and the rest."""
    groups: dict[Placed, list[tuple[Placed, Mapping[str, Any]]]] = {}
    unplaced: list[Mapping[str, Any]] = []
    for target in targets:
        placed = place_target(name, section, target)
        known = placed is not None and all(
            c in section["contenders"] for c in (placed.subject, placed.reference) if c
        )
        if placed is None or not known:
            unplaced.append(target)
            continue
        line = Placed(placed.subject, placed.reference, placed.key, placed.op, placed.factor, None)
        groups.setdefault(line, []).append((placed, target))
    return groups, unplaced


_DASHES = ("--", ":", "-.")


def _target_style(placed: Placed, colours: Mapping[str, str], n: int) -> dict[str, Any]:
    # In the subject's colour: the line is the floor (or ceiling) of that contender.
    return {
        "color": colours[placed.subject],
        "linestyle": _DASHES[n % len(_DASHES)],
        "linewidth": 1.2,
        # The marker points the way the subject has to be from the line.
        "marker": "^" if placed.op in (">=", ">") else "v",
        "markersize": 5,
    }


def _gid(targets: Sequence[tuple[Placed, Mapping[str, Any]]]) -> str:
    return "target|" + ",".join(t["id"] for _p, t in targets)


def _levels_panel(
    ax: Axes, name: str, section: Mapping[str, Any], targets: Sequence[Mapping[str, Any]]
) -> list[Mapping[str, Any]]:
    series = section["series"]
    levels = [s["concurrency"] for s in series]
    colours = _colours(section)
    labels = dict(section["contenders"])
    values: list[float] = []
    for contender, label in labels.items():
        ys = [float(s["runs"][contender]["median"][_PER_CALL_KEY]) for s in series]
        values += ys
        ax.plot(
            levels,
            ys,
            marker="o",
            color=colours[contender],
            label=label,
            gid=f"{name}|{contender}|{_PER_CALL_KEY}",
        )
    groups, unplaced = _place_all(name, section, targets)
    for n, (line, group) in enumerate(groups.items()):
        label = _target_label(line, labels, "calls/s", _verdict(group))
        if line.key != _PER_CALL_KEY:
            unplaced += [t for _p, t in group]
            continue
        if line.reference is None:
            ax.axhline(line.factor, label=label, gid=_gid(group), **_target_style(line, colours, n))
            continue
        xs = [p.concurrency for p, _t in group if p.concurrency is not None]
        ys = [line.factor * _median(section, line.reference, line.key, x) for x in xs]
        ax.plot(xs, ys, label=label, gid=_gid(group), **_target_style(line, colours, n))
    ax.set_xscale("log")
    ax.set_xticks(levels, [str(c) for c in levels])
    ax.minorticks_off()
    ax.set_xlabel("concurrent callers")
    positive = [v for v in values if v > 0]
    if positive and max(positive) > 20 * min(positive):
        ax.set_yscale("log")
        ax.set_ylabel("calls / s (median of rounds; log)")
    else:
        ax.set_ylim(bottom=0)
        ax.set_ylabel("calls / s (median of rounds)")
    return unplaced


def _bars_panel(
    ax: Axes, name: str, section: Mapping[str, Any], targets: Sequence[Mapping[str, Any]]
) -> list[Mapping[str, Any]]:
    runs = section["runs"]
    labels = dict(section["contenders"])
    colours = _colours(section)
    present = {k for run in runs.values() for k in run["median"]}
    spec = BARS.get(name) or tuple((k, k, "left") for k in sorted(present))
    metrics = [m for m in spec if m[0] in present]
    twin: Axes | None = None
    width = 0.8 / max(1, len(labels))
    where: dict[str, tuple[Axes, int, str]] = {}
    values: list[float] = []
    for g, (key, key_label, side) in enumerate(metrics):
        if side == "right" and twin is None:
            twin = ax.twinx()
        side_ax = twin if side == "right" and twin is not None else ax
        where[key] = (side_ax, g, key_label.replace("\n", " "))
        for i, (contender, label) in enumerate(labels.items()):
            median = runs[contender]["median"].get(key, math.nan)
            values.append(median)
            bars = side_ax.bar(
                [g - 0.4 + width * (i + 0.5)],
                [median],
                width,
                color=colours[contender],
                label=label if g == 0 else "_nolegend_",
            )
            bars.patches[0].set_gid(f"{name}|{contender}|{key}")
    groups, unplaced = _place_all(name, section, targets)
    lines: list[float] = []
    for n, (line, group) in enumerate(groups.items()):
        if line.key not in where:
            unplaced += [t for _p, t in group]
            continue
        side_ax, g, key_label = where[line.key]
        y = line.factor
        if line.reference is not None:
            y *= _median(section, line.reference, line.key, None)
        side_ax.plot(
            [g - 0.45, g + 0.45],
            [y, y],
            label=_target_label(line, labels, key_label, _verdict(group)),
            gid=_gid(group),
            **_target_style(line, colours, n),
        )
        lines.append(y)
    ax.set_xticks(range(len(metrics)), [m[1] for m in metrics], fontsize=7.5)
    left, right = _AXES.get(name, ("median of rounds", "median of rounds"))
    ax.set_ylabel(left)
    if name == "timers":
        ax.set_yscale("log")
        # Down to the lowest bar or target line, so a target under every bar still shows.
        lows = [v for v in lines + values if v > 0]
        if lows:
            ax.set_ylim(bottom=min(lows) / 2)
    else:
        ax.set_ylim(bottom=0)
    if twin is not None:
        twin.set_ylabel(right)
        twin.set_ylim(bottom=0)
        # The right-hand figures' group is shaded so its bars read against their own axis.
        first_right = min(g for _k, (a, g, _l) in where.items() if a is twin)
        ax.axvspan(first_right - 0.5, len(metrics) - 0.5, color="0.93", zorder=0)
    return unplaced


def build_figure(report: Mapping[str, Any]) -> Figure | None:
    """The report's figure: one panel (primary axes) per section, None if it has none.

    Each panel's axes is labelled with its section's name (``Axes.get_label()``); every
    plotted figure carries a gid ``section|contender|key`` (a per-call line: one point
    per level), every target line ``target|id,id...``.
    """
    matplotlib = require("matplotlib")
    matplotlib.use("Agg")
    plt = require("matplotlib.pyplot")
    sections = report["sections"]
    if not sections:
        return None
    columns = min(4, len(sections))
    rows = math.ceil(len(sections) / columns)
    fig: Figure = plt.figure(figsize=(5.2 * columns, 4.9 * rows), layout="constrained")
    grid = fig.add_gridspec(rows, columns)
    by_section: dict[str, list[Mapping[str, Any]]] = {}
    for target in report.get("targets", ()):
        by_section.setdefault(target["section"], []).append(target)
    for n, (name, section) in enumerate(sections.items()):
        ax = fig.add_subplot(grid[n // columns, n % columns], label=name)
        targets = by_section.get(name, [])
        if "series" in section:
            unplaced = _levels_panel(ax, name, section, targets)
        else:
            unplaced = _bars_panel(ax, name, section, targets)
        ax.set_title(f"{section['title']} [{name}]", fontsize=8, wrap=True)
        ax.grid(alpha=0.3)
        handles, texts = ax.get_legend_handles_labels()
        for other in fig.axes:
            if other is not ax and other.get_shared_x_axes().joined(ax, other):
                more_handles, more_texts = other.get_legend_handles_labels()
                handles += more_handles
                texts += more_texts
        ax.legend(
            handles,
            texts,
            fontsize=6.5,
            loc="upper center",
            bbox_to_anchor=(0.5, -0.13),
            ncol=1,
            frameon=False,
        )
        if unplaced:
            ax.text(
                0.01,
                0.99,
                "\n".join(
                    f"target (not drawn): {t['text']}: {measured_text(t['value'])} {t['op']} "
                    f"{t['threshold']:g}, {_word(t['met'])}"
                    for t in unplaced
                ),
                transform=ax.transAxes,
                fontsize=6,
                va="top",
            )
    machine = report["machine"]
    fig.suptitle(
        f"toolvisor bench{' --quick' if report.get('quick') else ''}, started "
        f"{report.get('started_at', '?')}: {machine['cpu_model']}, {machine['cpu_usable']} "
        f"usable CPUs, Python {machine['python']}; medians over rounds "
        f"({report.get('config', {}).get('rounds', '?')} per per-call figure)",
        fontsize=9,
    )
    return fig


def write_plot(report: Mapping[str, Any], path: Path) -> bool:
    """Draw every section of ``report`` into ``path``; False (nothing written) if it has none."""
    fig = build_figure(report)
    if fig is None:
        return False
    plt = require("matplotlib.pyplot")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True
