"""`bench` command line: run, models, devices, runs, prune, report, compare, experiment.

Exit codes: 0 the sweep completed (failed cells are results); 1 the regression gate failed
(`run --baseline`, `compare`); 2 usage or configuration error; 3 a device could not be used
at all, or any failed cell with --strict (wins over 1: the night is incomplete); 130
interrupted by Ctrl-C, SIGTERM or SIGHUP (finished rounds are kept; `bench run --resume
RUN_ID`; no gate).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import signal
import sys
from pathlib import Path

from bench import __version__
from bench.devices import BACKENDS
from bench.errors import EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, BenchError
from bench.sweep_file import add_config_option, parse_args
from bench.zoo.recipes import (
    DEFAULT_CALIBRATION_SIZE,
    DEFAULT_QAT_EPOCHS,
    DEFAULT_RECIPES,
    RECIPES,
    TRAINING_RECIPES,
    parse_recipes,
)

KEEP_BASELINES = 10  # bench prune keeps what a nightly `--baseline last:10` reads
DEFAULT_MODELS = ("mobilenet_v2:imagenet", "mobilenet_v1")  # trained weights where the zoo has them
DEFAULT_DEVICES = ("local",)
FORMATS = ("table", "csv", "json", "md", "html")
DEFAULT_DASHBOARDS = Path("dashboards")
EXPERIMENTS = ("fashion-mnist",)


def _csv(text: str, what: str = "names") -> list[str]:
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items:
        raise argparse.ArgumentTypeError(f"expected comma-separated {what}, got {text!r}")
    return items


def _int_list(text: str, minimum: int, what: str) -> list[int]:
    try:
        values = [int(v) for v in _csv(text, what)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if any(v < minimum for v in values):
        raise argparse.ArgumentTypeError(f"expected {what}, each >= {minimum}")
    return list(dict.fromkeys(values))


def _ints(text: str) -> list[int]:
    return _int_list(text, 1, "comma-separated positive integers")


def _cpu_list(text: str) -> list[int]:
    return _int_list(text, 0, "CPU numbers like 0,1")


def _positive_int(text: str) -> int:
    value = _ints(text)
    if len(value) != 1:
        raise argparse.ArgumentTypeError("expected one positive integer")
    return value[0]


def _count(text: str) -> int:
    value = _int_list(text, 0, "a whole number >= 0")
    if len(value) != 1:
        raise argparse.ArgumentTypeError("expected one whole number >= 0")
    return value[0]


def _seconds(minimum: float, inclusive: bool):
    """A finite number of seconds (no nan, no inf) above `minimum`."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") \
                from None
        if not math.isfinite(value) or value < minimum or (value == minimum and not inclusive):
            bound = f">= {minimum:g}" if inclusive else f"> {minimum:g}"
            raise argparse.ArgumentTypeError(f"expected a finite number of seconds {bound}, "
                                             f"got {text!r}")
        return value

    return parse


def _percent(text: str) -> float:
    try:
        value = float(text.rstrip("%"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a percentage, got {text!r}") from None
    if not math.isfinite(value) or not 0 < value < 100:
        raise argparse.ArgumentTypeError("expected a percentage between 0 and 100")
    return value / 100


def _backends(text: str) -> list[str]:
    names = list(dict.fromkeys(_csv(text, "backends")))
    unknown = [n for n in names if n not in BACKENDS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown backend(s) {', '.join(unknown)}; known: "
                                         f"{', '.join(BACKENDS)}")
    return names


def _models(text: str) -> list[str]:
    from bench.zoo.names import split_model_list

    try:
        return split_model_list(text)
    except BenchError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _run_id(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("expected a run id (see `bench runs`), got ''")
    return text.strip()


def parse_recipes_arg(text: str) -> list[str]:
    try:
        return parse_recipes(text)
    except BenchError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def parse_recipe_arg(text: str) -> str:
    if text not in RECIPES:
        raise argparse.ArgumentTypeError(f"unknown recipe {text!r}; known: {', '.join(RECIPES)}")
    return text


def add_training_options(parser: argparse.ArgumentParser, epochs: int | None) -> None:
    """--train-data, --qat-epochs and --qat-steps: what the QAT recipes fine-tune on."""
    parser.add_argument("--train-data", metavar="FOLDER", default=None,
                        help="labelled training images FOLDER/CLASS/IMAGE.jpg (class folders "
                        "named by number are class indices, else sorted names 0..N-1) for the "
                        f"QAT recipes {', '.join(TRAINING_RECIPES)}; never an evaluation set")
    parser.add_argument("--qat-epochs", metavar="N", type=_positive_int, default=epochs,
                        help=f"fine-tuning epochs of the QAT recipes (default "
                        f"{DEFAULT_QAT_EPOCHS})")
    parser.add_argument("--qat-steps", metavar="N", type=_positive_int, default=None,
                        help="at most N fine-tuning steps (batches of 32) in all, to bound the "
                        "time on a large folder (default: every epoch in full)")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse exits 2 too; keep its one-line style
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def add_gate_options(parser: argparse.ArgumentParser, baseline: bool) -> None:
    """The regression gate's options, shared by `run --baseline` and `compare` (and the
    sweep file's [gate] table: same names, dashes as underscores)."""
    if baseline:
        parser.add_argument("--baseline", metavar="REF", default=None,
                            help="after the sweep, judge it against REF: a run id, latest, a "
                            "label, or last:K (the K newest completed runs); exit 1 when "
                            "something regressed")
    parser.add_argument("--min-effect", type=float, default=None, metavar="PCT",
                        help="smallest slowdown that fails the gate, percent (default 5)")
    parser.add_argument("--alpha", type=float, default=None, metavar="PCT",
                        help="chance of a false alarm on a clean night, over all its "
                        "benchmarks, percent (default 5)")
    strict = ("--gate-strict",) if baseline else ("--strict", "--gate-strict")
    parser.add_argument(*strict, dest="gate_strict", action="store_true", default=None,
                        help="also fail (exit 1) on suspect and not comparable benchmarks")
    parser.add_argument("--junit", type=Path, default=None, metavar="FILE",
                        help="write the verdicts as JUnit XML (one test case per benchmark)")
    parser.add_argument("--markdown", type=Path, default=None, metavar="FILE",
                        help="write the verdicts as Markdown (for a PR or chat message)")


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--store", type=Path, default=Path("results") / "bench.sqlite",
                        help="results store (SQLite; default results/bench.sqlite)")
    common.add_argument("--cache", type=Path, default=Path("models") / "cache",
                        help="built-variant cache (default models/cache)")
    common.add_argument("--devices-dir", type=Path, default=Path("devices"),
                        help="where device files live (default devices/)")
    dashboards = argparse.ArgumentParser(add_help=False)
    dashboards.add_argument("--dashboards", type=Path, default=DEFAULT_DASHBOARDS,
                            help="where HTML dashboards go: one folder per run and an index "
                            "of runs (default dashboards/)")
    parser = _Parser(prog="bench", description=__doc__.split("\n")[0])
    parser.add_argument("--version", action="version", version=f"bench {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    # Options that say what to measure default to None here, so that a --resume can tell
    # what was given on its command line; `bench.commands.run` fills in the defaults.
    run = commands.add_parser("run", parents=[common, dashboards],
                              help="build variants and measure them on devices")
    add_config_option(run)
    run.add_argument("--models", type=_models, default=None,
                     help="zoo names or model files, comma-separated; KEY=VALUE items belong "
                     "to the model before them (default "
                     f"{','.join(DEFAULT_MODELS)}); see `bench models list`")
    run.add_argument("--recipes", type=parse_recipes_arg, default=None,
                     help="quantization recipes (default: the post-training ones: "
                     f"{','.join(DEFAULT_RECIPES)}; {','.join(TRAINING_RECIPES)} fine-tune on "
                     "--train-data, and qat-int8/qat-w4 bring fp32-ft)")
    run.add_argument("--devices", type=_csv, default=None,
                     help="device names = files devices/NAME.toml (default local)")
    run.add_argument("--backends", type=_backends, default=None,
                     help="backends to measure (default: each device's declared backends)")
    run.add_argument("--threads", type=_ints, default=None,
                     help="thread counts (default: each device's `threads`)")
    run.add_argument("--rounds", type=_positive_int, default=None,
                     help="a fixed number of rounds per cell (each a fresh runner process); "
                     "default: adaptive, see --min-rounds/--max-rounds/--target/--budget")
    run.add_argument("--runs", type=_positive_int, default=None,
                     help="fewest timed inferences per round (default 10)")
    run.add_argument("--min-seconds", type=_seconds(0.0, True), default=None,
                     help="shortest timed loop per round in seconds (default 0.3)")
    run.add_argument("--min-rounds", type=_positive_int, default=None,
                     help="fewest rounds per cell (default 3)")
    run.add_argument("--max-rounds", type=_positive_int, default=None,
                     help="most rounds per cell (default 15)")
    run.add_argument("--target", type=_percent, default=None,
                     help="stop adding rounds once each cell's median is known within this "
                     "relative CI half-width, in percent (default 1)")
    run.add_argument("--budget", type=_seconds(0.0, False), default=None,
                     help="measurement seconds per device after which no round is added "
                     "(default 2.5 s per cell, at least 60 s)")
    run.add_argument("--cooldown", type=_seconds(0.0, True), default=None,
                     help="seconds to pause between rounds (overrides the device's cooldown_s)")
    run.add_argument("--seed", type=int, default=None,
                     help="seed of the per-round shuffle (default: random, recorded)")
    run.add_argument("--cpus", type=_cpu_list, default=None,
                     help="pin runners to these CPUs, e.g. 0 or 0,1 (overrides the device's cpus)")
    run.add_argument("--dry-run", action="store_true",
                     help="print the plan and an estimated time; measure nothing")
    run.add_argument("--quick", action="store_true", default=None,
                     help="smoke test: 5 timed runs, no warm-up time; figures are not for "
                     "decisions")
    run.add_argument("--calibration-size", type=_positive_int, default=None,
                     help="representative samples for int8/int16x8 calibration "
                     f"(default {DEFAULT_CALIBRATION_SIZE})")
    run.add_argument("--float-io", action="store_true", default=None,
                     help="integer recipes keep float32 inputs and outputs")
    run.add_argument("--calibration", metavar="DATA", default=None,
                     help="calibration images for trained models: skimage-natural (default) or "
                     "a folder of images (FOLDER/CLASS/IMAGE); never an evaluation set")
    add_training_options(run, None)
    run.add_argument("--accuracy", metavar="DATASETS", type=lambda t: _csv(t, "datasets"),
                     default=None,
                     help="measure accuracy of trained variants on each device after the "
                     "timed rounds: foolbox-imagenet (20 labelled images, a smoke test), "
                     "heldout, fashion-mnist, or a labelled folder FOLDER/CLASS/IMAGE; "
                     "comma-separated")
    run.add_argument("--agreement-inputs", metavar="N", type=_count, default=None,
                     help="with --accuracy: held-out crops (never calibration images) on which "
                     "every variant's predictions are paired with fp32's (default 1000; 0: "
                     "none)")
    run.add_argument("--label", default=None, help="free text stored with the run (e.g. a commit)")
    run.add_argument("--strict", action="store_true", help="exit 3 when any cell failed")
    run.add_argument("--resume", metavar="RUN_ID", type=_run_id,
                     help="finish an interrupted run with its stored settings: measure what is "
                     "missing or failed (what to measure cannot be changed)")
    run.add_argument("--wait", metavar="SECONDS", nargs="?", const=-1.0,
                     type=_seconds(0.0, True), default=None,
                     help="when another harness is measuring a device's machine, wait for it "
                     "(for ever, or at most SECONDS) instead of giving up")
    add_gate_options(run, baseline=True)
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    run.add_argument("--no-dashboard", action="store_true",
                     help="do not build the HTML dashboard at the end")

    models = commands.add_parser("models", help="the model zoo: list, build, inspect")
    models_sub = models.add_subparsers(dest="models_command", required=True, parser_class=_Parser)
    models_sub.add_parser("list", parents=[common], help="architectures and recipes")
    build = models_sub.add_parser("build", parents=[common],
                                  help="convert models into recipes (cached)")
    build.add_argument("models", type=_models, nargs="+")
    build.add_argument("--recipes", type=parse_recipes_arg, default=list(DEFAULT_RECIPES))
    build.add_argument("--calibration-size", type=_positive_int, default=DEFAULT_CALIBRATION_SIZE)
    build.add_argument("--float-io", action="store_true")
    add_training_options(build, DEFAULT_QAT_EPOCHS)
    inspect = models_sub.add_parser("inspect", parents=[common],
                                    help="size, ops, dtypes, scales, MACs")
    inspect.add_argument("model", help="a .tflite file, or a zoo name (built if needed)")
    inspect.add_argument("--recipe", default="fp32", type=parse_recipe_arg)

    devices = commands.add_parser("devices", help="the device inventory")
    devices_sub = devices.add_subparsers(dest="devices_command", required=True,
                                         parser_class=_Parser)
    devices_sub.add_parser("list", parents=[common], help="device files and what they declare")
    check = devices_sub.add_parser(
        "check", parents=[common], help="reach a device: Python, runtime, CPU, disk, throttling")
    check.add_argument("name", help="device name (devices/NAME.toml)")
    clean = devices_sub.add_parser(
        "clean", parents=[common], help="remove the staged runner, models and jobs from a device")
    clean.add_argument("name", help="device name (devices/NAME.toml)")

    experiment = commands.add_parser(
        "experiment", help="accuracy experiments: fashion-mnist (PTQ of a small depthwise "
        "CNN trained here; `bench experiment fashion-mnist --help`)")
    experiment.add_argument("name", choices=EXPERIMENTS)
    experiment.add_argument("options", nargs=argparse.REMAINDER,
                            help="the experiment's own options")

    runs = commands.add_parser("runs", parents=[common], help="runs in the store")
    runs.add_argument("--label", default=None, help="only runs with exactly this label")
    runs.add_argument("--device", metavar="NAME", default=None,
                      help="only runs that measured device NAME")
    for name, side in (("--since", "at or after"), ("--until", "before")):
        runs.add_argument(name, metavar="WHEN", default=None,
                          help=f"only runs started {side} WHEN: an ISO date or datetime in "
                          "UTC (2024-05-01, 2024-05-01T13:30) or an age (7d, 12h, 30m)")
    runs.add_argument("--limit", metavar="N", type=_positive_int, default=None,
                      help="the newest N runs that pass the filters")
    runs.add_argument("--format", choices=("table", "json"), default="table")
    prune = commands.add_parser(
        "prune", parents=[common],
        help="delete old runs from the store, keeping the ones gates use as baselines")
    prune.add_argument("--older-than", metavar="AGE", required=True,
                       help="runs started before AGE: an age (30d, 12h, 30m) or an ISO date "
                       "or datetime in UTC")
    prune.add_argument("--keep-baselines", metavar="K", type=_count, default=KEEP_BASELINES,
                       help="keep the newest K completed runs of every benchmark and device "
                       "fingerprint (default 10: what --baseline last:10 reads)")
    prune.add_argument("--dry-run", action="store_true",
                       help="say what would be deleted and kept; delete nothing")
    prune.add_argument("--dashboards", type=Path, default=None, metavar="DIR",
                       help="also remove the deleted runs' dashboard folders under DIR and "
                       "rewrite DIR/index.html")
    compare = commands.add_parser(
        "compare", parents=[common],
        help="did anything get slower? NEW against BASE, judged on round medians")
    add_config_option(compare)
    compare.add_argument("base", help="a run id, latest, a label, or last:K (the K newest "
                         "completed runs before NEW)")
    compare.add_argument("new", nargs="?", default="latest",
                         help="a run id or label (default: the latest completed run)")
    add_gate_options(compare, baseline=False)
    compare.add_argument("--format", choices=("table", "md", "json"), default="table")
    compare.add_argument("--confirm", metavar="RUN",
                         help="a re-run of NEW's suspects (a run id or label): each suspect is "
                         "judged again on it alone, against the same baseline")
    report = commands.add_parser("report", parents=[common, dashboards],
                                 help="the report of a stored run")
    report.add_argument("run_id", nargs="?", type=_run_id, help="default: the latest run")
    report.add_argument("--format", choices=FORMATS, default="table",
                        help="table (default), csv (one row per cell), json, md (Markdown), "
                        "html (the dashboard: a folder under --dashboards)")
    report.add_argument("--output", "-o", type=Path, default=None,
                        help="write to this file instead of stdout (html: the dashboards "
                        "folder, same as --dashboards)")
    return parser


def _interrupt(signum, frame):
    raise KeyboardInterrupt(signal.Signals(signum).name)


def install_signal_handlers() -> None:
    """SIGTERM (timeout, CI, systemd) and SIGHUP behave like Ctrl-C: measurements stop,
    their processes are killed, finished rounds are kept. A signal the caller chose to
    ignore (nohup, a background job) stays ignored."""
    for name in ("SIGINT", "SIGTERM", "SIGHUP"):
        number = getattr(signal, name, None)
        if number is None:
            continue
        with contextlib.suppress(ValueError, OSError):  # not the main thread: leave it
            if signal.getsignal(number) in (signal.SIG_DFL, signal.default_int_handler):
                signal.signal(number, _interrupt)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(build_parser(), argv)  # with the sweep file's defaults
    install_signal_handlers()
    try:
        if args.command == "run":
            from bench.commands.run import run_command

            return run_command(args)
        if args.command == "models":
            from bench.commands import models

            return models.main(args)
        if args.command == "devices":
            from bench.commands.devices import devices_command

            return devices_command(args)
        if args.command == "experiment":
            from bench.experiments import fashion_mnist

            return fashion_mnist.main(args.options)
        if args.command == "runs":
            from bench.commands.runs import list_runs

            return list_runs(args)
        if args.command == "prune":
            from bench.commands.prune import prune_command

            return prune_command(args)
        if args.command == "compare":
            from bench.commands.compare import compare_command

            return compare_command(args)
        if args.command == "report":
            from bench.commands.runs import report

            return report(args)
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    return EXIT_OK
