"""Does the nightly regression rule keep its error rates? Simulated on this machine's noise.

The rule is `bench.regress.decision` (compare, family_adjust, confirm); every figure below
comes from calling it on simulated nights, not from a re-implementation.

Data model per benchmark, on the log scale: a run's level is mu + u with a run effect
u ~ N(0, sigma_u^2); each round median is that level plus a round effect e ~ N(0, sigma_w^2).
Variants: Student's t with 4 df for both u and e (scaled to the same sds), and e resampled
from this machine's own within-run residuals (u normal). A night measures 12 benchmarks (the
default sweep's 2 models x 6 recipes on one device) in n rounds each; the baseline is the last
K runs (K = 1 takes its run-to-run term from a history of 10 run means, as `last:10` would
give; K = 3 and 10 from the baseline runs themselves).

1. This machine's noise, read from the store (read-only): sigma_w (pooled within-run sd of
   log round medians) and sigma_u (run-to-run sd: the variance of run means minus
   sigma_w^2 * mean(1/m)); benchmark identity = (model, recipe, device, backend, threads),
   completed runs, usable rounds. A store with fewer than two runs of a benchmark cannot
   give sigma_u: the run exports in results/runs/*.json (the same machine's runs, by
   hostname) are added, and the output says so; without either, printed defaults.
   Also: how much of the run-to-run variance a night's benchmarks share, and the lag-1
   autocorrelation of iterations inside a round (runner documents).
2. Clean nights: the chance that any of the 12 benchmarks is called `regressed` (target <= 5%),
   with the family adjustment (Bonferroni, alpha_family 0.05) and without it ("unadjusted":
   each at 0.05); the chance of any `improved`; suspect and inconclusive verdicts per night.
   One benchmark 10% slower among 11 clean ones: the chance it is called `regressed` (target
   >= 95%), adjusted and not, beside the power `detection_power` predicts.
3. The same on a quieter device (sigma_w 3%, sigma_u 1%), where the targets are reachable.
4. Holm against Bonferroni when one or all 12 benchmarks are 10% slower; shared run effects.
5. `--confirm`: suspects re-run once and judged on the fresh run alone.
6. One baseline run without history: what the within-run-only SE would do if it could fail.
7. Why round medians: A/A pairs of runs, a Mann-Whitney test on their pooled iterations
   (AR(1) iterations inside each round) against tests on round medians.

Usage: python benchmarks/gate_simulation.py [--nights 1000] [--store results/bench.sqlite]
                                            [--label A]
                                            [--exports results/runs] [--seed 2026]
                                            [--sigma-w 0.18 --sigma-u 0.08]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sqlite3
import statistics
import sys
import time
from collections import defaultdict
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from statistics import NormalDist

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.regress import decision, variance  # noqa: E402
from bench.regress.decision import (  # noqa: E402
    BenchmarkHistory,
    Comparison,
    Verdict,
    compare,
    confirm,
    detection_power,
    family_adjust,
    suggest_design,
)
from bench.regress.variance import RunToRun, VarianceEstimate  # noqa: E402

BENCHMARKS = 12
HISTORY = 10  # run means behind a K = 1 baseline (last:10)
SLOWDOWN = 0.10
ALPHA_FAMILY = 0.05
LEVEL = math.log(5000.0)  # µs; irrelevant to the rule, which is scale-free
DEFAULT_SIGMA_W, DEFAULT_SIGMA_U = 0.05, 0.03
QUIET_SIGMA_W, QUIET_SIGMA_U = 0.03, 0.01
GRID_K, GRID_N = (1, 3, 10), (3, 5, 10)

Runs = dict[tuple, dict[str, list[float]]]  # benchmark -> run id -> log round medians


# -- 1. the machine's noise ---------------------------------------------------------------

def store_runs(path: Path, label: str | None = None
               ) -> tuple[Runs, str | None, list[np.ndarray]]:
    """Usable log round medians of completed runs (with `label`: only runs so labelled),
    per benchmark and run; the hostname; the within-round log iterations of each round
    (for the autocorrelation)."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = db.execute(
            "SELECT c.run_id, c.model, c.recipe, c.device, c.backend, c.threads, "
            "r.summary_us, r.record FROM rounds r "
            "JOIN cells c ON c.run_id = r.run_id AND c.cell_id = r.cell_id "
            "JOIN runs ON runs.id = r.run_id "
            "JOIN device_rounds d ON d.run_id = r.run_id AND d.device = c.device "
            "AND d.round = r.round "
            "WHERE runs.status = 'completed' AND r.status = 'ok' AND r.summary_us > 0 "
            "AND d.finished_at IS NOT NULL AND (? IS NULL OR runs.label = ?)",
            (label, label)).fetchall()
        hosts = {json.loads(h).get("hostname") for (h,) in
                 db.execute("SELECT host FROM runs WHERE status = 'completed'")}
    finally:
        db.close()
    runs: Runs = defaultdict(lambda: defaultdict(list))
    iterations = []
    for run_id, *key, summary, record in rows:
        runs[tuple(key)][run_id].append(math.log(summary))
        latencies = (json.loads(record) or {}).get("latencies_us") if record else None
        if latencies and len(latencies) >= 10:
            iterations.append(np.log(np.asarray(latencies, dtype=float)))
    return runs, (hosts.pop() if len(hosts) == 1 else None), iterations


def export_runs(folder: Path, host: str | None, known: Runs) -> tuple[Runs, int]:
    """Completed runs exported as JSON (results/runs/RUN_ID.json) on the same host, added
    to the store's (a run already in the store is not read twice)."""
    seen = {run_id for by_run in known.values() for run_id in by_run}
    merged: Runs = defaultdict(lambda: defaultdict(list))
    for key, by_run in known.items():
        for run_id, logs in by_run.items():
            merged[key][run_id] = list(logs)
    added = 0
    for path in sorted(folder.glob("*.json")):
        try:
            document = json.loads(path.read_text())
            run = document["run"]
        except (OSError, ValueError, KeyError):
            continue
        if run.get("id") in seen or run.get("status") != "completed" \
                or (host and (run.get("host") or {}).get("hostname") != host):
            continue
        added += 1
        for r in document.get("rounds", []):
            value = r.get("summary_us") or r.get("median_us")
            if r.get("status") == "ok" and r.get("usable") and value and value > 0:
                key = (r["model"], r["recipe"], r["device"], r["backend"], r["threads"])
                merged[key][run["id"]].append(math.log(value))
    return merged, added


@dataclass(frozen=True)
class Noise:
    sigma_w: float | None
    within_df: int
    sigma_u: float | None
    between_df: int  # sum over benchmarks of (runs - 1)
    runs: int
    benchmarks: int
    rounds: int
    residuals: np.ndarray
    night_share: float | None  # share of the run-to-run variance common to a night


def estimate(runs: Runs) -> Noise:
    squares, within_df, rounds, residuals = 0.0, 0, 0, []
    for by_run in runs.values():
        for logs in by_run.values():
            rounds += len(logs)
            if len(logs) >= 2:
                centre = statistics.fmean(logs)
                squares += sum((y - centre) ** 2 for y in logs)
                within_df += len(logs) - 1
                scale = math.sqrt(len(logs) / (len(logs) - 1))
                residuals.extend((y - centre) * scale for y in logs)
    sw2 = squares / within_df if within_df else None
    pooled, between_df = 0.0, 0
    run_ids = {run_id for by_run in runs.values() for run_id in by_run}
    for by_run in runs.values():
        usable = [logs for logs in by_run.values() if logs]
        if len(usable) >= 2 and sw2 is not None:
            means = [statistics.fmean(logs) for logs in usable]
            h = statistics.fmean(1 / len(logs) for logs in usable)
            pooled += (statistics.variance(means) - sw2 * h) * (len(usable) - 1)
            between_df += len(usable) - 1
    su2 = max(0.0, pooled / between_df) if between_df else None
    return Noise(math.sqrt(sw2) if sw2 is not None else None, within_df,
                 math.sqrt(su2) if su2 is not None else None, between_df, len(run_ids),
                 len(runs), rounds, np.asarray(residuals), night_share(runs, sw2))


def night_share(runs: Runs, sw2: float | None) -> float | None:
    """Of the run-to-run variance, the share a night's benchmarks have in common: run
    means centred per benchmark, the night's average over benchmarks taken out, on the
    runs that measured every one of the benchmarks they share most."""
    if sw2 is None:
        return None
    by_run: dict[str, set] = defaultdict(set)
    for key, runs_of in runs.items():
        for run_id in runs_of:
            by_run[run_id].add(key)
    best: tuple[int, list, list] = (0, [], [])
    for keys in by_run.values():
        nights = [r for r, k in by_run.items() if keys <= k]
        if len(nights) >= 3 and len(keys) >= 3 and len(nights) * len(keys) > best[0]:
            best = (len(nights) * len(keys), nights, sorted(keys))
    _, nights, keys = best
    if not nights:
        return None
    means = np.array([[statistics.fmean(runs[k][r]) for r in nights] for k in keys])
    h = float(np.mean([[1 / len(runs[k][r]) for r in nights] for k in keys]))
    means -= means.mean(axis=1, keepdims=True)
    night = means.mean(axis=0)
    rest = means - night
    total = (means ** 2).sum() / (len(keys) * (len(nights) - 1)) - sw2 * h
    interaction = (rest ** 2).sum() / ((len(keys) - 1) * (len(nights) - 1)) - sw2 * h
    if total <= 0:
        return None
    return float(min(1.0, max(0.0, 1.0 - max(0.0, interaction) / total)))


def lag1(iterations: list[np.ndarray]) -> tuple[float, float, int] | None:
    """Median lag-1 autocorrelation and median sd of log iterations inside a round."""
    if not iterations:
        return None
    found, sds, counts = [], [], []
    for logs in iterations:
        x = logs - logs.mean()
        if (x * x).sum() > 0:
            found.append(float((x[1:] * x[:-1]).sum() / (x * x).sum()))
            sds.append(float(x.std(ddof=1)))
            counts.append(len(logs))
    return float(np.median(found)), float(np.median(sds)), int(np.median(counts))


def machine_noise(args) -> tuple[float, float, np.ndarray | None, float | None,
                                 tuple | None]:
    print("1. this machine's noise (log round medians)")
    residuals, share, iterations = None, None, None
    sigma_w = sigma_u = None
    if args.store.exists():
        runs, host, raw = store_runs(args.store, args.label)
        found = estimate(runs)
        iterations = lag1(raw)
        print(f"   store {args.store} (read-only{f', label {args.label}' if args.label else ''}"
              f"): {found.runs} completed run(s), "
              f"{found.benchmarks} benchmarks, {found.rounds} usable rounds")
        if found.sigma_w is not None:
            print(f"   sigma_w = {found.sigma_w * 100:.1f}% ({found.within_df} df)")
            sigma_w, residuals = found.sigma_w, found.residuals
        if found.sigma_u is not None:
            print(f"   sigma_u = {found.sigma_u * 100:.1f}% ({found.between_df} df)")
            sigma_u, share = found.sigma_u, found.night_share
        else:
            print("   sigma_u: not estimable from the store (no benchmark has two "
                  "completed runs)")
            if args.exports.is_dir():
                merged, added = export_runs(args.exports, host, runs)
                more = estimate(merged)
                if added and more.sigma_u is not None:
                    print(f"   + {added} exported run(s) of host {host!r} in {args.exports}: "
                          f"{more.runs} runs, {more.benchmarks} benchmarks, {more.rounds} "
                          f"rounds")
                    print(f"   sigma_w = {more.sigma_w * 100:.1f}% ({more.within_df} df), "
                          f"sigma_u = {more.sigma_u * 100:.1f}% ({more.between_df} df) "
                          "<- used below (store and exports together)")
                    sigma_w, sigma_u = more.sigma_w, more.sigma_u
                    residuals, share = more.residuals, more.night_share
        if share is not None:
            print(f"   share of the run-to-run variance common to a night's benchmarks: "
                  f"{share * 100:.0f}%")
        if iterations:
            print(f"   iterations inside a round: lag-1 autocorrelation {iterations[0]:.2f} "
                  f"(median), sd of log iterations {iterations[1] * 100:.1f}%, "
                  f"{iterations[2]} per round")
    else:
        print(f"   no store at {args.store}")
    if sigma_w is None or sigma_u is None:
        sigma_w = sigma_w if sigma_w is not None else DEFAULT_SIGMA_W
        sigma_u = sigma_u if sigma_u is not None else DEFAULT_SIGMA_U
        print(f"   DEFAULTS used where not estimable: sigma_w = {sigma_w * 100:.1f}%, "
              f"sigma_u = {sigma_u * 100:.1f}%")
    if args.sigma_w is not None or args.sigma_u is not None:
        sigma_w = args.sigma_w if args.sigma_w is not None else sigma_w
        sigma_u = args.sigma_u if args.sigma_u is not None else sigma_u
        print(f"   overridden: sigma_w = {sigma_w * 100:.1f}%, sigma_u = {sigma_u * 100:.1f}%")
    return sigma_w, sigma_u, residuals, share, iterations


# -- the nights --------------------------------------------------------------------------

@dataclass(frozen=True)
class Model:
    sigma_w: float
    sigma_u: float
    shape: str = "normal"  # normal | t4 | empirical
    residuals: np.ndarray | None = None
    shared: float = 0.0  # share of sigma_u^2 common to a night's benchmarks

    def rounds(self, rng, size) -> np.ndarray:
        if self.shape == "t4":
            return rng.standard_t(4, size) * self.sigma_w / math.sqrt(2.0)
        if self.shape == "empirical":
            return rng.choice(self.residuals, size) * (self.sigma_w / self.residuals.std())
        return rng.normal(0.0, self.sigma_w, size)

    def runs(self, rng, size) -> np.ndarray:
        """Run effects, shape (..., benchmarks, runs): a night-wide part shared by the
        benchmarks of one run, and each benchmark's own."""
        def draw(shape):
            if self.shape == "t4":
                return rng.standard_t(4, shape) / math.sqrt(2.0)
            return rng.normal(0.0, 1.0, shape)
        own = draw(size) * self.sigma_u * math.sqrt(1.0 - self.shared)
        if not self.shared:
            return own
        common = draw((*size[:-2], 1, size[-1])) * self.sigma_u * math.sqrt(self.shared)
        return own + common


@dataclass
class Night:
    """One simulated night's inputs for every benchmark (µs)."""

    new: list[list[float]]
    baselines: list[list[list[float]]]
    histories: list[BenchmarkHistory | None]


def nights(model: Model, n: int, k: int, count: int, rng,
           with_history: bool = True) -> list[Night]:
    b = BENCHMARKS
    history_runs = HISTORY if k == 1 and with_history else 0
    total = k + 1 + max(0, history_runs - k)  # baseline, new, earlier history runs
    effects = model.runs(rng, (count, b, total))
    rounds = model.rounds(rng, (count, b, total, n))
    logs = LEVEL + effects[..., None] + rounds
    found = []
    for night in np.exp(logs):
        new = [list(night[i, k]) for i in range(b)]
        baselines = [[list(night[i, j]) for j in range(k)] for i in range(b)]
        histories: list[BenchmarkHistory | None] = [None] * b
        if history_runs:
            earlier = [j for j in range(total) if j != k]  # the baseline run and 9 before it
            histories = [BenchmarkHistory.from_runs([night[i, j] for j in earlier])
                         for i in range(b)]
        found.append(Night(new, baselines, histories))
    return found


def judge_night(night: Night, slower: dict[int, float] | None = None,
                method: str = "bonferroni", alpha_family: float = ALPHA_FAMILY
                ) -> tuple[list[Comparison], list[Comparison]]:
    """(unadjusted, family-adjusted) comparisons; `slower` multiplies benchmarks' new runs."""
    slower = slower or {}
    raw = [compare([v * slower.get(i, 1.0) for v in night.new[i]], night.baselines[i],
                   night.histories[i]) for i in range(BENCHMARKS)]
    return raw, family_adjust(raw, alpha_family, method)


@dataclass
class Rates:
    false_alarm: float
    false_alarm_unadjusted: float
    false_improved: float
    suspects: float
    inconclusive: float
    detected: float
    detected_unadjusted: float


def rates(model: Model, n: int, k: int, count: int, rng) -> Rates:
    alarms = alarms_raw = improved = suspects = unresolved = hits = hits_raw = 0
    factor = 1.0 + SLOWDOWN
    for night in nights(model, n, k, count, rng):
        raw, adjusted = judge_night(night)
        alarms += any(c.verdict is Verdict.REGRESSED for c in adjusted)
        alarms_raw += any(c.verdict is Verdict.REGRESSED for c in raw)
        improved += any(c.verdict is Verdict.IMPROVED for c in adjusted)
        suspects += sum(c.verdict is Verdict.SUSPECT for c in adjusted)
        unresolved += sum(c.verdict is Verdict.INCONCLUSIVE for c in adjusted)
        slow = compare([v * factor for v in night.new[0]], night.baselines[0],
                       night.histories[0])
        family = family_adjust([slow, *raw[1:]], ALPHA_FAMILY)
        hits += family[0].verdict is Verdict.REGRESSED
        hits_raw += slow.verdict is Verdict.REGRESSED
    return Rates(alarms / count, alarms_raw / count, improved / count, suspects / count,
                 unresolved / count, hits / count, hits_raw / count)


def predicted(model: Model, n: int, k: int) -> float:
    se = math.sqrt(model.sigma_w ** 2 * (1 / n + 1 / (k * n))
                   + model.sigma_u ** 2 * (1 + 1 / k))
    df = (HISTORY if k == 1 else k) - 1
    return detection_power(se, df, SLOWDOWN, ALPHA_FAMILY / BENCHMARKS)


def _rates_task(task: tuple) -> Rates:
    """One row, in a worker process: (model, n, K, nights, seed, rule)."""
    model, n, k, count, seed, rule = task
    decision.difference_variance = textbook_clamp if rule == "clamp" \
        else variance.difference_variance  # what compare() calls
    try:
        return rates(model, n, k, count, np.random.default_rng(seed))
    finally:
        decision.difference_variance = variance.difference_variance


def run_rows(tasks: list[tuple], pool: Executor | None) -> list[Rates]:
    return list(pool.map(_rates_task, tasks) if pool else map(_rates_task, tasks))


def grid(title: str, models: list[Model], count: int, rng, pool: Executor | None) -> None:
    print(f"\n{title}")
    print(f"   {'noise':<10}{'K':>3}{'n':>4}  {'false alarm':>11} {'unadjusted':>10} "
          f"{'false impr.':>11} {'suspect':>7} {'inconcl.':>8}  {'detect 10%':>10} "
          f"{'unadjusted':>10} {'predicted':>9}")
    rows = [(model, n, k) for model in models for k in GRID_K for n in GRID_N]
    found = run_rows([(model, n, k, count, int(rng.integers(1 << 62)), "here")
                      for model, n, k in rows], pool)
    for (model, n, k), row in zip(rows, found, strict=True):
        kk = f"{k}+h" if k == 1 else str(k)
        print(f"   {model.shape:<10}{kk:>3}{n:>4}  {row.false_alarm:>11.3f} "
              f"{row.false_alarm_unadjusted:>10.3f} {row.false_improved:>11.3f} "
              f"{row.suspects:>7.2f} {row.inconclusive:>8.2f}  {row.detected:>10.3f} "
              f"{row.detected_unadjusted:>10.3f} {predicted(model, n, k):>9.3f}")


def design(title: str, sigma_w: float, sigma_u: float) -> None:
    found = suggest_design(within_sd=sigma_w, run_to_run_sd=sigma_u, effect=SLOWDOWN,
                           family_size=BENCHMARKS, baselines=(3, 5, 10, 20))
    print(f"   suggest_design ({title}): needed SE {found.needed_se * 100:.2f}%; "
          f"{found.message}")
    single = suggest_design(within_sd=sigma_w, run_to_run_sd=sigma_u, effect=SLOWDOWN,
                            family_size=BENCHMARKS, baselines=(1,), history_runs=HISTORY)
    for option in (*single.options, *found.options):
        history = f" + {HISTORY}-run history" if option.baseline_runs == 1 else ""
        print(f"      K = {option.baseline_runs:>2}{history}: {option.reason}")


def textbook_clamp(within: VarianceEstimate, new_rounds: int, baseline_h: float,
                   baseline_runs: int, between: RunToRun | None) -> VarianceEstimate:
    """The rule as first proposed: u^2-hat = max(0, V - s_w^2 h), and when it clamps the SE
    is the within-run terms alone on the within-run df (`variance.difference_variance`
    keeps the run means' df instead)."""
    found = variance.difference_variance(within, new_rounds, baseline_h, baseline_runs,
                                         between)
    if between is not None and between.means is not None and between.value == 0.0:
        return VarianceEstimate(found.value, within.df)
    return found


def clamp_contrast(models: list[tuple[str, Model]], count: int, rng,
                   pool: Executor | None) -> None:
    print(f"\n2b. the proposed clamp (u^2 = 0: within-run SE on the within-run df) against "
          f"this module's (same SE floor, the run means' df), normal noise, n = 10, "
          f"{count} nights")
    print(f"   {'device':<16}{'K':>3}  {'clamp: false alarm':>18} {'detect 10%':>10}  "
          f"{'here: false alarm':>17} {'detect 10%':>10}")
    rows = [(label, model, k) for label, model in models for k in (3, 10)]
    found = run_rows([(model, 10, k, count, int(rng.integers(1 << 62)), rule)
                      for _, model, k in rows for rule in ("clamp", "here")], pool)
    for i, (label, _, k) in enumerate(rows):
        clamp, here = found[2 * i], found[2 * i + 1]
        print(f"   {label:<16}{k:>3}  {clamp.false_alarm:>18.3f} {clamp.detected:>10.3f}  "
              f"{here.false_alarm:>17.3f} {here.detected:>10.3f}")


# -- 4-6 ------------------------------------------------------------------------------------

def holm_vs_bonferroni(model: Model, n: int, k: int, count: int, rng) -> None:
    print(f"\n4. Holm vs Bonferroni ({model.shape}, sigma_w {model.sigma_w * 100:g}%, "
          f"sigma_u {model.sigma_u * 100:g}%, n = {n}, K = {k}, {count} nights)")
    everything = dict.fromkeys(range(BENCHMARKS), 1 + SLOWDOWN)
    cases = (("clean night: any regressed", {}, None),
             ("one 10% slower: it regressed", {0: 1 + SLOWDOWN}, [0]),
             ("all 12 10% slower: share regressed", everything, list(range(BENCHMARKS))))
    drawn = nights(model, n, k, count, rng)
    for label, slower, targets in cases:
        found = {}
        for method in ("bonferroni", "holm"):
            total = 0.0
            for night in drawn:
                _, adjusted = judge_night(night, slower, method)
                if targets is None:
                    total += any(c.verdict is Verdict.REGRESSED for c in adjusted)
                else:
                    total += statistics.fmean(adjusted[i].verdict is Verdict.REGRESSED
                                              for i in targets)
            found[method] = total / count
        print(f"   {label:<36} bonferroni {found['bonferroni']:.3f}   holm {found['holm']:.3f}")


def shared_runs(model: Model, n: int, k: int, count: int, rng) -> None:
    found = rates(model, n, k, count, rng)
    print(f"   shared run effects ({model.shared * 100:.0f}% of sigma_u^2 common to the "
          f"night), n = {n}, K = {k}: false alarm {found.false_alarm:.3f} (unadjusted "
          f"{found.false_alarm_unadjusted:.3f}), detect 10% {found.detected:.3f}")


def confirmation(model: Model, n: int, k: int, count: int, rng, label: str,
                 alpha_night: float = ALPHA_FAMILY, alpha_confirm: float = ALPHA_FAMILY,
                 policy: str = "suspects") -> None:
    """Night at alpha_night (Bonferroni), then re-runs judged alone by `confirm` at
    alpha_confirm / m. Policy `suspects`: suspects are re-run; an alarm is regressed at night
    or a confirmed suspect (bound alpha_night + alpha_confirm). Policy `confirmed`: suspects
    and regressed are re-run; only a confirmed one is an alarm (bound alpha_confirm)."""
    alarms = reruns = hits = hits_night = 0
    rerun = {Verdict.SUSPECT} if policy == "suspects" else {Verdict.SUSPECT, Verdict.REGRESSED}
    for night in nights(model, n, k, count, rng):
        for slower in ({}, {0: 1 + SLOWDOWN}):
            _, adjusted = judge_night(night, slower, alpha_family=alpha_night)
            alarm = [c.verdict is Verdict.REGRESSED and policy == "suspects" for c in adjusted]
            for i, c in enumerate(adjusted):
                if c.verdict in rerun:
                    effect = model.runs(rng, (1, 1))[0, 0]
                    fresh = np.exp(LEVEL + effect + model.rounds(rng, n)) * slower.get(i, 1.0)
                    again = confirm(list(fresh), night.baselines[i], BENCHMARKS,
                                    night.histories[i], alpha_confirm)
                    alarm[i] = alarm[i] or again.verdict is Verdict.REGRESSED
                    reruns += not slower
            if slower:
                hits += alarm[0]
                hits_night += adjusted[0].verdict is Verdict.REGRESSED
            else:
                alarms += any(alarm)
    bound = alpha_night + alpha_confirm if policy == "suspects" else alpha_confirm
    print(f"   {label}, {policy}, alpha {alpha_night:g} + {alpha_confirm:g}: clean nights "
          f"with an alarm {alarms / count:.3f} (bound {bound:g}); re-runs per clean night "
          f"{reruns / count:.2f}; 10% slowdown caught {hits / count:.3f} (night alone "
          f"{hits_night / count:.3f})")


def no_history(model: Model, n: int, count: int, rng) -> None:
    regressed_capped = would = 0
    for night in nights(model, n, 1, count, rng, with_history=False):
        _, adjusted = judge_night(night)
        regressed_capped += any(c.verdict is Verdict.REGRESSED for c in adjusted)
        would += any(c.verdict is Verdict.SUSPECT and c.detail.startswith("would be regressed")
                     for c in adjusted)
    print(f"   K = 1, no history, n = {n}: nights with a regressed verdict "
          f"{regressed_capped / count:.3f} (capped at suspect); nights where the "
          f"within-run-only SE would have called one regressed: {would / count:.3f}")


# -- 7. pooled iterations ------------------------------------------------------------------

def mann_whitney_p(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Two-sided p of the rank-sum test, normal approximation, row by row (no ties in
    continuous data)."""
    both = np.concatenate([a, b], axis=1)
    ranks = both.argsort(axis=1).argsort(axis=1) + 1.0
    n1, n2 = a.shape[1], b.shape[1]
    u = ranks[:, :n1].sum(axis=1) - n1 * (n1 + 1) / 2
    z = (u - n1 * n2 / 2) / math.sqrt(n1 * n2 * (n1 + n2 + 1) / 12)
    normal = NormalDist()
    return np.array([2 * (1 - normal.cdf(abs(v))) for v in z])


def iterations_run(rng, pairs: int, n: int, per_round: int, phi: float, sd_it: float,
                   sigma_w: float, sigma_u: float) -> np.ndarray:
    """Log iterations, shape (pairs, n, per_round): run effect + round effect + AR(1)."""
    noise = np.empty((pairs, n, per_round))
    innovation = sd_it * math.sqrt(1 - phi * phi)
    noise[..., 0] = rng.normal(0, sd_it, (pairs, n))
    for i in range(1, per_round):
        noise[..., i] = phi * noise[..., i - 1] + rng.normal(0, innovation, (pairs, n))
    return (LEVEL + rng.normal(0, sigma_u, (pairs, 1, 1)) + rng.normal(0, sigma_w, (pairs, n, 1))
            + noise)


def pooled_iterations(sigma_w: float, sigma_u: float, measured: tuple | None, pairs: int,
                      rng) -> None:
    sd_it, per_round = (measured[1], measured[2]) if measured else (0.05, 40)
    n = 10
    print(f"\n7. A/A pairs of runs, flagged at two-sided 5% ({pairs} pairs, {n} rounds of "
          f"{per_round} iterations, iteration sd {sd_it * 100:.1f}%, sigma_w "
          f"{sigma_w * 100:.1f}%)")
    print(f"   {'test':<58}{'sigma_u = 0':>12}{f'sigma_u = {sigma_u * 100:.1f}%':>16}")
    rows: dict[str, list[float]] = defaultdict(list)
    for su in (0.0, sigma_u):
        for phi in (0.5, 0.0):
            a = iterations_run(rng, pairs, n, per_round, phi, sd_it, sigma_w, su)
            b = iterations_run(rng, pairs, n, per_round, phi, sd_it, sigma_w, su)
            p = mann_whitney_p(a.reshape(pairs, -1), b.reshape(pairs, -1))
            rows[f"Mann-Whitney on pooled iterations, AR(1) phi = {phi:g}"].append(
                float(np.mean(p < 0.05)))
        # phi = 0.5 runs (a, b above are phi = 0): medians per round
        a = np.median(iterations_run(rng, pairs, n, per_round, 0.5, sd_it, sigma_w, su), axis=2)
        b = np.median(iterations_run(rng, pairs, n, per_round, 0.5, sd_it, sigma_w, su), axis=2)
        history = [np.median(iterations_run(rng, pairs, n, per_round, 0.5, sd_it, sigma_w, su),
                             axis=2) for _ in range(HISTORY - 1)]
        welch = flagged = 0
        for i in range(pairs):
            within_only = compare(list(np.exp(b[i])), [list(np.exp(a[i]))], alpha=0.025)
            welch += min(within_only.p_slower, within_only.p_faster) <= 0.025
            past = BenchmarkHistory.from_runs([np.exp(a[i])] + [np.exp(h[i]) for h in history])
            full = compare(list(np.exp(b[i])), [list(np.exp(a[i]))], past, alpha=0.025)
            flagged += min(full.p_slower, full.p_faster) <= 0.025
        rows["t on log round medians, within-run SE only (K = 1)"].append(welch / pairs)
        rows["t on log round medians + run-to-run term (10-run history)"].append(
            flagged / pairs)
    for label, found in rows.items():
        print(f"   {label:<58}{found[0]:>12.3f}{found[1]:>16.3f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nights", type=int, default=1000)
    parser.add_argument("--store", type=Path, default=REPO / "results" / "bench.sqlite")
    parser.add_argument("--label", default=None,
                        help="only the store's runs with this label (e.g. the A runs of "
                        "benchmarks/gate_real_check.py: one configuration)")
    parser.add_argument("--exports", type=Path, default=REPO / "results" / "runs")
    parser.add_argument("--sigma-w", type=float, default=None)
    parser.add_argument("--sigma-u", type=float, default=None)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1),
                        help="worker processes for the tables (rows are seeded: same output)")
    args = parser.parse_args()
    pool = ProcessPoolExecutor(args.jobs) if args.jobs > 1 else None
    started = time.perf_counter()
    rng = np.random.default_rng(args.seed)
    sigma_w, sigma_u, residuals, share, measured = machine_noise(args)
    count = args.nights
    here = [Model(sigma_w, sigma_u, "normal"), Model(sigma_w, sigma_u, "t4")]
    if residuals is not None and len(residuals) >= 30:
        here.append(Model(sigma_w, sigma_u, "empirical", residuals))
    grid(f"2. this machine (sigma_w {sigma_w * 100:.1f}%, sigma_u {sigma_u * 100:.1f}%), "
         f"{BENCHMARKS} benchmarks, {count} nights per row; K = 1+h: one baseline run and a "
         f"{HISTORY}-run history;\n   predicted: `detection_power` at the SE and df of the "
         "t on run means (without the within-run floor, which costs power at K = 3)",
         here, count, rng, pool)
    design("this machine", sigma_w, sigma_u)
    clamp_contrast([("this machine", Model(sigma_w, sigma_u)),
                    ("quieter device", Model(QUIET_SIGMA_W, QUIET_SIGMA_U))], count // 2, rng,
                   pool)
    quiet = Model(QUIET_SIGMA_W, QUIET_SIGMA_U, "normal")
    grid(f"3. a quieter device (sigma_w {QUIET_SIGMA_W * 100:g}%, sigma_u "
         f"{QUIET_SIGMA_U * 100:g}%), {count} nights per row", [quiet], count, rng, pool)
    if pool:
        pool.shutdown()
    design("quieter device", QUIET_SIGMA_W, QUIET_SIGMA_U)
    holm_vs_bonferroni(quiet, 10, 10, count // 2, rng)
    shared = share if share is not None else 0.7
    shared_runs(Model(sigma_w, sigma_u, "normal", shared=shared), 10, 10, count // 2, rng)
    print(f"\n5. --confirm: re-runs judged alone by `confirm` (K = 10, {count // 2} nights); "
          "policy suspects: fail on regressed or a confirmed suspect; confirmed: re-run "
          "suspects and regressed, fail only on a confirmation")
    half = ALPHA_FAMILY / 2
    for label, model, n in (("this machine", Model(sigma_w, sigma_u), 10),
                            ("this machine, t4", Model(sigma_w, sigma_u, "t4"), 10),
                            ("quieter device", quiet, 5)):
        confirmation(model, n, 10, count // 2, rng, f"{label}, n = {n}")
        confirmation(model, n, 10, count // 2, rng, f"{label}, n = {n}", half, half)
        confirmation(model, n, 10, count // 2, rng, f"{label}, n = {n}", policy="confirmed")
    print("\n6. one baseline run and no history (this machine)")
    no_history(Model(sigma_w, sigma_u), 10, count // 2, rng)
    pooled_iterations(sigma_w, sigma_u, measured, count, rng)
    print(f"\n{time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
