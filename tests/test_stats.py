"""Statistics on synthetic data shaped like real rounds, not independent draws.

A simulated round: the machine's state for that process shifts every iteration by a
per-round offset, iterations are autocorrelated (AR(1)), and a drifting machine adds a
trend across rounds. The round-level bootstrap must cover the truth about 95% of the
time; the naive CI over pooled iterations must be shown too narrow.
"""

from __future__ import annotations

import numpy as np
import pytest

from bench.measure.stats import (
    Estimate,
    bootstrap_ci,
    cv,
    estimate,
    paired_ratios,
    percentile,
    pooled_iteration_ci,
    speedup,
)
from bench.results import Aggregate

TRUE_US = 1000.0


def simulate_round(rng, center: float, round_sd: float = 20.0, iterations: int = 60,
                   phi: float = 0.8, noise_sd: float = 15.0) -> list[float]:
    """One process: a per-round offset plus AR(1) iteration noise around `center`."""
    offset = rng.normal(0.0, round_sd)
    noise, values = 0.0, []
    for _ in range(iterations):
        noise = phi * noise + rng.normal(0.0, noise_sd * np.sqrt(1 - phi**2))
        values.append(center + offset + noise)
    return values


def simulate(rng, rounds: int, center: float = TRUE_US, drift: float = 0.0) -> list[list[float]]:
    return [simulate_round(rng, center * (1 + drift * r)) for r in range(rounds)]


def medians(rounds: list[list[float]]) -> list[float]:
    return [float(np.median(r)) for r in rounds]


def test_round_aggregate_figures():
    values = list(range(1, 101))
    found = Aggregate.of(values)
    assert found.median_us == 50.5 and found.min_us == 1 and found.max_us == 100
    assert found.p90_us == pytest.approx(90.1) and found.p99_us == pytest.approx(99.01)
    assert found.p5_us == pytest.approx(5.95) and found.p95_us == pytest.approx(95.05)
    assert found.cv == pytest.approx(np.std(values, ddof=1) / np.mean(values))
    assert percentile([5.0], 90) == 5.0


def test_one_value_has_no_spread_rather_than_zero():
    assert cv([3.0]) is None
    single = Aggregate.of([7.0])
    assert single.std_us is None and single.cv is None and single.count == 1


def test_outliers_are_kept_not_dropped():
    found = Aggregate.of([100.0] * 50 + [5000.0])
    assert found.max_us == 5000.0 and found.count == 51 and found.median_us == 100.0


def test_round_bootstrap_covers_the_truth_about_95_percent():
    rng = np.random.default_rng(1)
    trials, hits = 300, 0
    for trial in range(trials):
        found = estimate(medians(simulate(rng, 15)), seed=trial)
        hits += found.low <= TRUE_US <= found.high
    coverage = hits / trials
    assert 0.88 <= coverage <= 0.99, coverage


def test_pooled_iteration_ci_is_far_too_narrow():
    rng = np.random.default_rng(2)
    trials, hits, widths = 100, 0, []
    for trial in range(trials):
        rounds = simulate(rng, 10)
        low, high = pooled_iteration_ci(rounds, seed=trial)
        hits += low <= TRUE_US <= high
        found = estimate(medians(rounds), seed=trial)
        widths.append((high - low) / (found.high - found.low))
    assert hits / trials < 0.6, hits / trials  # nominally 95%: it lies
    assert np.median(widths) < 0.5  # and it is much narrower than the honest interval


def test_interval_shrinks_with_more_rounds():
    rng = np.random.default_rng(3)

    def mean_width(rounds: int) -> float:
        return float(np.mean([estimate(medians(simulate(rng, rounds)), seed=i).rel_half_width
                              for i in range(60)]))

    few, many = mean_width(5), mean_width(20)
    assert many < few * 0.7, (few, many)


def test_paired_speedup_cancels_machine_drift():
    """fp32 and int8 measured in the same rounds on a machine slowing 1% per round."""
    rng = np.random.default_rng(4)
    true_speedup, trials, hits, paired_w, unpaired_w = 2.0, 200, 0, [], []
    for trial in range(trials):
        fp32 = medians(simulate(rng, 12, TRUE_US, drift=0.01))
        int8 = medians(simulate(rng, 12, TRUE_US / true_speedup, drift=0.01))
        found = speedup(dict(enumerate(fp32)), dict(enumerate(int8)))
        hits += found.low <= true_speedup <= found.high
        paired_w.append(found.rel_half_width)
        a, b = estimate(fp32, seed=trial), estimate(int8, seed=trial)
        unpaired_w.append((a.high / b.low - a.low / b.high) / 2 / found.value)
    assert 0.85 <= hits / trials <= 0.995, hits / trials
    assert np.median(paired_w) < np.median(unpaired_w)


def test_paired_ratios_use_only_rounds_both_have():
    assert paired_ratios({0: 10.0, 1: 12.0, 2: 9.0}, {0: 5.0, 2: 3.0}) == [2.0, 3.0]
    assert speedup({0: 1.0}, {1: 1.0}) is None


def test_estimate_of_one_round_has_no_interval():
    found = estimate([5.0])
    assert found == Estimate(5.0, None, None, 1) and found.rel_half_width is None
    assert found.to_dict()["rel_half_width"] is None


def test_bootstrap_is_seeded():
    values = [1.0, 2.0, 3.0, 4.0, 10.0]
    assert bootstrap_ci(values, seed=7) == bootstrap_ci(values, seed=7)
