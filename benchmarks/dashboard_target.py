"""Target: report and dashboard of a 1,000-cell x 10-round store in <= 10 s; overview <= 2 MB.

Makes a synthetic store of the given size (bench.synthetic: realistic noise, failures
included), then times what a user waits for, two ways: in one process, phase by phase
(reading the facts, the analysis, the terminal report, the whole dashboard: every page and
plot), and as the commands a user types (`bench report` and `bench report --format html`,
each a fresh interpreter: imports included). Prints the figures and whether each target is
met; exit 1 when one is not.

    .venv/bin/python benchmarks/dashboard_target.py [--models 10 --devices 5 ...]
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.analysis import analyse  # noqa: E402
from bench.report.dashboard.build import build_dashboard  # noqa: E402
from bench.report.export import to_table  # noqa: E402
from bench.store import open_store  # noqa: E402
from bench.synthetic import make_store  # noqa: E402

SECONDS_TARGET = 10.0
OVERVIEW_TARGET = 2_000_000


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", type=int, default=10)
    parser.add_argument("--recipes", default="fp32,fp16,dynamic,int8,int8-per-tensor")
    parser.add_argument("--devices", type=int, default=5)
    parser.add_argument("--backends", default="xnnpack,cpu")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    recipes, backends = args.recipes.split(","), args.backends.split(",")
    threads = [int(t) for t in args.threads.split(",")]
    with tempfile.TemporaryDirectory() as scratch:
        store_path = Path(scratch) / "bench.sqlite"
        started = time.perf_counter()
        run_id = make_store(store_path, models=args.models, recipes=recipes,
                            devices=args.devices, backends=backends, threads=threads,
                            rounds=args.rounds, seed=0)
        generated = time.perf_counter() - started

        started = time.perf_counter()
        store = open_store(store_path, readonly=True)
        facts, runs = store.facts(run_id), store.runs()
        store.close()
        read = time.perf_counter() - started
        started = time.perf_counter()
        analysis = analyse(facts)
        analysed = time.perf_counter() - started
        started = time.perf_counter()
        table = to_table(analysis)
        reported = time.perf_counter() - started
        started = time.perf_counter()
        overview = build_dashboard(analysis, Path(scratch) / "dashboards", runs)
        built = time.perf_counter() - started

        commands = {}
        for name, extra in (("bench report", []), ("bench report --format html",
                                                   ["--format", "html", "--dashboards",
                                                    str(Path(scratch) / "cli")])):
            started = time.perf_counter()
            subprocess.run([sys.executable, "-m", "bench", "report", run_id, "--store",
                            str(store_path), *extra], check=True, stdout=subprocess.DEVNULL,
                           cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
            commands[name] = time.perf_counter() - started

        pages = sorted(overview.parent.glob("*.html"))
        sizes = {page.name: page.stat().st_size for page in pages}
        cells, rounds = len(analysis.cells), int(analysis.rounds["usable"].sum())
        total = read + analysed + reported + built
        print(f"machine: {cpu_model()}, {platform.machine()}")
        print(f"store: {cells} cells x {args.rounds} rounds ({rounds} usable rounds), "
              f"generated in {generated:.1f} s")
        print(f"read facts {read:.2f} s, analyse {analysed:.2f} s, terminal report "
              f"{reported:.2f} s ({len(table.splitlines())} lines), dashboard {built:.2f} s "
              f"({len(pages)} pages, {sum(sizes.values()) / 1e6:.1f} MB)")
        print(f"largest page: {max(sizes, key=sizes.get)} {max(sizes.values()) / 1e6:.2f} MB")
        for name, seconds in commands.items():
            print(f"`{name}` as a command (fresh interpreter, imports included): "
                  f"{seconds:.2f} s")
        ok_time = total <= SECONDS_TARGET and max(commands.values()) <= SECONDS_TARGET
        ok_size = sizes["index.html"] <= OVERVIEW_TARGET
        print(f"report + dashboard in one process: {total:.2f} s; slowest command "
              f"{max(commands.values()):.2f} s (target <= {SECONDS_TARGET:g} s each) "
              f"{'MET' if ok_time else 'MISSED'}")
        print(f"overview page: {sizes['index.html'] / 1e6:.2f} MB (target <= "
              f"{OVERVIEW_TARGET / 1e6:g} MB) {'MET' if ok_size else 'MISSED'}")
    return 0 if ok_time and ok_size else 1


if __name__ == "__main__":
    sys.exit(main())
