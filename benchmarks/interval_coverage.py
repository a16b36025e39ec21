"""Do the printed 95% intervals cover 95%? Simulated, and on this machine's own rounds.

1. Simulation, fixed n: coverage of the latency interval for n = 3, 4, 5, 6, 10, 15 round
   medians under normal, log-normal and contaminated rounds (a tenth of them 15% slow),
   for the first release's method (percentile bootstrap of the median of round medians,
   against the true median) and this release's (t-interval on logs, against the true
   geometric mean).
2. Simulation, adaptive stopping at round CVs of 1-5%: the first release's rule (stop
   once the bootstrap width is within ±1%, from 5 rounds, 3-15 rounds) against Stein's
   two stages (a 5-round pilot plans N for ±2%, at most 30): coverage and rounds taken.
3. Real data (with --reference-rounds N): a long fixed run of MobileNetV2 fp32 and int8
   on XNNPACK here. Its N rounds stand for this machine's distribution of rounds (with
   whatever bursts it has): the adaptive procedure is replayed on rounds drawn from them
   with replacement (paired: one draw gives fp32 and int8 of the same round), and its
   interval judged against the geometric mean of all N, which is the truth of that
   distribution. (Drawing without replacement from the same N would share data between
   replay and truth and flatter the coverage.)
4. With --run RUN_ID (a run in the store): its rounds and interval half-widths per cell.

Usage: python benchmarks/interval_coverage.py [--trials 4000] [--reference-rounds 60]
                                              [--run RUN_ID] [--store results/bench.sqlite]
"""

from __future__ import annotations

import argparse
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.analysis import analyse  # noqa: E402
from bench.measure.stats import log_t_interval, stein_interval, stein_rounds  # noqa: E402
from bench.store import open_store  # noqa: E402

SIZES = (3, 4, 5, 6, 10, 15)


def draw(shape: str, rng, size) -> np.ndarray:
    centre, cv = 5000.0, 0.03
    if shape == "normal":
        return rng.normal(centre, centre * cv, size)
    if shape == "lognormal":
        return centre * np.exp(rng.normal(0, cv, size))
    slow = rng.random(size) < 0.1
    return centre * np.exp(rng.normal(0, cv, size)) * np.where(slow, 1.15, 1.0)


def bootstrap_median(values: np.ndarray, rng, resamples: int = 1000) -> tuple[float, float]:
    """The first release's interval: percentile bootstrap of the median."""
    picks = values[rng.integers(0, len(values), (resamples, len(values)))]
    low, high = np.percentile(np.median(picks, axis=1), [2.5, 97.5])
    return float(low), float(high)


def fixed_n(trials: int) -> None:
    print(f"1. coverage of a nominal 95% latency interval, {trials} trials each "
          "(round CV 3%)")
    print(f"   {'rounds':>6}  {'shape':<13}{'bootstrap median (before)':>27}"
          f"{'t on logs (after)':>20}")
    rng = np.random.default_rng(2018)
    for shape in ("normal", "lognormal", "contaminated"):
        population = draw(shape, rng, 4_000_000)
        true_median = float(np.median(population))
        true_geomean = float(np.exp(np.mean(np.log(population))))
        for n in SIZES:
            samples = draw(shape, rng, (trials, n))
            before = np.mean([low <= true_median <= high for low, high in
                              (bootstrap_median(row, rng) for row in samples)])
            after = np.mean([(found := log_t_interval(list(row))).low <= true_geomean
                             <= found.high for row in samples])
            print(f"   {n:>6}  {shape:<13}{before:>27.3f}{after:>20.3f}")


def adaptive(trials: int) -> None:
    print(f"\n2. adaptive stopping, {trials} trials per round CV (log-normal rounds)")
    print(f"   {'CV':>4}  {'before: coverage, mean rounds':>31}  "
          f"{'after: coverage, mean rounds':>30}")
    rng = np.random.default_rng(1806)
    truth = 3000.0
    for cv in (0.01, 0.02, 0.03, 0.05):
        old_hits, old_rounds, new_hits, new_rounds = 0, [], 0, []
        for _ in range(trials):
            stream = truth * np.exp(rng.normal(0, cv, 40))
            # the first release: stop when the bootstrap width is within ±1%, from 5 rounds
            n = 3
            while True:
                low, high = bootstrap_median(stream[:n], rng, 400)
                centre = float(np.median(stream[:n]))
                if n >= 15 or (n >= 5 and (high - low) / 2 / centre <= 0.01):
                    break
                n += 1
            old_hits += low <= truth <= high
            old_rounds.append(n)
            # this release: Stein's two stages, pilot 5, ±2%, at most 30
            planned = min(stein_rounds(list(stream[:5]), 0.02), 30)
            found = stein_interval(list(stream[:planned]), pilot=5)
            new_hits += found.low <= truth <= found.high
            new_rounds.append(planned)
        print(f"   {cv * 100:>3.0f}%  {old_hits / trials:>20.3f}, {np.mean(old_rounds):>8.1f}  "
              f"{new_hits / trials:>19.3f}, {np.mean(new_rounds):>8.1f}")


def reference_run(rounds: int, cache: Path) -> tuple[Path, str]:
    workdir = Path(tempfile.mkdtemp(prefix="bench-coverage-"))
    shutil.copytree(REPO / "devices", workdir / "devices")
    env = {**os.environ, "PYTHONPATH": str(REPO), "BENCH_LOCK_DIR": str(workdir)}
    done = subprocess.run(
        [sys.executable, "-m", "bench", "run", "--models", "mobilenet_v2", "--recipes",
         "fp32,int8", "--backends", "xnnpack", "--rounds", str(rounds), "--no-progress",
         "--cache", str(cache)], cwd=workdir, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"reference run failed: {done.stderr[-2000:]}")
    return workdir, re.search(r"run (\S+): conversions", done.stdout).group(1)


def real_data(rounds: int, cache: Path, replays: int) -> None:
    print(f"\n3. real data: a {rounds}-round reference run of MobileNetV2 fp32 + int8, "
          "1 thread, XNNPACK, on this machine")
    workdir, run_id = reference_run(rounds, cache)
    store = open_store(workdir / "results" / "bench.sqlite", readonly=True)
    analysis = analyse(store.facts(run_id))
    store.close()
    usable = analysis.rounds[analysis.rounds["usable"] == True]  # noqa: E712
    fp32 = usable[usable["recipe"] == "fp32"].set_index("round")["summary_us"]
    int8 = usable[usable["recipe"] == "int8"].set_index("round")["summary_us"]
    common = sorted(set(fp32.index) & set(int8.index))
    fp32, int8 = fp32[common].to_numpy(dtype=float), int8[common].to_numpy(dtype=float)
    ratio = fp32 / int8
    truths = {"fp32 latency": math.exp(np.mean(np.log(fp32))),
              "int8 speedup": math.exp(np.mean(np.log(ratio)))}
    for name, series in (("fp32 latency", fp32), ("int8 speedup", ratio)):
        sd = np.std(np.log(series), ddof=1)
        print(f"   {name}: reference {truths[name]:.4g} over {len(series)} rounds, "
              f"round-to-round sd of logs {sd * 100:.1f}%")
    rng = np.random.default_rng(5)
    for target in (0.02, 0.05):
        hits = {name: 0 for name in truths}
        taken = []
        for _ in range(replays):
            order = rng.integers(0, len(common), 30)
            f, q = fp32[order], ratio[order]
            planned = min(max(stein_rounds(list(f[:5]), target),
                              stein_rounds(list(q[:5]), target)), 30)
            taken.append(planned)
            for name, series in (("fp32 latency", f), ("int8 speedup", q)):
                found = stein_interval(list(series[:planned]), pilot=5)
                hits[name] += found.low <= truths[name] <= found.high
        print(f"   target ±{target * 100:g}%, {replays} replays: rounds taken median "
              f"{int(np.median(taken))} (at most 30); coverage of the {rounds}-round "
              + ", ".join(f"{name} {hits[name] / replays:.3f}" for name in truths))
    shutil.rmtree(workdir, ignore_errors=True)


def run_summary(store_path: Path, run_id: str) -> None:
    store = open_store(store_path, readonly=True)
    analysis = analyse(store.facts(run_id))
    store.close()
    print(f"\n4. run {run_id}: rounds and 95% half-widths per cell")
    speedups = analysis.speedups[analysis.speedups["reference"] == "same_backend"]
    for cell in analysis.cells.to_dict("records"):
        if not cell["rounds"]:
            continue
        found = speedups[(speedups["model"] == cell["model"])
                         & (speedups["recipe"] == cell["recipe"])
                         & (speedups["backend"] == cell["backend"])]
        speed = (f", speedup {found.iloc[0]['speedup']:.2f}x "
                 f"±{found.iloc[0]['rel_half_width'] * 100:.1f}%" if not found.empty else "")
        width = cell["latency_rel_half_width"]
        print(f"   {cell['model']:<14}{cell['recipe']:<16}{cell['backend']:<8}"
              f"{cell['rounds']:>3} rounds ({cell['stop_reason']}), latency "
              f"±{width * 100:.1f}%{speed}" if width == width and width is not None else
              f"   {cell['model']:<14}{cell['recipe']:<16}{cell['backend']:<8}"
              f"{cell['rounds']:>3} round(s), no interval")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=4000)
    parser.add_argument("--reference-rounds", type=int, default=0)
    parser.add_argument("--replays", type=int, default=1000)
    parser.add_argument("--cache", type=Path, default=REPO / "models" / "cache")
    parser.add_argument("--run", default=None)
    parser.add_argument("--store", type=Path, default=REPO / "results" / "bench.sqlite")
    args = parser.parse_args()
    fixed_n(args.trials)
    adaptive(args.trials // 4)
    if args.reference_rounds:
        real_data(args.reference_rounds, args.cache.resolve(), args.replays)
    if args.run:
        run_summary(args.store, args.run)
    return 0


if __name__ == "__main__":
    sys.exit(main())
