"""Small statistics helpers: medians, percentiles and paired ratios of alternated rounds."""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence

__all__ = ["median", "paired_ratio", "percentile", "summarize"]


def median(values: Sequence[float]) -> float:
    """The median, or NaN for no values."""
    return float(statistics.median(values)) if values else math.nan


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) of already sorted values, nearest-rank."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q / 100.0 * len(sorted_values)))
    return float(sorted_values[min(rank, len(sorted_values)) - 1])


def summarize(rounds: Sequence[Mapping[str, float]], keys: Sequence[str]) -> dict[str, float]:
    """The median over rounds of each of ``keys``."""
    return {key: median([float(r[key]) for r in rounds if key in r]) for key in keys}


def paired_ratio(
    a: Sequence[Mapping[str, float]], b: Sequence[Mapping[str, float]], key: str
) -> float:
    """Median over rounds of ``a[r][key] / b[r][key]``.

    Contenders run alternated, so round r of ``a`` and round r of ``b`` ran next to each
    other: dividing within a round cancels the machine's slow drift before taking the
    median.
    """
    ratios = [
        float(x[key]) / float(y[key])
        for x, y in zip(a, b, strict=False)
        if float(y[key]) > 0 and math.isfinite(float(x[key]))
    ]
    return median(ratios)
