"""Proportion intervals and the McNemar test: exact values, then coverage by simulation.

Exact values are hand-worked or published: Wilson's upper bound at k = 0 is z²/(n + z²);
13 of 16 and the paired table of Cavo et al. (2012) are the worked examples of Fagerland,
Lydersen and Laake, "Statistical Analysis of Contingency Tables" (2017), ch. 2 and 8
(Wilson 0.5699-0.9341; Newcombe -0.1186 to -0.0046, Wald -0.1184 to -0.0058); McNemar
with b = 10, c = 2 is 2 · (1 + 12 + 66) / 2^12.

The simulations run where the experiment lives: n = 10,000 test images, accuracy near 0.9,
and quantized models that disagree with fp32 on a few to a few hundred images. Each case
is seeded with 20,000 trials (a standard error of 0.15 points at 95%), so they are
deterministic and take a fraction of a second; a correct 95% interval lands in 94-96.5%.
"""

from __future__ import annotations

import math
from functools import cache

import numpy as np
import pytest

from bench.measure.proportions import (
    Interval,
    mcnemar_exact_p,
    newcombe_paired_bounds,
    paired_difference_interval,
    wilson_bounds,
    wilson_interval,
    z_value,
)

TRIALS = 20_000
N = 10_000


def test_z_value():
    assert z_value() == pytest.approx(1.959963984540054, abs=1e-12)
    assert z_value(0.90) == pytest.approx(1.6448536269514722, abs=1e-12)
    with pytest.raises(ValueError):
        z_value(1.0)


def test_wilson_known_values():
    found = wilson_interval(13, 16)
    assert found.estimate == 0.8125
    assert (round(found.low, 4), round(found.high, 4)) == (0.5699, 0.9341)
    z2 = z_value() ** 2
    none = wilson_interval(0, 10)
    assert (none.low, none.high) == (0.0, pytest.approx(z2 / (10 + z2), abs=1e-12))
    every = wilson_interval(10, 10)
    assert (every.low, every.high) == (pytest.approx(10 / (10 + z2), abs=1e-12), 1.0)
    assert wilson_interval(5, 10).low == pytest.approx(1 - wilson_interval(5, 10).high)


def test_wilson_rejects_what_is_not_a_count():
    for bad in ((11, 10), (-1, 10), (0, 0), (2.5, 10)):
        with pytest.raises(ValueError):
            wilson_interval(*bad)


def test_newcombe_paired_known_values():
    # Cavo et al. 2012: 59 both, 6 first only, 16 second only, 80 neither.
    found = paired_difference_interval(59, 6, 16, 80)
    assert round(found.estimate, 4) == -0.0621
    assert (round(found.low, 4), round(found.high, 4)) == (-0.1186, -0.0046)
    assert found.contains(found.estimate)
    # Swapping the two models mirrors the interval.
    mirrored = paired_difference_interval(59, 16, 6, 80)
    assert (mirrored.low, mirrored.high) == (pytest.approx(-found.high),
                                             pytest.approx(-found.low))


def test_newcombe_with_no_discordant_pairs_is_narrow_and_centred():
    found = paired_difference_interval(9000, 0, 0, 1000)
    assert found.estimate == 0.0
    assert -0.001 < found.low < 0.0 < found.high < 0.001
    # Empty margins (everything right, or nothing) give phi = 0, still a valid interval.
    for table in ((100, 0, 0, 0), (0, 0, 0, 100), (0, 3, 0, 0)):
        interval = paired_difference_interval(*table)
        assert -1.0 <= interval.low <= interval.estimate <= interval.high <= 1.0


def test_mcnemar_exact_known_values():
    assert mcnemar_exact_p(10, 2) == pytest.approx(2 * (1 + 12 + 66) / 2**12, abs=1e-15)
    assert mcnemar_exact_p(10, 2) == pytest.approx(0.0386, abs=5e-5)
    assert mcnemar_exact_p(2, 10) == mcnemar_exact_p(10, 2)
    assert mcnemar_exact_p(6, 16) == pytest.approx(0.0525, abs=5e-5)  # Cavo et al.
    assert mcnemar_exact_p(0, 0) == 1.0
    assert mcnemar_exact_p(5, 5) == 1.0
    assert mcnemar_exact_p(0, 5) == 2 / 32
    # Thousands of discordant pairs: exact integers, no overflow, a tiny but positive p.
    assert 0.0 < mcnemar_exact_p(3000, 2600) < 1e-6
    assert mcnemar_exact_p(3000, 3000) == 1.0


def test_interval_record():
    found = wilson_interval(1, 2)
    assert isinstance(found, Interval)
    assert found.to_dict()["method"] == "Wilson score"


@pytest.mark.parametrize("p", [0.85, 0.90, 0.92])
def test_wilson_covers_95_percent_at_ten_thousand_images(p):
    rng = np.random.default_rng([1806, int(p * 100)])
    successes = rng.binomial(N, p, TRIALS)
    low, high = wilson_bounds(successes, N)
    coverage = float(np.mean((low <= p) & (p <= high)))
    assert 0.94 <= coverage <= 0.965, coverage


def test_wilson_exact_coverage_at_ten_thousand_images():
    """No simulation error: sum the binomial probabilities of the k whose interval covers p.
    Found: 94.84% at p = 0.85, 94.89% at 0.90, 95.14% at 0.92."""
    k = np.arange(N + 1)
    low, high = wilson_bounds(k, N)
    for p in (0.85, 0.90, 0.92):
        log_pmf = np.array([math.lgamma(N + 1) - math.lgamma(i + 1) - math.lgamma(N - i + 1)
                            for i in k]) + k * math.log(p) + (N - k) * math.log1p(-p)
        coverage = float(np.exp(log_pmf)[(low <= p) & (p <= high)].sum())
        assert 0.945 <= coverage <= 0.955, (p, coverage)


def _wald_paired(a, b, c, d):
    """The textbook Wald interval on the discordant counts, for comparison only."""
    n = a + b + c + d
    difference = (b - c) / n
    half = z_value() * np.sqrt(np.maximum((b + c) - (b - c) ** 2 / n, 0.0)) / n
    return difference - half, difference + half


# (rate right only in the quantized model, rate right only in fp32): from a handful of
# discordant images to a few hundred, with and without a true difference.
SCENARIOS = [(0.001, 0.002), (0.005, 0.010), (0.003, 0.003), (0.0005, 0.001),
             (0.02, 0.03)]


@pytest.mark.parametrize(("gained", "lost"), SCENARIOS)
def test_newcombe_paired_covers_95_percent(gained, lost):
    rng = np.random.default_rng([2018, int(gained * 1e4), int(lost * 1e4)])
    fp32 = 0.90
    cells = rng.multinomial(N, [fp32 - lost, gained, lost, 1 - fp32 - gained], size=TRIALS)
    truth = gained - lost
    low, high = newcombe_paired_bounds(*cells.T)
    coverage = float(np.mean((low <= truth) & (truth <= high)))
    assert 0.945 <= coverage <= 0.975, coverage
    wald_low, wald_high = _wald_paired(*cells.T.astype(float))
    wald = float(np.mean((wald_low <= truth) & (truth <= wald_high)))
    assert coverage >= wald - 0.005  # never meaningfully worse than Wald


def test_wald_fails_where_newcombe_holds():
    """The reason for Newcombe: with few discordant images and all of them one way
    (5 expected losses, no gains) Wald covers about 87%, Newcombe about 99%."""
    rng = np.random.default_rng(42)
    cells = rng.multinomial(N, [0.8995, 0.0, 0.0005, 0.1], size=TRIALS)
    truth = -0.0005
    low, high = newcombe_paired_bounds(*cells.T)
    wald_low, wald_high = _wald_paired(*cells.T.astype(float))
    newcombe = float(np.mean((low <= truth) & (truth <= high)))
    wald = float(np.mean((wald_low <= truth) & (truth <= wald_high)))
    assert wald < 0.90 < 0.95 <= newcombe, (wald, newcombe)


@pytest.mark.parametrize("rate", [0.001, 0.003])
def test_mcnemar_exact_never_exceeds_its_size(rate):
    """Under no difference the exact test rejects at most 5% of the time at p < 0.05
    (it is conservative: 2.9% and 4.0% here), and it does reject a real difference."""
    p_value = cache(mcnemar_exact_p)
    rng = np.random.default_rng([7, int(rate * 1e4)])
    null = rng.multinomial(N, [0.9 - rate, rate, rate, 0.1 - rate], size=TRIALS)
    size = np.mean([p_value(int(b), int(c)) < 0.05 for b, c in null[:, 1:3]])
    assert 0.02 <= size <= 0.05, size
    shifted = rng.multinomial(N, [0.9 - 3 * rate, rate, 3 * rate, 0.1 - rate], size=2000)
    power = np.mean([p_value(int(b), int(c)) < 0.05 for b, c in shifted[:, 1:3]])
    assert power > 0.5, power
