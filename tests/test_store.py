"""The SQLite store: facts as columns, written as they happen, migrated from release 1."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest

from bench.analysis import analyse
from bench.errors import UsageError
from bench.keys import CellKey
from bench.results import Aggregate, Delegation, RoundContext, RoundEnvironment, RoundResult
from bench.store import open_store
from bench.store.schema import TABLES, columns
from bench.store.sqlite import SCHEMA_VERSION, SQLiteStore
from bench.zoo.cache import Variant

FIXTURE = Path(__file__).parent / "fixtures" / "store-v1.sqlite"
KEY = CellKey("m", "int8", "ab" * 32, "local", "xnnpack", 1)
FP32 = CellKey("m", "fp32", "cd" * 32, "local", "xnnpack", 1)


def result(latencies: list[float], **facts) -> RoundResult:
    return RoundResult(status="ok", aggregate=Aggregate.of(latencies),
                       latencies_us=tuple(latencies), **facts)


def new_store(path: Path) -> SQLiteStore:
    store = SQLiteStore(path)
    store.start_run("r1", label="lbl", settings={"models": ["m"]}, host={"hostname": "h"},
                    harness_version="0.1", protocol={"min_rounds": 3}, protocol_version=2,
                    seed=5)
    return store


def test_new_store_has_every_table_with_the_schema_columns(tmp_path):
    store = SQLiteStore(tmp_path / "s.sqlite")
    assert store.db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    for table in TABLES:
        found = [row[1] for row in store.db.execute(f"PRAGMA table_info({table})")]
        assert found == columns(table), table
    assert "cpu_flags" in columns("run_devices") and "median_us" in columns("rounds")
    store.close()


def test_newer_store_is_refused_with_advice(tmp_path):
    path = tmp_path / "s.sqlite"
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(UsageError, match="newer than this bench"):
        SQLiteStore(path)


def test_garbage_file_is_a_clear_error(tmp_path):
    path = tmp_path / "s.sqlite"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(UsageError, match="not usable"):
        SQLiteStore(path)


def test_a_round_is_on_disk_as_soon_as_recorded_with_unknowns_as_null(tmp_path):
    path = tmp_path / "s.sqlite"
    store = new_store(path)
    store.save_cell("r1", KEY, status="pending", position=0)
    store.start_device_round("r1", "local", 0, session=1, seed=5, planned=1, cooldown=None)
    env = RoundEnvironment(loadavg_1m=0.5, procs_running=None, cpus_available=2)
    store.record_round("r1", KEY, result([10.0, 12.0, 11.0], environment=env,
                                         delegation=Delegation("xnnpack", "yes", 1, 6)),
                       RoundContext(round=0, session=1, position=0, host_seconds=0.4))
    other = sqlite3.connect(path)  # a second connection sees it: nothing buffered
    row = other.execute("SELECT median_us, n, init_us, peak_memory_bytes, procs_running, "
                        "steal_fraction, loadavg_1m, delegated FROM rounds").fetchone()
    assert row == (11.0, 3, None, None, None, None, 0.5, "yes")
    store.save_cell("r1", KEY, status="ok", stop_reason="fixed_rounds", protocol_version=2)
    assert other.execute("SELECT status, stop_reason, position FROM cells").fetchone() == \
        ("ok", "fixed_rounds", 0)  # an update keeps the plan position
    assert other.execute("SELECT finished_at FROM device_rounds").fetchone() == (None,)
    store.finish_device_round("r1", "local", 0)
    assert other.execute("SELECT finished_at FROM device_rounds").fetchone()[0] is not None
    store.close()


def test_sessions_count_up_and_latest_run_is_by_start_time(tmp_path):
    store = new_store(tmp_path / "s.sqlite")
    assert store.start_session("r1", host="h", pid=1, harness_version="x") == 1
    assert store.start_session("r1", host="h", pid=2, harness_version="x") == 2
    # a later run whose id sorts first (same second, random tail) is still the latest
    store.start_run("a-later-run", label=None, settings={}, host={}, harness_version="0.1",
                    protocol={}, protocol_version=2, seed=1)
    assert store.latest_run_id() == "a-later-run"
    assert [r["id"] for r in store.runs()] == ["r1", "a-later-run"]
    store.close()


def test_facts_round_trip_into_the_analysis(tmp_path):
    store = new_store(tmp_path / "s.sqlite")
    variant = Variant("m", "int8", "ok", sha256=KEY.sha256, size_bytes=5, source="m",
                      check={"inputs": 8, "top1_agreement": 1.0, "snr_db": None,
                             "identical": False, "reference_is_zero": True})
    store.save_variant("r1", variant, 0)
    for key in (FP32, KEY):
        store.save_cell("r1", key, status="pending")
    for index in range(3):
        store.start_device_round("r1", "local", index, session=1, seed=5, planned=2,
                                 cooldown=None)
        store.record_round("r1", FP32, result([20.0 + index]), RoundContext(index, 1, 0))
        store.record_round("r1", KEY, result([10.0]), RoundContext(index, 1, 1))
        store.finish_device_round("r1", "local", index)
    facts = store.facts("r1")
    assert facts.variants[0]["check_snr_db"] is None and facts.variants[0]["check_inputs"] == 8
    analysis = analyse(facts)
    found = analysis.speedup(KEY, "same_backend")
    assert found["n"] == 3 and found["speedup"] == pytest.approx((2.0 * 2.1 * 2.2) ** (1 / 3))
    store.close()


def migrated(tmp_path: Path) -> Path:
    path = tmp_path / "v1.sqlite"
    shutil.copy(FIXTURE, path)
    SQLiteStore(path).close()
    return path


def test_migration_from_release_1_keeps_every_round_as_facts(tmp_path):
    before = sqlite3.connect(FIXTURE)
    v1_rounds = before.execute("SELECT COUNT(*) FROM rounds").fetchone()[0]
    v1_latencies = sorted(
        sum(json.loads(r)["latencies_us"]) for (r,) in before.execute("SELECT record FROM rounds")
        if json.loads(r)["status"] == "ok")
    db = sqlite3.connect(migrated(tmp_path))
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert db.execute("SELECT COUNT(*) FROM rounds").fetchone()[0] == v1_rounds
    kept = sorted(sum(json.loads(r)["latencies_us"]) for (r,) in
                  db.execute("SELECT record FROM rounds WHERE status = 'ok'"))
    assert kept == v1_latencies  # every iteration of every round, untouched
    # v1's placeholder strings and numbers are gone: NULL where unknown
    for column in ("governor", "runtime_version", "delegated"):
        assert db.execute(f"SELECT COUNT(*) FROM rounds WHERE {column} = 'unknown'").fetchone() \
            == (0,), column
    assert db.execute("SELECT COUNT(*) FROM rounds WHERE status = 'ok' AND "
                      "(median_us IS NULL OR init_us IS NULL)").fetchone() == (0,)
    assert db.execute("SELECT COUNT(*) FROM variants WHERE check_snr_db <= -999").fetchone() \
        == (0,)
    # the run a SIGTERM killed in release 1: its cells are pending, its last round incomplete
    statuses = dict(db.execute("SELECT id, status FROM runs").fetchall())
    crashed = next(run for run, status in statuses.items() if status == "running")
    assert {s for (s,) in db.execute("SELECT status FROM cells WHERE run_id = ?", (crashed,))} \
        == {"pending"}
    rounds = db.execute("SELECT round, finished_at IS NOT NULL FROM device_rounds WHERE "
                        "run_id = ? ORDER BY round", (crashed,)).fetchall()
    assert rounds[:-1] == [(i, 1) for i in range(len(rounds) - 1)] and rounds[-1][1] == 0
    assert db.execute("SELECT COUNT(*) FROM run_devices WHERE cpu_model IS NOT NULL").fetchone()[0]


def test_migrated_runs_are_analysed_with_speedups(tmp_path):
    store = open_store(migrated(tmp_path), readonly=True)
    completed = next(r["id"] for r in store.runs() if r["label"] == "fixture-complete")
    analysis = analyse(store.facts(completed))
    cells = analysis.cells.set_index(["recipe", "backend"])
    assert cells.loc[("int8", "xnnpack"), "rounds"] == 3
    assert cells.loc[("int8", "gpu"), "status"] == "skipped"
    assert set(analysis.cells[analysis.cells["model"] == "corrupt"]["status"]) == \
        {"failed", "skipped"}
    same = analysis.speedups[analysis.speedups["reference"] == "same_backend"]
    assert len(same) == 4 and (same["n"] == 3).all()  # int8 and dynamic on xnnpack and cpu
    store.close()


@contextlib.contextmanager
def read_only(directory: Path):
    """A read-only directory for real: a read-only bind mount as root (root ignores
    permission bits), permission bits otherwise."""
    if os.geteuid() == 0:
        subprocess.run(["mount", "--bind", str(directory), str(directory)], check=True)
        try:
            subprocess.run(["mount", "-o", "remount,ro,bind", str(directory)], check=True)
            yield
        finally:
            subprocess.run(["umount", str(directory)], check=True)
    else:
        directory.chmod(0o555)
        try:
            yield
        finally:
            directory.chmod(0o755)


def test_a_read_only_results_directory_reads_fine(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    path = results / "bench.sqlite"
    store = new_store(path)
    store.save_cell("r1", KEY, status="pending")
    store.close()
    with read_only(results):
        with pytest.raises(OSError):
            (results / "probe").write_text("x")
        store = open_store(path, readonly=True)
        assert [r["id"] for r in store.runs()] == ["r1"]
        assert store.facts("r1").cells[0]["status"] == "pending"
        store.close()
        with pytest.raises(UsageError, match="cannot be written|not usable"):
            open_store(path)  # writing really is refused, with the reason


def test_store_sql_is_portable():
    """No SQLite-only constructs outside the reader of release 1's SQLite layout."""
    source = (Path(__file__).parent.parent / "bench" / "store" / "sqlite.py").read_text()
    for pattern in (r"INSERT OR REPLACE", r"\browid\b", r"SUM\(\w+\.\w+ *=", r"REPLACE INTO",
                    r"IFNULL\(", r"GROUP_CONCAT"):
        assert not re.search(pattern, source, re.IGNORECASE), pattern
    assert "ON CONFLICT" in source  # the standard upsert


def test_a_new_store_is_created_in_one_transaction(tmp_path, monkeypatch):
    """A reader never meets a half-made schema: a failing last step leaves nothing."""
    import bench.store.sqlite as sqlite_store

    def broken(db):
        raise RuntimeError("step failed")

    monkeypatch.setattr(sqlite_store, "MIGRATIONS", [*sqlite_store.MIGRATIONS[:-1], broken])
    path = tmp_path / "s.sqlite"
    with pytest.raises(RuntimeError, match="step failed"):
        SQLiteStore(path)
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == 0
    assert db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()[0] == 0
    db.close()
    monkeypatch.undo()
    store = SQLiteStore(path)  # and the next try makes it whole
    assert store.db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    store.close()
