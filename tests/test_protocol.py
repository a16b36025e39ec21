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
from bench.measure.orders import williams_square
from bench.measure.protocol import Protocol
from bench.measure.session import DeviceSession
from bench.measure.stats import stein_rounds
from bench.measure.stopping import PROTOCOL_VERSION, Plan, pilot_series, plan_family
from bench.measure.stopping import decide as decide_rule
from bench.measure.student_t import t_quantile
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


def test_round_orders_balance_position_and_carry_over_within_a_family():
    """Four cells of one family over four rounds: a Williams square, each cell once in
    each position and each ordered pair adjacent exactly once; reproducible from the seed
    whatever order the cells come in; another family's block shuffled in between."""
    cells = [cell(r) for r in ("fp32", "fp16", "int8", "dynamic")]
    other = [cell(r, model="other") for r in ("fp32", "int8")]
    rounds = [round_order(cells + other, 42, "dev", i) for i in range(4)]
    mine = [[c.recipe for c in order if c.model == "m"] for order in rounds]
    for position in range(4):
        assert sorted(row[position] for row in mine) == sorted(c.recipe for c in cells)
    pairs = [(a, b) for row in mine for a, b in zip(row, row[1:], strict=False)]
    assert len(set(pairs)) == len(pairs) == 12  # every ordered pair once: carry-over balanced
    for order in rounds:  # a family's cells run back to back
        models = [c.model for c in order]
        assert models == sorted(models, key=models.index)
    again = [round_order(list(reversed(cells + other)), 42, "dev", i) for i in range(4)]
    assert [[c.key for c in o] for o in again] == [[c.key for c in o] for o in rounds]
    assert [[c.key for c in round_order(cells, 43, "dev", i)] for i in range(4)] != \
        [[c.key for c in round_order(cells, 42, "dev", i)] for i in range(4)]


def test_williams_squares_for_odd_and_even_families():
    for k in range(1, 8):
        square = williams_square(k)
        assert len(square) == (k if k % 2 == 0 else 2 * k)
        for position in range(k):
            column = [row[position] for row in square]
            assert all(column.count(t) == len(square) // k for t in range(k))
        pairs = [(a, b) for row in square for a, b in zip(row, row[1:], strict=False)]
        assert all(pairs.count(p) == len(square) // k for p in set(pairs))


def fake_medians(sd: float, count: int, rng, centre: float = 1000.0) -> dict[int, float]:
    """Round medians of a cell whose rounds vary by a log-sd `sd` around `centre` µs."""
    return {i: float(centre * np.exp(rng.normal(0, sd))) for i in range(count)}


CELLS = [cell("fp32"), cell("int8"), cell("fp32", model="other")]


def families_of(medians: dict) -> dict:
    families: dict = {}
    for key in medians:
        families.setdefault(key.family, []).append(key)
    return families


def test_the_pilot_plans_the_rounds_from_what_each_cell_reports():
    rng = np.random.default_rng(0)
    protocol = Protocol(min_rounds=5, max_rounds=40, target=0.02)
    fp32, int8 = CELLS[0].key, CELLS[1].key
    # shared round effects: int8's speedup is steadier than either latency
    shared = [float(np.exp(rng.normal(0, 0.05))) for _ in range(5)]
    medians = {fp32: {i: 1000 * shared[i] * float(np.exp(rng.normal(0, 0.003)))
                      for i in range(5)},
               int8: {i: 400 * shared[i] * float(np.exp(rng.normal(0, 0.003)))
                      for i in range(5)}}
    assert plan_family([fp32, int8], {fp32: dict(list(medians[fp32].items())[:4]),
                                      int8: medians[int8]}, protocol) is None  # pilot unfinished
    plan = plan_family([fp32, int8], medians, protocol)
    ratio = [medians[fp32][i] / medians[int8][i] for i in range(5)]
    assert pilot_series(int8, [fp32, int8], medians, 5) == pytest.approx(ratio)
    assert pilot_series(fp32, [fp32, int8], medians, 5) == list(medians[fp32].values())
    # fp32 reports its latency (5% noisy): it, not int8's steady ratio, sets the rounds
    assert plan.needed == max(stein_rounds(list(medians[fp32].values()), 0.02),
                              stein_rounds(ratio, 0.02))
    assert plan.needed == stein_rounds(list(medians[fp32].values()), 0.02)
    assert plan.planned == min(plan.needed, 40) and plan.pilot == 5
    # a fallback cell reports no speedup: its latency drives its part of the plan
    assert pilot_series(int8, [fp32, int8], medians, 5, no_speedup={int8}) == \
        list(medians[int8].values())


def test_decisions_target_budget_max_and_fixed():
    rng = np.random.default_rng(1)
    protocol = Protocol(min_rounds=5, max_rounds=12, target=0.02)
    keys = [CELLS[0].key, CELLS[1].key]
    family = {keys[0].family: keys}
    plan = Plan(pilot=5, needed=8, planned=8)
    seven = {k: fake_medians(0.01, 7, rng) for k in keys}
    eight = {k: fake_medians(0.01, 8, rng) for k in keys}
    assert decide_rule(family, seven, {keys[0].family: plan}, protocol, False) == {}
    assert set(decide_rule(family, eight, {keys[0].family: plan}, protocol,
                           False).values()) == {"target"}
    capped = Plan(pilot=5, needed=50, planned=12)
    twelve = {k: fake_medians(0.01, 12, rng) for k in keys}
    assert set(decide_rule(family, twelve, {keys[0].family: capped}, protocol,
                           False).values()) == {"max_rounds"}
    # the budget never cuts the pilot short, and ends the second stage
    four = {k: fake_medians(0.01, 4, rng) for k in keys}
    assert decide_rule(family, four, {}, protocol, over_budget=True) == {}
    assert set(decide_rule(family, seven, {keys[0].family: plan}, protocol,
                           over_budget=True).values()) == {"budget"}
    fixed = Protocol().with_rounds(3)
    three = {k: fake_medians(0.01, 3, rng) for k in keys}
    assert set(decide_rule(family, three, {}, fixed, False).values()) == {"fixed_rounds"}
    assert decide_rule(family, {k: dict(list(v.items())[:2]) for k, v in three.items()}, {},
                       fixed, False) == {}


def test_cell_figures_carry_interval_and_target(tmp_path):
    rng = np.random.default_rng(1)
    store = SQLiteStore(tmp_path / "s.sqlite")
    store.start_run("r", label=None, settings={}, host={}, harness_version="x", protocol={},
                    protocol_version=2, seed=1)
    key = cell("int8").key
    store.save_cell("r", key, status="pending")
    for index, median in fake_medians(0.002, 5, rng).items():
        store.start_device_round("r", "dev", index, session=1, seed=1, planned=1,
                                 cooldown=None)
        store.record_round("r", key, RoundResult("ok", aggregate=Aggregate.of([median])),
                           RoundContext(index, 1, 0))
        store.finish_device_round("r", "dev", index)
    store.save_cell("r", key, status="ok", stop_reason="target", protocol_version=2,
                    target=0.01)
    store.save_plan("r", key, pilot=5, needed=5, planned=5)
    row = analyse(store.facts("r")).cells.iloc[0]
    assert row["latency_us_low"] <= row["latency_us"] <= row["latency_us_high"]
    assert row["rounds"] == 5 and row["reached_target"] and row["stop_reason"] == "target"
    assert row["latency_rel_half_width"] <= 0.01 and row["interval_method"] == "stein(pilot=5)"
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
    """A busy process on the runner's CPU: the runner sees it and says so.

    Both are pinned to CPU 0, so the load is the same on 2 cores or 64, and the busy
    process keeps about half of its core even when other work shares the machine."""
    device = load_device(device_file(tmp_path, work_dir=str(tmp_path / "work"), cpus=[0]))
    protocol = Protocol(min_s=1.0, min_runs=10)
    hogs = [subprocess.Popen([sys.executable, "-c", BUSY])]
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
    phone = {**quiet, "charging": 1, "screen_on": 1, "temperature_before_c": 38.0,
             "temperature_c": 46.5, "battery_temperature_c": 41.2}
    assert round_warnings(phone, threads=1) == [
        "charging (a charger heats the phone)", "screen on", "warmed 8.5 C during the round",
        "battery at 41 C"]
    assert round_warnings({**phone, "charging": 0, "screen_on": None,
                           "temperature_c": 39.0, "battery_temperature_c": None},
                          threads=1) == []


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
    # geometric mean of round medians 7035, 7135.5, 6934.5 µs and its t-interval on logs
    logs = np.log([7035.0, 7135.5, 6934.5])
    half = t_quantile(0.975, 2) * np.std(logs, ddof=1) / np.sqrt(3)
    low, mid, high = np.exp(logs.mean() - half), np.exp(logs.mean()), np.exp(logs.mean() + half)
    assert f"{mid / 1000:.2f} [{low / 1000:.2f}, {high / 1000:.2f}]" in text
    # int8 against fp32, paired per round: ratios 2.000, 2.088, 1.971
    ratios = np.log([7035.0 / 3517.5, 7135.5 / 3417.0, 6934.5 / 3517.5])
    half = t_quantile(0.975, 2) * np.std(ratios, ddof=1) / np.sqrt(3)
    shown = (np.exp(ratios.mean()), np.exp(ratios.mean() - half), np.exp(ratios.mean() + half))
    assert "{:.2f}x [{:.2f}, {:.2f}]".format(*shown) in text and " ref " in text
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
    assert "estimated measurement time" in done.stdout
    assert "a pilot of 5 rounds, then as many as each family needs for ±2%" in done.stdout
    assert "no history" in done.stdout
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
    assert stored == ("ok", "fixed_rounds", PROTOCOL_VERSION)
    # each round records who ran just before it in the same device round
    chain = db.execute("SELECT r.round, r.position, r.cell_id, r.predecessor FROM rounds r "
                       "ORDER BY r.round, r.position").fetchall()
    for (index, position, _, predecessor), before in zip(chain, [None, *chain], strict=False):
        expected = before[2] if position else None
        assert predecessor == expected, (index, position)
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


def test_tiny_and_batched_cells_say_so(tmp_path):
    store = SQLiteStore(tmp_path / "s.sqlite")
    store.start_run("r", label=None, settings={}, host={}, harness_version="x", protocol={},
                    protocol_version=3, seed=1)
    key = cell("int8").key
    store.save_cell("r", key, status="pending")
    for index in range(3):
        store.start_device_round("r", "dev", index, session=1, seed=1, planned=1,
                                 cooldown=None)
        store.record_round("r", key, RoundResult("ok", aggregate=Aggregate.of([4.8, 4.9]),
                                                 batch=40, loop_overhead_us=0.21),
                           RoundContext(index, 1, 0))
        store.finish_device_round("r", "dev", index)
    store.save_cell("r", key, status="ok", stop_reason="fixed_rounds", protocol_version=3)
    row = analyse(store.facts("r")).cells.iloc[0]
    assert row["batch"] == 40 and row["loop_overhead_us"] == pytest.approx(0.21)
    text = "; ".join(row["warnings"])
    assert "timed in batches of up to 40 invokes" in text and "0.21 µs" in text
    assert "under 100 µs per inference" in text
    store.close()
