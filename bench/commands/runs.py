"""`bench runs` and `bench report`: what the store holds, read-only.

Both open the store read-only: a results directory on a read-only disk, or a store
another harness is writing, reads fine.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench.analysis import analyse
from bench.errors import EXIT_OK, UsageError
from bench.report.export import render_format
from bench.store import open_store
from bench.store.liveness import shown_status


def list_runs(args: argparse.Namespace) -> int:
    store = open_store(args.store, readonly=True)
    try:
        runs = store.runs()
    finally:
        store.close()
    if not runs:
        print(f"no runs in {args.store}")
    for run in runs:
        failed = f", {run['failed']} failed" if run["failed"] else ""
        print(f"{run['id']}  {run['started_at'][:19].replace('T', ' ')} UTC  "
              f"{shown_status(run):<11} {run['ok']}/{run['cells']} ok{failed}  "
              f"{run['label'] or ''}".rstrip())
    return EXIT_OK


def write_dashboard(analysis, root: Path, runs: list[dict]) -> Path:
    """The run's dashboard under `root`; one line saying what is wrong when it cannot be."""
    from bench.report.dashboard.build import build_dashboard

    try:
        return build_dashboard(analysis, root, runs)
    except OSError as exc:
        raise UsageError(f"cannot write the dashboard under {root} "
                         f"({exc.strerror or exc}); point --dashboards at a writable "
                         "folder") from None


def report(args: argparse.Namespace) -> int:
    store = open_store(args.store, readonly=True)
    try:
        run_id = args.run_id or store.latest_run_id()
        if run_id is None:
            raise UsageError(f"no runs in {args.store}; run `python -m bench run` first")
        facts = store.facts(run_id)
        runs = store.runs()
    finally:
        store.close()
    if args.format == "html":
        path = write_dashboard(analyse(facts), args.output or args.dashboards, runs)
        print(path)
        return EXIT_OK
    text = render_format(analyse(facts), args.format)
    if args.format == "table":
        text = f"run {run_id} ({facts.run['status']})\n" + text
    if args.output is not None:
        try:
            args.output.write_text(text)
        except OSError as exc:
            raise UsageError(f"cannot write {args.output} ({exc.strerror or exc})") from None
        print(f"wrote {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return EXIT_OK
