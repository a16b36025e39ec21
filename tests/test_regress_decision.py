"""The nightly regression rule, judged by what it decides.

Round medians are simulated on the log scale (run effect u ~ N(0, sigma_u^2), round effect
e ~ N(0, sigma_w^2)) with seeded generators, so every case is the same on every machine; the
rates are checked with tolerances several standard errors wide, so a rule that is off by a
few points fails and a correct one does not flake. `benchmarks/gate_simulation.py` runs the
same rule on more nights and this machine's own noise.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from bench.measure.student_t import t_quantile
from bench.regress.decision import (
    BenchmarkHistory,
    Verdict,
    compare,
    confirm,
    detection_power,
    family_adjust,
    not_comparable,
    suggest_design,
)
from bench.regress.variance import satterthwaite

LEVEL = 5000.0  # µs


def run(rng, n: int, sigma_w: float = 0.03, sigma_u: float = 0.01,
        factor: float = 1.0) -> list[float]:
    """One run's round medians (µs): a run effect, then n round effects."""
    effect = rng.normal(0.0, sigma_u)
    return list(LEVEL * factor * np.exp(effect + rng.normal(0.0, sigma_w, n)))


def runs(rng, k: int, n: int, **spread) -> list[list[float]]:
    return [run(rng, n, **spread) for _ in range(k)]


def test_a_clear_20_percent_slowdown_is_regressed():
    rng = np.random.default_rng(1)
    baseline = runs(rng, 10, 10)
    found = compare(run(rng, 10, factor=1.2), baseline)
    assert found.verdict is Verdict.REGRESSED, found.reason
    assert found.failing
    assert found.ratio == pytest.approx(1.2, abs=0.03)
    low, high = found.ratio_interval
    assert 1.0 < low < found.ratio < high
    assert found.run_to_run_source == "baseline runs" and found.baseline_runs == 10
    # still regressed at the family's level among 11 clean benchmarks
    night = [found, *(compare(run(rng, 10), runs(rng, 10, 10)) for _ in range(11))]
    assert family_adjust(night)[0].verdict is Verdict.REGRESSED


def test_a_clear_20_percent_speedup_is_improved_and_does_not_fail():
    rng = np.random.default_rng(2)
    found = compare(run(rng, 10, factor=1 / 1.2), runs(rng, 10, 10))
    assert found.verdict is Verdict.IMPROVED and not found.failing


def test_an_a_a_comparison_is_not_regressed():
    rng = np.random.default_rng(3)
    found = compare(run(rng, 10), runs(rng, 10, 10))
    assert found.verdict is Verdict.UNCHANGED, found.reason
    verdicts = [compare(run(rng, 10), runs(rng, 10, 10)).verdict for _ in range(300)]
    # one benchmark at one-sided 5% and a 5% minimum effect: regressed well under 5%
    assert verdicts.count(Verdict.REGRESSED) <= 3
    assert verdicts.count(Verdict.IMPROVED) <= 3


def test_a_significant_2_percent_change_is_below_the_minimum_effect():
    rng = np.random.default_rng(4)
    baseline = runs(rng, 10, 400, sigma_u=0.0)
    found = compare(run(rng, 400, sigma_u=0.0, factor=1.02), baseline)
    assert found.p_slower < 1e-6  # real and significant ...
    assert found.verdict is Verdict.UNCHANGED  # ... but under 5%: a 5% change is excluded
    assert "smaller than the 5% minimum effect" in found.reason
    low, high = found.ratio_interval
    assert low > 1.0 and high < 1.05
    # the minimum effect is the caller's: at 1% the same evidence is a regression
    assert compare(run(rng, 400, sigma_u=0.0, factor=1.02), baseline,
                   min_effect=0.01).verdict is Verdict.REGRESSED


def test_suspect_and_inconclusive_are_told_apart():
    rng = np.random.default_rng(5)
    noisy = {"sigma_w": 0.10, "sigma_u": 0.05}
    baseline = runs(rng, 10, 5, **noisy)
    centre = math.exp(np.mean([np.mean(np.log(r)) for r in baseline]))
    # an estimate of +8% that this noise cannot make significant: leaning, so suspect
    leaning = [centre * 1.08 * math.exp(x) for x in (-0.05, 0.05, -0.02, 0.02, 0.0)]
    found = compare(leaning, baseline)
    assert found.verdict is Verdict.SUSPECT and found.p_slower > 0.05, found.reason
    # +1%: not significant, under the minimum effect, interval far wider than 5%
    flat = [centre * 1.01 * math.exp(x) for x in (-0.05, 0.05, -0.02, 0.02, 0.0)]
    found = compare(flat, baseline)
    assert found.verdict is Verdict.INCONCLUSIVE, found.reason
    assert found.ratio_interval[1] > 1.05 and not found.failing


def test_no_baseline_is_new_and_passes():
    found = compare([5000.0, 5100.0, 4900.0], [])
    assert found.verdict is Verdict.NEW and not found.failing and not found.tested
    assert compare([5000.0, 5100.0], [[], []]).verdict is Verdict.NEW


def test_not_comparable_carries_its_reason_and_stays_out_of_the_family():
    rng = np.random.default_rng(6)
    other = not_comparable("device fingerprint changed: cpu model differs")
    assert other.verdict is Verdict.NOT_COMPARABLE
    assert other.reason == "device fingerprint changed: cpu model differs"
    first = compare([5000.0, 5010.0], [])
    tested = compare(run(rng, 10), runs(rng, 10, 10))
    adjusted = family_adjust([other, first, tested])
    assert adjusted[0] == other and adjusted[1].verdict is Verdict.NEW
    assert adjusted[2].alpha == pytest.approx(0.05)  # one tested benchmark: m = 1


def test_one_baseline_run_takes_the_run_to_run_term_from_history():
    rng = np.random.default_rng(7)
    spread = {"sigma_w": 0.03, "sigma_u": 0.03}
    earlier = runs(rng, 10, 10, **spread)
    baseline = [earlier[-1]]
    history = BenchmarkHistory.from_runs(earlier)
    slower = run(rng, 10, factor=1.25, **spread)
    with_history = compare(slower, baseline, history)
    assert with_history.run_to_run_source == "history"
    assert with_history.run_to_run_sd == pytest.approx(0.03, abs=0.02)
    assert with_history.df == pytest.approx(9.0, abs=1.0)  # the 10 history means
    assert with_history.verdict is Verdict.REGRESSED, with_history.reason
    # without history: the SE holds within-run noise only, so at most suspect
    bare = compare(slower, baseline)
    assert bare.run_to_run_source is None and bare.se < with_history.se
    assert bare.verdict is Verdict.SUSPECT
    assert "lacks the run-to-run term" in bare.reason
    # a prior estimate of sigma_u^2 with its df works the same way
    prior = compare(slower, baseline, BenchmarkHistory(prior_variance=0.03 ** 2, prior_df=20))
    assert prior.run_to_run_source == "prior" and prior.verdict is Verdict.REGRESSED
    # and the within-only SE would alarm on clean nights where history does not
    clean_bare = clean_history = 0
    for _ in range(200):
        past = runs(rng, 10, 10, **spread)
        new = run(rng, 10, **spread)
        clean_bare += compare(new, [past[-1]], alpha=0.01).p_slower <= 0.01
        clean_history += compare(new, [past[-1]], BenchmarkHistory.from_runs(past),
                                 alpha=0.01).p_slower <= 0.01
    assert clean_bare >= 30  # far over the nominal 1% (2 of 200)
    assert clean_history <= 8


def test_satterthwaite_degrees_of_freedom_by_hand():
    # logs: new 1.0 1.2 1.4 1.2 (mean 1.2, SS 0.08, 3 df); baseline runs (1.0, 1.2),
    # (1.4, 1.6), (0.8, 1.0): means 1.1, 1.5, 0.9, SS 0.02 each (1 df each)
    # s_w^2 = 0.14 / 6 = 0.023333 (6 df); V = var(1.1, 1.5, 0.9) = 0.093333 (2 df); h = 1/2
    # u^2 = V - s_w^2 / 2 = 0.081667; SE^2 = s_w^2 (1/4 + 1/6) + u^2 (4/3) = 0.118611
    # as independent pieces: a_w = s_w^2 (1/4 + 1/6 - (4/3)(1/2)) = -0.0058333 on 6 df,
    # a_V = V (4/3) = 0.124444 on 2 df; df = 0.118611^2 / (a_w^2/6 + a_V^2/2) = 7442/4099
    new = [math.exp(y) for y in (1.0, 1.2, 1.4, 1.2)]
    baseline = [[math.exp(y) for y in pair] for pair in ((1.0, 1.2), (1.4, 1.6), (0.8, 1.0))]
    found = compare(new, baseline)
    assert found.log_ratio == pytest.approx(1.2 - 3.5 / 3)
    assert found.within_sd ** 2 == pytest.approx(0.14 / 6)
    assert found.run_to_run_sd ** 2 == pytest.approx(0.28 / 3 - 0.14 / 12)
    assert found.se ** 2 == pytest.approx(0.11861111111)
    assert found.df == pytest.approx(7442 / 4099)
    assert satterthwaite([(-0.0058333333, 6), (0.1244444444, 2)]) == pytest.approx(
        7442 / 4099, rel=1e-6)
    assert satterthwaite([(1.0, math.inf)]) == math.inf


def test_a_zero_run_to_run_estimate_keeps_the_run_means_df():
    # three baseline runs whose means agree better than their rounds do: u^2 clamps at 0;
    # the SE is the within-run one, but the df stay K - 1 = 2, not the rounds' many df
    new = [math.exp(y) for y in (0.0, 0.1, -0.1, 0.05, -0.05)]
    baseline = [[math.exp(y) for y in (0.1, -0.1, 0.0, 0.05, -0.05)] for _ in range(3)]
    found = compare(new, baseline)
    assert found.run_to_run_sd == 0.0
    assert found.df == 2.0
    assert found.se ** 2 == pytest.approx(found.within_sd ** 2 * (1 / 5 + 1 / 15))


def clean_nights(nights: int, method: str, seed: int) -> tuple[float, float]:
    """Share of clean nights of 12 benchmarks (K = 10, n = 5, round sd 10%, run sd 5%)
    with any regressed verdict: (unadjusted, family-adjusted)."""
    rng = np.random.default_rng(seed)
    raw_alarms = alarms = 0
    spread = {"sigma_w": 0.10, "sigma_u": 0.05}
    for _ in range(nights):
        night = [compare(run(rng, 5, **spread), runs(rng, 10, 5, **spread))
                 for _ in range(12)]
        raw_alarms += any(c.failing for c in night)
        alarms += any(c.failing for c in family_adjust(night, 0.05, method))
    return raw_alarms / nights, alarms / nights


@pytest.mark.parametrize("method", ["bonferroni", "holm"])
def test_family_adjustment_keeps_clean_nights_quiet(method):
    unadjusted, adjusted = clean_nights(300, method, seed=8)
    # standard error at 5% over 300 nights: 1.3 points
    assert adjusted <= 0.08
    assert unadjusted >= 0.15  # the adjustment is what does it


def test_confirm_judges_the_fresh_run_alone_at_the_family_level():
    rng = np.random.default_rng(9)
    baseline = runs(rng, 10, 10)
    again = confirm(run(rng, 10, factor=1.2), baseline, family_size=12)
    assert again.verdict is Verdict.REGRESSED and again.stage == "confirm"
    assert again.alpha == pytest.approx(0.05 / 12)
    assert again.reason.startswith("confirmation: ")
    assert confirm(run(rng, 10), baseline, family_size=12).verdict is not Verdict.REGRESSED
    with pytest.raises(ValueError):
        confirm(run(rng, 10), baseline, family_size=0)


def test_suggest_design_says_when_run_to_run_variance_makes_10_percent_undetectable():
    found = suggest_design(within_sd=0.03, run_to_run_sd=0.05, family_size=12,
                           baselines=(3, 10, 20))
    assert found.best is None
    assert "undetectable at any n and K" in found.message
    for option in found.options:
        assert option.rounds is None and option.floor_se >= 0.05
        assert "no number of rounds helps" in option.reason
    # one baseline run without a history has no run-to-run term to plan with
    assert suggest_design(within_sd=0.03, run_to_run_sd=0.01, family_size=12,
                          baselines=(1,)).options[0].rounds is None


def test_suggest_design_plans_what_the_rule_then_detects():
    found = suggest_design(within_sd=0.03, run_to_run_sd=0.01, family_size=12,
                           baselines=(10,))
    option = found.options[0]
    assert option.rounds is not None and option.power >= 0.95
    # the plan, simulated: one benchmark 10% slower, judged at the family's level
    rng = np.random.default_rng(10)
    caught = sum(compare(run(rng, option.rounds, factor=1.1),
                         runs(rng, 10, option.rounds), alpha=found.alpha).failing
                 for _ in range(300))
    assert caught / 300 >= 0.92
    # and the design works from a history of round medians too
    history = runs(np.random.default_rng(11), 20, 10)
    planned = suggest_design(history, family_size=12, baselines=(10,))
    assert planned.within_sd == pytest.approx(0.03, abs=0.005)
    assert planned.options[0].rounds is not None


def test_detection_power_is_the_rules_own():
    # exact under the model: d normal, SE estimated on df; compared with a simulation
    rng = np.random.default_rng(12)
    se, df, alpha = 0.02, 9, 0.05 / 12
    d = rng.normal(math.log(1.1), se, 200_000)
    estimated = se * np.sqrt(rng.chisquare(df, 200_000) / df)
    simulated = np.mean((d > t_quantile(1 - alpha, df) * estimated) & (d >= math.log(1.05)))
    assert detection_power(se, df, 0.10, alpha) == pytest.approx(simulated, abs=0.005)


def test_the_family_level_does_not_make_equivalence_unreachable():
    # a quiet device, n = 10, K = 10: significance is judged at 0.05 / 12 after the
    # adjustment, but "unchanged" keeps its own 5% level, so stable benchmarks say so
    rng = np.random.default_rng(13)
    night = family_adjust([compare(run(rng, 10), runs(rng, 10, 10)) for _ in range(12)])
    assert all(c.alpha == pytest.approx(0.05 / 12) for c in night)
    assert sum(c.verdict is Verdict.UNCHANGED for c in night) >= 9
    assert not any(c.failing for c in night)


def test_history_spread_is_estimated_within_configurations():
    """A model revision 30% slower five runs ago is a step, not run-to-run noise: grouped
    by configuration the history gives the true spread; ungrouped it would be inflated and
    hide tonight's further 15% slowdown."""
    rng = np.random.default_rng(3)
    spread = {"sigma_w": 0.03, "sigma_u": 0.01}
    old = runs(rng, 10, 10, **spread)
    revised = [run(rng, 10, factor=1.3, **spread) for _ in range(10)]
    groups = ["old"] * 10 + ["revised"] * 10
    tonight = run(rng, 10, factor=1.3 * 1.15, **spread)
    grouped = compare(tonight, revised[-3:], BenchmarkHistory.from_runs(old + revised, groups))
    mixed = compare(tonight, revised[-3:], BenchmarkHistory.from_runs(old + revised))
    assert grouped.run_to_run_sd < 0.03 < mixed.run_to_run_sd
    assert grouped.df == pytest.approx(18.0, abs=1.0)  # (10 - 1) + (10 - 1) run means
    assert grouped.verdict is Verdict.REGRESSED, grouped.reason
    assert mixed.verdict is not Verdict.REGRESSED
    # groups of one run give no spread: the baseline runs' own means are used instead
    alone = compare(tonight, revised[-3:], BenchmarkHistory.from_runs(revised[-3:],
                                                                      ["a", "b", "c"]))
    assert alone.run_to_run_source == "baseline runs"
