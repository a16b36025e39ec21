"""`bench run`: build every variant, then measure the plan in rounds, then the table."""

from __future__ import annotations

import argparse
import dataclasses
import os
import secrets
import sys
import time
from pathlib import Path

from bench import __version__
from bench.devices import Device, load_devices
from bench.errors import EXIT_DEVICE, EXIT_INTERRUPTED, EXIT_OK, BenchError, UsageError
from bench.measure.environment import host_environment
from bench.measure.protocol import Protocol
from bench.orchestrator import Interrupted, Plan, Sweep, make_plan
from bench.progress import Progress
from bench.report.notes import device_notes
from bench.report.table import render
from bench.store import CELL_KEY, Store, new_run_id
from bench.zoo.build import BadModel, BuildOptions, VariantBuilder, recipes_for
from bench.zoo.cache import Variant, VariantCache
from bench.zoo.names import parse_model

SETTINGS_KEYS = ("models", "recipes", "devices", "backends", "threads", "rounds", "quick",
                 "calibration_size", "float_io", "min_rounds", "max_rounds", "target",
                 "budget", "cooldown", "seed", "cpus", "runs", "min_seconds")


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
    protocol = Protocol.quick() if settings.get("quick") else Protocol()
    if settings.get("rounds"):
        protocol = protocol.with_rounds(settings["rounds"])
    changes = {key: settings[key] for key in ("min_rounds", "max_rounds", "target")
               if settings.get(key) is not None}
    if settings.get("budget") is not None:
        changes["budget_s"] = settings["budget"]
    if settings.get("runs") is not None:
        changes["min_runs"] = settings["runs"]
    if settings.get("min_seconds") is not None:
        changes["min_s"] = settings["min_seconds"]
    protocol = dataclasses.replace(protocol, **changes)
    if protocol.min_rounds > protocol.max_rounds:
        raise UsageError(f"--min-rounds {protocol.min_rounds} is above --max-rounds "
                         f"{protocol.max_rounds}")
    return protocol


def devices_from(settings: dict, directory: Path) -> list[Device]:
    devices = load_devices(settings["devices"], directory)
    changes = {}
    if settings.get("cpus") is not None:
        changes["cpus"] = tuple(settings["cpus"])
    if settings.get("cooldown") is not None:
        changes["cooldown_s"] = settings["cooldown"]
    return [dataclasses.replace(d, **changes) for d in devices]


def run_command(args: argparse.Namespace) -> int:
    if args.dry_run:
        return dry_run(args)
    store = Store(args.store)
    try:
        return _run(args, store)
    finally:
        store.close()


def _build(args: argparse.Namespace, settings: dict, specs: list) -> tuple[list, list, float,
                                                                            int]:
    started = time.perf_counter()
    builder = VariantBuilder(VariantCache(args.cache),
                             BuildOptions(settings["calibration_size"], settings["float_io"]),
                             on_event=say)
    built = builder.build(specs, settings["recipes"])
    variants = [built[(spec.name, recipe)] for spec in specs
                for recipe in recipes_for(spec, settings["recipes"])]
    references = [v for (_, recipe), v in built.items() if recipe == "fp32" and v not in variants]
    return variants, references, time.perf_counter() - started, builder.converted


def _run(args: argparse.Namespace, store: Store) -> int:
    if args.resume:
        settings, run_id = store.run(args.resume)["settings"], args.resume
    else:
        settings = {key: getattr(args, key) for key in SETTINGS_KEYS}
        if settings["seed"] is None:
            settings["seed"] = secrets.randbelow(2**31)
        run_id = None
    devices = devices_from(settings, args.devices_dir)
    protocol = protocol_from(settings)
    specs = resolve_models(settings["models"])
    variants, references, conversion_s, converted = _build(args, settings, specs)

    if run_id is None:
        run_id = new_run_id()
        store.start_run(run_id, args.label, settings, host_environment(), __version__)
    else:
        store.reopen_run(run_id)
    for variant in variants + references:
        store.save_variant(run_id, variant)

    plan = make_plan(variants, devices, settings["backends"], settings["threads"])
    previous = resume_state(store, run_id, plan) if args.resume else {}
    resumed = f" ({len(previous)} of them resumed with their stored rounds)" if previous else ""
    say(f"run {run_id}: {len(plan.cells)} cell(s) to measure{resumed} on "
        f"{', '.join(d.name for d in devices)}, {describe(protocol)}, shuffle seed "
        f"{settings['seed']}; conversions took {conversion_s:.1f}s ({converted} converted)")
    for device in devices:
        for warning in threads_warnings(device, settings["threads"]):
            say(f"warning: {warning}")

    progress = Progress(len(plan.cells) * protocol.min_rounds, enabled=not args.no_progress)
    sweep = Sweep(store, run_id, protocol, settings["seed"],
                  on_start=lambda cell, index: progress.start(f"round {index + 1}: "
                                                              f"{cell.label}"),
                  on_round=lambda cell, record: _report_round(progress, cell, record),
                  on_finish=lambda cell, row: _report_cell(progress, cell, row))
    sweep.skip(plan)
    started = time.perf_counter()
    try:
        outcome = sweep.run(plan, devices, previous)
    except Interrupted:
        progress.close()
        store.finish_run(run_id, "interrupted")
        say(f"interrupted: finished rounds are stored; resume with "
            f"`python -m bench run --resume {run_id}`")
        return EXIT_INTERRUPTED
    progress.close()
    measurement_s = time.perf_counter() - started
    store.finish_run(run_id, "completed")
    export = store.export_json(run_id, Path(args.store).parent / "runs" / f"{run_id}.json")

    print(render(store.cells(run_id), store.variants(run_id)))
    for note in device_notes(store, run_id):
        print(note)
    print(f"\nrun {run_id}: conversions {conversion_s:.1f}s, measurement {measurement_s:.1f}s; "
          f"store {args.store}, export {export}")
    if outcome.unusable_devices:
        say(f"bench: device(s) could not be used: {', '.join(outcome.unusable_devices)}")
        return EXIT_DEVICE
    if args.strict and outcome.failed:
        say(f"bench: {outcome.failed} cell(s) failed (--strict)")
        return EXIT_DEVICE
    return EXIT_OK


def resume_state(store: Store, run_id: str, plan: Plan) -> dict:
    """Drop finished cells from the plan; return the rounds of cells still in progress."""
    rows = {tuple(c[k] for k in CELL_KEY): c for c in store.cells(run_id)}
    rounds = store.rounds_by_cell(run_id)
    finished = {key for key, row in rows.items()
                if row["status"] == "skipped"
                or (row["status"] == "ok" and row["summary"].get("stop_reason"))}
    plan.cells = [c for c in plan.cells if c.key not in finished]
    plan.skipped = [(c, r) for c, r in plan.skipped if c.key not in finished]
    previous = {}
    for cell in plan.cells:
        row = rows.get(cell.key)
        if row is not None and row["status"] == "failed":
            store.forget_rounds(run_id, cell.key)  # measured again from scratch
        elif cell.key in rounds:
            previous[cell.key] = rounds[cell.key]
    return previous


def describe(protocol: Protocol) -> str:
    if not protocol.adaptive:
        return f"{protocol.min_rounds} round(s) each"
    return (f"{protocol.min_rounds}-{protocol.max_rounds} rounds each until the median is "
            f"known within ±{protocol.target * 100:g}%")


def threads_warnings(device: Device, threads: list[int] | None) -> list[str]:
    """Threads beyond the cores the runner may use measure contention, not speed."""
    if device.transport != "local":
        return []
    cores = len(device.cpus) if device.cpus else (os.cpu_count() or 1)
    return [f"{device.name}: {count} threads but only {cores} core(s) available to the runner"
            for count in (threads or device.threads) if count > cores]


def dry_run(args: argparse.Namespace) -> int:
    """The plan and an estimate of its time, without converting or measuring anything."""
    settings = {key: getattr(args, key) for key in SETTINGS_KEYS}
    devices = devices_from(settings, args.devices_dir)
    protocol = protocol_from(settings)
    specs = resolve_models(settings["models"])
    names = [(spec.name, recipe) for spec in specs
             for recipe in recipes_for(spec, settings["recipes"])]
    variants = [Variant(model, recipe, "ok") for model, recipe in names]
    plan = make_plan(variants, devices, settings["backends"], settings["threads"])
    per_round = (protocol.warmup_min_s + protocol.min_s + 0.5)  # + process start, load
    cells = len(plan.cells)
    low = cells * protocol.min_rounds * per_round
    budget = protocol.budget_for(max(cells, 1))
    high = max(low, min(cells * protocol.max_rounds * per_round, budget + cells * per_round))
    print(f"plan: {cells} cell(s) to measure, {len(plan.skipped)} skipped")
    for device in devices:
        mine = [c for c in plan.cells if c.device == device.name]
        print(f"  {device.name}: {len(mine)} cell(s): "
              f"{len({c.model for c in mine})} model(s) x {len({c.recipe for c in mine})} "
              f"recipe(s) x backends {','.join(sorted({c.backend for c in mine}))} x threads "
              f"{','.join(str(t) for t in sorted({c.threads for c in mine}))}")
    for cell, reason in plan.skipped:
        print(f"  skipped: {cell.label}: {reason}")
    print(f"rounds: {describe(protocol)}; budget {budget:.0f}s per device")
    print(f"estimated measurement time: {low:.0f}s to {high:.0f}s (slow models take longer: "
          f"each round runs at least {protocol.min_runs} inferences), plus conversions of "
          "variants missing from the cache")
    return EXIT_OK


def _report_round(progress: Progress, cell, record: dict) -> None:
    if record.get("status") != "ok":
        return  # reported once, when the cell finishes
    progress.step()


def _report_cell(progress: Progress, cell, row: dict) -> None:
    if row["status"] == "ok":
        summary = row["summary"]
        ci = summary.get("ci_us") or {}
        width = ci.get("rel_half_width")
        spread = f" ±{width * 100:.1f}%" if width is not None else ""
        outcome = (f"ok, median {row['median_us'] / 1000:.3f} ms{spread} over "
                   f"{summary.get('rounds')} round(s) ({summary.get('stop_reason')})")
    else:
        outcome = f"{row['status'].upper()}: {row['reason']}"
    progress.finish(cell.label, outcome)
