"""`bench run`: build every variant, then measure the plan, then print the table."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from bench import __version__
from bench.devices import load_devices
from bench.errors import EXIT_DEVICE, EXIT_INTERRUPTED, EXIT_OK, BenchError, UsageError
from bench.measure.environment import host_environment
from bench.measure.protocol import Protocol
from bench.orchestrator import Interrupted, Sweep, make_plan
from bench.progress import Progress
from bench.report.table import render
from bench.store import Store
from bench.zoo.build import BadModel, BuildOptions, VariantBuilder, recipes_for
from bench.zoo.cache import VariantCache
from bench.zoo.names import parse_model

SETTINGS_KEYS = ("models", "recipes", "devices", "backends", "threads", "rounds", "quick",
                 "calibration_size", "float_io")


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def resolve_models(names: list[str]) -> list:
    """Parse every model; a bad one becomes failed cells unless none is usable."""
    specs, problems = [], []
    for name in names:
        try:
            specs.append(parse_model(name))
        except BenchError as exc:
            specs.append(BadModel(name, str(exc)))
            problems.append(str(exc))
    if problems and all(isinstance(s, BadModel) for s in specs):
        raise UsageError(problems[0] if len(problems) == 1 else "; ".join(problems))
    for problem in problems:
        say(f"bench: {problem} (its cells are recorded as failed)")
    return specs


def protocol_from(settings: dict) -> Protocol:
    base = Protocol.quick() if settings["quick"] else Protocol()
    if settings.get("rounds"):
        from dataclasses import replace

        base = replace(base, rounds=settings["rounds"])
    return base


def run_command(args: argparse.Namespace) -> int:
    store = Store(args.store)
    try:
        return _run(args, store)
    finally:
        store.close()


def _run(args: argparse.Namespace, store: Store) -> int:
    if args.resume:
        previous = store.run(args.resume)
        settings, run_id = previous["settings"], args.resume
    else:
        settings = {key: getattr(args, key) for key in SETTINGS_KEYS}
        run_id = None
    devices = load_devices(settings["devices"], args.devices_dir)
    specs = resolve_models(settings["models"])
    protocol = protocol_from(settings)

    started = time.perf_counter()
    builder = VariantBuilder(VariantCache(args.cache),
                             BuildOptions(settings["calibration_size"], settings["float_io"]),
                             on_event=say)
    built = builder.build(specs, settings["recipes"])
    conversion_s = time.perf_counter() - started
    variants = [built[(spec.name, recipe)] for spec in specs
                for recipe in recipes_for(spec, settings["recipes"])]
    reference_variants = [v for (model, recipe), v in built.items()
                          if recipe == "fp32" and v not in variants]

    if run_id is None:
        from bench.cli import new_run_id

        run_id = new_run_id()
        store.start_run(run_id, args.label, settings, host_environment(), __version__)
    else:
        store.reopen_run(run_id)
    for variant in variants + reference_variants:
        store.save_variant(run_id, variant)

    plan = make_plan(variants, devices, settings["backends"], settings["threads"])
    if args.resume:
        done = {(c["model"], c["recipe"], c["device"], c["backend"], c["threads"])
                for c in store.cells(run_id) if c["status"] in ("ok", "skipped")}
        plan.cells = [c for c in plan.cells if c.key not in done]
        plan.skipped = [(c, r) for c, r in plan.skipped if c.key not in done]
    say(f"run {run_id}: {len(plan.cells)} cell(s) to measure on "
        f"{', '.join(d.name for d in devices)}; conversions took {conversion_s:.1f}s "
        f"({builder.converted} converted)")

    progress = Progress(len(plan.cells), enabled=not args.no_progress)
    sweep = Sweep(store, run_id, protocol,
                  on_start=lambda cell: progress.start(cell.label),
                  on_finish=lambda cell, row: _report_cell(progress, cell, row))
    sweep.skip(plan)
    started = time.perf_counter()
    try:
        outcome = sweep.run(plan, devices)
    except Interrupted:
        progress.close()
        store.finish_run(run_id, "interrupted")
        say(f"interrupted: finished cells are stored; resume with "
            f"`python -m bench run --resume {run_id}`")
        return EXIT_INTERRUPTED
    progress.close()
    measurement_s = time.perf_counter() - started
    store.finish_run(run_id, "completed")
    export = store.export_json(run_id, Path(args.store).parent / "runs" / f"{run_id}.json")

    print(render(store.cells(run_id), store.variants(run_id)))
    print(f"\nrun {run_id}: conversions {conversion_s:.1f}s, measurement {measurement_s:.1f}s; "
          f"store {args.store}, export {export}")
    if outcome.unusable_devices:
        say(f"bench: device(s) could not be used: {', '.join(outcome.unusable_devices)}")
        return EXIT_DEVICE
    if settings_strict(args) and outcome.failed:
        say(f"bench: {outcome.failed} cell(s) failed (--strict)")
        return EXIT_DEVICE
    return EXIT_OK


def settings_strict(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "strict", False))


def _report_cell(progress: Progress, cell, row: dict) -> None:
    if row["status"] == "ok":
        outcome = f"ok, median {row['median_us'] / 1000:.2f} ms"
    else:
        outcome = f"{row['status'].upper()}: {row['reason']}"
    progress.finish(cell.label, outcome)
