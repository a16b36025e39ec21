"""How much does the harness add to what it measures?

1. The runner (a fresh process through the local transport, exactly as `bench run` uses it)
   and an independent bare in-process `invoke()` loop, alternated PAIRS times on MobileNetV2
   fp32, 1 thread, XNNPACK. Prints the ratio of their medians with a bootstrap 95% CI over the
   pairs. Goal: the CI contains 1.00 and lies within ±1%.
2. Per-iteration overhead on a one-op model: runner median minus the bare loop's mean time
   per invoke (a loop with no per-iteration timer at all). Goal: <= 2 µs.
3. ai-edge-litert's own `litert-benchmark` on the same model, as a cross-check.

Usage: python benchmarks/overhead.py [--pairs 10] [--cache models/cache]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.devices import load_device  # noqa: E402
from bench.measure.protocol import Protocol  # noqa: E402
from bench.measure.session import DeviceSession  # noqa: E402
from bench.plan import Cell  # noqa: E402
from bench.runners import make_runner  # noqa: E402
from bench.transports.local import LocalTransport  # noqa: E402
from bench.zoo.build import BuildOptions, VariantBuilder  # noqa: E402
from bench.zoo.cache import Variant, VariantCache, file_sha256  # noqa: E402
from bench.zoo.names import parse_model  # noqa: E402

ONE_OP_SCRIPT = """
import sys, tensorflow as tf
@tf.function(input_signature=[tf.TensorSpec([1, 4], tf.float32)])
def add_one(x):
    return x + 1.0
converter = tf.lite.TFLiteConverter.from_concrete_functions([add_one.get_concrete_function()])
open(sys.argv[1], "wb").write(converter.convert())
"""


def bootstrap_ci(values: list[float], resamples: int = 10000, seed: int = 0) -> tuple:
    rng = random.Random(seed)
    medians = sorted(statistics.median(rng.choices(values, k=len(values)))
                     for _ in range(resamples))
    return medians[int(0.025 * resamples)], medians[int(0.975 * resamples) - 1]


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


class BareLoop:
    """An independent in-process loop: the interpreter API and nothing else."""

    def __init__(self, path: str, threads: int = 1):
        from ai_edge_litert.interpreter import Interpreter

        self.interpreter = Interpreter(model_path=path, num_threads=threads)
        self.interpreter.allocate_tensors()
        detail = self.interpreter.get_input_details()[0]
        value = np.random.default_rng(0).uniform(-1, 1, detail["shape"]).astype(detail["dtype"])
        self.interpreter.set_tensor(detail["index"], value)

    def timed(self, runs: int, warmup_s: float = 0.5) -> list[float]:
        invoke, clock = self.interpreter.invoke, time.perf_counter_ns
        end = time.perf_counter() + warmup_s
        while time.perf_counter() < end:
            invoke()
        samples = []
        for _ in range(runs):
            before = clock()
            invoke()
            samples.append((clock() - before) / 1000.0)
        return samples

    def untimed_mean(self, runs: int) -> float:
        invoke = self.interpreter.invoke
        for _ in range(runs // 10):
            invoke()
        started = time.perf_counter_ns()
        for _ in range(runs):
            invoke()
        return (time.perf_counter_ns() - started) / 1000.0 / runs


def runner_round(session: DeviceSession, variant: Variant) -> list[float]:
    result = session.run_round(Cell(variant, "local", "xnnpack", 1), 0)
    if not result.ok or result.latencies_us is None:
        raise SystemExit(f"runner failed: {result.error}")
    return list(result.latencies_us)


def file_variant(path: Path, name: str) -> Variant:
    return Variant(name, "fp32", "ok", path=str(path), sha256=file_sha256(path),
                   size_bytes=path.stat().st_size)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=10)
    parser.add_argument("--cache", type=Path, default=REPO / "models" / "cache")
    args = parser.parse_args()

    built = VariantBuilder(VariantCache(args.cache), BuildOptions(),
                           on_event=lambda line: print(line, file=sys.stderr)).build(
        [parse_model("mobilenet_v2")], ["fp32"])
    variant = built["mobilenet_v2", "fp32"]
    device = load_device(REPO / "devices" / "local.toml")
    # benchmark_model's loop (1 warm-up run + 0.5 s, >= 50 runs, >= 1 s), one round a pair
    protocol = Protocol.benchmark_model()
    session = DeviceSession(device, LocalTransport(), make_runner(device), protocol)
    session.prepare()
    bare = BareLoop(variant.path)

    print(f"host: {os.cpu_count()} CPUs, load average {load_average()}")
    print(f"\n1. runner vs bare invoke() loop, MobileNetV2 fp32, 1 thread, xnnpack, "
          f"{args.pairs} alternated pairs")
    ratios = []
    for index in range(args.pairs):
        runner = runner_round(session, variant)
        plain = bare.timed(len(runner))
        ratio = statistics.median(runner) / statistics.median(plain)
        ratios.append(ratio)
        print(f"   pair {index + 1:2d}: runner {statistics.median(runner) / 1000:7.3f} ms "
              f"({len(runner)} runs)  bare {statistics.median(plain) / 1000:7.3f} ms  "
              f"ratio {ratio:.4f}  load {load_average()}")
    low, high = bootstrap_ci(ratios)
    median = statistics.median(ratios)
    verdict = "met" if low <= 1.0 <= high and high - low <= 0.02 and \
        abs(median - 1) <= 0.01 else "NOT met"
    print(f"   ratio of medians: {median:.4f}  95% CI [{low:.4f}, {high:.4f}]  "
          f"(goal: CI contains 1.00 within ±1%: {verdict})")

    print("\n2. per-iteration overhead on a one-op model (ADD of 4 floats)")
    with tempfile.TemporaryDirectory() as scratch:
        one_op = Path(scratch) / "one_op.tflite"
        subprocess.run([sys.executable, "-c", ONE_OP_SCRIPT, str(one_op)], check=True,
                       env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
                       stderr=subprocess.DEVNULL)
        tiny = file_variant(one_op, "one_op")
        tiny_bare = BareLoop(str(one_op))
        overheads = []
        for _ in range(args.pairs):
            runner = runner_round(session, tiny)
            untimed = tiny_bare.untimed_mean(max(len(runner), 100000))
            overheads.append(statistics.median(runner) - untimed)
        print(f"   runner median minus untimed bare mean: median "
              f"{statistics.median(overheads):.3f} µs over {args.pairs} pairs "
              f"(min {min(overheads):.3f}, max {max(overheads):.3f}); goal <= 2 µs: "
              f"{'met' if statistics.median(overheads) <= 2 else 'NOT met'}")

    print("\n3. cross-check: litert-benchmark (ai-edge-litert's own tool), same model")
    tool = Path(sys.executable).with_name("litert-benchmark")
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "result.json"
        done = subprocess.run([str(tool), "--model", variant.path, "--num_runs", "100",
                               "--warmup_runs", "5", "--num_threads", "1",
                               "--result_json", str(out)], capture_output=True, text=True)
        if done.returncode != 0 or not out.exists():
            print(f"   litert-benchmark failed: {(done.stderr or done.stdout)[-300:]}")
        else:
            latency = json.loads(out.read_text())["latency"]
            print(f"   median {latency['median_ms']:.3f} ms, mean {latency['avg_ms']:.3f} ms, "
                  f"min {latency['min_ms']:.3f} ms, p95 {latency['p95_ms']:.3f} ms "
                  f"({latency['num_runs']} runs; CompiledModel API, CPU accelerator)")
    print(f"\nload average at the end: {load_average()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
