"""Statistics of latency samples, with the round as the unit of evidence.

Iterations inside one runner process share its memory layout, frequency state and
neighbours, so they are correlated: a confidence interval over pooled iterations is far
too narrow. Each round (one fresh process) is therefore summarised by its median, and
intervals are bootstrapped over those per-round medians. Speedups are per-round ratios
of paired medians (same round, same device), summarised the same way.

Outliers are kept: the median is robust to them, and p99/max show them.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from bench.results import percentile

__all__ = ["CONFIDENCE", "Estimate", "bootstrap_ci", "cv", "estimate", "estimate_or_none",
           "paired_ratios", "percentile", "pooled_iteration_ci", "speedup"]

CONFIDENCE = 0.95
RESAMPLES = 4000


def cv(values: Sequence[float]) -> float | None:
    """Coefficient of variation (stdev / mean); None for fewer than two values."""
    if len(values) < 2:
        return None
    mean = statistics.fmean(values)
    return statistics.stdev(values) / mean if mean else None


@dataclass(frozen=True)
class Estimate:
    """A point estimate with its bootstrap interval (None when n < 2: no spread to see)."""

    value: float
    low: float | None
    high: float | None
    n: int

    @property
    def rel_half_width(self) -> float | None:
        if self.low is None or self.high is None or not self.value:
            return None
        return (self.high - self.low) / 2 / abs(self.value)

    def to_dict(self) -> dict:
        return {"value": self.value, "low": self.low, "high": self.high, "n": self.n,
                "rel_half_width": self.rel_half_width}


def bootstrap_ci(values: Sequence[float], statistic: Callable = np.median,
                 confidence: float = CONFIDENCE, resamples: int = RESAMPLES,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of `statistic` over `values`."""
    data = np.asarray(values, dtype=float)
    rng = np.random.default_rng(seed)
    draws = data[rng.integers(0, len(data), size=(resamples, len(data)))]
    stats = statistic(draws, axis=1)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(stats, [tail, 100 - tail])
    return float(low), float(high)


def estimate(values: Sequence[float], seed: int = 0) -> Estimate:
    """Median with a bootstrap CI over `values` (the per-round medians)."""
    if not values:
        raise ValueError("no rounds")
    center = float(statistics.median(values))
    if len(values) < 2:
        return Estimate(center, None, None, len(values))
    low, high = bootstrap_ci(values, seed=seed)
    return Estimate(center, low, high, len(values))


def estimate_or_none(values: Sequence[float]) -> Estimate | None:
    """`estimate`, or None when there are no values (an unknown, not a zero)."""
    values = [v for v in values if v is not None]
    return estimate(values) if values else None


def paired_ratios(reference: Mapping[int, float], candidate: Mapping[int, float]) -> list[float]:
    """reference / candidate for every round both measured (a speedup when > 1)."""
    return [reference[r] / candidate[r] for r in sorted(reference.keys() & candidate.keys())
            if candidate[r] > 0]


def speedup(reference: Mapping[int, float], candidate: Mapping[int, float]) -> Estimate | None:
    ratios = paired_ratios(reference, candidate)
    return estimate(ratios) if ratios else None


def pooled_iteration_ci(rounds: Sequence[Sequence[float]], seed: int = 0) -> tuple[float, float]:
    """The naive interval over all iterations as if independent. Shown only to be wrong:
    it ignores the per-round offsets and is far too narrow."""
    pooled = [x for r in rounds for x in r]
    return bootstrap_ci(pooled, resamples=1000, seed=seed)
