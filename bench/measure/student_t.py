"""Student's t distribution: CDF and quantiles, with the standard library only.

The intervals need t quantiles for small degrees of freedom (a pilot of 5 rounds has 4);
the harness does not depend on SciPy for that. The CDF comes from the regularized
incomplete beta function, evaluated by its continued fraction (modified Lentz); the
quantile by bisection on the CDF, to 1e-12.
"""

from __future__ import annotations

import math
from functools import lru_cache


def _beta_continued_fraction(a: float, b: float, x: float) -> float:
    tiny, epsilon = 1e-300, 1e-15
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    result = d
    for m in range(1, 500):
        for numerator in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                          -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            result *= d * c
        if abs(d * c - 1.0) < epsilon:
            break
    return result


def regularized_beta(a: float, b: float, x: float) -> float:
    """I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = (math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
                 + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _beta_continued_fraction(a, b, x) / a
    return 1.0 - math.exp(log_front) * _beta_continued_fraction(b, a, 1.0 - x) / b


def t_cdf(value: float, df: float) -> float:
    tail = 0.5 * regularized_beta(df / 2.0, 0.5, df / (df + value * value))
    return 1.0 - tail if value > 0 else tail


@lru_cache(maxsize=256)
def t_quantile(probability: float, df: float) -> float:
    """The value below which Student's t with `df` degrees of freedom falls with this
    probability, e.g. t_quantile(0.975, 4) = 2.776."""
    if not 0.0 < probability < 1.0:
        raise ValueError("probability must be in (0, 1)")
    if df <= 0:
        raise ValueError("degrees of freedom must be positive")
    if probability < 0.5:
        return -t_quantile(1.0 - probability, df)
    low, high = 0.0, 1.0
    while t_cdf(high, df) < probability:
        high *= 2.0
    for _ in range(200):
        middle = (low + high) / 2.0
        if t_cdf(middle, df) < probability:
            low = middle
        else:
            high = middle
        if high - low < 1e-12:
            break
    return (low + high) / 2.0
