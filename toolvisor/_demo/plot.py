"""``toolvisor demo --plot PATH.png``: calls per second by outcome and breaker state over
time, one panel per tool (matplotlib, Agg: no display needed)."""

from __future__ import annotations

import importlib
import math
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

from .report import DemoReport, Transition

__all__ = ["PlotDependencyError", "bins", "breaker_spans", "require_matplotlib", "write_plot"]

OUTCOMES = ("succeeded", "failed", "rejected")
_COLOURS = {"succeeded": "#2e7d32", "failed": "#c62828", "rejected": "#ef6c00"}
_STATE_SHADE = {"open": "#ffcdd2", "half_open": "#ffe0b2"}


class PlotDependencyError(RuntimeError):
    """matplotlib is not installed; the message says how to install it."""


def require_matplotlib() -> ModuleType:
    """``matplotlib.pyplot`` on the Agg backend, or :class:`PlotDependencyError`."""
    try:
        matplotlib = importlib.import_module("matplotlib")
    except ImportError as exc:
        raise PlotDependencyError(
            "--plot needs matplotlib, which is not installed: pip install 'toolvisor[plot]'"
        ) from exc
    matplotlib.use("Agg")
    return importlib.import_module("matplotlib.pyplot")


def bins(
    outcomes: Sequence[tuple[float, str, str]], tool: str, end_s: float, width_s: float
) -> tuple[list[float], dict[str, list[float]]]:
    """Calls per second of ``tool`` by outcome, in bins of ``width_s`` from 0 to ``end_s``.

    Returns the bins' start times and, for each outcome word, one rate per bin. Calls that
    end after ``end_s`` (the drain) fall in the last bin.
    """
    count = max(1, math.ceil(end_s / width_s))
    rates = {word: [0.0] * count for word in OUTCOMES}
    for at, name, word in outcomes:
        if name != tool or word not in rates:
            continue
        index = min(count - 1, max(0, int(at // width_s)))
        rates[word][index] += 1.0 / width_s
    return [i * width_s for i in range(count)], rates


def breaker_spans(
    transitions: Sequence[Transition], end_s: float
) -> list[tuple[float, float, str]]:
    """The intervals ``(start, end, state)`` in which the breaker was not closed."""
    spans: list[tuple[float, float, str]] = []
    for i, transition in enumerate(transitions):
        if transition.new == "closed":
            continue
        until = transitions[i + 1].at if i + 1 < len(transitions) else end_s
        spans.append((transition.at, max(transition.at, until), transition.new))
    return spans


def write_plot(report: DemoReport, path: Path, *, width_s: float | None = None) -> None:
    """Write the figure of ``report`` to ``path`` (PNG, or any format matplotlib infers).

    Raises:
        PlotDependencyError: matplotlib is missing.
        OSError: the file cannot be written.
    """
    plt = require_matplotlib()
    end = max(report.elapsed_s, 1e-9)
    width = width_s if width_s is not None else max(0.25, report.duration_s / 60)
    tools = report.tools
    fig, axes = plt.subplots(
        len(tools), 1, figsize=(9, 2.4 * len(tools)), sharex=True, squeeze=False
    )
    for ax, summary in zip(axes[:, 0], tools, strict=True):
        for start, stop, state in breaker_spans(summary.breaker_transitions, end):
            ax.axvspan(start, stop, color=_STATE_SHADE.get(state, "#eeeeee"), lw=0)
        starts, rates = bins(report.outcomes, summary.tool, end, width)
        for word in OUTCOMES:
            if any(rates[word]):
                ax.step(starts, rates[word], where="post", color=_COLOURS[word], label=word)
        ax.set_title(
            f"{summary.tool}  (breaker: red = open, orange = half open)", fontsize=9, loc="left"
        )
        ax.set_ylabel("calls / s")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper right")
    axes[-1, 0].set_xlabel("seconds since the demo started")
    fig.suptitle(
        f"toolvisor demo: seed {report.seed}, {report.duration_s:g} s"
        f"{' (interrupted)' if report.interrupted else ''}",
        fontsize=10,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fig.savefig(path, dpi=110)
    finally:
        plt.close(fig)
