"""The results store in one SQLite file, written as measurements finish.

A crash or Ctrl-C loses at most the round being measured. The schema version is SQLite's
`user_version`; MIGRATIONS[i] takes a store from version i to i + 1, so a store written
by any earlier release opens in this one. Opened read-only (`bench runs`, `bench report`),
a store is never written, and a read-only file or directory is no obstacle.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path

from bench.errors import UsageError
from bench.keys import KEY_COLUMNS, CellKey
from bench.results import RoundContext, RoundResult
from bench.store import migrate_v1
from bench.store.base import RunFacts, Store
from bench.store.schema import (
    TABLES,
    TABLES_V2,
    TO_V3,
    TO_V4,
    TO_V5,
    columns,
    statements,
)
from bench.timeutil import utc_now

Migration = str | Callable[[sqlite3.Connection], None]
MIGRATIONS: list[Migration] = [
    migrate_v1.SCHEMA_V1,  # 0 -> 1: the first release's tables
    migrate_v1.to_v2,  # 1 -> 2: facts as columns, sessions, devices, device rounds
    TO_V3,  # 2 -> 3: each variant's ops, MACs and weight scheme
    TO_V4,  # 3 -> 4: accuracy evaluations
    TO_V5,  # 4 -> 5: the regression gate's decisions
]
SCHEMA_VERSION = 5


class SQLiteStore(Store):
    def __init__(self, path: Path, readonly: bool = False):
        self.path = Path(path)
        self.location = str(self.path)
        self.readonly = readonly
        try:
            self.db = self._connect()
            version = self.db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise UsageError(f"results store {self.path} has schema version {version}, "
                                 f"newer than this bench ({SCHEMA_VERSION}); upgrade bench")
            if version < SCHEMA_VERSION:
                if readonly:
                    self._migrate_then_reopen(version)
                else:
                    self._migrate(version)
        except sqlite3.DatabaseError as exc:
            raise UsageError(f"results store {self.path} is not usable ({exc}); if it is not "
                             "a bench store, point --store elsewhere") from None

    def _migrate_then_reopen(self, version: int) -> None:
        """A read-only use of an older store: migrate it once if it may be written."""
        writable = os.access(self.path, os.W_OK) and os.access(self.path.parent, os.W_OK)
        if not writable:
            raise UsageError(
                f"results store {self.path} is at schema version {version}; reading it needs "
                f"a migration to version {SCHEMA_VERSION}, which writes: make it writable "
                "or copy it somewhere writable and point --store there")
        self.db.close()
        self.readonly = False
        self.db = self._connect()
        self._migrate(self.db.execute("PRAGMA user_version").fetchone()[0])
        self.db.close()
        self.readonly = True
        self.db = self._connect()

    def _connect(self) -> sqlite3.Connection:
        if self.readonly:
            if not self.path.is_file():
                raise UsageError(f"no results store at {self.path}; run `python -m bench run` "
                                 "first, or point --store at one")
            uri = self.path.resolve().as_uri()
            db = sqlite3.connect(f"{uri}?mode=ro", uri=True, check_same_thread=False)
            try:
                db.execute("PRAGMA user_version").fetchone()
            except sqlite3.OperationalError:
                # A WAL store in a read-only directory cannot open its shared-memory file;
                # read it as immutable (nothing else may write it meanwhile).
                db.close()
                db = sqlite3.connect(f"{uri}?immutable=1", uri=True, check_same_thread=False)
        else:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise UsageError(f"cannot create the results directory {self.path.parent} "
                                 f"({exc.strerror}); point --store at a writable place") from None
            # Device threads share this connection; the sweep serialises every use of it.
            db = sqlite3.connect(self.path, isolation_level=None, timeout=30,
                                 check_same_thread=False)
            try:
                db.execute("PRAGMA journal_mode=WAL")
            except sqlite3.OperationalError as exc:
                db.close()
                raise UsageError(f"results store {self.path} cannot be written ({exc}); "
                                 "make it writable, or point --store elsewhere") from None
        db.row_factory = sqlite3.Row
        return db

    def _migrate(self, version: int) -> None:
        """Every step in one transaction: another process reading the store (`bench runs`,
        a second harness) sees the old schema or the newest, never one half-way."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            # Another harness may have migrated while this one waited for the write lock.
            version = self.db.execute("PRAGMA user_version").fetchone()[0]
            for target in range(version, SCHEMA_VERSION):
                step = MIGRATIONS[target]
                if isinstance(step, str):
                    for statement in statements(step):
                        self.db.execute(statement)
                else:
                    step(self.db)
                self.db.execute(f"PRAGMA user_version = {target + 1}")
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise

    def close(self) -> None:
        self.db.close()

    # helpers
    def _write(self, sql: str, values: tuple | list) -> None:
        if self.readonly:
            raise RuntimeError("the store was opened read-only")
        self.db.execute(sql, tuple(values))

    def _upsert(self, table: str, row: dict, key: tuple[str, ...]) -> None:
        names = list(row)
        updates = [n for n in names if n not in key]
        sql = (f"INSERT INTO {table} ({', '.join(names)}) VALUES "
               f"({', '.join('?' for _ in names)}) ON CONFLICT ({', '.join(key)}) DO ")
        sql += ("UPDATE SET " + ", ".join(f"{n} = excluded.{n}" for n in updates)
                if updates else "NOTHING")
        self._write(sql, [row[n] for n in names])

    def _rows(self, sql: str, values: tuple = ()) -> list[dict]:
        return [dict(row) for row in self.db.execute(sql, values).fetchall()]

    # runs and sessions
    def start_run(self, run_id: str, *, label, settings, host, harness_version, protocol,
                  protocol_version, seed) -> None:
        self._write("INSERT INTO runs (id, started_at, finished_at, status, harness_version, "
                    "label, settings, host, protocol, protocol_version, seed) VALUES "
                    "(?, ?, NULL, 'running', ?, ?, ?, ?, ?, ?, ?)",
                    (run_id, utc_now(), harness_version, label, json.dumps(settings),
                     json.dumps(host), json.dumps(protocol), protocol_version, seed))

    def start_session(self, run_id: str, *, host: str, pid: int, harness_version: str) -> int:
        found = self.db.execute("SELECT MAX(session) FROM sessions WHERE run_id = ?",
                                (run_id,)).fetchone()[0]
        session = (found or 0) + 1
        self._write("INSERT INTO sessions (run_id, session, started_at, finished_at, status, "
                    "host, pid, harness_version) VALUES (?, ?, ?, NULL, 'running', ?, ?, ?)",
                    (run_id, session, utc_now(), host, pid, harness_version))
        self._write("UPDATE runs SET status = 'running', finished_at = NULL WHERE id = ?",
                    (run_id,))
        return session

    def finish_session(self, run_id: str, session: int, status: str) -> None:
        self._write("UPDATE sessions SET status = ?, finished_at = ? WHERE run_id = ? AND "
                    "session = ?", (status, utc_now(), run_id, session))

    def set_run_status(self, run_id: str, status: str) -> None:
        finished = None if status == "running" else utc_now()
        self._write("UPDATE runs SET status = ?, finished_at = ? WHERE id = ?",
                    (status, finished, run_id))

    def delete_run(self, run_id: str) -> None:
        if self.readonly:
            raise RuntimeError("the store was opened read-only")
        # Children first, the run last: the same order works where foreign keys are enforced.
        children = [table for table in TABLES if table != "runs"]
        self.db.execute("BEGIN IMMEDIATE")
        try:
            if self.db.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone() is None:
                raise UsageError(f"no run {run_id!r} in {self.path}; `bench runs` lists them")
            for table in children:
                self._write(f"DELETE FROM {table} WHERE run_id = ?", (run_id,))
            self._write("DELETE FROM runs WHERE id = ?", (run_id,))
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        # No VACUUM: it rewrites the whole file (up to twice its size on disk), cannot run
        # while another harness holds the store open for writing, and the freed pages are
        # reused by the next runs anyway. Whoever wants the file smaller can VACUUM offline.

    def save_gate(self, run_id: str, *, ref: str, min_effect: float, alpha: float,
                  baseline_ids: list[str]) -> None:
        self._write("INSERT INTO gates (run_id, judged_at, ref, min_effect, alpha, "
                    "baseline_ids) VALUES (?, ?, ?, ?, ?, ?)",
                    (run_id, utc_now(), ref, min_effect, alpha, json.dumps(baseline_ids)))

    def gates(self, run_id: str | None = None) -> list[dict]:
        one = run_id is not None
        rows = self._rows("SELECT * FROM gates" + (" WHERE run_id = ?" if one else "") +
                          " ORDER BY judged_at", (run_id,) if one else ())
        for row in rows:
            row["baseline_ids"] = json.loads(row["baseline_ids"])
        return rows

    # what was measured
    def save_device(self, run_id: str, session: int, device: dict) -> None:
        row = {name: device.get(name) for name in columns("run_devices")}
        row.update(run_id=run_id, session=session, probed_at=utc_now())
        for name in ("config", "cpu_flags"):
            if row[name] is not None and not isinstance(row[name], str):
                row[name] = json.dumps(row[name])
        self._upsert("run_devices", row, ("run_id", "device", "session"))

    def save_variant(self, run_id: str, variant, position: int) -> None:
        check = variant.check or {}
        self._upsert("variants", {
            "run_id": run_id, "model": variant.model, "recipe": variant.recipe,
            "sha256": variant.sha256, "source": variant.source, "status": variant.status,
            "size_bytes": variant.size_bytes, "random_weights": int(variant.random_weights),
            "error": variant.error, "build_seconds": variant.build_seconds,
            "cached": int(variant.cached), "cache_key": json.dumps(variant.key),
            "check_inputs": check.get("inputs"),
            "check_top1_agreement": check.get("top1_agreement"),
            "check_snr_db": check.get("snr_db"),
            "check_identical": (int(check["identical"]) if check.get("identical") is not None
                                else None),
            "check_error": check.get("error"), "position": position,
            "ops": json.dumps(variant.ops) if variant.ops is not None else None,
            "macs": variant.macs, "weight_scheme": variant.weight_scheme,
        }, ("run_id", "model", "recipe"))

    def save_cell(self, run_id: str, key: CellKey, *, status: str, position=None, reason=None,
                  stop_reason=None, protocol_version=None, target=None) -> None:
        row = {"run_id": run_id, "cell_id": key.cell_id, **key._asdict(), "status": status,
               "reason": reason, "stop_reason": stop_reason,
               "protocol_version": protocol_version, "target": target, "updated_at": utc_now()}
        if position is not None:  # kept from the first save otherwise
            row["position"] = position
        self._upsert("cells", row, ("run_id", "cell_id"))

    def save_plan(self, run_id: str, key: CellKey, *, pilot: int, needed: int,
                  planned: int) -> None:
        self._write("UPDATE cells SET pilot_rounds = ?, needed_rounds = ?, planned_rounds = ?, "
                    "updated_at = ? WHERE run_id = ? AND cell_id = ?",
                    (pilot, needed, planned, utc_now(), run_id, key.cell_id))

    def save_memory(self, run_id: str, key: CellKey, memory_bytes: int | None,
                    evidence: str) -> None:
        self._write("UPDATE cells SET memory_bytes = ?, memory_evidence = ?, updated_at = ? "
                    "WHERE run_id = ? AND cell_id = ?",
                    (memory_bytes, evidence, utc_now(), run_id, key.cell_id))

    def save_evaluation(self, run_id: str, row: dict) -> None:
        found = {name: row.get(name) for name in columns("evaluations")}
        found.update(run_id=run_id, evaluated_at=utc_now())
        self._upsert("evaluations", found,
                     ("run_id", "model", "recipe", "device", "backend", "dataset"))

    def start_device_round(self, run_id: str, device: str, index: int, *, session: int,
                           seed: int, planned: int, cooldown: dict | None) -> None:
        cooldown = cooldown or {}
        self._upsert("device_rounds", {
            "run_id": run_id, "device": device, "round": index, "session": session,
            "seed": seed, "planned": planned, "started_at": utc_now(), "finished_at": None,
            "cooldown_pause_s": cooldown.get("pause_s"),
            "cooldown_waited_s": cooldown.get("waited_s"),
            "temperature_before_c": cooldown.get("temperature_before_c"),
            "temperature_after_c": cooldown.get("temperature_after_c"),
            "cooldown_timed_out": (int(cooldown["timed_out"]) if "timed_out" in cooldown
                                   else None),
        }, ("run_id", "device", "round"))

    def finish_device_round(self, run_id: str, device: str, index: int) -> None:
        self._write("UPDATE device_rounds SET finished_at = ? WHERE run_id = ? AND device = ? "
                    "AND round = ?", (utc_now(), run_id, device, index))

    def record_round(self, run_id: str, key: CellKey, result: RoundResult,
                     context: RoundContext) -> None:
        self._upsert("rounds", round_row(run_id, key.cell_id, result, context),
                     ("run_id", "cell_id", "round"))

    # reading
    def run(self, run_id: str) -> dict:
        rows = self._rows("SELECT * FROM runs WHERE id = ?", (run_id,))
        if not rows:
            raise UsageError(f"no run {run_id!r} in {self.path}; `bench runs` lists them")
        run = rows[0]
        for name in ("settings", "host", "protocol"):
            run[name] = json.loads(run[name]) if run.get(name) else None
        return run

    def runs(self) -> list[dict]:
        # Counts of cells: a run without cells has none of each (0 is counted, not assumed).
        return self._rows(
            "SELECT r.id, r.started_at, r.finished_at, r.status, r.label, "
            "COUNT(c.cell_id) AS cells, "
            "COALESCE(SUM(CASE WHEN c.status = 'ok' THEN 1 ELSE 0 END), 0) AS ok, "
            "COALESCE(SUM(CASE WHEN c.status = 'failed' THEN 1 ELSE 0 END), 0) AS failed, "
            "(SELECT s.host FROM sessions s WHERE s.run_id = r.id ORDER BY s.session DESC "
            "LIMIT 1) AS session_host, "
            "(SELECT s.pid FROM sessions s WHERE s.run_id = r.id ORDER BY s.session DESC "
            "LIMIT 1) AS session_pid "
            "FROM runs r LEFT JOIN cells c ON c.run_id = r.id "
            "GROUP BY r.id, r.started_at, r.finished_at, r.status, r.label "
            "ORDER BY r.started_at, r.id")

    def latest_run_id(self) -> str | None:
        rows = self._rows("SELECT id FROM runs ORDER BY started_at DESC, id DESC LIMIT 1")
        return rows[0]["id"] if rows else None

    def facts(self, run_id: str, raw: bool = False) -> RunFacts:
        run = self.run(run_id)
        round_columns = [c for c in columns("rounds") if raw or c != "record"]
        rounds = self._rows(
            f"SELECT {', '.join('r.' + c for c in round_columns)}, "
            f"{', '.join('c.' + c for c in KEY_COLUMNS)} FROM rounds r JOIN cells c ON "
            "c.run_id = r.run_id AND c.cell_id = r.cell_id WHERE r.run_id = ? "
            "ORDER BY c.device, r.round, r.position, r.cell_id", (run_id,))
        for row in rounds:
            row["busy_processes"] = json.loads(row["busy_processes"] or "[]")
            if raw:
                row["record"] = json.loads(row["record"]) if row["record"] else None
        devices = self._rows("SELECT * FROM run_devices WHERE run_id = ? ORDER BY device, "
                             "session", (run_id,))
        for row in devices:
            row["config"] = json.loads(row["config"]) if row["config"] else None
            row["cpu_flags"] = json.loads(row["cpu_flags"]) if row["cpu_flags"] else None
        variants = self._rows("SELECT * FROM variants WHERE run_id = ? ORDER BY position, "
                              "model, recipe", (run_id,))
        for row in variants:
            row["cache_key"] = json.loads(row["cache_key"]) if row["cache_key"] else None
            row["ops"] = json.loads(row["ops"]) if row["ops"] else None
        return RunFacts(
            run=run,
            sessions=self._rows("SELECT * FROM sessions WHERE run_id = ? ORDER BY session",
                                (run_id,)),
            devices=devices,
            variants=variants,
            cells=self._rows("SELECT * FROM cells WHERE run_id = ? ORDER BY position, device, "
                             "model, recipe, backend, threads", (run_id,)),
            device_rounds=self._rows("SELECT * FROM device_rounds WHERE run_id = ? ORDER BY "
                                     "device, round", (run_id,)),
            rounds=rounds,
            evaluations=self._rows("SELECT * FROM evaluations WHERE run_id = ? ORDER BY "
                                   "device, backend, dataset, model, recipe", (run_id,)),
        )


def round_row(run_id: str, cell_id: str, result: RoundResult, context: RoundContext) -> dict:
    """A round as the columns of the `rounds` table."""
    aggregate, delegation = result.aggregate, result.delegation
    environment = result.environment
    row = {
        "run_id": run_id, "cell_id": cell_id, "round": context.round,
        "session": context.session, "position": context.position,
        "predecessor": context.predecessor,
        "status": result.status, "error": result.error, "device_lost": int(result.device_lost),
        "warmup_runs": result.warmup_runs, "loop_overhead_us": result.loop_overhead_us,
        "batch": result.batch, "init_us": result.init_us,
        "first_inference_us": result.first_inference_us,
        "peak_memory_bytes": result.peak_memory_bytes,
        "delegated": delegation.delegated if delegation else None,
        "delegate_nodes": delegation.delegate_nodes if delegation else None,
        "graph_nodes": delegation.graph_nodes if delegation else None,
        "delegation_evidence": delegation.evidence if delegation else None,
        "runtime_name": result.runtime_name, "runtime_version": result.runtime_version,
        "runner_name": result.runner_name, "runner_version": result.runner_version,
        "started_unix": result.started_unix, "finished_unix": result.finished_unix,
        "host_seconds": context.host_seconds,
        "record": json.dumps(result.raw) if result.raw else None,
    }
    figures = ("count", "mean_us", "median_us", "p5_us", "p90_us", "p95_us", "p99_us", "std_us",
               "min_us", "max_us")
    for name in figures:
        row["n" if name == "count" else name] = getattr(aggregate, name) if aggregate else None
    row["summary_us"] = aggregate.summary_us if aggregate else None
    row["summary_kind"] = aggregate.summary_kind if aggregate else None
    env_fields = ("loadavg_1m", "procs_running", "cpus_available", "steal_fraction",
                  "temperature_c", "temperature_before_c", "battery_temperature_c", "governor")
    for name in env_fields:
        row[name] = getattr(environment, name) if environment else None
    for name in ("charging", "screen_on"):
        value = getattr(environment, name) if environment else None
        row[name] = int(value) if value is not None else None
    row["busy_processes"] = json.dumps(
        [{"pid": p.pid, "name": p.name, "cpu_share": p.cpu_share}
         for p in (environment.busy_processes if environment else ())])
    return row


__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "SQLiteStore", "TABLES_V2", "round_row"]
