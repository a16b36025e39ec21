"""The results store: one SQLite file, written cell by cell as measurements finish.

A crash or Ctrl-C loses at most the cell being measured. The schema is versioned
with SQLite's user_version; MIGRATIONS[i] takes a store from version i to i + 1,
so a store written by any earlier release opens in this one.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

from bench.errors import UsageError

DEFAULT_STORE = Path("results") / "bench.sqlite"

MIGRATIONS: list[str] = [
    # 0 -> 1: the first schema.
    """
    CREATE TABLE runs (
        id TEXT PRIMARY KEY,
        started_at TEXT NOT NULL,
        finished_at TEXT,
        status TEXT NOT NULL,            -- running | completed | interrupted | failed
        harness_version TEXT NOT NULL,
        label TEXT,
        settings TEXT NOT NULL,          -- JSON: what was asked (for --resume)
        environment TEXT NOT NULL        -- JSON: the host while measuring
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
        details TEXT NOT NULL,           -- JSON: cache key, output check, build time
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
        status TEXT NOT NULL,            -- ok | failed | skipped
        reason TEXT,
        median_us REAL,
        p90_us REAL,
        summary TEXT NOT NULL,           -- JSON
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
        record TEXT NOT NULL,            -- JSON: the runner's result for this round
        PRIMARY KEY (run_id, model, recipe, device, backend, threads, round)
    );
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)
CELL_KEY = ("model", "recipe", "device", "backend", "threads")


def new_run_id() -> str:
    """Local time first, so ids sort by when they started; a random tail keeps them unique."""
    return datetime.now().strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(2)


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class Store:
    def __init__(self, path: Path = DEFAULT_STORE):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            # Device threads share this connection; Sweep serialises every use of it.
            self.db = sqlite3.connect(self.path, isolation_level=None, timeout=30,
                                      check_same_thread=False)
            self.db.row_factory = sqlite3.Row
            self.db.execute("PRAGMA journal_mode=WAL")
            self._migrate()
        except sqlite3.DatabaseError as exc:
            raise UsageError(f"results store {self.path} is not usable ({exc}); move it "
                             "away to start a new one") from None

    def _migrate(self) -> None:
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise UsageError(f"results store {self.path} has schema version {version}, newer "
                             f"than this bench ({SCHEMA_VERSION}); upgrade bench")
        for target in range(version, SCHEMA_VERSION):
            with self.db:
                self.db.execute("BEGIN")
                for statement in filter(str.strip, MIGRATIONS[target].split(";")):
                    self.db.execute(statement)
                self.db.execute(f"PRAGMA user_version = {target + 1}")

    def close(self) -> None:
        self.db.close()

    # runs
    def start_run(self, run_id: str, label: str | None, settings: dict, environment: dict,
                  harness_version: str) -> None:
        self.db.execute(
            "INSERT INTO runs VALUES (?, ?, NULL, 'running', ?, ?, ?, ?)",
            (run_id, utc_now(), harness_version, label, json.dumps(settings),
             json.dumps(environment)))

    def reopen_run(self, run_id: str) -> None:
        self.db.execute("UPDATE runs SET status = 'running', finished_at = NULL WHERE id = ?",
                        (run_id,))

    def finish_run(self, run_id: str, status: str) -> None:
        self.db.execute("UPDATE runs SET status = ?, finished_at = ? WHERE id = ?",
                        (status, utc_now(), run_id))

    def run(self, run_id: str) -> dict:
        row = self.db.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            raise UsageError(f"no run {run_id!r} in {self.path}; `bench runs` lists them")
        run = dict(row)
        run["settings"] = json.loads(run["settings"])
        run["environment"] = json.loads(run["environment"])
        return run

    def runs(self) -> list[dict]:
        rows = self.db.execute(
            "SELECT r.id, r.started_at, r.status, r.label, COUNT(c.model) AS cells, "
            "SUM(c.status = 'ok') AS ok FROM runs r LEFT JOIN cells c ON c.run_id = r.id "
            "GROUP BY r.id ORDER BY r.started_at").fetchall()
        return [dict(r) for r in rows]

    # variants and cells
    def save_variant(self, run_id: str, variant) -> None:
        details = {"key": variant.key, "check": variant.check,
                   "build_seconds": variant.build_seconds, "cached": variant.cached}
        self.db.execute(
            "INSERT OR REPLACE INTO variants VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (run_id, variant.model, variant.recipe, variant.status, variant.sha256,
             variant.size_bytes, int(variant.random_weights), variant.error, json.dumps(details)))

    def _upsert_cell(self, run_id: str, cell: dict) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO cells VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (run_id, *(cell[k] for k in CELL_KEY), cell.get("sha256"), cell.get("runtime"),
             cell.get("runtime_version"), cell["status"], cell.get("reason"),
             cell.get("median_us"), cell.get("p90_us"), json.dumps(cell.get("summary", {})),
             utc_now()))

    def save_cell(self, run_id: str, cell: dict) -> None:
        """Write (or replace) a cell's row: its status and summary so far."""
        with self.db:
            self.db.execute("BEGIN")
            self._upsert_cell(run_id, cell)

    def record_round(self, run_id: str, cell: dict, index: int, record: dict) -> None:
        """A finished round and the cell's updated summary, in one transaction."""
        with self.db:
            self.db.execute("BEGIN")
            self.db.execute("INSERT OR REPLACE INTO rounds VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                            (run_id, *(cell[k] for k in CELL_KEY), index, json.dumps(record)))
            self._upsert_cell(run_id, cell)

    def forget_rounds(self, run_id: str, key: tuple) -> None:
        """Drop a cell's rounds before measuring it again (resume of a failed cell)."""
        self.db.execute("DELETE FROM rounds WHERE run_id = ? AND model = ? AND recipe = ? AND "
                        "device = ? AND backend = ? AND threads = ?", (run_id, *key))

    def rounds_by_cell(self, run_id: str) -> dict[tuple, dict[int, dict]]:
        out: dict[tuple, dict[int, dict]] = {}
        for item in self.rounds(run_id):
            out.setdefault(tuple(item[k] for k in CELL_KEY), {})[item["round"]] = item["record"]
        return out

    def cells(self, run_id: str) -> list[dict]:
        rows = self.db.execute("SELECT * FROM cells WHERE run_id = ? ORDER BY rowid",
                               (run_id,)).fetchall()
        return [{**dict(r), "summary": json.loads(r["summary"])} for r in rows]

    def variants(self, run_id: str) -> list[dict]:
        rows = self.db.execute("SELECT * FROM variants WHERE run_id = ? ORDER BY rowid",
                               (run_id,)).fetchall()
        return [{**dict(r), "details": json.loads(r["details"])} for r in rows]

    def rounds(self, run_id: str) -> Iterator[dict]:
        for row in self.db.execute("SELECT * FROM rounds WHERE run_id = ? ORDER BY rowid",
                                   (run_id,)):
            yield {**dict(row), "record": json.loads(row["record"])}

    def export_json(self, run_id: str, path: Path) -> Path:
        """The whole run as one JSON file (schema-versioned) for other tools."""
        run = self.run(run_id)
        rounds = self.rounds_by_cell(run_id)
        cells = [{**c, "rounds": list(rounds.get(tuple(c[k] for k in CELL_KEY), {}).values())}
                 for c in self.cells(run_id)]
        document = {"schema_version": SCHEMA_VERSION, "run": run,
                    "variants": self.variants(run_id), "cells": cells}
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(document, indent=1))
        return path


def open_store(path: Path = DEFAULT_STORE) -> closing[Store]:
    return closing(Store(path))
