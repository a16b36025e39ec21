"""How long does the default `python -m bench run` take, cold and warm?

Runs the default command (local device, MobileNetV2 with ImageNet weights + MobileNetV1 at
224, every recipe, the device's threads) twice in a scratch directory: first with an empty
model cache (every variant converted), then again (nothing converted). Prints the wall time
of each and the conversion and measurement phases as `bench` reports them. Goals: <= 5
minutes cold, <= 90 s warm.

Creating a virtual environment is not part of those figures; it is timed separately (a fresh
venv with `pip install -e .`) unless --skip-venv.

Usage: python benchmarks/default_run_time.py [--skip-venv]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PHASES = re.compile(r"conversions ([\d.]+)s, measurement ([\d.]+)s")


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def timed_run(workdir: Path, label: str) -> float:
    env = {**os.environ, "PYTHONPATH": str(REPO),
           "BENCH_ASSETS_DIR": os.environ.get("BENCH_ASSETS_DIR", str(REPO / "models" / "assets"))}
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "bench", "run", "--no-progress"], cwd=workdir,
                          env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        print(done.stderr[-3000:])
        raise SystemExit(f"{label} run failed with exit code {done.returncode}")
    phases = PHASES.search(done.stdout)
    conversions, measurement = (float(x) for x in phases.groups()) if phases else (None, None)
    converted = re.search(r"\((\d+) converted\)", done.stderr)
    print(f"{label:>5}: {seconds:6.1f} s wall  (conversions {conversions:.1f} s, "
          f"{converted.group(1) if converted else '?'} converted; measurement "
          f"{measurement:.1f} s; the rest is start-up, checks and the table)  "
          f"load {load_average()}")
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--skip-venv", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-default-") as scratch:
        workdir = Path(scratch)
        shutil.copytree(REPO / "devices", workdir / "devices")
        if not args.skip_venv:
            started = time.perf_counter()
            subprocess.run([sys.executable, "-m", "venv", str(workdir / "venv")], check=True)
            subprocess.run([str(workdir / "venv" / "bin" / "pip"), "install", "--quiet",
                            "-e", str(REPO)], check=True, capture_output=True)
            print(f" venv: {time.perf_counter() - started:6.1f} s to create a venv and install "
                  "bench with its dependencies (excluded below)")
        print(f"host: {os.cpu_count()} CPUs, load average {load_average()}")
        cold = timed_run(workdir, "cold")
        warm = timed_run(workdir, "warm")
    print(f"goals: cold <= 300 s: {'met' if cold <= 300 else 'NOT met'}; "
          f"warm <= 90 s: {'met' if warm <= 90 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
