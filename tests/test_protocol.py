"""Interleaving, adaptive stopping, cool-down, noise warnings and the table's intervals."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from bench.analysis import analyse
from bench.devices import load_device
from bench.measure.cooldown import cool_down
from bench.measure.noise import round_warnings
from bench.measure.protocol import Protocol
from bench.measure.session import DeviceSession
from bench.measure.stopping import decide as decide_rule
from bench.orchestrator import round_order
from bench.plan import Cell
from bench.report.notes import int8_path
from bench.report.table import render
from bench.results import Aggregate, RoundContext, RoundResult
from bench.runners.python import PythonRunner
from bench.store.sqlite import SQLiteStore, round_row
from bench.transports.local import LocalTransport
from bench.zoo.cache import Variant
from tests.conftest import run_bench


def cell(recipe: str, model: str = "m", backend: str = "xnnpack") -> Cell:
    return Cell(Variant(model, recipe, "ok", sha256=recipe), "dev", backend, 1)


def as_row(record: RoundResult) -> dict:
    """A round as the store's columns (what the analysis and the warnings read)."""
    row = round_row("r", "c", record, RoundContext(0, 1, 0))
    return {**row, "busy_processes": json.loads(row["busy_processes"])}


def test_round_order_is_shuffled_per_round_and_reproducible():
    cells = [cell(r) for r in ("fp32", "fp16", "dynamic", "int8", "int8-per-tensor")]
    orders = [[c.recipe for c in round_order(cells, 42, "dev", i)] for i in range(6)]
    assert all(sorted(o) == sorted(c.recipe for c in cells) for o in orders)
    assert len({tuple(o) for o in orders}) > 1  # not the same order every round
    again = [[c.recipe for c in round_order(list(reversed(cells)), 42, "dev", i)]
             for i in range(6)]
    assert orders == again  # the seed alone decides, not the input order
    assert orders != [[c.recipe for c in round_order(cells, 43, "dev", i)] for i in range(6)]


def fake_medians(spread: float, count: int, rng) -> list[float]:
    """Round medians of a cell whose rounds vary by `spread` µs around 1000 µs."""
    return [float(np.median(1000 + rng.normal(0, spread, 30) + rng.normal(0, spread)))
            for _ in range(count)]


CELLS = [cell("fp32"), cell("int8"), cell("fp32", model="other")]


def decide(protocol: Protocol, medians: dict, over_budget: bool = False) -> dict:
    families: dict = {}
    for key in medians:
        families.setdefault(key.family, []).append(key)
    return decide_rule(families, medians, protocol, over_budget)


def test_stopping_waits_for_the_whole_family_and_respects_min_and_max():
    rng = np.random.default_rng(0)
    protocol = Protocol(min_rounds=3, max_rounds=8, target=0.01)
    quiet, noisy = fake_medians(0.5, 5, rng), fake_medians(80.0, 5, rng)
    keys = [c.key for c in CELLS]
    medians = {keys[0]: quiet, keys[1]: noisy, keys[2]: fake_medians(0.5, 5, rng)}
    # m's fp32 reached the target but its int8 did not: the family goes on, paired;
    # the other model's family is done
    assert decide(protocol, medians) == {keys[2]: "target"}
    # three tight rounds are not enough to stop on: their bootstrap is too optimistic
    assert decide(protocol, {keys[2]: fake_medians(0.5, 3, rng)}) == {}
    assert decide(protocol, {keys[0]: quiet, keys[1]: noisy}, over_budget=True) == {
        keys[0]: "budget", keys[1]: "budget"}
    two = {keys[0]: fake_medians(0.5, 2, rng), keys[1]: fake_medians(0.5, 2, rng)}
    assert decide(protocol, two, over_budget=True) == {}  # below min_rounds: budget waits
    eight = {keys[0]: fake_medians(80, 8, rng), keys[1]: fake_medians(80, 8, rng)}
    assert set(decide(protocol, eight).values()) == {"max_rounds"}
    fixed = Protocol().with_rounds(3)
    three = {keys[0]: fake_medians(0.5, 3, rng), keys[1]: fake_medians(0.5, 3, rng)}
    assert set(decide(fixed, three).values()) == {"fixed_rounds"}
    assert decide(fixed, {k: v[:2] for k, v in three.items()}) == {}


def test_cell_figures_carry_interval_and_target(tmp_path):
    rng = np.random.default_rng(1)
    store = SQLiteStore(tmp_path / "s.sqlite")
    store.start_run("r", label=None, settings={}, host={}, harness_version="x", protocol={},
                    protocol_version=2, seed=1)
    key = cell("int8").key
    store.save_cell("r", key, status="pending")
    for index, median in enumerate(fake_medians(0.5, 5, rng)):
        store.start_device_round("r", "dev", index, session=1, seed=1, planned=1,
                                 cooldown=None)
        store.record_round("r", key, RoundResult("ok", aggregate=Aggregate.of([median])),
                           RoundContext(index, 1, 0))
        store.finish_device_round("r", "dev", index)
    store.save_cell("r", key, status="ok", stop_reason="target", protocol_version=2,
                    target=0.01)
    row = analyse(store.facts("r")).cells.iloc[0]
    assert row["median_us_low"] <= row["median_us"] <= row["median_us_high"]
    assert row["rounds"] == 5 and row["reached_target"] and row["stop_reason"] == "target"
    assert row["median_rel_half_width"] <= 0.01
    store.close()


def device_file(tmp_path: Path, **keys) -> Path:
    lines = ['transport = "local"', 'runner = "python"']
    lines += [f"{k} = {json.dumps(v)}" for k, v in keys.items()]
    path = tmp_path / "dev.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_cooldown_waits_for_the_fake_thermal_zone(tmp_path):
    zone = tmp_path / "temp"
    zone.write_text("71000\n")
    device = load_device(device_file(tmp_path, thermal_zone=str(zone), thermal_max_c=50))
    readings = iter([66000, 58000, 49000])
    slept = []

    def fake_sleep(seconds):  # the device cools a bit every poll
        slept.append(seconds)
        zone.write_text(f"{next(readings)}\n")

    record = cool_down(LocalTransport(), device, 0.0, sleep=fake_sleep)
    assert record["temperature_before_c"] == 71.0 and record["temperature_after_c"] == 49.0
    assert record["threshold_c"] == 50 and len(slept) == 3 and record["timed_out"] is False


def test_cooldown_gives_up_after_its_timeout(tmp_path):
    zone = tmp_path / "temp"
    zone.write_text("90000\n")
    device = load_device(device_file(tmp_path, thermal_zone=str(zone), thermal_max_c=50,
                                     thermal_timeout_s=0.2))
    record = cool_down(LocalTransport(), device, 0.0, sleep=lambda s: time.sleep(0.05))
    assert record["timed_out"] and record["temperature_after_c"] == 90.0


def test_cooldown_fixed_pause_and_unreadable_zone(tmp_path):
    device = load_device(device_file(tmp_path, thermal_zone=str(tmp_path / "none*"),
                                     thermal_max_c=50))
    slept = []
    record = cool_down(LocalTransport(), device, 1.5, sleep=slept.append)
    assert slept == [1.5] and record["temperature_before_c"] is None  # unknown, never 0


def test_thermal_zone_with_shell_characters_is_refused(tmp_path):
    from bench.errors import UsageError

    with pytest.raises(UsageError, match="thermal_zone"):
        load_device(device_file(tmp_path, thermal_zone="/tmp/x; rm -rf /", thermal_max_c=50))


BUSY = ("import os, time\nos.sched_setaffinity(0, {0})\nend = time.time() + 30\n"
        "while time.time() < end: pass\n")


def test_real_load_triggers_noise_warnings(tmp_path, tiny_variants):
    """Two busy processes on the runner's CPU: the runner sees them and says so.

    Everything is pinned to CPU 0, so the load is the same on 2 cores or 64."""
    device = load_device(device_file(tmp_path, work_dir=str(tmp_path / "work"), cpus=[0]))
    protocol = Protocol(min_s=1.0, min_runs=10)
    hogs = [subprocess.Popen([sys.executable, "-c", BUSY]) for _ in range(2)]
    try:
        time.sleep(0.5)
        session = DeviceSession(device, LocalTransport(), PythonRunner(sys.executable, "auto"),
                                protocol)
        session.prepare()
        record = session.run_round(Cell(tiny_variants["fp32"], "dev", "xnnpack", 1), 0)
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
    assert record.ok, record.error
    assert record.environment.affinity == (0,) and record.environment.cpus_available == 1
    busy = record.environment.busy_processes
    assert {p.pid for p in busy} & {h.pid for h in hogs}
    row = as_row(record)
    warnings = round_warnings(row, threads=1)
    assert any(w.startswith("busy: python") for w in warnings), warnings
    assert any("runnable processes on 1 core(s)" in w for w in warnings), warnings
    quiet = {**row, "busy_processes": [], "procs_running": 1, "loadavg_1m": 0.1,
             "steal_fraction": 0.0}
    assert round_warnings(quiet, threads=1) == []
    assert round_warnings({**quiet, "steal_fraction": 0.07}, threads=1) == ["CPU steal 7.0%"]
    # unknown readings raise nothing and are not zeros
    unknown = {**quiet, "loadavg_1m": None, "procs_running": None, "steal_fraction": None}
    assert round_warnings(unknown, threads=1) == []
    assert round_warnings({**quiet, "cpus_available": 1}, threads=2) == ["2 threads on 1 core(s)"]


def test_int8_notes_from_cpu_flags():
    assert "AVX-512 VNNI" in int8_path({"avx2", "avx512_vnni"})
    assert "no VNNI" in int8_path({"avx2", "fma"})
    assert "dot product" in int8_path({"asimd", "asimddp"})
    assert "without the dot-product" in int8_path({"asimd"})


def test_table_shows_intervals_and_noise_marks(tmp_path):
    store = SQLiteStore(tmp_path / "s.sqlite")
    store.start_run("r", label=None, settings={}, host={}, harness_version="x", protocol={},
                    protocol_version=2, seed=1)
    fp32, int8 = cell("fp32").key, cell("int8").key
    for key in (fp32, int8):
        store.save_cell("r", key, status="pending")
    for index, (a, b) in enumerate([(7000.0, 3500.0), (7100.0, 3400.0), (6900.0, 3500.0)]):
        store.start_device_round("r", "dev", index, session=1, seed=1, planned=2,
                                 cooldown=None)
        for key, value in ((fp32, a), (int8, b)):
            steal = RoundResult("ok", aggregate=Aggregate.of([value, value * 1.01]),
                                environment=round_env(steal=0.07))
            store.record_round("r", key, steal, RoundContext(index, 1, 0))
        store.finish_device_round("r", "dev", index)
    for key in (fp32, int8):
        store.save_cell("r", key, status="ok", stop_reason="fixed_rounds", protocol_version=2)
    text = render(analyse(store.facts("r")))
    assert "7.04 [6.93, 7.14]" in text  # median of round medians 7035, 7135.5, 6934.5 µs
    # int8 against fp32, paired per round: ratios 2.000, 2.088, 1.971
    assert "2.00x [1.97, 2.09]" in text and " ref " in text
    assert "m int8 on dev/xnnpack/t1: CPU steal above 2% in 3/3 rounds" in text
    store.close()


def round_env(steal: float):
    from bench.results import RoundEnvironment

    return RoundEnvironment(loadavg_1m=0.1, procs_running=1, cpus_available=2,
                            steal_fraction=steal)


def test_dry_run_plans_without_measuring(workdir):
    done = run_bench(["run", "--dry-run", "--models", "tiny_cnn,mobilenet_v2",
                      "--recipes", "fp32,int8", "--backends", "xnnpack,gpu"], workdir)
    assert done.returncode == 0, done.stderr
    assert "plan: 4 cell(s) to measure, 4 skipped" in done.stdout
    assert "estimated measurement time" in done.stdout and "3-15 rounds" in done.stdout
    assert not (workdir / "results" / "bench.sqlite").exists()
    assert not (workdir / "models").exists()  # nothing converted


def test_rounds_are_interleaved_in_the_recorded_order(workdir, model_cache, tiny_variants):
    args = ["run", "--models", "tiny_cnn", "--recipes", "fp32,int8,dynamic", "--backends",
            "xnnpack", "--rounds", "3", "--seed", "1234", "--cooldown", "0.05",
            "--cache", str(model_cache), "--calibration-size", "8", "--no-progress"]
    done = run_bench(args, workdir)
    assert done.returncode == 0, done.stderr
    db = sqlite3.connect(workdir / "results" / "bench.sqlite")
    rows = db.execute("SELECT c.recipe, r.round, r.position, r.started_unix FROM rounds r "
                      "JOIN cells c ON c.cell_id = r.cell_id").fetchall()
    assert len(rows) == 9
    device_rounds = db.execute("SELECT round, seed, planned, cooldown_pause_s, finished_at "
                               "FROM device_rounds ORDER BY round").fetchall()
    assert [(r[0], r[1], r[2]) for r in device_rounds] == [(i, 1234, 3) for i in range(3)]
    assert [r[3] for r in device_rounds] == [None, 0.05, 0.05]  # no pause before the first
    assert all(r[4] is not None for r in device_rounds)
    by_round: dict[int, list] = {}
    for recipe, index, position, started in rows:
        by_round.setdefault(index, []).append((started, recipe, position))
    cells = [cell(r, model="tiny_cnn") for r in ("fp32", "int8", "dynamic")]
    for index, entries in by_round.items():
        ran = [recipe for _, recipe, _ in sorted(entries)]  # by the time each round started
        expected = [c.recipe for c in round_order(
            [Cell(tiny_variants[c.recipe], "local", "xnnpack", 1) for c in cells],
            1234, "local", index)]
        assert ran == expected
        assert sorted(p for _, _, p in entries) == [0, 1, 2]
    stored = db.execute("SELECT status, stop_reason, protocol_version FROM cells WHERE "
                        "recipe = 'int8'").fetchone()
    assert stored == ("ok", "fixed_rounds", 2)
    assert "speedup [95% CI]" in done.stdout and "x [" in done.stdout


def test_cell_flags_conditions_seen_in_at_least_half_the_rounds():
    from bench.measure.noise import cell_warnings

    def row(steal: float) -> dict:
        return {"steal_fraction": steal, "cpus_available": 2, "loadavg_1m": 0.1,
                "procs_running": 1, "busy_processes": []}

    blip = [row(0.0)] * 3 + [row(0.08)]
    assert cell_warnings(blip, 1, None, None) == []
    steady = [row(0.0)] * 2 + [row(0.08)] * 2
    assert cell_warnings(steady, 1, None, None) == ["CPU steal above 2% in 2/4 rounds"]
    assert cell_warnings(steady, 1, 0.07, 0.2) == [
        "CPU steal above 2% in 2/4 rounds", "round medians vary: CV 7.0%",
        "iterations vary: CV 20.0%"]
