"""One benchmark's verdict for a night, a night's family of verdicts, and the design to aim at.

A benchmark is one cell identity (model, recipe, device, backend, threads). A run measures it
in n rounds; each round gives one round median (µs). The inputs here are those round
medians, never pooled iterations (iterations inside a process are correlated: a rank test on
them calls most A/A pairs different; `benchmarks/gate_simulation.py` shows how often).
Logs are taken here; every spread below is on the log scale.

**The statistic.** d = mean of the new run's log round medians minus the mean, over the K
baseline runs, of each run's mean; e^d is the ratio new / baseline. Its standard error has
a within-run and a run-to-run part (`variance.difference_variance`), with Satterthwaite's
degrees of freedom. The run-to-run part comes, in this order, from the caller's
`BenchmarkHistory` (earlier run means of the benchmark, or a prior estimate with its df),
else from the K >= 2 baseline run means. With one baseline run and no history it is
unknown: the SE then holds within-run noise only and the verdict says so (below).

**Verdicts**, at a one-sided level alpha per benchmark (after `family_adjust`, alpha_family / m)
and a minimum effect m (default 5%); the interval is the two-sided 1 - 2·alpha interval of
the ratio, which is exactly what the one-sided tests at alpha decide by. Equivalence has
its own level, `equivalence_alpha` (default 5%, not divided by m): a false `unchanged` is a
missed change, not an alarm, and at alpha_family / m a ±5% margin is out of reach even on
a quiet device (sigma_w 3%, sigma_u 1%, n = 10, K = 10: SE 1.45% on 9 df, so the
1 - 2 · 0.05/12 interval reaches ±4.9% around the estimate, the width of the margin
itself, while the 90% interval reaches ±2.7%):

- `regressed`: significantly slower (p_slower <= alpha: the interval lies above 1) *and* the
  estimate is at least the minimum effect (e^d >= 1 + m). The only failing verdict.
- `improved`: the mirror image (p_faster <= alpha and e^d <= 1 / (1 + m)).
- `unchanged`: equivalence shown -- a change of the minimum effect is excluded both ways
  (two one-sided tests at equivalence_alpha: the 1 - 2·equivalence_alpha interval lies
  inside (1 / (1 + m), 1 + m)). This includes a change that is significant but small
  (e.g. +2% with many rounds): the reason names it, the verdict does not fail.
- `suspect`: none of these, but the evidence leans to a change of at least m: significant
  with an estimate under m while the interval still reaches m, or an estimate of m or more
  that is not significant. Listed, never failing; `confirm` judges a re-run of it.
- `inconclusive`: not significant, an estimate under m, and an interval that still reaches
  a change of m: the benchmark cannot tell at this noise (`suggest_design` says what it
  needs). Not failing. This verdict is an addition to the six asked for: with suspect
  meaning "anything between", all 12 benchmarks of every clean night on this machine were
  "suspect" (its SE is about 10% for n = 10, K = 10), so the list said nothing and
  `--confirm` would re-run everything; leaning suspects are about 8 of 12 there and 0.05
  per night on the quiet device. A caller who wants the six verdicts can show
  `inconclusive` as `unchanged (not resolved)`.
- With the run-to-run term unknown (one baseline run, no history) the SE is too small
  whenever runs differ, so `regressed` and `improved` become `suspect` (the verdict is at
  most suspect) and the reason says the run-to-run term is missing; `unchanged` stays,
  marked as judged on within-run noise only.
- `new`: no baseline run; the first night passes. `not comparable`: decided by the caller
  (e.g. a different device fingerprint) through `not_comparable(reason)`.

**The family.** `family_adjust` controls the family-wise error of `regressed` over a night's
benchmarks (those that were tested: not `new`, not `not comparable`): Bonferroni by
default, every benchmark judged at alpha_family / m. Why not Holm: simulated
(`benchmarks/gate_simulation.py`, quiet device, n = 10, K = 10), a lone 10% slowdown is caught
equally (100% both: Holm's first step is Bonferroni's), and when all 12 slow down Holm
catches 100% against 99.5%; in exchange it makes a benchmark's verdict and interval
depend on how the other benchmarks did. Holm is offered (`method="holm"`). Both are valid
under any dependence between benchmarks, which matters: 91% of this machine's run-to-run
variance is shared by a night's benchmarks. `improved` uses the same level and is not
counted as an alarm. Measured false-alarm rates of clean 12-benchmark nights with the
default: 0-5% for normal noise at every K and n simulated, up to 4.6% with this machine's
own round residuals, but 8.0% when run effects have t(4) tails (K = 10, n = 10): a single new
run is one draw of its run effect, and heavy tails at the 0.05 / 12 quantile are not
normal ones.

**Confirmation.** `confirm` judges a re-run on its own data only, against the same
baseline; the flagged night's run is never pooled with it (pooling after looking would
make the selection part of the evidence). Its level is alpha_family / m with m the
night's number of tested benchmarks, not the number of re-runs: the re-runs were chosen by
data that share the baseline with them, so only the union bound over all m possible
confirmations holds whatever was chosen. Two policies, simulated (500 nights each):

- re-run suspects; fail on `regressed` at night or a confirmed suspect: at most
  alpha_night + alpha_confirm (0.05 + 0.05 on this machine: 6.4% of clean nights alarmed;
  0.025 + 0.025: 1.8%; with t(4) run effects 9.4% and 7.6%).
- re-run suspects and regressed; fail only on a confirmation: at most alpha_confirm
  (2.4% here, 5.2% with t(4) run effects, 0% on the quiet device, where a 10% slowdown at
  n = 5 was still caught 95% of the time against 96% for the night alone). The sturdier
  choice when run effects may be heavy-tailed.
**Design.** `suggest_design` turns a benchmark's spread into the rounds n and baseline runs K
its SE needs to detect a given slowdown (10%) with a given power (95%) at the family's level,
and says when run-to-run variance puts a floor sigma_u·sqrt(1 + 1/K) under the SE that no
number of rounds lowers.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from statistics import NormalDist

from bench.measure.student_t import t_cdf, t_quantile
from bench.regress.variance import (
    RunToRun,
    VarianceEstimate,
    difference_variance,
    from_grouped_run_means,
    from_prior,
    from_run_means,
    inverse_rounds,
    pooled_within,
)

__all__ = ["ALPHA", "MIN_EFFECT", "BenchmarkHistory", "Comparison", "Design", "DesignOption",
           "Verdict", "compare", "confirm", "detection_power", "family_adjust",
           "not_comparable", "suggest_design"]

ALPHA = 0.05
MIN_EFFECT = 0.05
_NORMAL = NormalDist()
_LARGE_DF = 1e5  # beyond this, Student's t is the normal distribution to 1e-5


class Verdict(StrEnum):
    REGRESSED = "regressed"
    IMPROVED = "improved"
    UNCHANGED = "unchanged"
    SUSPECT = "suspect"
    INCONCLUSIVE = "inconclusive"
    NEW = "new"
    NOT_COMPARABLE = "not comparable"


UNTESTED = frozenset({Verdict.NEW, Verdict.NOT_COMPARABLE})


def _cdf(x: float, df: float) -> float:
    if math.isinf(x):
        return 1.0 if x > 0 else 0.0
    return _NORMAL.cdf(x) if df > _LARGE_DF else t_cdf(x, df)


def _quantile(probability: float, df: float) -> float:
    return _NORMAL.inv_cdf(probability) if df > _LARGE_DF else t_quantile(probability, df)


def _logs(values: Sequence[float]) -> list[float]:
    try:
        logs = [math.log(v) for v in values]  # ValueError for <= 0, TypeError for None
    except (TypeError, ValueError):
        logs = [math.nan]
    if not all(map(math.isfinite, logs)):
        raise ValueError("round medians must be positive, finite latencies")
    return logs


def _percent(ratio: float) -> str:
    return f"{(ratio - 1) * 100:+.1f}%"


@dataclass(frozen=True)
class BenchmarkHistory:
    """What is known of a benchmark's run-to-run spread beyond tonight's baseline runs.

    `run_means_us`: earlier runs' geometric means of their round medians (µs), never the
    new run; they may include the baseline runs. `rounds`: each of those runs' rounds
    (empty: taken to be the baseline runs' typical count). Or `prior_variance`: a
    run-to-run variance of logs estimated elsewhere, with `prior_df` (None: taken as known).
    Two or more run means win over a prior.
    """

    run_means_us: tuple[float, ...] = ()
    rounds: tuple[int, ...] = ()
    prior_variance: float | None = None
    prior_df: float | None = None
    groups: tuple[object, ...] = ()  # per run mean: its configuration (model bytes, versions)

    def __post_init__(self) -> None:
        if self.rounds and len(self.rounds) != len(self.run_means_us):
            raise ValueError("one rounds count per run mean")
        if self.groups and len(self.groups) != len(self.run_means_us):
            raise ValueError("one group per run mean")

    @classmethod
    def from_runs(cls, runs: Sequence[Sequence[float]],
                  groups: Sequence[object] | None = None) -> BenchmarkHistory:
        """From earlier runs' round medians (µs), one sequence per run; `groups` names each
        run's configuration, so that the run-to-run spread is estimated within
        configurations (a model revision's step is not noise)."""
        kept = [i for i, run in enumerate(runs) if len(run)]
        return cls(tuple(math.exp(statistics.fmean(_logs(runs[i]))) for i in kept),
                   tuple(len(runs[i]) for i in kept),
                   groups=tuple(groups[i] for i in kept) if groups is not None else ())

    def run_to_run(self, within: VarianceEstimate, typical_h: float) -> RunToRun | None:
        if len(self.run_means_us) >= 2:
            means = _logs(self.run_means_us)
            # rounds unknown: as many as the baseline's runs typically had
            rounds = self.rounds or (max(1, round(1.0 / typical_h)),) * len(means)
            labels = self.groups or (None,) * len(means)
            grouped: dict[object, tuple[list[float], list[int]]] = {}
            for label, mean, count in zip(labels, means, rounds, strict=True):
                grouped.setdefault(label, ([], []))
                grouped[label][0].append(mean)
                grouped[label][1].append(count)
            if any(len(m) >= 2 for m, _ in grouped.values()):
                return from_grouped_run_means(list(grouped.values()), within, "history")
        if self.prior_variance is not None:
            return from_prior(self.prior_variance, self.prior_df, "prior")
        return None


@dataclass(frozen=True)
class Comparison:
    """One benchmark judged: the evidence (log ratio d, its SE and df, one-sided p-values)
    and the verdict at the one-sided level `alpha` it was judged at, with why (`detail`;
    `reason` adds the interval)."""

    verdict: Verdict
    detail: str
    alpha: float = ALPHA
    min_effect: float = MIN_EFFECT
    equivalence_alpha: float = ALPHA
    log_ratio: float | None = None
    se: float | None = None
    df: float | None = None
    p_slower: float | None = None  # H0: not slower (d <= 0)
    p_faster: float | None = None  # H0: not faster (d >= 0)
    p_below_effect: float | None = None  # H0: slower by >= min_effect; small: excluded
    p_above_effect: float | None = None  # H0: faster by >= min_effect; small: excluded
    rounds: int = 0
    baseline_runs: int = 0
    baseline_rounds: float | None = None  # mean rounds per baseline run
    within_sd: float | None = None
    run_to_run_sd: float | None = None
    run_to_run_source: str | None = None  # "history", "prior", "baseline runs"; None: unknown
    stage: str = "night"  # or "confirm"

    @property
    def tested(self) -> bool:
        return self.verdict not in UNTESTED

    @property
    def failing(self) -> bool:
        return self.verdict is Verdict.REGRESSED

    @property
    def ratio(self) -> float | None:
        return None if self.log_ratio is None else math.exp(self.log_ratio)

    @property
    def t(self) -> float | None:
        """The statistic d / SE."""
        if self.log_ratio is None or self.se is None:
            return None
        return self.log_ratio / self.se if self.se > 0 else math.copysign(math.inf,
                                                                           self.log_ratio)

    @property
    def p(self) -> float | None:
        """The one-sided p-value in the direction of the estimate."""
        if self.p_slower is None or self.p_faster is None:
            return None
        return min(self.p_slower, self.p_faster)

    @property
    def t_critical(self) -> float | None:
        return None if self.df is None else _quantile(1.0 - self.alpha, self.df)

    @property
    def reason(self) -> str:
        interval = self.ratio_interval
        if interval is None:
            return self.detail
        stage = "confirmation: " if self.stage == "confirm" else ""
        found = (f"{stage}{self.detail}; ratio {self.ratio:.3f} [{interval[0]:.3f}, "
                 f"{interval[1]:.3f}] ({(1 - 2 * self.alpha) * 100:.4g}%)")
        if self.verdict is Verdict.UNCHANGED and self.equivalence_alpha != self.alpha:
            half = _quantile(1.0 - self.equivalence_alpha, self.df) * self.se
            found += (f", [{math.exp(self.log_ratio - half):.3f}, "
                      f"{math.exp(self.log_ratio + half):.3f}] "
                      f"({(1 - 2 * self.equivalence_alpha) * 100:.4g}%, the equivalence test's)")
        return found

    @property
    def ratio_interval(self) -> tuple[float, float] | None:
        """The two-sided 1 - 2·alpha interval of new / baseline."""
        if self.log_ratio is None or self.se is None or self.df is None:
            return None
        half = self.t_critical * self.se
        return math.exp(self.log_ratio - half), math.exp(self.log_ratio + half)

    def judged_at(self, alpha: float) -> Comparison:
        """The same evidence judged at another one-sided level."""
        if not self.tested:
            return dataclasses.replace(self, alpha=alpha)
        verdict, detail = _judge(self, alpha)
        return dataclasses.replace(self, alpha=alpha, verdict=verdict, detail=detail)

    def to_dict(self) -> dict:
        found = dataclasses.asdict(self)
        found["verdict"] = str(self.verdict)
        interval = self.ratio_interval
        found.update(reason=self.reason, ratio=self.ratio, t=self.t, p=self.p,
                     t_critical=self.t_critical, ratio_low=interval[0] if interval else None,
                     ratio_high=interval[1] if interval else None)
        return found


def _judge(c: Comparison, alpha: float) -> tuple[Verdict, str]:
    d, effect = c.log_ratio, math.log1p(c.min_effect)
    slower, faster = c.p_slower <= alpha, c.p_faster <= alpha
    no_big_slowdown = c.p_below_effect <= c.equivalence_alpha
    no_big_speedup = c.p_above_effect <= c.equivalence_alpha
    ratio = math.exp(d)
    minimum = f"{c.min_effect * 100:g}%"
    level = f"two one-sided tests at {c.equivalence_alpha:.3g}"
    if slower and d >= effect:
        verdict, why = Verdict.REGRESSED, (f"{_percent(ratio)} slower, significant "
                                           f"(p = {c.p_slower:.2g} <= {alpha:.3g}) and at "
                                           f"least the {minimum} minimum effect")
    elif faster and d <= -effect:
        verdict, why = Verdict.IMPROVED, (f"{_percent(ratio)} faster, significant "
                                          f"(p = {c.p_faster:.2g} <= {alpha:.3g}) and at "
                                          f"least the {minimum} minimum effect")
    elif no_big_slowdown and no_big_speedup:
        verdict = Verdict.UNCHANGED
        why = f"a change of {minimum} or more is excluded both ways ({level})"
        if slower or faster:
            why = (f"{_percent(ratio)}, significant (p = {c.p:.2g}) but smaller than the "
                   f"{minimum} minimum effect; " + why)
    elif slower or faster:
        verdict = Verdict.SUSPECT
        why = (f"{_percent(ratio)}, significant (p = {c.p:.2g} <= {alpha:.3g}) but under the "
               f"{minimum} minimum effect, and a {minimum} change is not excluded")
    elif abs(d) >= effect:
        verdict = Verdict.SUSPECT
        why = (f"{_percent(ratio)} is at least the {minimum} minimum effect but not "
               f"significant (p = {c.p:.2g} > {alpha:.3g})")
    else:
        verdict = Verdict.INCONCLUSIVE
        why = (f"{_percent(ratio)}, not significant, and the interval still reaches a "
               f"{minimum} change: too few rounds or runs for this noise")
    if c.run_to_run_source is None:
        note = ("one baseline run and no history: the SE lacks the run-to-run term, "
                "judged on within-run noise only")
        if verdict in (Verdict.REGRESSED, Verdict.IMPROVED):
            why = f"would be {verdict} but {note}"
            verdict = Verdict.SUSPECT
        else:
            why = f"{why}; {note}"
    return verdict, why


def not_comparable(reason: str) -> Comparison:
    """The caller's verdict when new and baseline runs may not be compared (e.g. a
    different device fingerprint), with its reason."""
    return Comparison(Verdict.NOT_COMPARABLE, reason)


def compare(new: Sequence[float], baseline_runs: Sequence[Sequence[float]],
            history: BenchmarkHistory | None = None, min_effect: float = MIN_EFFECT,
            alpha: float = ALPHA, equivalence_alpha: float = ALPHA,
            stage: str = "night") -> Comparison:
    """Judge the new run's round medians (µs) against baseline runs (µs, one sequence per
    run) at the one-sided level `alpha`: a single benchmark's verdict. `equivalence_alpha`
    is the level at which `unchanged` excludes a change of min_effect. For a night's family
    pass every benchmark's result through `family_adjust`."""
    if len(new) == 0:
        raise ValueError("the new run has no rounds")
    if not (0 < alpha < 0.5 and 0 < equivalence_alpha < 0.5):
        raise ValueError("alpha is a one-sided level in (0, 0.5)")
    if min_effect <= 0:
        raise ValueError("the minimum effect must be positive")
    runs = [_logs(run) for run in baseline_runs if len(run)]
    if not runs:
        return Comparison(Verdict.NEW, "no baseline run: the first night passes",
                          alpha, min_effect, equivalence_alpha, rounds=len(new), stage=stage)
    new_logs = _logs(new)
    k = len(runs)
    means = [statistics.fmean(run) for run in runs]
    counts = [len(run) for run in runs]
    h = inverse_rounds(counts)
    within = pooled_within([new_logs, *runs])
    between = history.run_to_run(within, h) if history else None
    if between is None and k >= 2:
        between = from_run_means(means, counts, within, "baseline runs")
    spread = difference_variance(within, len(new_logs), h, k, between)
    d = statistics.fmean(new_logs) - statistics.fmean(means)
    se, df = math.sqrt(spread.value), spread.df
    effect = math.log1p(min_effect)

    def upper(x: float) -> float:  # P(T > x / se)
        return 1.0 - _cdf(x / se if se > 0 else math.copysign(math.inf, x), df) if x else 0.5

    p_slower = upper(d)
    evidence = Comparison(
        Verdict.SUSPECT, "", alpha, min_effect, equivalence_alpha, d, se, df,
        p_slower=p_slower, p_faster=1.0 - p_slower,
        p_below_effect=1.0 - upper(d - effect), p_above_effect=upper(d + effect),
        rounds=len(new_logs), baseline_runs=k, baseline_rounds=statistics.fmean(counts),
        within_sd=within.sd, run_to_run_sd=between.sd if between else None,
        run_to_run_source=between.source if between else None, stage=stage)
    return evidence.judged_at(alpha)


def family_adjust(comparisons: Sequence[Comparison], alpha_family: float = ALPHA,
                  method: str = "bonferroni") -> list[Comparison]:
    """Re-judge a night's comparisons so that the chance of any false `regressed` on a
    clean night is at most alpha_family (same order as given).

    `bonferroni`: every tested benchmark at alpha_family / m. `holm`: the step-down, each
    direction on its own -- sorted by p, the k-th smallest (from 0) at alpha_family / (m - k)
    while all before it were rejected; a benchmark is judged at the level its step reached,
    the rest at alpha_family / m."""
    tested = [i for i, c in enumerate(comparisons) if c.tested]
    if not tested:
        return list(comparisons)
    m = len(tested)
    levels = {i: alpha_family / m for i in tested}
    if method == "holm":
        for field in ("p_slower", "p_faster"):
            for k, i in enumerate(sorted(tested, key=lambda i: getattr(comparisons[i], field))):
                threshold = alpha_family / (m - k)
                if getattr(comparisons[i], field) > threshold:
                    break
                levels[i] = max(levels[i], threshold)
    elif method != "bonferroni":
        raise ValueError(f"unknown method {method!r}: bonferroni or holm")
    return [c.judged_at(levels[i]) if i in levels else c for i, c in enumerate(comparisons)]


def confirm(confirmation: Sequence[float], baseline_runs: Sequence[Sequence[float]],
            family_size: int, history: BenchmarkHistory | None = None,
            alpha_family: float = ALPHA, min_effect: float = MIN_EFFECT) -> Comparison:
    """Judge a confirmation re-run of a suspect on its own: its round medians (µs) against
    the same baseline, at alpha_family / family_size, where family_size is the number of
    benchmarks the night tested (not the number of suspects). The suspect night's run is
    not an input: nothing seen before the re-run is pooled with it."""
    if family_size < 1:
        raise ValueError("the family has at least one benchmark")
    return compare(confirmation, baseline_runs, history, min_effect,
                   alpha_family / family_size, stage="confirm")


def detection_power(se: float, df: float, effect: float = 0.10, alpha: float = ALPHA,
                    min_effect: float = MIN_EFFECT, steps: int = 600) -> float:
    """Chance that a true slowdown `effect` is called `regressed` at one-sided level alpha
    when the estimate d is normal with this SE and the SE is estimated on df degrees of
    freedom (its square a scaled chi-square, independent of d, as for balanced runs).

    `regressed` needs d > max(t_crit · SE-hat, log(1 + min_effect)); the chance is averaged
    over the distribution of SE-hat / SE = sqrt(X / df), X ~ chi-square(df), by the midpoint
    rule in that ratio -- the exact power of the rule under the model, also at 2 df, where
    the usual normal approximation of the noncentral t is far off."""
    shift, floor = math.log1p(effect), math.log1p(min_effect)
    critical = _quantile(1.0 - alpha, df)
    if df > _LARGE_DF:
        return _NORMAL.cdf((shift - max(critical * se, floor)) / se)
    top = 1.0 + 10.0 / math.sqrt(df) + 2.0
    width = top / steps
    half = df / 2.0
    log_norm = half * math.log(half) - math.lgamma(half) + math.log(2.0)
    total = mass = 0.0
    for i in range(steps):
        ratio = (i + 0.5) * width
        # density of sqrt(X / df) at `ratio`: 2 (df/2)^(df/2) r^(df-1) e^(-df r^2 / 2) / Gamma(df/2)
        density = math.exp(log_norm + (df - 1.0) * math.log(ratio) - half * ratio * ratio)
        mass += density
        total += density * _NORMAL.cdf((shift - max(critical * se * ratio, floor)) / se)
    return total / mass


@dataclass(frozen=True)
class DesignOption:
    """For K baseline runs: the fewest rounds per run (new and baseline alike) that reach
    the power, or None with the reason."""

    baseline_runs: int
    rounds: int | None
    se: float | None
    df: float | None
    power: float | None
    floor_se: float  # sigma_u * sqrt(1 + 1/K): no number of rounds gets below it
    reason: str


@dataclass(frozen=True)
class Design:
    effect: float
    power: float
    alpha: float  # the per-benchmark one-sided level: alpha_family / family_size
    within_sd: float
    run_to_run_sd: float
    needed_se: float  # the SE that reaches the power (with infinite df)
    options: tuple[DesignOption, ...]
    message: str

    @property
    def best(self) -> DesignOption | None:
        """The option with the fewest rounds (the nightly cost), then the fewest runs."""
        return _cheapest(self.options)


def _cheapest(options: Sequence[DesignOption]) -> DesignOption | None:
    return min((o for o in options if o.rounds is not None),
               key=lambda o: (o.rounds, o.baseline_runs), default=None)


def _design_df(k: int, history_runs: int | None) -> float | None:
    """The df the comparison's SE would have with every run of n rounds: the run means'
    K - 1 (or the history's), since V's s_w^2 part cancels the SE's when runs are balanced.
    None: no run-to-run estimate (K = 1 and no history)."""
    runs = history_runs if history_runs is not None else k
    return float(runs - 1) if runs >= 2 else None


def suggest_design(history: Sequence[Sequence[float]] | None = None, *,
                   within_sd: float | None = None, run_to_run_sd: float | None = None,
                   effect: float = 0.10, power: float = 0.95, alpha_family: float = ALPHA,
                   family_size: int = 1, min_effect: float = MIN_EFFECT, max_rounds: int = 30,
                   baselines: Sequence[int] = (1, 3, 5, 10, 20),
                   history_runs: int | None = None) -> Design:
    """Rounds n and baseline runs K that detect a slowdown of `effect` with `power` at the
    family's level, from a benchmark's history (earlier runs' round medians, µs) or from
    given spreads (sds of logs). `history_runs`: how many run means the run-to-run estimate
    will come from (None: the K baseline runs; K = 1 then has none)."""
    if history is not None:
        runs = [_logs(run) for run in history if len(run)]
        within = pooled_within(runs)
        between = from_run_means([statistics.fmean(r) for r in runs], [len(r) for r in runs],
                                 within, "history")
        within_sd, run_to_run_sd = within.sd, between.sd
        history_runs = len(runs) if history_runs is None else history_runs
    if within_sd is None or run_to_run_sd is None:
        raise ValueError("give a history or both spreads")
    alpha = alpha_family / family_size
    sw2, su2 = within_sd ** 2, run_to_run_sd ** 2
    low, high = 1e-6, 10.0  # the SE at which the power is reached (infinite df)
    for _ in range(100):
        middle = math.sqrt(low * high)
        if detection_power(middle, math.inf, effect, alpha, min_effect) >= power:
            low = middle
        else:
            high = middle
    needed = low
    options = []
    for k in baselines:
        floor = run_to_run_sd * math.sqrt(1 + 1 / k)
        if k == 1 and history_runs is None:
            options.append(DesignOption(k, None, None, None, None, floor,
                                        "one baseline run needs a history for the "
                                        "run-to-run term"))
            continue
        if floor >= needed:
            options.append(DesignOption(
                k, None, None, None, None, floor,
                f"run-to-run variance alone puts the SE at {floor * 100:.1f}% or more, above "
                f"the {needed * 100:.1f}% a {effect * 100:g}% slowdown needs: no number of "
                "rounds helps"))
            continue
        chosen = None
        for n in range(2, max_rounds + 1):
            se = math.sqrt(sw2 * (1 / n + 1 / (k * n)) + su2 * (1 + 1 / k))
            df = _design_df(k, history_runs)
            found = detection_power(se, df, effect, alpha, min_effect)
            if found >= power:
                chosen = DesignOption(k, n, se, df, found, floor,
                                      f"{n} rounds per run reach power {found:.3f}")
                break
        options.append(chosen or DesignOption(
            k, None, None, None, None, floor,
            f"more than {max_rounds} rounds per run needed (or the df of {k} runs is too "
            "few)"))
    if run_to_run_sd >= needed:
        message = (f"undetectable at any n and K: run-to-run sd {run_to_run_sd * 100:.1f}% is "
                   f"at least the SE of {needed * 100:.1f}% a {effect * 100:g}% slowdown needs "
                   f"(power {power:g}, one-sided level {alpha:.3g}); only less run-to-run "
                   "variance helps (a quieter machine, pinned cores, or measuring the "
                   "baseline build in the same night)")
    else:
        best = _cheapest(options)
        message = (f"{best.rounds} rounds per run with K = {best.baseline_runs} baseline runs "
                   f"(SE {best.se * 100:.1f}%, power {best.power:.3f})" if best else
                   f"no design within {max_rounds} rounds and K in {tuple(baselines)}")
    return Design(effect, power, alpha, within_sd, run_to_run_sd, needed, tuple(options),
                  message)
