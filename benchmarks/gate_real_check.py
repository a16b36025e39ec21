"""The regression gate on real runs of this machine: A/A and A/B nights, counted.

One user model file, `net.keras`, two recipes (fp32, int8), local device, XNNPACK, 1 thread,
a fixed protocol (`--rounds`, about 30 s per run). Revision A is a small MobileNet-style
network; revision B is the same network with a larger input (136 -> 144 pixels a side,
~10% slower here), written to the same path, so the benchmark identity is the same and
only the model's bytes change ("what changed").

Sequence: K runs of A seed the baseline; then PAIRS cycles of [A, B]. Each new run is judged
by `bench compare`'s own code (`compare_runs`) against the last K runs of A before it (what
`--baseline last:K` gives when the nightly's baselines are the accepted runs), with the same
store's earlier runs as history. Counted: A/A nights with any `regressed` (false alarms),
A/B benchmarks called `regressed` (caught), and every verdict.

B's true cost is measured apart: both files' fp32 and int8 variants timed in one process,
alternating, many times (the ratio of medians with a bootstrap interval).

Each run's 1-minute load is printed: other jobs on this 2-core machine are part of its noise.

Usage: python benchmarks/gate_real_check.py [--pairs 20] [--baseline-runs 5] [--rounds 8]
                                            [--work /tmp/gate-real-check]
Everything lives in the work folder (its own store, cache and devices); nothing under
results/ is touched.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

DEVICE = """description = "this machine, gate check"
transport = "local"
runner = "python"
python = "harness"
tflite_module = "auto"
threads = [1]
backends = ["xnnpack"]
timeout_s = 600
"""
SIZE_A, SIZE_B = 136, 144  # measured here: fp32 ~11% slower (XNNPACK steps with the size)


def write_model(path: Path, size: int) -> None:
    """A MobileNet-v1-style network (alpha 0.5) at this input size, fixed weights."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from bench.zoo.architectures import ARCHITECTURES

    model = ARCHITECTURES["mobilenet_v1"].build(size, 0.5, seed=11)
    tmp = path.with_suffix(".tmp.keras")
    model.save(tmp)
    tmp.replace(path)


def bench(work: Path, args: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "bench", *args], cwd=work, env=env,
                          capture_output=True, text=True)


def one_run(work: Path, label: str, rounds: int) -> tuple[str, float]:
    started = time.monotonic()
    done = bench(work, ["run", "--models", str(work / "net.keras"), "--recipes", "fp32,int8",
                        "--devices", "gate", "--devices-dir", str(work / "devices"),
                        "--store", str(work / "bench.sqlite"), "--cache", str(work / "cache"),
                        "--rounds", str(rounds), "--label", label, "--no-progress",
                        "--no-dashboard"])
    if done.returncode != 0:
        raise SystemExit(f"bench run failed ({done.returncode}):\n{done.stdout[-3000:]}\n"
                         f"{done.stderr[-3000:]}")
    found = re.search(r"run (\S+): conversions", done.stdout)
    if not found:
        raise SystemExit(f"no run id in:\n{done.stdout[-3000:]}")
    return found.group(1), time.monotonic() - started


def judge(work: Path, base_ids: list[str], new_id: str, min_effect: float,
          confirm_id: str | None = None):
    """`bench compare`'s verdicts for the night; with `confirm_id`, its suspects judged
    again on that re-run alone (`--confirm`). The night's regressed rows are also re-judged
    for the stricter policy: a night fails only on a confirmation."""
    from bench.commands.compare import compare_runs, confirm_rows
    from bench.regress.decision import Verdict
    from bench.store import open_store

    store = open_store(work / "bench.sqlite", readonly=True)
    try:
        rows = compare_runs(store, base_ids, new_id, min_effect=min_effect)
        if confirm_id is None:
            return rows
        flagged = [r for r in rows if r.comparison.verdict in (Verdict.SUSPECT,
                                                                Verdict.REGRESSED)]
        for row in flagged:  # the stricter policy re-runs regressed ones too
            row.comparison = dataclasses.replace(row.comparison, verdict=Verdict.SUSPECT)
        confirm_rows(store, flagged, confirm_id, min_effect=min_effect)
        return flagged
    finally:
        store.close()


COST_PROBE = """
import sys, time, numpy as np
from ai_edge_litert.interpreter import Interpreter
its = []
for path in sys.argv[2:4]:
    it = Interpreter(model_path=path, num_threads=1)
    it.allocate_tensors()
    d = it.get_input_details()[0]
    it.set_tensor(d["index"], np.zeros(d["shape"], d["dtype"]))
    for _ in range(20):
        it.invoke()
    its.append(it)
times = [[], []]
rng = np.random.default_rng(int(sys.argv[1]))
for _ in range(200):
    for side in rng.permutation(2):
        start = time.perf_counter()
        its[side].invoke()
        times[side].append(time.perf_counter() - start)
print(np.median(times[1]) / np.median(times[0]))
"""


def variant_files(work: Path) -> dict[tuple[str, str], Path]:
    """(label, recipe) -> the built .tflite, found in the cache by the stored sha256."""
    import hashlib

    from bench.store import open_store

    by_hash = {hashlib.sha256(p.read_bytes()).hexdigest(): p
               for p in (work / "cache").rglob("*.tflite")}
    store = open_store(work / "bench.sqlite", readonly=True)
    try:
        found = {}
        for run in store.runs():
            for v in store.facts(run["id"]).variants:
                if v.get("sha256") in by_hash:
                    found[(run.get("label") or "", v["recipe"])] = by_hash[v["sha256"]]
        return found
    finally:
        store.close()


def true_cost(work: Path, processes: int = 8) -> dict[str, list[float]]:
    """B / A latency per recipe: in each of several fresh processes (a process draws its
    own memory placement), both files timed alternately, 200 invokes each; the ratio of
    medians per process. `A/A fp32` and `A/A int8` time A against itself the same way:
    the spread of a paired, in-process comparison when nothing changed."""
    files = variant_files(work)
    found: dict[str, list[float]] = {}
    for recipe in ("fp32", "int8"):
        for name, other in ((recipe, "B"), (f"A/A {recipe}", "A")):
            for seed in range(processes):
                done = subprocess.run([sys.executable, "-c", COST_PROBE, str(seed),
                                       str(files[("A", recipe)]), str(files[(other, recipe)])],
                                      capture_output=True, text=True, check=True)
                found.setdefault(name, []).append(float(done.stdout.split()[-1]))
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=20)
    parser.add_argument("--baseline-runs", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--min-effect", type=float, default=0.05)
    parser.add_argument("--work", type=Path, default=Path("/tmp/gate-real-check"))
    parser.add_argument("--judge-only", action="store_true",
                        help="judge the runs already in the work folder's store")
    args = parser.parse_args()
    work = args.work
    (work / "devices").mkdir(parents=True, exist_ok=True)
    (work / "devices" / "gate.toml").write_text(DEVICE)
    log = work / "runs.jsonl"
    if not args.judge_only:
        sequence = ["A"] * args.baseline_runs + ["A", "B"] * args.pairs
        done = log.read_text().splitlines() if log.exists() else []  # continue a broken-off
        if [json.loads(line)["label"] for line in done] != sequence[:len(done)]:
            done = []
            log.write_text("")
        revisions = {"A": work / "net_A.keras", "B": work / "net_B.keras"}
        for label, path in revisions.items():
            if not path.exists():
                write_model(path, SIZE_A if label == "A" else SIZE_B)
        for i, label in enumerate(sequence):
            if i < len(done):
                continue
            (work / "net.keras").write_bytes(revisions[label].read_bytes())
            load = os.getloadavg()[0]
            run_id, seconds = one_run(work, label, args.rounds)
            with log.open("a") as handle:
                handle.write(json.dumps({"run": run_id, "label": label, "seconds": seconds,
                                         "load_before": load}) + "\n")
            print(f"[{i + 1}/{len(sequence)}] {label} {run_id} {seconds:.0f} s "
                  f"(load before {load:.2f})", flush=True)
    runs = [json.loads(line) for line in log.read_text().splitlines() if line]
    counts = {"A/A nights": 0, "A/A alarms": 0, "A/B nights": 0, "A/B caught nights": 0,
              "A/B benchmarks": 0, "A/B benchmarks caught": 0}
    verdicts: dict[str, dict[str, int]] = {"A": {}, "B": {}}
    ratios: dict[str, list[float]] = {"A": [], "B": []}
    for i, entry in enumerate(runs):
        earlier_a = [r["run"] for r in runs[:i] if r["label"] == "A"]
        if i < args.baseline_runs or len(earlier_a) < args.baseline_runs:
            continue
        base = earlier_a[-args.baseline_runs:]
        rows = judge(work, base, entry["run"], args.min_effect)
        side = entry["label"]
        for row in rows:
            verdict = str(row.comparison.verdict)
            verdicts[side][verdict] = verdicts[side].get(verdict, 0) + 1
            if row.comparison.ratio is not None:
                ratios[side].append(row.comparison.ratio)
        regressed = [r for r in rows if str(r.comparison.verdict) == "regressed"]
        if side == "A":
            counts["A/A nights"] += 1
            counts["A/A alarms"] += bool(regressed)
        else:
            counts["A/B nights"] += 1
            counts["A/B caught nights"] += bool(regressed)
            counts["A/B benchmarks"] += len(rows)
            counts["A/B benchmarks caught"] += len(regressed)
            changed = {c for r in rows for c in r.changed}
            if not any(c.startswith("model ") for c in changed):
                print(f"warning: {entry['run']}: the model change is not in 'what changed'")
        # --confirm: the next run of the same revision as the re-run of the night's flagged
        again = next((r["run"] for r in runs[i + 1:] if r["label"] == side), None)
        if again is not None:
            confirmed = judge(work, base, entry["run"], args.min_effect, again)
            key = "A/A confirmed alarms" if side == "A" else "A/B confirmed nights"
            tried = f"{'A/A' if side == 'A' else 'A/B'} nights with a re-run"
            counts[tried] = counts.get(tried, 0) + 1
            counts[key] = counts.get(key, 0) + any(str(r.comparison.verdict) == "regressed"
                                                   for r in confirmed)
    print(json.dumps(counts, indent=1))
    print("verdicts:", json.dumps(verdicts))
    for side in ("A", "B"):
        if ratios[side]:
            print(f"{side}: new/baseline ratios median {statistics.median(ratios[side]):.3f}, "
                  f"range {min(ratios[side]):.3f}-{max(ratios[side]):.3f}")
    seconds = [r["seconds"] for r in runs]
    print(f"runs: {len(runs)}, {statistics.median(seconds):.0f} s each (median), load before "
          f"a run {statistics.median(r['load_before'] for r in runs):.2f} (median)")
    for recipe, ratios in true_cost(work).items():
        what = f"in-process {recipe}, A against itself" if recipe.startswith("A/A") else \
            f"B's true cost, {recipe}"
        print(f"{what}: {statistics.median(ratios):.3f}x (median of "
              f"{len(ratios)} processes, range {min(ratios):.3f}-{max(ratios):.3f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
