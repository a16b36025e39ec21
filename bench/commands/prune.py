"""`bench prune --older-than AGE`: delete old runs, never the ones a gate still reads.

A nightly `--baseline last:K` and the run-to-run variance behind every verdict come from
earlier runs: deleting them would make the next night `new` or `inconclusive` everywhere.
So for every benchmark (and device fingerprint: other hardware is another history) the
newest K completed runs that measured it stay, and so does every run a remaining run's
recorded gate (`Store.gates`) judged it against (kept transitively). A run
still being measured is never touched. The decision is made on a read-only store; only the
deletions open it for writing (and `--dry-run` never does).
"""

from __future__ import annotations

import argparse
import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from bench.commands.runs import parse_when, started
from bench.errors import EXIT_OK, UsageError
from bench.regress.history import Benchmark, run_benchmarks
from bench.store import Store, open_store
from bench.store.liveness import shown_status

PRUNABLE = ("completed", "failed", "interrupted", "incomplete")


@dataclass
class Plan:
    """What happens to each run older than the cut-off."""

    cutoff: datetime
    old: list[dict]
    delete: list[dict] = field(default_factory=list)
    kept: dict[str, str] = field(default_factory=dict)  # run id -> why
    newer: int = 0


def is_live(run: dict) -> bool:
    """Marked running and not known to be dead (a run on another host cannot be told from
    here, so it counts as live)."""
    return run["status"] == "running" and shown_status(run) == "running"


def gate_baselines(store: Store) -> dict[str, list[str]]:
    """Per run, the run ids its recorded gates judged it against (one query)."""
    found: dict[str, list[str]] = {}
    for gate in store.gates():
        found.setdefault(gate["run_id"], []).extend(gate["baseline_ids"])
    return found


def baseline_reasons(store: Store, runs: list[dict], keep: int) -> dict[str, str]:
    """Completed runs among the newest `keep` of some benchmark and fingerprint, with the
    first such benchmark as the reason. One `run_benchmarks` per completed run."""
    if keep < 1:
        return {}
    counts: dict[tuple[Benchmark, str | None], int] = {}
    held: dict[str, list[tuple[Benchmark, str | None]]] = {}
    prints: dict[Benchmark, set[str | None]] = {}
    for run in reversed(runs):
        if run["status"] != "completed":
            continue
        found = run_benchmarks(store, run["id"]).benchmarks
        for benchmark, measured in sorted(found.items(), key=lambda item: item[0]):
            key = (benchmark, measured.fingerprint)
            prints.setdefault(benchmark, set()).add(measured.fingerprint)
            if counts.get(key, 0) < keep:
                counts[key] = counts.get(key, 0) + 1
                held.setdefault(run["id"], []).append(key)
    reasons = {}
    for run_id, keys in held.items():
        benchmark, fingerprint = keys[0]
        hardware = (f" (hardware {fingerprint or 'not reported'})"
                    if len(prints[benchmark]) > 1 else "")
        more = f" and {len(keys) - 1} more" if len(keys) > 1 else ""
        reasons[run_id] = f"baseline: newest {keep} of {benchmark.label}{hardware}{more}"
    return reasons


def make_plan(store: Store, cutoff: datetime, keep: int) -> Plan:
    runs = store.runs()
    old = [run for run in runs if started(run) < cutoff]
    plan = Plan(cutoff, old, newer=len(runs) - len(old))
    for run in old:
        if is_live(run):
            host = run.get("session_host")
            plan.kept[run["id"]] = f"still running{f' on {host}' if host else ''}"
        elif run["status"] not in PRUNABLE and run["status"] != "running":
            plan.kept[run["id"]] = f"status {run['status']} (not one prune deletes)"
    baselines = baseline_reasons(store, runs, keep)
    for run in old:
        if run["id"] in baselines and run["id"] not in plan.kept:
            plan.kept[run["id"]] = baselines[run["id"]]
    # Every run that stays may name its gate's baseline runs; those stay too (transitively).
    old_ids = {run["id"] for run in old}
    staying = [run["id"] for run in runs if run["id"] not in old_ids or run["id"] in plan.kept]
    judged_against = gate_baselines(store)
    while staying:
        run_id = staying.pop()
        for named in judged_against.get(run_id, []):
            if named in old_ids and named not in plan.kept:
                plan.kept[named] = f"baseline of run {run_id} (its recorded gate)"
                staying.append(named)
    plan.delete = [run for run in old if run["id"] not in plan.kept]
    return plan


def describe(run: dict) -> str:
    label = f"  {run['label']}" if run.get("label") else ""
    when = str(run["started_at"])[:19].replace("T", " ")
    return f"{run['id']}  {when} UTC  {shown_status(run)}{label}"


def remove_dashboards(root: Path, run_ids: list[str], dry_run: bool) -> list[str]:
    """Each deleted run's dashboard folder under `root`, refused when it resolves outside
    it; one line per folder."""
    from bench.report.dashboard.names import folder_name, inside

    lines = []
    for run_id in run_ids:
        folder = root / folder_name(run_id)
        if not folder.exists() and not folder.is_symlink():
            continue
        try:
            inside(root, folder)
        except UsageError as exc:
            lines.append(f"dashboard of {run_id} not removed: {exc}")
            continue
        verb = "would remove" if dry_run else "removed"
        if not dry_run:
            try:
                if folder.is_symlink() or not folder.is_dir():
                    folder.unlink()  # the link itself, never what it points at
                else:
                    shutil.rmtree(folder)
            except OSError as exc:
                lines.append(f"dashboard {folder} not removed ({exc.strerror or exc})")
                continue
        lines.append(f"{verb} dashboard {folder}")
    return lines


def delete_runs(args: argparse.Namespace, plan: Plan) -> tuple[list[dict], list[str]]:
    """Delete the planned runs in a writable store, checking each is still dead (a resume
    may have started since the plan); rewrite the dashboard index."""
    deleted: list[dict] = []
    notes: list[str] = []
    store = open_store(args.store)
    try:
        now = {run["id"]: run for run in store.runs()}
        for run in plan.delete:
            current = now.get(run["id"])
            if current is None:
                continue
            if is_live(current) or current["status"] != run["status"]:
                # resumed since the plan (perhaps finished: then it may be a baseline now)
                plan.kept[run["id"]] = "resumed while prune ran"
                continue
            store.delete_run(run["id"])
            deleted.append(run)
        if args.dashboards is not None:
            notes = remove_dashboards(args.dashboards, [r["id"] for r in deleted], False)
            if args.dashboards.is_dir():
                notes.append(f"rewrote {write_index(args.dashboards, store.runs())}")
                from bench.report.dashboard.trends import build_trends

                trends = build_trends(args.dashboards, store, notes.append)
                if trends is not None:  # else the line saying why is in the notes
                    notes.append(f"rewrote {trends}")
    finally:
        store.close()
    return deleted, notes


def write_index(root: Path, runs: list[dict]) -> Path:
    from bench.report.dashboard.build import write_index as build_index

    try:
        return build_index(root, runs)
    except OSError as exc:
        raise UsageError(f"cannot rewrite the dashboard index under {root} "
                         f"({exc.strerror or exc})") from None


def prune_command(args: argparse.Namespace) -> int:
    cutoff = parse_when(args.older_than, "--older-than", datetime.now(UTC))
    store = open_store(args.store, readonly=True)
    try:
        plan = make_plan(store, cutoff, args.keep_baselines)
    finally:
        store.close()
    if args.dry_run:
        deleted = plan.delete
        notes = (remove_dashboards(args.dashboards, [r["id"] for r in deleted], True)
                 if args.dashboards is not None else [])
    else:
        deleted, notes = delete_runs(args, plan) if plan.delete else ([], [])
    gone = {run["id"] for run in deleted}
    verb = "would delete" if args.dry_run else "deleted"
    for run in plan.old:
        if run["id"] in gone:
            print(f"{verb:<12} {describe(run)}")
        elif run["id"] in plan.kept:
            when = str(run["started_at"])[:19].replace("T", " ")
            print(f"{'kept':<12} {run['id']}  {when} UTC  {plan.kept[run['id']]}")
    for note in notes:
        print(note)
    kept = sum(1 for run in plan.old if run["id"] in plan.kept)
    cut = plan.cutoff.isoformat(timespec="seconds").replace("+00:00", "Z")
    print(f"{'dry run: ' if args.dry_run else ''}{len(plan.old)} runs started before {cut} "
          f"({args.older_than}): {verb} {len(deleted)}, kept {kept}; newer runs untouched: "
          f"{plan.newer}")
    return EXIT_OK
