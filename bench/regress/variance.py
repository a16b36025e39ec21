"""Variance components of a benchmark's log round medians: within a run and between runs.

A run measures a benchmark in n rounds; each round (a fresh runner process) gives one round
median. On the log scale a round median is

    y = mu + u_run + e_round,   u ~ (0, sigma_u^2),   e ~ (0, sigma_w^2)

- sigma_w^2, the **within-run** variance: rounds of one run scatter around the run's level
  (neighbours, frequency, memory layout of one process).
- sigma_u^2, the **run-to-run** variance: run levels scatter around the benchmark's level
  (the machine's state that night, the build's layout, a noisy neighbour for an hour). More
  rounds in a run average e away but never u: a run is one draw of u.

The new run's mean minus the mean of K baseline run means therefore has variance

    sigma_w^2 * (1/n + h/K) + sigma_u^2 * (1 + 1/K)

where h is the mean of 1/m_k over the baseline runs (1/m-bar when every run has m rounds;
the mean of the inverses is what the variance of unequal runs' means needs).

Estimates (method of moments, normal theory):

- s_w^2 pools the within-run variance of every run with two or more rounds, the new run
  included (sum of squared deviations from each run's own mean over sum of m_k - 1).
- The variance V of K run means estimates sigma_u^2 + sigma_w^2 * h, so
  u^2-hat = max(0, V - s_w^2 * h) is what is reported as the run-to-run spread.
- Degrees of freedom by Satterthwaite. The standard error is a linear combination of the
  two independent estimates V (K - 1 df) and s_w^2 (pooled df): substituting u^2-hat gives
  s_w^2 * (1/n + h/K - (1 + 1/K) * h_u) + V * (1 + 1/K), where h_u is the h of the runs V
  came from, and Satterthwaite's df for sum(a_i) with independent a_i on df_i is
  (sum a_i)^2 / sum(a_i^2 / df_i). With balanced runs (n = m every time) the s_w^2 term
  vanishes and the test is exactly Student's t on run means with K - 1 df.
- **No fall-back to the within-run df when u^2-hat clamps at zero.** The textbook clamp
  (u^2-hat = 0, so the SE is the within-run terms alone with their many df) is
  anti-conservative when K is small: with K = 3 run means (2 df) V falls under s_w^2 * h
  a third of the time at this machine's spreads even though sigma_u is 8%, and the
  clamped test then ignores run-to-run variance altogether. Simulated
  (`benchmarks/gate_simulation.py`, n = 10, 12 benchmarks, Bonferroni at 5%): with the
  clamp 14.6% of clean nights raised an alarm at K = 3 and 5.6% at K = 10; without it 0%
  and 5.0%. Here the SE is floored at the within-run value, but the df stay those of the
  run-to-run estimate (K - 1, or the history's): a run-to-run spread estimated as zero from
  three runs is still only known to 2 df. The price is power where sigma_u is small (a
  quiet device, sigma_u 1%, K = 3: 10% slowdowns caught 6% of the time against the
  clamp's 41%); a history of run means buys it back without the risk (K = 1 with a 10-run
  history: 91%).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["RunToRun", "VarianceEstimate", "difference_variance", "from_grouped_run_means",
           "from_prior", "from_run_means", "inverse_rounds", "pooled_within", "satterthwaite"]


@dataclass(frozen=True)
class VarianceEstimate:
    """A variance on the log scale and its degrees of freedom (math.inf: taken as known)."""

    value: float
    df: float

    @property
    def sd(self) -> float:
        return math.sqrt(self.value)


@dataclass(frozen=True)
class RunToRun:
    """The run-to-run variance u^2-hat (clamped at 0) and where it came from.

    For a moment estimate from run means, `means` is V (the variance of those means, with
    its df) and `inverse_rounds` the mean of 1/m over those runs: the standard error's
    degrees of freedom need the parts, not only the clamped difference. A prior estimate
    has `means` None.
    """

    value: float
    df: float
    source: str
    means: VarianceEstimate | None = None
    inverse_rounds: float = 0.0

    @property
    def sd(self) -> float:
        return math.sqrt(self.value)


def satterthwaite(terms: Sequence[tuple[float, float]]) -> float:
    """Degrees of freedom of sum(a_i), each a_i an independent variance estimate times a
    coefficient, on df_i degrees of freedom: (sum a_i)^2 / sum(a_i^2 / df_i).

    A term with infinite df (a variance taken as known) adds nothing to the denominator;
    when every term is known the result is infinite. A negative a_i (a subtracted estimate)
    is allowed: it still adds its own uncertainty.
    """
    total = sum(a for a, _ in terms)
    spread = sum(a * a / df for a, df in terms if math.isfinite(df))
    if any(df <= 0 for _, df in terms):
        raise ValueError("degrees of freedom must be positive")
    if spread == 0.0:
        return math.inf
    return total * total / spread


def pooled_within(runs: Sequence[Sequence[float]]) -> VarianceEstimate:
    """s_w^2 over runs of log values: each run's squared deviations from its own mean,
    summed over runs with two or more values, over the sum of (m_k - 1)."""
    squares, df = 0.0, 0
    for run in runs:
        if len(run) >= 2:
            centre = statistics.fmean(run)
            squares += sum((y - centre) ** 2 for y in run)
            df += len(run) - 1
    if df == 0:
        raise ValueError("no run has two rounds: the within-run spread is unknown")
    return VarianceEstimate(squares / df, float(df))


def inverse_rounds(rounds: Sequence[int]) -> float:
    """Mean of 1/m_k: what sigma_w^2 is multiplied by in the variance of a run mean,
    averaged over runs (1/m when every run has m rounds)."""
    if not rounds or any(m < 1 for m in rounds):
        raise ValueError("every run needs at least one round")
    return statistics.fmean(1.0 / m for m in rounds)


def from_run_means(means: Sequence[float], rounds: Sequence[int], within: VarianceEstimate,
                   source: str) -> RunToRun:
    """u^2-hat = max(0, V - s_w^2 * mean(1/m)) from two or more run means (logs)."""
    return from_grouped_run_means([(means, rounds)], within, source)


def from_grouped_run_means(groups: Sequence[tuple[Sequence[float], Sequence[int]]],
                           within: VarianceEstimate, source: str) -> RunToRun:
    """As `from_run_means`, with V pooled within groups of runs (each group's means about
    its own centre, over the sum of n_g - 1): runs of another model file or runtime sit
    at another level, and that step is what the gate looks for, not run-to-run noise.
    Groups of one run add nothing."""
    used = [(list(m), list(r)) for m, r in groups if len(m) >= 2]
    df = sum(len(m) - 1 for m, _ in used)
    if df < 1:
        raise ValueError("the run-to-run variance needs two or more run means")
    squares = 0.0
    for means, _ in used:
        centre = statistics.fmean(means)
        squares += sum((y - centre) ** 2 for y in means)
    h = inverse_rounds([m for _, rounds in used for m in rounds])
    spread = VarianceEstimate(squares / df, float(df))
    value = max(0.0, spread.value - within.value * h)
    df = satterthwaite([(spread.value, spread.df), (-within.value * h, within.df)]) \
        if value > 0 else math.inf
    return RunToRun(value, df, source, spread, h)


def from_prior(variance: float, df: float | None, source: str = "prior") -> RunToRun:
    """A run-to-run variance estimated elsewhere (log scale), with its df (None: known)."""
    if variance < 0:
        raise ValueError("a variance cannot be negative")
    return RunToRun(variance, math.inf if df is None else float(df), source)


def difference_variance(within: VarianceEstimate, new_rounds: int, baseline_h: float,
                        baseline_runs: int, between: RunToRun | None) -> VarianceEstimate:
    """Variance of mean(new) - mean(baseline run means), with Satterthwaite's df.

    `between` None leaves the run-to-run term out (one baseline run, no history): the
    result then describes within-run noise only and is too small whenever sigma_u > 0.
    """
    k = baseline_runs
    within_coefficient = 1.0 / new_rounds + baseline_h / k
    run_coefficient = 1.0 + 1.0 / k
    within_only = within.value * within_coefficient
    if between is None:  # one baseline run and no history: the run-to-run term is unknown
        return VarianceEstimate(within_only, within.df)
    if between.means is None:  # a prior: two independent pieces
        return VarianceEstimate(
            within_only + between.value * run_coefficient,
            satterthwaite([(within_only, within.df),
                           (between.value * run_coefficient, between.df)]))
    # substitute u^2-hat = V - s_w^2 * h_u and collect the s_w^2 terms
    terms = [(within.value * (within_coefficient - run_coefficient * between.inverse_rounds),
              within.df),
             (between.means.value * run_coefficient, between.means.df)]
    value = sum(a for a, _ in terms)
    if value <= within_only:  # u^2-hat clamped: floor the SE, keep the run means' df
        return VarianceEstimate(within_only, between.means.df)
    return VarianceEstimate(value, satterthwaite(terms))
