"""Small statistics helpers: medians, percentiles and paired ratios of alternated rounds."""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence

__all__ = ["median", "paired_ratio", "percentile", "ratio_median", "summarize"]


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


def ratio_median(ratios: Sequence[float]) -> float:
    """The median of ratios, the two middle values of an even count joined geometrically.

    With the geometric middle, the median of ``b/a`` is exactly ``1 /`` the median of
    ``a/b`` for any number of rounds (the arithmetic mean of two middle ratios is not: a
    2-round quick run would print 1.25x one way and 0.83x the other way for 1/1.25).
    """
    if not ratios:
        return math.nan
    ordered = sorted(ratios)
    n = len(ordered)
    if n % 2:
        return float(ordered[n // 2])
    return math.sqrt(ordered[n // 2 - 1] * ordered[n // 2])


def paired_ratio(
    a: Sequence[Mapping[str, float]], b: Sequence[Mapping[str, float]], key: str
) -> float:
    """Median over rounds of ``a[r][key] / b[r][key]`` (see :func:`ratio_median`).

    Contenders run alternated, so round r of ``a`` and round r of ``b`` ran next to each
    other: dividing within a round cancels the machine's slow drift before taking the
    median. Only rounds where both figures are finite and > 0 count, so ``a/b`` and
    ``b/a`` come from the same pairs and are each other's inverse.
    """
    pairs = [(float(x[key]), float(y[key])) for x, y in zip(a, b, strict=False)]
    return ratio_median(
        [x / y for x, y in pairs if math.isfinite(x) and math.isfinite(y) and x > 0 and y > 0]
    )
