"""`python -m bench` end to end on tiny real models, including the failure paths."""

from __future__ import annotations

import json
import signal
import sqlite3
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import run_bench, start_bench, wait_for_store


def cells(workdir: Path, run_id: str | None = None) -> list[dict]:
    db = sqlite3.connect(workdir / "results" / "bench.sqlite")
    db.row_factory = sqlite3.Row
    query, args = "SELECT * FROM cells", ()
    if run_id:
        query, args = query + " WHERE run_id = ?", (run_id,)
    return [dict(r) for r in db.execute(query, args)]


def run_id_of(output: str) -> str:
    for word in output.split():
        if word.count("-") == 2 and word[:8].isdigit():
            return word.rstrip(":")
    raise AssertionError(f"no run id in {output!r}")


def round_starts(workdir: Path, run_id: str) -> dict:
    """{(recipe, backend): [when each stored round started]}, read from the rounds table."""
    db = sqlite3.connect(workdir / "results" / "bench.sqlite")
    out: dict = {}
    for recipe, backend, record in db.execute(
            "SELECT recipe, backend, record FROM rounds WHERE run_id = ? ORDER BY round",
            (run_id,)):
        out.setdefault((recipe, backend), []).append(json.loads(record)["started_unix"])
    return out


def alive(pid: int) -> bool:
    """Running and not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


def device(workdir: Path, name: str, **keys) -> None:
    lines = ['transport = "local"', 'runner = "python"']
    for key, value in keys.items():
        lines.append(f"{key} = {json.dumps(value)}")
    (workdir / "devices" / f"{name}.toml").write_text("\n".join(lines) + "\n")


@pytest.fixture
def cache_args(model_cache, tiny_variants) -> list[str]:
    return ["--cache", str(model_cache), "--calibration-size", "8"]


def test_run_end_to_end(workdir, cache_args):
    done = run_bench(["run", "--models", "tiny_cnn", "--recipes", "fp32,int8,dynamic",
                      "--quick", *cache_args], workdir)
    assert done.returncode == 0, done.stderr
    table = done.stdout
    for recipe in ("fp32", "int8", "dynamic"):
        assert f"tiny_cnn*  {recipe}" in table
    assert "random weights" in table and "1.00x" in table
    run_id = run_id_of(table.splitlines()[-1])
    stored = cells(workdir, run_id)
    assert len(stored) == 6  # 3 recipes x (xnnpack, cpu) from devices/local.toml
    assert {c["status"] for c in stored} == {"ok"}
    assert all(c["median_us"] > 0 and c["runtime"] == "ai-edge-litert" for c in stored)
    export = json.loads((workdir / "results" / "runs" / f"{run_id}.json").read_text())
    assert len(export["cells"]) == 6 and all(c["rounds"] for c in export["cells"])
    rounds = export["cells"][0]["rounds"][0]
    assert rounds["latencies_us"] and rounds["delegation"]["xnnpack"] in ("yes", "no")
    assert "reached the" not in table  # one fixed round: no target to report on
    report = run_bench(["report", run_id], workdir)
    assert report.returncode == 0 and "tiny_cnn*  int8" in report.stdout
    assert "why is int8 (not) faster on local?" in report.stdout
    listing = run_bench(["runs"], workdir)
    assert run_id in listing.stdout and "6/6 ok" in listing.stdout


def test_bad_models_fail_their_cells_and_the_sweep_goes_on(workdir, cache_args):
    (workdir / "corrupt.tflite").write_bytes(b"\x00not a model" * 50)
    done = run_bench(["run", "--models", "tiny_cnn,mobilenet_v9,corrupt.tflite",
                      "--recipes", "fp32", "--backends", "xnnpack", "--quick", *cache_args],
                     workdir)
    assert done.returncode == 0, done.stderr
    assert "unknown zoo model 'mobilenet_v9'" in done.stderr
    by_model = {c["model"]: c for c in cells(workdir)}
    assert by_model["tiny_cnn"]["status"] == "ok"
    assert by_model["mobilenet_v9"]["status"] == "failed"
    assert "not a valid .tflite model" in by_model["corrupt"]["reason"]
    assert "FAILED: corrupt file on local/xnnpack/t1" in done.stdout


def test_only_bad_models_is_a_usage_error(workdir):
    done = run_bench(["run", "--models", "mobilenet_v9"], workdir)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith("bench: unknown zoo model")


def test_configuration_errors_exit_2(workdir):
    (workdir / "devices" / "bad.toml").write_text('transport = "local"\nrunner = "python"\nx=1\n')
    done = run_bench(["run", "--devices", "bad", "--models", "tiny_cnn"], workdir)
    assert done.returncode == 2 and "bad.toml: key 'x': unknown key" in done.stderr
    done = run_bench(["run", "--devices", "pixel"], workdir)
    assert done.returncode == 2 and "unknown device 'pixel'" in done.stderr
    done = run_bench(["run", "--recipes", "int4"], workdir)
    assert done.returncode == 2 and "unknown recipe(s) int4" in done.stderr


def test_unusable_device_exits_3(workdir, cache_args):
    device(workdir, "ghost", python="/nonexistent/python3")
    done = run_bench(["run", "--devices", "ghost", "--models", "tiny_cnn", "--recipes", "fp32",
                      "--quick", *cache_args], workdir)
    assert done.returncode == 3
    assert "could not be used: ghost" in done.stderr
    assert {c["status"] for c in cells(workdir)} == {"failed"}


def test_missing_op_on_old_runtime_fails_cell_and_strict_exits_3(
        workdir, cache_args, old_python):
    device(workdir, "board", python=old_python, tflite_module="tflite_runtime.interpreter")
    args = ["run", "--devices", "board", "--models", "tiny_cnn", "--recipes", "fp32,dynamic",
            "--quick", *cache_args]
    done = run_bench(args, workdir)
    assert done.returncode == 0, done.stderr
    by_recipe = {c["recipe"]: c for c in cells(workdir)}
    assert by_recipe["fp32"]["status"] == "ok"
    assert by_recipe["fp32"]["runtime"] == "tflite-runtime"
    assert "Didn't find op for builtin opcode 'FULLY_CONNECTED'" in by_recipe["dynamic"]["reason"]
    assert "FAILED: tiny_cnn* dynamic on board/xnnpack/t1" in done.stdout
    assert run_bench([*args, "--strict"], workdir).returncode == 3


HANGING_PYTHON = """#!{python}
import os, subprocess, sys, time
if "-c" in sys.argv:  # the harness's preflight probe: answer normally
    os.execv(sys.executable, [sys.executable] + sys.argv[1:])
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
open({pid_file!r}, "w").write(str(child.pid))
time.sleep(600)
"""


def test_hung_runner_is_killed_with_its_group_and_recorded(workdir, cache_args):
    pid_file = workdir / "grandchild.pid"
    script = workdir / "hang.py"
    script.write_text(HANGING_PYTHON.format(python=sys.executable, pid_file=str(pid_file)))
    script.chmod(0o755)
    device(workdir, "hung", python=str(script), timeout_s=3)
    started = time.monotonic()
    done = run_bench(["run", "--devices", "hung", "--models", "tiny_cnn", "--recipes", "fp32",
                      "--backends", "xnnpack", "--quick", *cache_args], workdir)
    assert done.returncode == 0, done.stderr
    assert time.monotonic() - started < 60
    (stored,) = cells(workdir)
    assert stored["status"] == "failed" and "timed out after 3s" in stored["reason"]
    grandchild = int(pid_file.read_text())
    time.sleep(0.5)
    assert not alive(grandchild)


CRASHING_PYTHON = """#!{python}
import os, signal, sys
if "-c" in sys.argv:
    os.execv(sys.executable, [sys.executable] + sys.argv[1:])
sys.stderr.write("native library exploded\\n")
os.kill(os.getpid(), signal.SIGSEGV)
"""


def test_crashing_runner_is_a_failed_cell_with_the_signal(workdir, cache_args):
    script = workdir / "crash.py"
    script.write_text(CRASHING_PYTHON.format(python=sys.executable))
    script.chmod(0o755)
    device(workdir, "crashy", python=str(script))
    done = run_bench(["run", "--devices", "crashy", "--models", "tiny_cnn", "--recipes",
                      "fp32,int8", "--quick", *cache_args], workdir)
    assert done.returncode == 0, done.stderr
    stored = cells(workdir)
    assert len(stored) == 2 and {c["status"] for c in stored} == {"failed"}
    assert all("killed by signal 11" in c["reason"] and "native library exploded" in c["reason"]
               for c in stored)


SLOW_PYTHON = """#!/bin/sh
echo $$ >> {pids}
sleep 1
exec {python} "$@"
"""


def test_ctrl_c_keeps_finished_cells_and_resume_measures_only_the_rest(workdir, cache_args):
    script = workdir / "slow-python"
    pids = workdir / "runner.pids"
    script.write_text(SLOW_PYTHON.format(python=sys.executable, pids=pids))
    script.chmod(0o755)
    device(workdir, "slow", python=str(script), backends=["xnnpack", "cpu"])
    args = ["run", "--devices", "slow", "--models", "tiny_cnn", "--recipes",
            "fp32,fp16,int8", "--quick", "--no-progress", *cache_args]
    process = start_bench(args, workdir)
    wait_for_store(workdir, "SELECT COUNT(*) FROM cells", 2)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "--resume" in err
    for pid in map(int, pids.read_text().split()):  # the running measurement was killed
        assert not alive(pid), f"runner {pid} survived Ctrl-C"
    run_id = err.split("--resume ")[1].split("`")[0].strip()
    kept = {(c["recipe"], c["backend"]): c for c in cells(workdir, run_id)}
    assert 2 <= len(kept) < 6
    kept_rounds = round_starts(workdir, run_id)
    assert set(kept_rounds) == set(kept)
    db = sqlite3.connect(workdir / "results" / "bench.sqlite")
    assert db.execute("SELECT status FROM runs").fetchone() == ("interrupted",)

    resumed = run_bench(["run", "--resume", run_id, "--no-progress", *cache_args], workdir)
    assert resumed.returncode == 0, resumed.stderr
    assert f"({len(kept)} of them resumed with their stored rounds)" in resumed.stderr
    after = {(c["recipe"], c["backend"]): c for c in cells(workdir, run_id)}
    assert len(after) == 6 and {c["status"] for c in after.values()} == {"ok"}
    after_rounds = round_starts(workdir, run_id)
    for key, started in kept_rounds.items():  # kept cells were not measured again
        assert after_rounds[key] == started
    assert db.execute("SELECT status FROM runs").fetchone() == ("completed",)


def test_models_commands(workdir, tiny_variants, cache_args):
    listing = run_bench(["models", "list"], workdir)
    assert listing.returncode == 0
    for name in ("mobilenet_v1", "mobilenet_v2", "resnet50", "resnet50_v2", "inception_v3",
                 "nasnet_mobile", "int8-per-tensor", "int16x8"):
        assert name in listing.stdout
    report = run_bench(["models", "inspect", tiny_variants["int8"].path], workdir)
    assert report.returncode == 0 and "CONV_2D" in report.stdout and "MACs" in report.stdout
    zoo = run_bench(["models", "inspect", "tiny_cnn", "--recipe", "int8", "--cache",
                     cache_args[1]], workdir)
    assert zoo.returncode == 0, zoo.stderr
    assert "smaller than fp32" in zoo.stdout and "random" in zoo.stdout
    missing = run_bench(["models", "inspect", "nope.tflite"], workdir)
    assert missing.returncode == 2 and "model file not found" in missing.stderr


def test_devices_list(workdir):
    (workdir / "devices" / "broken.toml").write_text("transport = 3\n")
    done = run_bench(["devices", "list"], workdir)
    assert "local" in done.stdout and "broken       INVALID" in done.stdout
    assert done.returncode == 2
