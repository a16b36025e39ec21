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

from bench.devices import load_device
from bench.measure.cell import Cell, DeviceSession, summarize_cell
from bench.measure.cooldown import cool_down
from bench.measure.noise import round_warnings
from bench.measure.protocol import Protocol
from bench.orchestrator import DeviceState, Sweep, round_order
from bench.report.notes import int8_path
from bench.report.table import render
from bench.transports.local import LocalTransport
from bench.zoo.cache import Variant
from tests.conftest import run_bench


def cell(recipe: str, model: str = "m", backend: str = "xnnpack") -> Cell:
    return Cell(Variant(model, recipe, "ok", sha256=recipe), "dev", backend, 1)


def test_round_order_is_shuffled_per_round_and_reproducible():
    cells = [cell(r) for r in ("fp32", "fp16", "dynamic", "int8", "int8-per-tensor")]
    orders = [[c.recipe for c in round_order(cells, 42, "dev", i)] for i in range(6)]
    assert all(sorted(o) == sorted(c.recipe for c in cells) for o in orders)
    assert len({tuple(o) for o in orders}) > 1  # not the same order every round
    again = [[c.recipe for c in round_order(list(reversed(cells)), 42, "dev", i)]
             for i in range(6)]
    assert orders == again  # the seed alone decides, not the input order
    assert orders != [[c.recipe for c in round_order(cells, 43, "dev", i)] for i in range(6)]


def fake_rounds(spread: float, count: int, rng) -> dict[int, dict]:
    return {i: {"status": "ok", "latencies_us": list(1000 + rng.normal(0, spread, 30) +
                                                     rng.normal(0, spread))}
            for i in range(count)}


def decide(protocol: Protocol, rounds: dict, over_budget: bool = False) -> dict:
    sweep = Sweep(store=None, run_id="r", protocol=protocol, seed=0)
    cells = [c for c in CELLS if c.key in rounds]
    state = DeviceState(rounds, rows={c.key: summarize_cell(c, rounds[c.key], None,
                                                             protocol.target) for c in cells})
    sweep._decide(cells, state, over_budget)
    return state.stopped


CELLS = [cell("fp32"), cell("int8"), cell("fp32", model="other")]


def test_stopping_waits_for_the_whole_family_and_respects_min_and_max():
    rng = np.random.default_rng(0)
    protocol = Protocol(min_rounds=3, max_rounds=8, target=0.01)
    quiet, noisy = fake_rounds(0.5, 5, rng), fake_rounds(80.0, 5, rng)
    rounds = {CELLS[0].key: quiet, CELLS[1].key: noisy, CELLS[2].key: fake_rounds(0.5, 5, rng)}
    stopped = decide(protocol, rounds)
    # m's fp32 reached the target but its int8 did not: the family goes on, paired;
    # the other model's family is done
    assert stopped == {CELLS[2].key: "target"}
    # three tight rounds are not enough to stop on: their bootstrap is too optimistic
    three = {CELLS[2].key: fake_rounds(0.5, 3, rng)}
    assert decide(protocol, three) == {}
    rounds = {CELLS[0].key: quiet, CELLS[1].key: noisy}
    assert decide(protocol, rounds, over_budget=True) == {
        CELLS[0].key: "budget", CELLS[1].key: "budget"}
    two = {CELLS[0].key: fake_rounds(0.5, 2, rng), CELLS[1].key: fake_rounds(0.5, 2, rng)}
    assert decide(protocol, two, over_budget=True) == {}  # below min_rounds: budget waits
    eight = {CELLS[0].key: fake_rounds(80, 8, rng), CELLS[1].key: fake_rounds(80, 8, rng)}
    assert set(decide(protocol, eight).values()) == {"max_rounds"}
    fixed = Protocol().with_rounds(3)
    three = {CELLS[0].key: fake_rounds(0.5, 3, rng), CELLS[1].key: fake_rounds(0.5, 3, rng)}
    assert set(decide(fixed, three).values()) == {"fixed_rounds"}


def test_cell_summary_carries_interval_and_target():
    rng = np.random.default_rng(1)
    row = summarize_cell(cell("int8"), fake_rounds(0.5, 5, rng), "target", 0.01)
    ci = row["summary"]["ci_us"]
    assert ci["low"] <= row["median_us"] <= ci["high"] and ci["n"] == 5
    assert row["summary"]["reached_target"] and row["summary"]["stop_reason"] == "target"


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
    assert record["threshold_c"] == 50 and len(slept) == 3 and "timed_out" not in record


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
    assert slept == [1.5] and record["temperature_before_c"] == "unknown"


def test_thermal_zone_with_shell_characters_is_refused(tmp_path):
    from bench.errors import UsageError

    with pytest.raises(UsageError, match="thermal_zone"):
        load_device(device_file(tmp_path, thermal_zone="/tmp/x; rm -rf /", thermal_max_c=50))


BUSY = "import time\nend = time.time() + 30\nwhile time.time() < end: pass\n"


def test_real_load_triggers_noise_warnings(tmp_path, tiny_variants):
    """Three busy processes on this machine: the runner sees them and says so."""
    device = load_device(device_file(tmp_path, work_dir=str(tmp_path / "work")))
    protocol = Protocol(min_s=1.0, min_runs=10)
    hogs = [subprocess.Popen([sys.executable, "-c", BUSY]) for _ in range(3)]
    try:
        time.sleep(0.5)
        session = DeviceSession(device, LocalTransport(), protocol)
        record = session.run_round(Cell(tiny_variants["fp32"], "dev", "xnnpack", 1), 0)
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
    assert record["status"] == "ok", record.get("error")
    busy = record["environment"]["busy_processes"]
    assert {p["pid"] for p in busy} & {h.pid for h in hogs}
    warnings = round_warnings(record, threads=1)
    assert any(w.startswith("busy: python") for w in warnings), warnings
    assert any("runnable processes" in w for w in warnings), warnings
    quiet = {**record, "environment": {**record["environment"], "busy_processes": [],
                                        "procs_running": 1, "loadavg": [0.1, 0.1, 0.1],
                                        "steal": 0.0}}
    assert round_warnings(quiet, threads=1) == []
    stolen = {**quiet, "environment": {**quiet["environment"], "steal": 0.07}}
    assert round_warnings(stolen, threads=1) == ["CPU steal 7.0%"]


def test_int8_notes_from_cpu_flags():
    assert "AVX-512 VNNI" in int8_path({"avx2", "avx512_vnni"})
    assert "no VNNI" in int8_path({"avx2", "fma"})
    assert "dot product" in int8_path({"asimd", "asimddp"})
    assert "without the dot-product" in int8_path({"asimd"})


def test_table_shows_intervals_and_noise_marks():
    summary = {"ci_us": {"value": 7000.0, "low": 6900.0, "high": 7100.0, "n": 5},
               "rounds": 5, "warnings": ["CPU steal 7.0%"],
               "speedup": {"cpu_backend": "xnnpack",
                           "same_backend": {"value": 1.03, "low": 0.99, "high": 1.07},
                           "vs_cpu_fp32": {"value": 1.03, "low": 0.99, "high": 1.07}}}
    cells = [{"model": "m", "recipe": "int8", "device": "d", "backend": "xnnpack",
              "threads": 1, "status": "ok", "median_us": 7000.0, "p90_us": 7500.0,
              "summary": summary, "reason": None}]
    variants = [{"model": "m", "recipe": "int8", "size_bytes": 1000, "random_weights": 0,
                 "details": {}}]
    text = render(cells, variants)
    assert "7.00 [6.90, 7.10]" in text and "1.03x [0.99, 1.07]" in text
    assert "m int8 on d/xnnpack/t1: CPU steal 7.0%" in text


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
    rows = db.execute("SELECT recipe, round, record FROM rounds").fetchall()
    assert len(rows) == 9
    by_round: dict[int, list] = {}
    for recipe, index, record in rows:
        record = json.loads(record)
        assert record["order"]["seed"] == 1234
        if index > 0:
            assert record["cooldown"]["pause_s"] == 0.05
        by_round.setdefault(index, []).append((record["started_unix"], recipe,
                                               record["order"]["position"]))
    cells = [cell(r, model="tiny_cnn") for r in ("fp32", "int8", "dynamic")]
    for index, entries in by_round.items():
        ran = [recipe for _, recipe, _ in sorted(entries)]  # by the time each round started
        assert ran == [c.recipe for c in round_order(cells, 1234, "local", index)]
    stored = db.execute("SELECT summary FROM cells WHERE recipe = 'int8'").fetchone()[0]
    summary = json.loads(stored)
    assert summary["rounds"] == 3 and summary["stop_reason"] == "fixed_rounds"
    assert summary["speedup"]["same_backend"]["low"] is not None
    assert "speedup [95% CI]" in done.stdout and "x [" in done.stdout


def test_cell_flags_conditions_seen_in_at_least_half_the_rounds():
    from bench.measure.noise import cell_warnings

    def record(steal: float) -> dict:
        return {"environment": {"steal": steal, "affinity": [0, 1], "loadavg": [0.1],
                                "procs_running": 1, "busy_processes": []}}

    blip = [record(0.0)] * 3 + [record(0.08)]
    assert cell_warnings(blip, 1, None, None) == []
    steady = [record(0.0)] * 2 + [record(0.08)] * 2
    assert cell_warnings(steady, 1, None, None) == ["CPU steal above 2% in 2/4 rounds"]
    assert cell_warnings(steady, 1, 0.07, 0.2) == [
        "CPU steal above 2% in 2/4 rounds", "round medians vary: CV 7.0%",
        "iterations vary: CV 20.0%"]
