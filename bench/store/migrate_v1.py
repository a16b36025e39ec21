"""Stores written by the first release (schema 1) and their migration to facts (schema 2).

Schema 1 kept each cell's figures in a JSON `summary` and each round as the runner's JSON
document. The migration keeps every measured round: it reads each document with the
same parser the harness uses for new rounds (so v1's "unknown" strings and zero
placeholders become NULL), turns summaries back into the facts they were made from
(status, stop decision) and drops the figures, which `bench.analysis` recomputes.
Schema 1 did not record which cells ran in each device round; a round is taken as
complete unless the run was cut short while a cell still waited for it.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3

from bench.keys import CellKey
from bench.results import RoundContext
from bench.store.schema import TABLES_V2, statements
from bench.timeutil import from_unix

SCHEMA_V1 = """
CREATE TABLE runs (
    id TEXT PRIMARY KEY,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    status TEXT NOT NULL,
    harness_version TEXT NOT NULL,
    label TEXT,
    settings TEXT NOT NULL,
    environment TEXT NOT NULL
);
CREATE TABLE variants (
    run_id TEXT NOT NULL REFERENCES runs(id),
    model TEXT NOT NULL,
    recipe TEXT NOT NULL,
    status TEXT NOT NULL,
    sha256 TEXT,
    size_bytes INTEGER,
    random_weights INTEGER NOT NULL,
    error TEXT,
    details TEXT NOT NULL,
    PRIMARY KEY (run_id, model, recipe)
);
CREATE TABLE cells (
    run_id TEXT NOT NULL REFERENCES runs(id),
    model TEXT NOT NULL,
    recipe TEXT NOT NULL,
    device TEXT NOT NULL,
    backend TEXT NOT NULL,
    threads INTEGER NOT NULL,
    sha256 TEXT,
    runtime TEXT,
    runtime_version TEXT,
    status TEXT NOT NULL,
    reason TEXT,
    median_us REAL,
    p90_us REAL,
    summary TEXT NOT NULL,
    finished_at TEXT NOT NULL,
    PRIMARY KEY (run_id, model, recipe, device, backend, threads)
);
CREATE TABLE rounds (
    run_id TEXT NOT NULL,
    model TEXT NOT NULL,
    recipe TEXT NOT NULL,
    device TEXT NOT NULL,
    backend TEXT NOT NULL,
    threads INTEGER NOT NULL,
    round INTEGER NOT NULL,
    record TEXT NOT NULL,
    PRIMARY KEY (run_id, model, recipe, device, backend, threads, round)
);
"""

V1_TABLES = ("runs", "variants", "cells", "rounds")
V1_PROTOCOL_VERSION = 1  # the first release's stopping rule


def _insert(db: sqlite3.Connection, table: str, row: dict) -> None:
    names = list(row)
    db.execute(f"INSERT INTO {table} ({', '.join(names)}) VALUES "
               f"({', '.join('?' for _ in names)})", [row[n] for n in names])


def to_v2(db: sqlite3.Connection) -> None:
    """Schema 1 -> 2, inside the caller's transaction."""
    from bench.runners.python import from_document
    from bench.store.sqlite import round_row

    for table in V1_TABLES:
        db.execute(f"ALTER TABLE {table} RENAME TO {table}_v1")
    for statement in statements(TABLES_V2):
        db.execute(statement)
    factory, db.row_factory = db.row_factory, sqlite3.Row
    runs = [dict(r) for r in db.execute("SELECT * FROM runs_v1 ORDER BY started_at, id")]
    for run in runs:
        settings = json.loads(run["settings"])
        host = json.loads(run["environment"])
        _insert(db, "runs", {
            "id": run["id"], "started_at": run["started_at"], "finished_at": run["finished_at"],
            "status": run["status"], "harness_version": run["harness_version"],
            "label": run["label"], "settings": run["settings"], "host": run["environment"],
            "protocol": None, "protocol_version": V1_PROTOCOL_VERSION,
            "seed": settings.get("seed")})
        _insert(db, "sessions", {
            "run_id": run["id"], "session": 1, "started_at": run["started_at"],
            "finished_at": run["finished_at"], "status": run["status"],
            "host": host.get("hostname"), "pid": None,
            "harness_version": run["harness_version"]})
    # schema 1 wrote variants in plan order; its rowid is the only record of that order
    variant_rank: dict[tuple, int] = {}
    for position, variant in enumerate(db.execute(
            "SELECT * FROM variants_v1 ORDER BY run_id, rowid").fetchall()):
        variant_rank[(variant["run_id"], variant["model"], variant["recipe"])] = position
        details = json.loads(variant["details"])
        check = details.get("check") or {}
        snr = check.get("snr_db")
        _insert(db, "variants", {
            "run_id": variant["run_id"], "model": variant["model"],
            "recipe": variant["recipe"], "sha256": variant["sha256"],
            "source": None, "status": variant["status"], "size_bytes": variant["size_bytes"],
            "random_weights": variant["random_weights"], "error": variant["error"],
            "build_seconds": details.get("build_seconds"),
            "cached": int(bool(details.get("cached"))),
            "cache_key": json.dumps(details.get("key")),
            "check_inputs": check.get("inputs"),
            "check_top1_agreement": check.get("top1_agreement"),
            # -999 was schema 1's stand-in for "reference output is zero": undefined
            "check_snr_db": snr if isinstance(snr, int | float) and snr > -999 else None,
            "check_identical": (int(check["identical"]) if "identical" in check else None),
            "check_error": check.get("error"), "position": position})
    cells = {}
    v1_cells = db.execute("SELECT * FROM cells_v1").fetchall()
    # plan order: variant, device, backend (in the order the backends are listed), threads
    v1_cells.sort(key=lambda c: (variant_rank.get((c["run_id"], c["model"], c["recipe"]), 0),
                                 c["device"], _backend_rank(c["backend"]), c["threads"]))
    for position, cell in enumerate(v1_cells):
        summary = json.loads(cell["summary"])
        key = CellKey(cell["model"], cell["recipe"], cell["sha256"], cell["device"],
                      cell["backend"], cell["threads"])
        stop = summary.get("stop_reason")
        status = cell["status"]
        if status == "ok" and stop in (None, "device_lost"):
            status, stop = "pending", None  # measured, never finished: a resume continues it
        cells[(cell["run_id"], *_v1_key(cell))] = (key, stop, cell["status"])
        _insert(db, "cells", {
            "run_id": cell["run_id"], "cell_id": key.cell_id, **key._asdict(),
            "status": status, "reason": cell["reason"], "stop_reason": stop,
            "protocol_version": V1_PROTOCOL_VERSION if stop else None,
            "target": summary.get("target"), "position": position,
            "updated_at": cell["finished_at"]})
    rounds: dict[tuple, dict[int, dict]] = {}
    for item in db.execute("SELECT * FROM rounds_v1").fetchall():
        rounds.setdefault((item["run_id"], *_v1_key(item)), {})[item["round"]] = \
            json.loads(item["record"])
    device_rounds: dict[tuple, list] = {}
    first_ok: dict[tuple, dict] = {}
    for v1_key, by_index in rounds.items():
        key = cells[v1_key][0] if v1_key in cells else CellKey(
            v1_key[1], v1_key[2], None, v1_key[3], v1_key[4], v1_key[5])
        run_id = v1_key[0]
        for index, record in by_index.items():
            result = from_document(record)
            if record.get("device_lost"):
                result = dataclasses.replace(result, device_lost=True)
            order = record.get("order") or {}
            context = RoundContext(round=index, session=1, position=order.get("position"),
                                   host_seconds=record.get("host_seconds"))
            _insert(db, "rounds", round_row(run_id, key.cell_id, result, context))
            device_rounds.setdefault((run_id, key.device, index), []).append(record)
            if result.ok:
                first_ok.setdefault((run_id, key.device), record)
    statuses = {run["id"]: run["status"] for run in runs}
    for (run_id, device, index), records in sorted(device_rounds.items()):
        complete = statuses[run_id] == "completed" or _complete_v1(
            run_id, device, index, cells, rounds)
        started = [r["started_unix"] for r in records if r.get("started_unix")]
        finished = [r["finished_unix"] for r in records if r.get("finished_unix")]
        cooldown = next((r["cooldown"] for r in records if r.get("cooldown")), {})
        seed = next(((r.get("order") or {}).get("seed") for r in records), None)
        _insert(db, "device_rounds", {
            "run_id": run_id, "device": device, "round": index, "session": 1,
            "seed": seed, "planned": len(records) if complete else None,
            "started_at": from_unix(min(started)) if started else None,
            "finished_at": (from_unix(max(finished)) if finished else None) if complete
            else None,
            "cooldown_pause_s": cooldown.get("pause_s"),
            "cooldown_waited_s": cooldown.get("waited_s"),
            "temperature_before_c": _number(cooldown.get("temperature_before_c")),
            "temperature_after_c": _number(cooldown.get("temperature_after_c")),
            "cooldown_timed_out": int(cooldown["timed_out"]) if "timed_out" in cooldown
            else None})
    for (run_id, device), record in first_ok.items():
        runtime = record.get("runtime") or {}
        _insert(db, "run_devices", {
            "run_id": run_id, "device": device, "session": 1, "transport": None,
            "runner": "python", "machine_id": None, "config": None, "runner_name": "python",
            "runner_version": record.get("runner_version"),
            "runtime_name": runtime.get("name"), "runtime_version": runtime.get("version"),
            "runtime_module": runtime.get("module"), "python_version": record.get("python"),
            "numpy_version": record.get("numpy_version"), "cpu_model": record.get("cpu_model"),
            "cpu_flags": json.dumps(record.get("cpu_flags") or []),
            "cpu_count": record.get("cpu_count"), "machine": record.get("machine"),
            "platform": record.get("platform"), "probed_at": None})
    for table in V1_TABLES:
        db.execute(f"DROP TABLE {table}_v1")
    db.row_factory = factory


def _backend_rank(backend: str) -> int:
    from bench.devices import BACKENDS

    return BACKENDS.index(backend) if backend in BACKENDS else len(BACKENDS)


def _v1_key(row) -> tuple:
    return (row["model"], row["recipe"], row["device"], row["backend"], row["threads"])


def _number(value) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) \
        else None


def _complete_v1(run_id: str, device: str, index: int, cells: dict, rounds: dict) -> bool:
    """Did every cell that was still measuring on `device` get round `index`?"""
    for v1_key, (key, stop, status) in cells.items():
        if v1_key[0] != run_id or key.device != device or status != "ok":
            continue  # skipped and failed-to-build cells never took part in a round
        have = rounds.get(v1_key, {})
        if index in have:
            continue
        # still active in that round: no stop decision and measured up to the round before
        if stop is None and (max(have) if have else -1) == index - 1:
            return False
    return True
