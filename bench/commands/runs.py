"""`bench runs` and `bench report`: what the store holds, read-only.

Both open the store read-only: a results directory on a read-only disk, or a store
another harness is writing, reads fine. `bench runs` filters by label, device and start
time (`--since`/`--until` take what `bench prune --older-than` takes: `parse_when`).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.analysis import analyse
from bench.errors import EXIT_OK, UsageError
from bench.report.export import render_format
from bench.store import FAILED, OK, Store, open_store
from bench.store.liveness import shown_status

_AGE = re.compile(r"^(\d+(?:\.\d+)?)([dhm])$")
_UNIT_SECONDS = {"d": 86400, "h": 3600, "m": 60}
WHEN_HELP = ("an ISO date or datetime in UTC (2024-05-01, 2024-05-01T13:30) or an age: 7d, "
             "12h, 30m")


def parse_when(text: str, option: str, now: datetime) -> datetime:
    """A point in time, aware and in UTC: `now` minus an age (`7d`, `12h`, `30m`) or an
    ISO date/datetime (UTC unless it names its offset; a date is its 00:00). Parsed here,
    not by argparse, so that every command measures ages from one `now`."""
    value = text.strip()
    match = _AGE.match(value)
    try:
        if match:
            return now - timedelta(seconds=float(match[1]) * _UNIT_SECONDS[match[2]])
        when = datetime.fromisoformat(value)
    except (ValueError, OverflowError):
        raise UsageError(f"{option} {text!r}: expected {WHEN_HELP}") from None
    return (when.replace(tzinfo=UTC) if when.tzinfo is None else when).astimezone(UTC)


def started(run: dict) -> datetime:
    """A run's start as an aware UTC datetime (stored as ISO text here; another engine may
    hand back a datetime)."""
    value = run["started_at"]
    when = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return (when.replace(tzinfo=UTC) if when.tzinfo is None else when).astimezone(UTC)


def measured_devices(store: Store, run_id: str) -> set[str]:
    """Devices the run measured: reached in a session, or holding a finished cell."""
    facts = store.facts(run_id)
    return ({row["device"] for row in facts.devices}
            | {cell["device"] for cell in facts.cells if cell["status"] in (OK, FAILED)})


def select_runs(store: Store, stored: list[dict], args: argparse.Namespace,
                now: datetime) -> list[dict]:
    """The store's runs that pass the filters, oldest first; `--limit`: the newest N.
    Cheap filters go first, so the device filter reads only the runs it must."""
    since = parse_when(args.since, "--since", now) if args.since else None
    until = parse_when(args.until, "--until", now) if args.until else None
    if since is not None and until is not None and since >= until:
        raise UsageError(f"--since {args.since} is not before --until {args.until}: no run "
                         "can match")
    runs = [run for run in stored
            if (args.label is None or run["label"] == args.label)
            and (since is None or started(run) >= since)
            and (until is None or started(run) < until)]
    if args.device is None:
        return runs[-args.limit:] if args.limit else runs
    chosen: list[dict] = []
    for run in reversed(runs):
        if args.limit and len(chosen) == args.limit:
            break
        if args.device in measured_devices(store, run["id"]):
            chosen.append(run)
    return chosen[::-1]


def list_runs(args: argparse.Namespace) -> int:
    now = datetime.now(UTC)
    store = open_store(args.store, readonly=True)
    try:
        every = store.runs()
        runs = select_runs(store, every, args, now)
        stored = len(every)
    finally:
        store.close()
    if args.format == "json":
        rows = [{"id": run["id"], "started_at": run["started_at"],
                 "finished_at": run["finished_at"], "status": run["status"],
                 "shown_status": shown_status(run), "label": run["label"],
                 "cells": run["cells"], "ok": run["ok"], "failed": run["failed"]}
                for run in runs]
        print(json.dumps(rows, indent=2, default=str))
        return EXIT_OK
    if not runs:
        print(f"no runs in {args.store}" if not stored
              else f"no runs match ({stored} in {args.store})")
    for run in runs:
        failed = f", {run['failed']} failed" if run["failed"] else ""
        print(f"{run['id']}  {str(run['started_at'])[:19].replace('T', ' ')} UTC  "
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
        if args.format == "html":
            from bench.report.dashboard.trends import build_trends

            root = args.output or args.dashboards
            path = write_dashboard(analyse(facts), root, store.runs())
            build_trends(root, store, lambda line: print(line, file=sys.stderr))
            print(path)
            return EXIT_OK
    finally:
        store.close()
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
