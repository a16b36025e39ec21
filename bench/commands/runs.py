"""`bench runs` and `bench report`: what the store holds."""

from __future__ import annotations

import argparse

from bench.errors import EXIT_OK, UsageError
from bench.report.notes import device_notes
from bench.report.table import render
from bench.store import Store


def list_runs(args: argparse.Namespace) -> int:
    store = Store(args.store)
    try:
        for run in store.runs():
            print(f"{run['id']}  {run['started_at']}  {run['status']:<11} "
                  f"{run['ok'] or 0}/{run['cells']} ok  {run['label'] or ''}")
    finally:
        store.close()
    return EXIT_OK


def report(args: argparse.Namespace) -> int:
    store = Store(args.store)
    try:
        run_id = args.run_id
        if run_id is None:
            runs = store.runs()
            if not runs:
                raise UsageError(f"no runs in {args.store}; run `python -m bench run` first")
            run_id = runs[-1]["id"]
        store.run(run_id)
        print(f"run {run_id}")
        print(render(store.cells(run_id), store.variants(run_id)))
        for note in device_notes(store, run_id):
            print(note)
    finally:
        store.close()
    return EXIT_OK
