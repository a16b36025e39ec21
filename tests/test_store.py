"""The SQLite store: migrations, cells written as they finish, JSON export."""

from __future__ import annotations

import json
import sqlite3

import pytest

from bench.errors import UsageError
from bench.store import MIGRATIONS, SCHEMA_VERSION, Store
from bench.zoo.cache import Variant


def cell(status="ok", **extra):
    return {"model": "m", "recipe": "int8", "device": "local", "backend": "xnnpack",
            "threads": 1, "status": status, "median_us": 10.0, "p90_us": 12.0,
            "summary": {"rounds": 1}, **extra}


def test_new_store_is_at_current_version(tmp_path):
    store = Store(tmp_path / "s.sqlite")
    version = store.db.execute("PRAGMA user_version").fetchone()[0]
    assert version == SCHEMA_VERSION == len(MIGRATIONS)
    store.close()


def test_newer_store_is_refused_with_advice(tmp_path):
    path = tmp_path / "s.sqlite"
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(UsageError, match="newer than this bench"):
        Store(path)


def test_garbage_file_is_a_clear_error(tmp_path):
    path = tmp_path / "s.sqlite"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(UsageError, match="not usable"):
        Store(path)


def test_cell_is_on_disk_as_soon_as_saved(tmp_path):
    path = tmp_path / "s.sqlite"
    store = Store(path)
    store.start_run("r1", "lbl", {"models": ["m"]}, {"load": 0}, "0.1")
    store.record_round("r1", cell(), 0, {"status": "ok", "latencies_us": [1.0, 2.0]})
    other = sqlite3.connect(path)  # a second connection sees it: nothing buffered
    assert other.execute("SELECT status, median_us FROM cells").fetchall() == [("ok", 10.0)]
    store.record_round("r1", cell(median_us=11.0), 1, {"status": "ok", "latencies_us": [3.0]})
    assert other.execute("SELECT COUNT(*), MAX(round) FROM rounds").fetchone() == (2, 1)
    assert other.execute("SELECT median_us FROM cells").fetchall() == [(11.0,)]
    assert sorted(store.rounds_by_cell("r1")[("m", "int8", "local", "xnnpack", 1)]) == [0, 1]
    # re-measuring (resume of a failed cell) replaces the row and forgets its rounds
    store.forget_rounds("r1", ("m", "int8", "local", "xnnpack", 1))
    store.save_cell("r1", cell(status="failed", reason="x", median_us=None))
    assert other.execute("SELECT status FROM cells").fetchall() == [("failed",)]
    assert other.execute("SELECT COUNT(*) FROM rounds").fetchone() == (0,)
    store.close()


def test_export_json_holds_run_variants_cells_and_rounds(tmp_path):
    store = Store(tmp_path / "s.sqlite")
    store.start_run("r1", None, {"models": ["m"]}, {}, "0.1")
    store.save_variant("r1", Variant("m", "int8", "ok", sha256="ab", size_bytes=5))
    store.record_round("r1", cell(), 0, {"status": "ok", "latencies_us": [1.0]})
    store.finish_run("r1", "completed")
    document = json.loads(store.export_json("r1", tmp_path / "r1.json").read_text())
    assert document["schema_version"] == SCHEMA_VERSION
    assert document["run"]["status"] == "completed"
    assert document["variants"][0]["sha256"] == "ab"
    assert document["cells"][0]["rounds"] == [{"status": "ok", "latencies_us": [1.0]}]
    with pytest.raises(UsageError, match="no run 'nope'"):
        store.run("nope")
    store.close()
