"""How long `bench compare` takes on two runs of 1,000 benchmarks each (target <= 2 s).

Two synthetic runs (`bench.synthetic.make_store`: the real SQLite store and analysis) of
125 models x 8 recipes on one device, 5 rounds each, in a temporary folder; then
`bench compare latest-but-one latest` as a subprocess (the user's wall time, interpreter
start included) and in process (the comparison alone), best of 3 each.

Usage: python benchmarks/compare_speed.py [--models 125] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

RECIPES = ("fp32", "fp16", "dynamic", "int8", "int8-per-tensor", "int16x8", "qat-int8",
           "qat-w4")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=125)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from bench.commands.compare import compare_runs
    from bench.store import open_store
    from bench.synthetic import make_store

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "bench.sqlite"
        started = time.perf_counter()
        ids = []
        for seed in range(2):
            ids.append(make_store(path, models=args.models, recipes=RECIPES, rounds=5,
                                  seed=seed, failures=False))
            time.sleep(1.05)
        print(f"two runs of {args.models * len(RECIPES)} benchmarks written in "
              f"{time.perf_counter() - started:.1f} s")
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        walls = []
        for _ in range(args.repeats):
            started = time.perf_counter()
            done = subprocess.run([sys.executable, "-m", "bench", "compare", ids[0], ids[1],
                                   "--store", str(path)], env=env, capture_output=True,
                                  text=True)
            walls.append(time.perf_counter() - started)
            if done.returncode not in (0, 1):
                raise SystemExit(done.stderr)
        inside = []
        for _ in range(args.repeats):
            store = open_store(path, readonly=True)
            started = time.perf_counter()
            rows = compare_runs(store, [ids[0]], ids[1])
            inside.append(time.perf_counter() - started)
            store.close()
        print(f"bench compare, {len(rows)} benchmarks: {min(walls):.2f} s wall (best of "
              f"{args.repeats}, interpreter start included; target <= 2 s), "
              f"{min(inside):.2f} s for the comparison in process")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
