"""How long does the Fashion-MNIST quantization experiment take, and what does it find?

Runs `bench.experiments.fashion_mnist.run_experiment` with the default settings (3 epochs on
all 60,000 train images, batch 128, 500 calibration images, the default recipes: the
post-training ones and fp32-ft, qat-int8 and qat-w4 fine-tuned 1 epoch, every one of the
10,000 test images, 1 interpreter thread) and prints its table and the wall time. Goal:
under 10 minutes on a 2-core machine, so the experiment can run in CI and on a laptop
without a second thought; the QAT recipes are in the default list because the whole run
stays within it. The results go to a scratch directory removed afterwards unless --out.

Usage: python benchmarks/fashion_mnist_experiment.py [--epochs 3] [--qat-epochs 1]
           [--train-size 60000] [--calibration-size 500] [--seed 0] [--threads 1]
           [--recipes fp32,int8,...] [--out DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.experiments.fashion_mnist import (  # noqa: E402
    DEFAULT_CALIBRATION_SIZE,
    DEFAULT_EPOCHS,
    DEFAULT_QAT_EPOCHS,
    DEFAULT_RECIPES,
    DEFAULT_SEED,
    DEFAULT_THREADS,
    DEFAULT_TRAIN_SIZE,
    format_table,
    run_experiment,
)

TARGET_S = 600.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS)
    parser.add_argument("--qat-epochs", type=int, default=DEFAULT_QAT_EPOCHS)
    parser.add_argument("--train-size", type=int, default=DEFAULT_TRAIN_SIZE)
    parser.add_argument("--calibration-size", type=int, default=DEFAULT_CALIBRATION_SIZE)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--threads", type=int, default=DEFAULT_THREADS)
    parser.add_argument("--recipes", default=",".join(DEFAULT_RECIPES))
    parser.add_argument("--out", type=Path, default=None,
                        help="keep the results here (default: a scratch directory, removed)")
    args = parser.parse_args()
    scratch = None if args.out else Path(tempfile.mkdtemp(prefix="fashion-mnist-"))
    out = args.out or scratch
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"{os.cpu_count()} CPUs, load average {load} before the run", file=sys.stderr)
    started = time.perf_counter()
    try:
        result = run_experiment(args.epochs, args.train_size, args.calibration_size,
                                args.seed, out, args.threads,
                                recipes=[r for r in args.recipes.split(",") if r],
                                qat_epochs=args.qat_epochs,
                                progress=lambda m: print(m, file=sys.stderr, flush=True))
        elapsed = time.perf_counter() - started
        print(format_table(result))
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    verdict = "within" if elapsed <= TARGET_S else "OVER"
    t = result.timings
    print(f"\nelapsed: {elapsed:.1f} s wall ({verdict} the {TARGET_S / 60:.0f}-minute target; "
          f"training {t['training_s']:.0f} s, QAT worker {t.get('qat_worker_s', 0):.0f} s "
          f"(fine-tuning {t.get('qat_s', 0):.0f} s), evaluation {t['evaluation_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
