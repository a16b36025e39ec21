"""Summary statistics of latency samples (in microseconds).

Kept small and explained: the median is the headline (robust to the occasional
preempted iteration), p90 shows the tail. Nothing is dropped as an outlier.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile, q in [0, 100]."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("no samples")
    position = (len(ordered) - 1) * q / 100.0
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def summarize(values: Sequence[float]) -> dict:
    return {
        "n": len(values),
        "median": statistics.median(values),
        "mean": statistics.fmean(values),
        "min": min(values),
        "max": max(values),
        "p90": percentile(values, 90),
        "stdev": statistics.stdev(values) if len(values) > 1 else 0.0,
    }
