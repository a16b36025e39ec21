"""Proportions measured on a test set: accuracy, and how two models on the same images differ.

Accuracy is a binomial proportion: k of n test images right. Two models judged on the *same*
images are paired, and a paired comparison is far more precise than comparing two separate
intervals: what matters is only the images on which they disagree about correctness.

- **Accuracy**: the Wilson score interval. Why not the Wald interval p ± z·√(p(1-p)/n)? It
  undercovers near 0 and 1 and collapses to a point at k = 0 or n; Wilson's does neither.
  Coverage at n = 10,000 (`tests/test_proportions.py`), exact (summing binomial
  probabilities) / simulated (20,000 seeded trials): 94.84% / 94.91% at p = 0.85,
  94.89% / 94.96% at p = 0.90, 95.14% / 94.85% at p = 0.92.
- **Paired difference** p_first - p_second: Newcombe's method 10 (Newcombe 1998, "Improved
  confidence intervals for the difference between binomial proportions based on paired
  data", Stat Med 17:2635), the square-and-add of the two Wilson intervals with the
  correlation between the paired proportions (phi, with Newcombe's adjustment). Chosen over
  a Wald interval on the discordant counts because quantized models disagree with their
  float model on few images. Simulated coverage at n = 10,000 (20,000 trials; expected
  images right only in the quantized model / only in fp32 -> Newcombe, Wald): 5/10 ->
  96.9%, 94.7%; 10/20 -> 96.1%, 94.7%; 30/30 -> 95.4%, 94.9%; 50/100 -> 95.4%, 95.1%;
  200/300 -> 95.1%, 95.0%; 0/5 (every discordant image one way) -> 99.1%, 87.2%.
  Newcombe's errs on the safe side where Wald fails.
- **Is there a difference at all?** The exact McNemar test: under "no difference" each
  discordant image is equally likely to favour either model, so the count favouring one
  is Binomial(b + c, 1/2); the two-sided p-value is twice the smaller tail (at most 1). It
  never exceeds its nominal size (the chi-square version can, with few discordant pairs):
  simulated rejection rate at p < 0.05 under no difference, n = 10,000, 10 or 30 expected
  discordant images each way: 2.9%, 4.0%.

Pure math and numpy: the harness has no SciPy. The array forms (`wilson_bounds`,
`newcombe_paired_bounds`) are what the coverage simulations use.
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["CONFIDENCE", "Interval", "mcnemar_exact_p", "newcombe_paired_bounds",
           "paired_difference_interval", "wilson_bounds", "wilson_interval", "z_value"]

CONFIDENCE = 0.95


@dataclass(frozen=True)
class Interval:
    """A point estimate and its interval, with the method that made it (for the record)."""

    estimate: float
    low: float
    high: float
    method: str

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high

    def to_dict(self) -> dict[str, float | str]:
        return {"estimate": self.estimate, "low": self.low, "high": self.high,
                "method": self.method}


def z_value(confidence: float = CONFIDENCE) -> float:
    """The two-sided standard normal quantile, e.g. 1.95996 for 95%."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), not {confidence}")
    return NormalDist().inv_cdf(0.5 + confidence / 2.0)


def wilson_bounds(successes: ArrayLike, n: ArrayLike,
                  confidence: float = CONFIDENCE) -> tuple[NDArray[np.float64],
                                                           NDArray[np.float64]]:
    """Wilson score interval bounds, elementwise (arrays for simulations)."""
    k = np.asarray(successes, dtype=np.float64)
    total = np.asarray(n, dtype=np.float64)
    z = z_value(confidence)
    z2 = z * z
    p = k / total
    denominator = 1.0 + z2 / total
    centre = (p + z2 / (2.0 * total)) / denominator
    half = z * np.sqrt(p * (1.0 - p) / total + z2 / (4.0 * total * total)) / denominator
    # At k = 0 (k = n) the lower (upper) bound is exactly 0 (1); rounding can miss it.
    low = np.where(k == 0, 0.0, np.clip(centre - half, 0.0, 1.0))
    high = np.where(k == total, 1.0, np.clip(centre + half, 0.0, 1.0))
    return low, high


def _check_counts(**counts: int) -> int:
    for name, value in counts.items():
        if int(value) != value or value < 0:
            raise ValueError(f"{name} must be a count (a non-negative integer), not {value}")
    return int(sum(counts.values()))


def wilson_interval(successes: int, n: int, confidence: float = CONFIDENCE) -> Interval:
    """Accuracy k/n with its Wilson score interval."""
    _check_counts(successes=successes, n=n)
    if n < 1 or successes > n:
        raise ValueError(f"need 0 <= successes <= n and n >= 1, not {successes} of {n}")
    low, high = wilson_bounds(successes, n, confidence)
    return Interval(successes / n, float(low), float(high), "Wilson score")


def newcombe_paired_bounds(
    both: ArrayLike, only_first: ArrayLike, only_second: ArrayLike, neither: ArrayLike,
    confidence: float = CONFIDENCE,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Newcombe's method 10 for p_first - p_second of paired proportions, elementwise.

    The 2x2 table: `both` right, right only for the first, right only for the second,
    `neither` right. p_first = (both + only_first) / n, p_second = (both + only_second) / n.
    """
    a, b, c, d = (np.asarray(x, dtype=np.float64) for x in (both, only_first, only_second,
                                                            neither))
    n = a + b + c + d
    p1, p2 = (a + b) / n, (a + c) / n
    l1, u1 = wilson_bounds(a + b, n, confidence)
    l2, u2 = wilson_bounds(a + c, n, confidence)
    margins = (a + b) * (c + d) * (a + c) * (b + d)
    # Newcombe's phi: the cross-product a*d - b*c, moved n/2 towards 0 when positive
    # (0 in between), over the root of the margins; 0 when a margin is empty.
    cross = a * d - b * c
    numerator = np.where(cross > n / 2.0, cross - n / 2.0, np.where(cross < 0.0, cross, 0.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        phi = np.where(margins > 0.0, numerator / np.sqrt(np.where(margins > 0, margins, 1.0)),
                       0.0)
    down1, up2 = p1 - l1, u2 - p2
    up1, down2 = u1 - p1, p2 - l2
    lower_width = np.sqrt(np.maximum(down1**2 - 2.0 * phi * down1 * up2 + up2**2, 0.0))
    upper_width = np.sqrt(np.maximum(down2**2 - 2.0 * phi * down2 * up1 + up1**2, 0.0))
    difference = p1 - p2
    return (np.clip(difference - lower_width, -1.0, 1.0),
            np.clip(difference + upper_width, -1.0, 1.0))


def paired_difference_interval(both: int, only_first: int, only_second: int, neither: int,
                               confidence: float = CONFIDENCE) -> Interval:
    """p_first - p_second = (only_first - only_second) / n with Newcombe's method 10."""
    n = _check_counts(both=both, only_first=only_first, only_second=only_second,
                      neither=neither)
    if n < 1:
        raise ValueError("no pairs to compare")
    low, high = newcombe_paired_bounds(both, only_first, only_second, neither, confidence)
    return Interval((only_first - only_second) / n, float(low), float(high),
                    "Newcombe paired (method 10)")


def mcnemar_exact_p(only_first: int, only_second: int) -> float:
    """Two-sided exact McNemar p-value from the discordant counts b and c:
    min(1, 2 · P(X <= min(b, c))) for X ~ Binomial(b + c, 1/2). 1.0 when b + c = 0.

    Exact integer arithmetic (binomial coefficients by recurrence), so thousands of
    discordant pairs neither overflow nor lose the tail.
    """
    _check_counts(only_first=only_first, only_second=only_second)
    m, k = int(only_first + only_second), int(min(only_first, only_second))
    if m == 0:
        return 1.0
    term, tail = 1, 1  # C(m, 0)
    for i in range(k):
        term = term * (m - i) // (i + 1)
        tail += term
    return min(1.0, 2 * tail / 2**m)

