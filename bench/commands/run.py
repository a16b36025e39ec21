"""`bench run`: build every variant, then measure the plan in rounds, then the table.

A resume (`--resume RUN_ID`) continues a run with its stored settings: it refuses flags
that would change what is measured, refuses a model whose bytes changed since its cells
were measured, keeps every measured round, and measures what is missing or failed.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import secrets
import sys
import tempfile
import time
from pathlib import Path

from bench import __version__
from bench.accuracy.evaluator import DEFAULT_AGREEMENT_INPUTS, Evaluator, parse_accuracy
from bench.analysis import analyse
from bench.cli import DEFAULT_DEVICES, DEFAULT_MODELS
from bench.commands.gate import GateOptions, Judgement, gate_options, judge, publish
from bench.commands.gate import check as check_gate
from bench.devices import Device, load_devices
from bench.errors import EXIT_DEVICE, EXIT_INTERRUPTED, EXIT_OK, UsageError, one_line
from bench.forecast import forecast
from bench.keys import ReferenceKey
from bench.measure.environment import host_environment
from bench.measure.machine_lock import LockHolder
from bench.measure.protocol import Protocol
from bench.measure.stopping import PROTOCOL_VERSION
from bench.measure.stopping import Plan as RoundsPlan
from bench.orchestrator import Interrupted, ResumeState, Sweep
from bench.plan import Plan, make_plan
from bench.progress import Progress
from bench.report.export import to_json, to_table
from bench.results import RoundResult
from bench.runners import make_runner
from bench.store import OK, PENDING, SKIPPED, Store, new_run_id, open_store
from bench.transports import open_transport
from bench.zoo.build import (
    BuildOptions,
    VariantBuilder,
    calibration_choice,
    calibration_dataset,
    check_training,
    preprocessing_of,
    recipes_for,
    training_choice,
    training_dataset,
)
from bench.zoo.cache import Variant, VariantCache
from bench.zoo.names import parse_models
from bench.zoo.recipes import (
    DEFAULT_CALIBRATION_SIZE,
    DEFAULT_QAT_EPOCHS,
    DEFAULT_RECIPES,
    folder_of,
)

# What a run measures (stored with it; a resume takes these from the store).
SETTINGS_DEFAULTS: dict = {
    "models": list(DEFAULT_MODELS), "recipes": list(DEFAULT_RECIPES),
    "devices": list(DEFAULT_DEVICES), "backends": None, "threads": None, "rounds": None,
    "quick": False, "calibration_size": DEFAULT_CALIBRATION_SIZE, "float_io": False,
    "min_rounds": None, "max_rounds": None, "target": None, "budget": None, "cooldown": None,
    "seed": None, "cpus": None, "runs": None, "min_seconds": None,
    "accuracy": None, "agreement_inputs": None, "calibration": None,
    "train_data": None, "qat_epochs": DEFAULT_QAT_EPOCHS, "qat_steps": None,
}
RESUME_REFUSES = (*SETTINGS_DEFAULTS, "label")


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def new_settings(args: argparse.Namespace) -> dict:
    settings = {key: getattr(args, key) if getattr(args, key) is not None else default
                for key, default in SETTINGS_DEFAULTS.items()}
    if settings["seed"] is None:
        settings["seed"] = secrets.randbelow(2**31)
    return settings


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
    devices = [dataclasses.replace(d, **changes) for d in devices]
    for device in devices:
        check_cpus(device)
    return devices


def check_cpus(device: Device) -> None:
    """Pinning to CPUs this machine does not offer is a usage error, said before measuring
    (a remote device's CPUs are checked by the runner there)."""
    if device.transport != "local" or not device.cpus or not hasattr(os, "sched_getaffinity"):
        return
    available = sorted(os.sched_getaffinity(0))
    missing = sorted(set(device.cpus) - set(available))
    if missing:
        raise UsageError(f"device {device.name}: CPU(s) {','.join(map(str, missing))} are not "
                         f"available here (bench may use CPUs {','.join(map(str, available))}); "
                         f"fix --cpus or `cpus` in {device.file}")


def run_command(args: argparse.Namespace) -> int:
    if args.dry_run:
        if args.resume:
            raise UsageError("--dry-run plans a new run; it cannot be combined with --resume")
        return dry_run(args)
    if args.resume is None:
        settings = new_settings(args)
        checked(settings, args)  # every usage error before anything is built or stored
    gate = gate_options(args, args.baseline)
    store = open_store(args.store)
    try:
        if args.resume is not None:
            settings = resume_settings(args, store)
        check_gate(store, gate)
        args.gate = gate
        return _run(args, store, settings)
    finally:
        store.close()


def checked(settings: dict, args: argparse.Namespace) -> tuple:
    """Devices, protocol and models of a run, or the first usage error among them."""
    found = (devices_from(settings, args.devices_dir), protocol_from(settings),
             parse_models(settings["models"]))
    parse_accuracy(settings.get("accuracy"))
    options = build_options(settings)
    check_training(settings["recipes"], options)
    if settings.get("agreement_inputs") is not None and not settings.get("accuracy"):
        raise UsageError("--agreement-inputs goes with --accuracy DATASETS")
    check_training_disjoint(settings, options)
    return found


def check_training_disjoint(settings: dict, options: BuildOptions) -> None:
    """A training folder that shares an image (by path or content) with an evaluation set
    of the run (--accuracy, and the held-out agreement set it brings) is a usage error:
    fine-tuning on the images accuracy is measured on would flatter the QAT rows."""
    from bench.accuracy.evaluator import AGREEMENT_SET
    from bench.data.datasets import assert_disjoint, dataset

    training = training_dataset(options)
    names = list(parse_accuracy(settings.get("accuracy")))
    if training is None or not names:
        return
    if settings.get("agreement_inputs") != 0 and AGREEMENT_SET not in names:
        names.append(AGREEMENT_SET)
    for name in names:
        if name == "fashion-mnist":
            continue  # raw pixels, no image files: nothing a folder of files can share
        evaluation = dataset(name, input_shape=(224, 224, 3),
                             **({"size": 1} if name == AGREEMENT_SET else {}))
        try:
            assert_disjoint(training, evaluation, what="training")
        except UsageError as exc:
            raise UsageError(f"--train-data {folder_of(options.train_data or '')}: {exc}; "
                             "training on evaluation images would flatter the QAT "
                             "rows") from None


def make_evaluator(settings: dict, directory: Path, variants: list[Variant],
                   specs: list) -> Evaluator | None:
    """The run's accuracy evaluations, planned and staged (None: none asked for)."""
    datasets = parse_accuracy(settings.get("accuracy"))
    if not datasets:
        return None
    agreement = settings.get("agreement_inputs")
    evaluator = Evaluator(datasets, DEFAULT_AGREEMENT_INPUTS if agreement is None else agreement,
                          directory, calibration=calibration_dataset, on_event=say)
    for note in evaluator.prepare(variants, {spec.name: preprocessing_of(spec)
                                             for spec in specs}):
        say(note)
    return evaluator


def resume_settings(args: argparse.Namespace, store: Store) -> dict:
    """The stored settings; a flag that would change them is refused (repeating one with
    its stored value is fine)."""
    run = store.run(args.resume)
    stored = {**run["settings"], "label": run["label"]}
    changed = [f"--{key.replace('_', '-')}" for key in RESUME_REFUSES
               if getattr(args, key, None) is not None and getattr(args, key) != stored.get(key)]
    if changed:
        raise UsageError(f"--resume continues run {args.resume} exactly as it was planned; "
                         f"{', '.join(changed)} would change it. Start a new run to measure "
                         "something else (--resume honours --store, --cache, --devices-dir, "
                         "--strict, --wait and --no-progress)")
    return run["settings"]


def build_options(settings: dict) -> BuildOptions:
    return BuildOptions(settings["calibration_size"], settings["float_io"],
                        calibration_choice(settings.get("calibration")),
                        train_data=training_choice(settings.get("train_data")),
                        qat_epochs=settings.get("qat_epochs") or DEFAULT_QAT_EPOCHS,
                        qat_steps=settings.get("qat_steps"))


def _build(args: argparse.Namespace, settings: dict, specs: list) -> tuple:
    started = time.perf_counter()
    builder = VariantBuilder(VariantCache(args.cache), build_options(settings), on_event=say)
    built = builder.build(specs, settings["recipes"])
    variants = [built[(spec.name, recipe)] for spec in specs
                for recipe in recipes_for(spec, settings["recipes"])]
    references = [v for (_, recipe), v in built.items() if recipe == "fp32" and v not in variants]
    return variants, references, time.perf_counter() - started, builder.converted


def _run(args: argparse.Namespace, store: Store, settings: dict) -> int:
    devices, protocol, specs = checked(settings, args)
    variants, references, conversion_s, converted = _build(args, settings, specs)
    scratch = tempfile.TemporaryDirectory(prefix="bench-accuracy-")
    try:  # datasets staged (or refused) before the run is stored
        evaluator = make_evaluator(settings, Path(scratch.name), variants + references, specs)
        return _start(args, store, settings, devices, protocol, variants, references,
                      conversion_s, converted, evaluator)
    finally:
        scratch.cleanup()


def _start(args: argparse.Namespace, store: Store, settings: dict, devices: list[Device],
           protocol: Protocol, variants: list[Variant], references: list[Variant],
           conversion_s: float, converted: int, evaluator: Evaluator | None) -> int:
    resuming = args.resume is not None
    plan = make_plan(variants, devices, settings["backends"], settings["threads"])

    every_cell = [c for c in plan.cells if c.variant.status == OK]
    if resuming:
        run_id = args.resume
        previous = resume_state(store, run_id, plan, variants)
    else:
        run_id, previous = new_run_id(), ResumeState()
        store.start_run(run_id, label=args.label, settings=settings, host=host_environment(),
                        harness_version=__version__, protocol=protocol.to_dict(),
                        protocol_version=PROTOCOL_VERSION, seed=settings["seed"])
    session = store.start_session(run_id, host=platform.node(), pid=os.getpid(),
                                  harness_version=__version__)
    for position, variant in enumerate(variants + references):
        store.save_variant(run_id, variant, position)
    resumed = f" ({len(previous.medians)} of them resumed with their stored rounds)" \
        if previous.medians else ""
    say(f"run {run_id}: {len(plan.cells)} cell(s) to measure{resumed} on "
        f"{', '.join(d.name for d in devices)}, {describe(protocol)}, shuffle seed "
        f"{settings['seed']}; conversions took {conversion_s:.1f}s ({converted} converted)")
    for device in devices:
        for warning in threads_warnings(device, settings["threads"]):
            say(f"warning: {warning}")

    if resuming and evaluator is not None:
        previous.evaluated = {(e["model"], e["recipe"], e["device"], e["backend"], e["dataset"])
                              for e in store.facts(run_id).evaluations if e["status"] == OK}
    evaluation_cells = {}
    if resuming and evaluator is not None:
        for cell in every_cell:
            evaluation_cells.setdefault(cell.device, []).append(cell)
    return _sweep(args, store, settings, run_id, session, protocol, plan, devices, previous,
                  conversion_s, evaluator, evaluation_cells)


def _sweep(args, store: Store, settings: dict, run_id: str, session: int, protocol: Protocol,
           plan: Plan, devices: list[Device], previous: ResumeState, conversion_s: float,
           evaluator: Evaluator | None, evaluation_cells: dict) -> int:
    progress = Progress(len(plan.cells) * protocol.min_rounds, enabled=not args.no_progress)
    if evaluator is not None:
        evaluator.on_event = progress.note
    sweep = Sweep(store, run_id, session, protocol, settings["seed"],
                  transport_factory=open_transport, runner_factory=make_runner,
                  wait_s=wait_seconds(args.wait),
                  on_start=lambda cell, index: progress.start(f"round {index + 1}: "
                                                              f"{cell.label}"),
                  on_round=lambda cell, result: _report_round(progress, result),
                  on_finish=lambda cell, status, text, rounds: _report_cell(
                      progress, cell, status, text, rounds),
                  on_wait=lambda names, holder: _report_wait(progress, names, holder),
                  evaluator=evaluator if evaluator is not None and evaluator.wanted else None)
    sweep.evaluation_cells = evaluation_cells
    sweep.record_plan(plan)
    started = time.perf_counter()
    try:
        outcome = sweep.run(plan, devices, previous)
    except Interrupted:
        progress.close()
        store.finish_session(run_id, session, "interrupted")
        store.set_run_status(run_id, "interrupted")
        analysis = analyse(store.facts(run_id))
        print(to_table(analysis))
        dashboard = None if args.no_dashboard else \
            build_run_dashboard(analysis, store, args.dashboards)
        say(f"interrupted: finished rounds are stored; resume with "
            f"`python -m bench run --resume {run_id}`"
            f"{f'; dashboard of what was measured: {dashboard}' if dashboard else ''}")
        return EXIT_INTERRUPTED
    progress.close()
    measurement_s = time.perf_counter() - started
    unfinished = any(c["status"] == PENDING for c in store.facts(run_id).cells)
    status = "incomplete" if unfinished else "completed"
    store.finish_session(run_id, session, status)
    store.set_run_status(run_id, status)
    facts = store.facts(run_id, raw=True)
    analysis = analyse(facts)
    export = write_export(analysis, facts, Path(args.store).parent / "runs" / f"{run_id}.json")
    print(to_table(analysis))
    judgement = judge_run(args.gate, store, run_id)  # recorded before the trends page reads it
    dashboard = None if args.no_dashboard else \
        build_run_dashboard(analysis, store, args.dashboards)
    print(f"\nrun {run_id}: conversions {conversion_s:.1f}s, measurement {measurement_s:.1f}s; "
          f"store {args.store}{f', export {export}' if export else ''}"
          f"{f'; dashboard {dashboard}' if dashboard else ''}")
    gate_code = EXIT_OK
    if judgement is not None:
        print()
        gate_code = publish(judgement, args.gate)
    for name, why in outcome.unusable.items():
        say(f"bench: device {name} could not be used: {why}")
    for name, why in outcome.lost.items():
        say(f"bench: device {name} was lost while measuring: {why}")
    if outcome.unusable or outcome.lost:
        say(f"bench: finish the missing cells later with `python -m bench run --resume "
            f"{run_id}`")
        return EXIT_DEVICE
    if args.strict and outcome.failed:
        say(f"bench: {outcome.failed} cell(s) failed (--strict)")
        return EXIT_DEVICE
    if gate_code != EXIT_OK:
        say(f"bench: the gate failed the run against {args.gate.ref} (exit {gate_code})")
    return gate_code


def judge_run(gate: GateOptions, store: Store, run_id: str) -> Judgement | None:
    """The gate's verdicts on the run just measured, recorded in the store (what it was
    judged against, for the trends page and `bench prune`); None without --baseline."""
    if gate.ref is None:
        return None
    found = judge(store, run_id, gate, first_night=True)
    store.save_gate(run_id, ref=gate.ref, min_effect=gate.min_effect, alpha=gate.alpha,
                    baseline_ids=found.base_ids if found.baseline.runs else [])
    return found


def wait_seconds(value: float | None) -> float | None:
    """--wait: absent = do not wait (0), bare = for ever (None), SECONDS = at most that."""
    if value is None:
        return 0.0
    return None if value < 0 else value


def build_run_dashboard(analysis, store: Store, root: Path) -> Path | None:
    """The run's HTML dashboard; a failure is one line (the store has every result)."""
    from bench.report.dashboard.build import build_dashboard
    from bench.report.dashboard.trends import build_trends

    try:
        built = build_dashboard(analysis, root, store.runs())
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # noqa: BLE001 - the results are stored; say so in one line
        say(f"bench: could not write the dashboard under {root} ({one_line(exc)}); the store "
            f"has everything: `bench report {analysis.run['id']} --format html`")
        return None
    build_trends(root, store, say)  # store-wide: beside the index, which links to it
    return built


def write_export(analysis, facts, path: Path) -> Path | None:
    """The run as one JSON file for other tools; a failure is one line, not a traceback."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(to_json(analysis, raw_rounds=facts.rounds))
        return path
    except OSError as exc:
        say(f"bench: could not write the JSON export {path} ({exc.strerror or exc}); the "
            f"store has everything: `bench report {analysis.run['id']} --format json`")
        return None


def resume_state(store: Store, run_id: str, plan: Plan, variants: list[Variant]) -> ResumeState:
    """Drop finished cells from the plan; what the others already have; refuse a changed
    model. Failed cells are measured again (their failed rounds stay in the store)."""
    facts = store.facts(run_id)
    stored = {ReferenceKey(*(c[k] for k in ReferenceKey._fields)): c for c in facts.cells}
    has_rounds = {r["cell_id"] for r in facts.rounds}
    for cell in plan.cells + [c for c, _ in plan.skipped]:
        before = stored.get(cell.key.as_reference)
        if before and before["sha256"] and cell.variant.sha256 and \
                before["sha256"] != cell.variant.sha256 and before["cell_id"] in has_rounds:
            raise UsageError(
                f"{cell.model} {cell.recipe} changed since run {run_id} measured it (sha256 "
                f"{before['sha256'][:12]}… then, {cell.variant.sha256[:12]}… now): resuming "
                "would mix two models in one cell. Restore the file, or start a new run")
    done = {key for key, row in stored.items()
            if row["status"] == SKIPPED or (row["status"] == OK and row["stop_reason"])}
    plan.cells = [c for c in plan.cells if c.key.as_reference not in done]
    plan.skipped = [(c, r) for c, r in plan.skipped if c.key.as_reference not in done]
    complete = {(r["device"], r["round"]) for r in facts.device_rounds
                if r["finished_at"] is not None}
    by_id = {c["cell_id"]: c for c in facts.cells}
    medians: dict = {}
    for row in facts.rounds:
        cell = by_id[row["cell_id"]]
        if row["status"] == "ok" and row["summary_us"] is not None \
                and (cell["device"], row["round"]) in complete:
            medians.setdefault(row["cell_id"], {})[row["round"]] = row["summary_us"]
    previous = ResumeState()
    for cell in plan.cells:
        if cell.key.cell_id in medians:
            previous.medians[cell.key] = medians[cell.key.cell_id]
        row = stored.get(cell.key.as_reference)
        if row and row.get("pilot_rounds"):  # the family's plan, decided from its pilot
            previous.plans[cell.key.family] = RoundsPlan(
                pilot=row["pilot_rounds"], needed=row["needed_rounds"],
                planned=row["planned_rounds"])
    for row in facts.device_rounds:
        previous.next_round[row["device"]] = max(previous.next_round.get(row["device"], 0),
                                                 row["round"] + 1)
    for row in facts.rounds:  # rounds of a store migrated without device rounds
        device = by_id[row["cell_id"]]["device"]
        previous.next_round[device] = max(previous.next_round.get(device, 0), row["round"] + 1)
    return previous


def describe(protocol: Protocol) -> str:
    if not protocol.adaptive:
        return f"{protocol.min_rounds} round(s) each"
    return (f"a pilot of {protocol.min_rounds} rounds, then as many as each family needs for "
            f"±{protocol.target * 100:g}% intervals (at most {protocol.max_rounds})")


def threads_warnings(device: Device, threads: list[int] | None) -> list[str]:
    """Threads beyond the cores the runner may use measure contention, not speed."""
    if device.transport != "local":
        return []
    cores = len(device.cpus) if device.cpus else len(os.sched_getaffinity(0))
    return [f"{device.name}: {count} threads but only {cores} core(s) available to the runner"
            for count in (threads or device.threads) if count > cores]


def dry_run(args: argparse.Namespace) -> int:
    """The plan, the rounds and intervals to expect (from the store's history of the same
    cells, where it has some) and the time it will take; nothing converted or measured."""
    settings = new_settings(args)
    devices, protocol, specs = checked(settings, args)
    names = [(spec.name, recipe) for spec in specs
             for recipe in recipes_for(spec, settings["recipes"])]
    variants = [Variant(model, recipe, "ok") for model, recipe in names]
    plan = make_plan(variants, devices, settings["backends"], settings["threads"])
    print(f"plan: {len(plan.cells)} cell(s) to measure, {len(plan.skipped)} skipped")
    for device in devices:
        mine = [c for c in plan.cells if c.device == device.name]
        print(f"  {device.name}: {len(mine)} cell(s): "
              f"{len({c.model for c in mine})} model(s) x {len({c.recipe for c in mine})} "
              f"recipe(s) x backends {','.join(sorted({c.backend for c in mine}))} x threads "
              f"{','.join(str(t) for t in sorted({c.threads for c in mine}))}")
    for cell, reason in plan.skipped:
        print(f"  skipped: {cell.label}: {reason}")
    per_device = {d.name: len([c for c in plan.cells if c.device == d.name]) for d in devices}
    budget = max((protocol.budget_for(n) for n in per_device.values() if n), default=0.0)
    print(f"rounds: {describe(protocol)}; budget {budget:.0f}s per device")
    forecasts, unknown = ({}, [])
    if Path(args.store).is_file() and plan.cells:
        store = open_store(args.store, readonly=True)
        try:
            forecasts, unknown = forecast(store, plan, protocol, budget)
        finally:
            store.close()
    else:
        unknown = sorted({c.key.family for c in plan.cells})
    total = 0.0
    for family, found in sorted(forecasts.items()):
        width = found.expected_half_width(max(protocol.min_rounds, 2))
        verdict = "within" if width <= protocol.target + 1e-9 else "wider than"
        print(f"  {family.model} on {family.device}/t{family.threads}: about {found.rounds} "
              f"round(s) (its noisiest figure, {found.noisiest}, varied {found.sd_log * 100:.1f}% "
              f"per round in run {found.run_id}; it needs {found.needed}, the budget allows "
              f"{found.affordable}); expect ±{width * 100:.1f}%, {verdict} the "
              f"±{protocol.target * 100:g}% target")
        total = max(total, found.rounds * sum(f.seconds_per_round for f in forecasts.values()
                                              if f.family.device == family.device))
    for family in unknown:
        print(f"  {family.model} on {family.device}/t{family.threads}: no history in "
              f"{args.store}; " + ("the pilot decides" if protocol.adaptive else
                                   f"{protocol.min_rounds} round(s)"))
    per_round = protocol.warmup_min_s + protocol.min_s + 0.4  # + process start and load
    cells = max(per_device.values(), default=0)
    low = cells * protocol.min_rounds * per_round
    high = max(low, min(cells * protocol.max_rounds * per_round, budget + cells * per_round))
    if forecasts and not unknown:
        print(f"estimated measurement time: about {total:.0f}s (from history), plus "
              "conversions of variants missing from the cache")
    else:
        print(f"estimated measurement time: {low:.0f}s to {high:.0f}s (slow models take "
              f"longer: each round runs at least {protocol.min_runs} inferences), plus "
              "conversions of variants missing from the cache")
    return EXIT_OK


def _report_round(progress: Progress, result: RoundResult) -> None:
    if result.ok:
        progress.step()  # a failure is reported once, when its cell finishes


def _report_cell(progress: Progress, cell, status: str, text: str | None, rounds: int) -> None:
    if status == OK:
        outcome = f"ok, {rounds} round(s) ({text})"
    elif status == PENDING:
        outcome = f"UNFINISHED: {text}"
    else:
        outcome = f"{status.upper()}: {text}"
    progress.finish(cell.label, outcome)


def _report_wait(progress: Progress, names: str, holder: LockHolder | None) -> None:
    who = holder.describe() if holder else "a harness that left no owner file"
    progress.note(f"waiting for {names}: the machine is being measured by {who}")
