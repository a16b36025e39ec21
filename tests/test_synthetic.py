"""Synthetic stores: the shape asked for, written as a real sweep writes it, read back by the
real analysis; deterministic from the seed; names kept exactly as given."""

from __future__ import annotations

import re
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bench import synthetic
from bench.analysis import Analysis, analyse
from bench.store.base import RunFacts
from bench.store.sqlite import SQLiteStore
from bench.synthetic import make_store

HOSTILE = ["<script>alert(1)</script>", '"><img src=x onerror=alert(1)>', "../../etc/passwd",
           "m" * 300, "modèle-日本語 ✓"]


def read(path: Path, run_id: str) -> tuple[RunFacts, Analysis]:
    store = SQLiteStore(path, readonly=True)
    try:
        facts = store.facts(run_id)
    finally:
        store.close()
    return facts, analyse(facts)


def figures(analysis: Analysis) -> tuple[list, list]:
    cells = analysis.cells.sort_values("cell_id")
    speedups = analysis.speedups.sort_values(["model", "recipe", "device", "backend",
                                              "threads", "reference"])
    return (list(zip(cells["cell_id"], cells["latency_us"], cells["p90_us"], strict=True)),
            list(speedups["speedup"]))


def test_cells_are_the_product_of_what_was_asked(tmp_path):
    path = tmp_path / "s.sqlite"
    run_id = make_store(path, models=2, recipes=["fp32", "int8", "fp16"], devices=2,
                        backends=["xnnpack", "cpu"], threads=[1, 2], rounds=3)
    facts, analysis = read(path, run_id)
    assert len(facts.cells) == len(analysis.cells) == 2 * 3 * 2 * 2 * 2
    assert facts.run["status"] == "completed"
    assert facts.run["settings"]["synthetic"]["generator"] == "bench.synthetic"
    assert [s["status"] for s in facts.sessions] == ["completed"]
    assert facts.device_rounds and all(r["finished_at"] for r in facts.device_rounds)
    assert {d["device"] for d in facts.devices} == {"local", "pixel"}
    assert not [c for c in facts.cells if c["status"] == "pending"]


def test_the_analysis_gets_latencies_intervals_and_speedups(tmp_path):
    path = tmp_path / "s.sqlite"
    run_id = make_store(path, devices=3, rounds=4, seed=3)
    _, analysis = read(path, run_id)
    ok = analysis.cells[analysis.cells["status"] == "ok"]
    assert len(ok) > 20
    for _, cell in ok.iterrows():
        assert cell["rounds"] == 4
        assert cell["latency_us_low"] < cell["latency_us"] < cell["latency_us_high"]
        assert 1_000 < cell["latency_us"] < 5_000_000  # ms-scale models, not nonsense
    python = ok[ok["device"] != "pixel"]
    assert (python["p90_us"] > python["latency_us"]).all()  # iterations spread in a round
    speedups = analysis.speedups
    int8 = speedups[(speedups["recipe"] == "int8") & (speedups["reference"] == "same_backend")]
    assert len(int8) >= 3
    local = int8[int8["device"] == "local"]
    assert (local["speedup"] > 1.3).all()  # VNNI: int8 pays on this one
    assert (int8["speedup_low"] < int8["speedup"]).all()
    assert (int8["speedup"] < int8["speedup_high"]).all()


def test_failures_give_every_kind_of_non_ok_cell(tmp_path):
    path = tmp_path / "s.sqlite"
    run_id = make_store(path, rounds=2)
    facts, analysis = read(path, run_id)
    statuses = Counter(analysis.cells["status"])
    assert statuses["fallback"] == 1 and statuses["skipped"] == 1 and statuses["failed"] >= 2
    reasons = " ".join(analysis.cells["reason"].dropna())
    assert "Didn't find op for builtin opcode 'FULLY_CONNECTED' version '12'" in reasons
    assert "took none of the graph" in reasons
    failed_variants = [v for v in facts.variants if v["status"] == "failed"]
    assert len(failed_variants) == 1 and failed_variants[0]["error"]
    fallback = analysis.cells[analysis.cells["status"] == "fallback"].iloc[0]
    assert fallback["backend"] == "xnnpack" and fallback["delegated"] == "no"
    assert fallback["delegate_nodes"] == 0
    assert (analysis.cells[analysis.cells["recipe"] == "fp32"]["status"] == "ok").all()


def test_without_failures_every_cell_is_ok(tmp_path):
    path = tmp_path / "s.sqlite"
    run_id = make_store(path, devices=2, rounds=2, failures=False)
    facts, analysis = read(path, run_id)
    assert set(analysis.cells["status"]) == {"ok"}
    assert all(v["status"] == "ok" for v in facts.variants)
    assert all(r["status"] == "ok" for r in facts.rounds)
    assert (analysis.cells[analysis.cells["backend"] == "xnnpack"]["delegated"] == "yes").all()


def test_hostile_names_are_stored_as_given(tmp_path):
    path = tmp_path / "s.sqlite"
    devices = ["../../etc/passwd", "<b onmouseover=x>dev</b>", "d" * 300, "デバイス"]
    run_id = make_store(path, models=HOSTILE, recipes=["fp32", "int8", "fp16"],
                        devices=devices, rounds=2)
    facts, analysis = read(path, run_id)
    assert set(analysis.cells["model"]) == set(HOSTILE)
    assert set(analysis.cells["device"]) == set(devices)
    assert {v["model"] for v in facts.variants} == set(HOSTILE)
    assert {d["device"] for d in facts.devices} == set(devices)
    assert facts.run["settings"]["models"] == HOSTILE
    assert facts.run["settings"]["devices"] == devices
    assert len(analysis.cells) == len(HOSTILE) * 3 * len(devices)


def test_the_same_seed_gives_the_same_figures(tmp_path):
    runs = [(tmp_path / f"{name}.sqlite", seed) for name, seed in (("a", 7), ("b", 7), ("c", 8))]
    found = [figures(read(path, make_store(path, devices=2, rounds=3, seed=seed))[1])
             for path, seed in runs]
    assert found[0] == found[1]
    assert found[0][0] != found[2][0] and found[0][1] != found[2][1]


def test_rounds_are_whole_device_rounds_in_a_shuffled_order(tmp_path):
    path = tmp_path / "s.sqlite"
    run_id = make_store(path, models=3, devices=2, rounds=6, seed=1)
    facts, analysis = read(path, run_id)
    cell_device = {c["cell_id"]: c["device"] for c in facts.cells}
    failed = {c["cell_id"] for c in facts.cells if c["status"] == "failed"}
    measured = {c["cell_id"] for c in facts.cells if c["status"] == "ok"}
    orders: dict[str, list[tuple]] = {}
    for device_round in facts.device_rounds:
        device, index = device_round["device"], device_round["round"]
        rows = sorted((r for r in facts.rounds
                       if r["device"] == device and r["round"] == index),
                      key=lambda r: r["position"])
        ids = [r["cell_id"] for r in rows]
        assert len(ids) == len(set(ids)) == device_round["planned"]
        assert [r["position"] for r in rows] == list(range(len(rows)))
        assert set(ids) >= {c for c in measured if cell_device[c] == device}
        orders.setdefault(device, []).append(tuple(c for c in ids if c not in failed))
    for device, seen in orders.items():
        assert len(seen) == 6 and len(set(seen)) > 1, device  # not one fixed order
    counts = Counter(r["cell_id"] for r in facts.rounds)
    assert {counts[c] for c in measured} == {6}
    assert {counts[c] for c in failed if c in counts} <= {1}  # a runtime failure stops it
    assert set(analysis.cells[analysis.cells["status"] == "ok"]["rounds"]) == {6}


def test_phones_look_like_benchmark_model_and_boards_like_pyrunner(tmp_path):
    path = tmp_path / "s.sqlite"
    run_id = make_store(path, devices=["local", "pixel", "rpi4"], rounds=2, failures=False)
    facts, analysis = read(path, run_id)
    devices = {d["device"]: d for d in facts.devices}
    assert devices["pixel"]["transport"] == "adb"
    assert devices["pixel"]["runner"] == "benchmark_model"
    assert devices["rpi4"]["transport"] == "ssh" and "asimddp" not in devices["rpi4"]["cpu_flags"]
    assert "avx512_vnni" in devices["local"]["cpu_flags"]
    assert devices["local"]["config"]["backends"] == ["xnnpack"]
    phone = [r for r in facts.rounds if r["device"] == "pixel"]
    assert all(r["p90_us"] is None and r["peak_memory_bytes"] is None for r in phone)
    assert all(r["battery_temperature_c"] is not None for r in phone)
    board = [r for r in facts.rounds if r["device"] == "rpi4"]
    assert all(r["p90_us"] > r["median_us"] and r["std_us"] > 0 for r in board)
    assert all(r["governor"] == "ondemand" and r["temperature_c"] for r in board)
    cells = analysis.cells.set_index("device")
    assert cells.loc["pixel", "peak_memory_bytes"].notna().all()  # from its memory run
    assert cells.loc["pixel", "memory_evidence"].str.startswith("overall peak memory").all()


def test_variants_carry_sizes_checks_and_their_inspection(tmp_path):
    path = tmp_path / "s.sqlite"
    run_id = make_store(path, models=["mobilenet_v2"], rounds=1, failures=False)
    facts, analysis = read(path, run_id)
    variants = {v["recipe"]: v for v in facts.variants}
    fp32 = variants["fp32"]
    assert fp32["size_bytes"] > 4 * 3_000_000 and fp32["check_top1_agreement"] is None
    assert 1.8 < fp32["size_bytes"] / variants["fp16"]["size_bytes"] < 2.1
    assert 3.5 < fp32["size_bytes"] / variants["int8"]["size_bytes"] < 4.1
    for recipe in ("fp16", "dynamic", "int8", "int8-per-tensor"):
        variant = variants[recipe]
        assert len(variant["sha256"]) == 64 and not variant["random_weights"]
        assert 0 <= variant["check_top1_agreement"] <= 1 and variant["check_snr_db"] > 0
    assert variants["int8-per-tensor"]["weight_scheme"] == "int8 per-tensor"
    assert variants["fp16"]["ops"]["DEQUANTIZE"] > 0 and fp32["macs"] > 0
    nodes = {r["recipe"]: r["graph_nodes"] for r in facts.rounds}
    assert nodes == {recipe: sum(v["ops"].values()) for recipe, v in variants.items()}
    assert analysis.variants["compression"].notna().all()


def test_the_run_is_dated_as_if_it_had_just_finished(tmp_path):
    path = tmp_path / "s.sqlite"
    run_id = make_store(path, devices=2, rounds=3)
    facts, _ = read(path, run_id)
    started = datetime.fromisoformat(facts.run["started_at"])
    finished = datetime.fromisoformat(facts.run["finished_at"])
    assert started < finished <= datetime.now(UTC)
    assert (datetime.now(UTC) - finished).total_seconds() < 600
    assert run_id.startswith(started.astimezone().strftime("%Y%m%d-%H%M"))
    for row in facts.rounds:
        if row["started_unix"] is not None:
            assert started.timestamp() < row["started_unix"] < finished.timestamp()


def test_names_from_counts(tmp_path):
    path = tmp_path / "s.sqlite"
    run_id = make_store(path, models=9, recipes=["fp32"], devices=6, rounds=1)
    facts, _ = read(path, run_id)
    models = {c["model"] for c in facts.cells}
    assert {"mobilenet_v1", "mobilenet_v2", "resnet50", "inception_v3", "model_07",
            "model_08"} <= models and len(models) == 9
    assert {d["device"] for d in facts.devices} >= {"local", "pixel", "rpi4", "device_05"}


def test_bad_requests_are_refused(tmp_path):
    with pytest.raises(ValueError, match="backends"):
        make_store(tmp_path / "s.sqlite", backends=["gpu"])
    with pytest.raises(ValueError, match="distinct"):
        make_store(tmp_path / "s.sqlite", models=["a", "a"])
    with pytest.raises(ValueError, match="rounds"):
        make_store(tmp_path / "s.sqlite", rounds=0)


def test_the_command_line(tmp_path, capsys):
    path = tmp_path / "out.sqlite"
    assert synthetic.main([str(path), "--models", "2", "--recipes", "fp32,int8", "--devices",
                           "2", "--backends", "xnnpack,cpu", "--threads", "1,2", "--rounds", "2",
                           "--seed", "4", "--label", "L", "--no-failures"]) == 0
    out = capsys.readouterr().out
    assert re.search(r": 32 cells, 2 rounds each, .* in \d+\.\d s$", out.strip())
    store = SQLiteStore(path, readonly=True)
    try:
        run_id = store.latest_run_id()
        assert run_id is not None and run_id in out
        run = store.run(run_id)
    finally:
        store.close()
    assert run["label"] == "L" and run["seed"] == 4
