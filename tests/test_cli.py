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


def db(workdir: Path) -> sqlite3.Connection:
    connection = sqlite3.connect(workdir / "results" / "bench.sqlite")
    connection.row_factory = sqlite3.Row
    return connection


def cells(workdir: Path, run_id: str | None = None) -> list[dict]:
    query, args = "SELECT * FROM cells", ()
    if run_id:
        query, args = query + " WHERE run_id = ?", (run_id,)
    return [dict(r) for r in db(workdir).execute(query, args)]


def report(workdir: Path, run_id: str, fmt: str = "json"):
    done = run_bench(["report", run_id, "--format", fmt], workdir)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout) if fmt == "json" else done.stdout


def run_id_of(output: str) -> str:
    for word in output.split():
        if word.count("-") == 2 and word[:8].isdigit():
            return word.rstrip(":")
    raise AssertionError(f"no run id in {output!r}")


def alive(pid: int) -> bool:
    """Running and not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


def device(workdir: Path, name: str, **keys) -> None:
    keys.setdefault("work_dir", str(workdir / f"{name}-work"))
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
    assert "random weights" in table
    run_id = run_id_of(table.splitlines()[-1])
    stored = cells(workdir, run_id)
    assert len(stored) == 3  # 3 recipes x xnnpack, the backend devices/local.toml declares
    assert {c["status"] for c in stored} == {"ok"}
    rounds = db(workdir).execute("SELECT runtime_name, median_us, init_us FROM rounds").fetchall()
    assert len(rounds) == 3 and {r[0] for r in rounds} == {"ai-edge-litert"}
    assert all(r[1] > 0 and r[2] > 0 for r in rounds)
    export = json.loads((workdir / "results" / "runs" / f"{run_id}.json").read_text())
    assert len(export["cells"]) == 3 and len(export["runner_documents"]) == 3
    assert export["runner_documents"][0]["document"]["latencies_us"]
    assert {c["delegated"] for c in export["cells"] if c["backend"] == "xnnpack"} == {"yes"}
    # fp32 is the reference ("ref"), not a speedup of 1.00x over itself
    fp32 = next(line for line in table.splitlines() if line.startswith("tiny_cnn*  fp32"))
    assert " ref " in fp32 and "1.00x" not in fp32
    assert "reached the" not in table  # one fixed round: no target to report on
    dashboard = workdir / "dashboards" / run_id / "index.html"
    assert table.splitlines()[-1].endswith(f"; dashboard {dashboard.relative_to(workdir)}")
    assert "tiny_cnn" in dashboard.read_text() and (workdir / "dashboards/index.html").is_file()
    shown = run_bench(["report", run_id], workdir)
    assert shown.returncode == 0 and "tiny_cnn*  int8" in shown.stdout
    assert "why is int8 (not) faster on local?" in shown.stdout
    listing = run_bench(["runs"], workdir)
    assert run_id in listing.stdout and "3/3 ok" in listing.stdout
    device_row = db(workdir).execute("SELECT machine_id, runtime_version, config FROM "
                                     "run_devices").fetchone()
    assert device_row[0] and device_row[1] == "2.3.0"
    assert json.loads(device_row[2])["work_dir"].endswith("local-work")


def test_report_formats_carry_no_invented_values(workdir, cache_args):
    device(workdir, "both", backends=["xnnpack", "cpu"])
    done = run_bench(["run", "--devices", "both", "--models", "tiny_cnn", "--recipes",
                      "fp32,int8", "--rounds", "3", "--runs", "5", "--min-seconds", "0.01",
                      "--no-dashboard", *cache_args], workdir)
    assert done.returncode == 0, done.stderr
    run_id = run_id_of(done.stdout.splitlines()[-1])
    assert "dashboard" not in done.stdout.splitlines()[-1]
    assert not (workdir / "dashboards").exists()
    document = report(workdir, run_id)
    assert document["schema_version"] == 1 and document["run"]["id"] == run_id
    text = json.dumps(document)
    assert "NaN" not in text and "Infinity" not in text and '"unknown"' not in text
    int8 = next(c for c in document["cells"] if c["recipe"] == "int8")
    assert int8["latency_us_low"] <= int8["latency_us"] <= int8["latency_us_high"]
    assert int8["interval_method"] == "log-t"  # a fixed protocol: no pilot
    speedups = {(s["backend"], s["reference"]): s for s in document["speedups"]
                if s["recipe"] == "int8"}
    assert set(speedups) == {("xnnpack", "same_backend"), ("cpu", "same_backend"),
                             ("cpu", "vs_cpu_fp32")}
    found = speedups[("xnnpack", "same_backend")]
    assert found["n"] == 3 and found["speedup_low"] <= found["speedup"] <= found["speedup_high"]
    csv_text = report(workdir, run_id, "csv")
    header, *rows = csv_text.strip().splitlines()
    assert len(rows) == 4 and "latency_us_low" in header and "speedup_same_backend_high" in header
    assert "speedup_vs_cpu_fp32_reference_backend" in header
    assert ",nan," not in csv_text.lower()
    markdown = report(workdir, run_id, "md")
    assert markdown.startswith(f"## bench run {run_id}")
    assert "| tiny_cnn* | int8 |" in markdown and "x [" in markdown
    out = workdir / "report.md"
    assert run_bench(["report", run_id, "--format", "md", "-o", str(out)],
                     workdir).returncode == 0
    assert out.read_text() == markdown


def test_a_corrupt_model_fails_its_cells_and_the_sweep_goes_on(workdir, cache_args):
    (workdir / "corrupt.tflite").write_bytes(b"\x00not a model" * 50)
    done = run_bench(["run", "--models", "tiny_cnn,corrupt.tflite", "--recipes", "fp32",
                      "--backends", "xnnpack", "--quick", *cache_args], workdir)
    assert done.returncode == 0, done.stderr
    by_model = {c["model"]: c for c in cells(workdir)}
    assert by_model["tiny_cnn"]["status"] == "ok"
    assert "not a valid .tflite model" in by_model["corrupt"]["reason"]
    assert "FAILED: corrupt file on local/xnnpack/t1" in done.stdout


def test_an_unreadable_model_name_is_a_usage_error_before_anything_is_built(workdir):
    done = run_bench(["run", "--models", "tiny_cnn,mobilenet_v9"], workdir)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith("bench: unknown zoo model")
    assert not (workdir / "results").exists() and not (workdir / "models").exists()


def test_model_options_after_a_comma_belong_to_the_model(workdir):
    done = run_bench(["run", "--dry-run", "--models", "mobilenet_v2@160,alpha=0.5,tiny_cnn",
                      "--recipes", "fp32", "--backends", "xnnpack"], workdir)
    assert done.returncode == 0, done.stderr
    assert "plan: 2 cell(s) to measure" in done.stdout and "2 model(s)" in done.stdout
    starts = run_bench(["run", "--dry-run", "--models", "alpha=0.5"], workdir)
    assert starts.returncode == 2 and "starts with an option" in starts.stderr


def test_two_files_with_one_name_are_told_apart(workdir, tiny_variants):
    import shutil

    for folder, recipe in (("v1", "fp32"), ("v2", "int8")):
        (workdir / folder).mkdir()
        shutil.copy(tiny_variants[recipe].path, workdir / folder / "model.tflite")
    done = run_bench(["run", "--models", "v1/model.tflite,v2/model.tflite", "--backends",
                      "xnnpack", "--quick"], workdir)
    assert done.returncode == 0, done.stderr
    stored = {c["model"]: c for c in cells(workdir)}
    assert set(stored) == {"v1/model", "v2/model"}
    assert stored["v1/model"]["sha256"] == tiny_variants["fp32"].sha256
    assert stored["v2/model"]["sha256"] == tiny_variants["int8"].sha256
    assert "v1/model  file" in done.stdout and "v2/model  file" in done.stdout


@pytest.mark.parametrize("flags, message", [
    (["--min-seconds", "nan"], "expected a finite number of seconds"),
    (["--min-seconds", "inf"], "expected a finite number of seconds"),
    (["--cooldown", "-1"], "--cooldown: expected a finite number of seconds >= 0"),
    (["--budget", "-5"], "--budget: expected a finite number of seconds > 0"),
    (["--backends", "foo"], "unknown backend(s) foo"),
    (["--models", ""], "no model given"),
    (["--devices", ""], "expected comma-separated names"),
    (["--resume", ""], "expected a run id"),
    (["--target", "nan"], "between 0 and 100"),
    (["--threads", "0"], "each >= 1"),
])
def test_bad_flags_are_usage_errors(workdir, flags, message):
    done = run_bench(["run", "--dry-run", *flags], workdir)
    assert done.returncode == 2, done.stdout
    assert message in done.stderr


def test_cpus_this_machine_lacks_are_a_usage_error(workdir):
    done = run_bench(["run", "--dry-run", "--cpus", "4095"], workdir)
    assert done.returncode == 2
    assert "CPU(s) 4095 are not available here" in done.stderr and "--cpus" in done.stderr


def test_configuration_errors_exit_2(workdir):
    (workdir / "devices" / "bad.toml").write_text('transport = "local"\nrunner = "python"\nx=1\n')
    done = run_bench(["run", "--devices", "bad", "--models", "tiny_cnn"], workdir)
    assert done.returncode == 2 and "bad.toml: key 'x': unknown key" in done.stderr
    done = run_bench(["run", "--devices", "nokia3310"], workdir)
    assert done.returncode == 2 and "unknown device 'nokia3310'" in done.stderr
    done = run_bench(["run", "--recipes", "int4"], workdir)
    assert done.returncode == 2 and "unknown recipe(s) int4" in done.stderr


def test_unusable_device_exits_3_with_the_cause(workdir, cache_args):
    device(workdir, "ghost", python="/nonexistent/python3")
    done = run_bench(["run", "--devices", "ghost", "--models", "tiny_cnn", "--recipes", "fp32",
                      "--quick", *cache_args], workdir)
    assert done.returncode == 3
    assert "device ghost could not be used: cannot start `/nonexistent/python3`" in done.stderr
    assert {c["status"] for c in cells(workdir)} == {"failed"}


def test_a_work_dir_that_cannot_be_created_says_why(workdir, cache_args):
    device(workdir, "nowhere", work_dir="/proc/bench-work")
    done = run_bench(["run", "--devices", "nowhere", "--models", "tiny_cnn", "--recipes",
                      "fp32", "--quick", *cache_args], workdir)
    assert done.returncode == 3
    line = next(x for x in done.stderr.splitlines() if "could not be used" in x)
    assert "cannot create the work directory /proc/bench-work" in line
    assert "unknown harness" not in done.stderr + done.stdout


def test_missing_op_on_old_runtime_fails_cell_and_strict_exits_3(
        workdir, cache_args, old_python):
    device(workdir, "board", python=old_python, tflite_module="tflite_runtime.interpreter")
    args = ["run", "--devices", "board", "--models", "tiny_cnn", "--recipes", "fp32,dynamic",
            "--quick", *cache_args]
    done = run_bench(args, workdir)
    assert done.returncode == 0, done.stderr
    by_recipe = {c["recipe"]: c for c in cells(workdir)}
    assert by_recipe["fp32"]["status"] == "ok"
    assert "Didn't find op for builtin opcode 'FULLY_CONNECTED'" in by_recipe["dynamic"]["reason"]
    runtime = db(workdir).execute("SELECT DISTINCT runtime_name, runtime_version FROM rounds "
                                  "WHERE status = 'ok'").fetchall()
    assert [tuple(r) for r in runtime] == [("tflite-runtime", "2.14.0")]
    assert "FAILED: tiny_cnn* dynamic on board/xnnpack/t1" in done.stdout
    assert run_bench([*args, "--strict"], workdir).returncode == 3


def test_a_delegate_that_took_nothing_is_shown_as_fallback(workdir, cache_args, old_python):
    """tflite-runtime 2.14 does not give int8 graphs to XNNPACK: not an xnnpack figure."""
    device(workdir, "board", python=old_python, tflite_module="tflite_runtime.interpreter",
           backends=["xnnpack"])
    done = run_bench(["run", "--devices", "board", "--models", "tiny_cnn", "--recipes",
                      "fp32,int8", "--rounds", "2", "--runs", "5", "--min-seconds", "0.01",
                      *cache_args], workdir)
    assert done.returncode == 0, done.stderr
    int8 = next(line for line in done.stdout.splitlines() if line.startswith("tiny_cnn*  int8"))
    assert "fallback" in int8 and "x [" not in int8  # no speedup reported for it
    assert "FALLBACK: tiny_cnn* int8 on board/xnnpack/t1: the xnnpack delegate took none" \
        in done.stdout
    assert "XNNPACK did NOT take the int8 graph" in done.stdout


HANGING_PYTHON = """#!{python}
import os, subprocess, sys, time
if "--probe" in sys.argv:  # the harness's probe: answer normally
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
    assert stored["status"] == "failed" and "timed out after 3 s" in stored["reason"]
    grandchild = int(pid_file.read_text())
    time.sleep(0.5)
    assert not alive(grandchild)
    assert list((workdir / "hung-work" / "jobs").iterdir()) == []  # the round's files are gone


CRASHING_PYTHON = """#!{python}
import os, signal, sys
if "--probe" in sys.argv:
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
case "$*" in *--probe*) ;; *) echo $$ >> {pids}; sleep {pause};; esac
exec {python} "$@"
"""


def slow_device(workdir: Path, name: str = "slow", pause: float = 1.0, **keys) -> Path:
    script = workdir / f"{name}-python"
    pids = workdir / f"{name}.pids"
    script.write_text(SLOW_PYTHON.format(python=sys.executable, pids=pids, pause=pause))
    script.chmod(0o755)
    device(workdir, name, python=str(script), **keys)
    return pids


def test_interrupted_then_resumed_run_reports_every_speedup(workdir, cache_args):
    """Two model families, Ctrl-C in the second round, --resume: the Markdown report shows
    every speedup, and no round measured before the interruption is lost. (That a family
    finished before the interruption keeps its speedups is test_sweep's, with fakes.)"""
    pids = slow_device(workdir, pause=0.3, backends=["xnnpack"])
    args = ["run", "--devices", "slow", "--models", "tiny_cnn,tiny_cnn,seed=1", "--recipes",
            "fp32,int8", "--rounds", "2", "--runs", "5", "--min-seconds", "0.01",
            "--no-progress", "--seed", "5", *cache_args]
    process = start_bench(args, workdir)
    wait_for_store(workdir, "SELECT COUNT(*) FROM rounds", 5, timeout=180)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    for pid in map(int, pids.read_text().split()):  # the running measurement was killed
        assert not alive(pid), f"runner {pid} survived Ctrl-C"
    assert "--resume " in err, err
    run_id = err.split("--resume ")[1].split("`")[0].strip()
    assert "unfinished" in out  # an interrupted run reports what it has
    before = {tuple(r) for r in db(workdir).execute(
        "SELECT cell_id, round, started_unix FROM rounds")}
    assert db(workdir).execute("SELECT status FROM runs").fetchone()[0] == "interrupted"

    resumed = run_bench(["run", "--resume", run_id, "--no-progress", *cache_args], workdir)
    assert resumed.returncode == 0, resumed.stderr
    after = {tuple(r) for r in db(workdir).execute(
        "SELECT cell_id, round, started_unix FROM rounds")}
    assert before <= after  # every round measured before the interruption is still there
    assert {c["status"] for c in cells(workdir, run_id)} == {"ok"}
    markdown = report(workdir, run_id, "md")
    int8_rows = [line for line in markdown.splitlines() if "| int8 | xnnpack |" in line]
    assert len(int8_rows) == 2 and all("x [" in line for line in int8_rows), markdown
    document = report(workdir, run_id)
    assert len(document["speedups"]) == 2 and {s["n"] for s in document["speedups"]} == {2}
    sessions = db(workdir).execute("SELECT session, status FROM sessions").fetchall()
    assert [tuple(s) for s in sessions] == [(1, "interrupted"), (2, "completed")]


@pytest.mark.parametrize("signame", ["SIGTERM", "SIGHUP"])
def test_sigterm_and_sighup_stop_like_ctrl_c(workdir, cache_args, signame):
    pids = slow_device(workdir, pause=30)
    args = ["run", "--devices", "slow", "--models", "tiny_cnn", "--recipes", "fp32",
            "--quick", "--no-progress", *cache_args]
    process = start_bench(args, workdir)
    deadline = time.monotonic() + 60
    while not pids.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    runner = int(pids.read_text().split()[0])
    process.send_signal(getattr(signal, signame))
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    time.sleep(0.3)
    assert not alive(runner), f"the runner was orphaned by {signame}"
    assert "--resume" in err
    assert db(workdir).execute("SELECT status FROM runs").fetchone()[0] == "interrupted"


def test_resume_refuses_changes_and_a_changed_model(workdir, tiny_variants):
    import shutil

    model = workdir / "mine.tflite"
    shutil.copy(tiny_variants["fp32"].path, model)
    pids = slow_device(workdir, pause=0.3, backends=["xnnpack", "cpu"])
    process = start_bench(["run", "--devices", "slow", "--models", str(model), "--rounds", "3",
                           "--runs", "5", "--min-seconds", "0.01", "--no-progress"], workdir)
    wait_for_store(workdir, "SELECT COUNT(*) FROM rounds", 1, timeout=120)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert pids.exists() and process.returncode == 130, err
    run_id = err.split("--resume ")[1].split("`")[0].strip()

    changed = run_bench(["run", "--resume", run_id, "--models", "tiny_cnn", "--label", "x"],
                        workdir)
    assert changed.returncode == 2
    assert "--models, --label would change it" in changed.stderr
    shutil.copy(tiny_variants["int8"].path, model)  # the user's file changed meanwhile
    mixed = run_bench(["run", "--resume", run_id], workdir)
    assert mixed.returncode == 2 and "changed since run" in mixed.stderr
    assert "would mix two models" in mixed.stderr
    assert db(workdir).execute("SELECT COUNT(*) FROM sessions").fetchone()[0] == 1


def test_a_failed_export_is_one_line_and_the_table_still_prints(workdir, cache_args):
    (workdir / "results").mkdir()
    (workdir / "results" / "runs").write_text("a file where the export folder should be")
    done = run_bench(["run", "--models", "tiny_cnn", "--recipes", "fp32", "--backends",
                      "xnnpack", "--quick", *cache_args], workdir)
    assert done.returncode == 0, done.stderr
    assert "tiny_cnn*  fp32" in done.stdout
    problem = [x for x in done.stderr.splitlines() if "JSON export" in x]
    assert len(problem) == 1 and "Traceback" not in done.stderr


def test_a_machine_held_by_another_harness_is_busy_with_who_and_since(workdir, cache_args):
    """Two device names for this machine, different work directories, two harnesses."""
    pids = slow_device(workdir, "first", pause=20, work_dir=str(workdir / "w1"))
    device(workdir, "second", work_dir=str(workdir / "w2"))
    holder = start_bench(["run", "--devices", "first", "--models", "tiny_cnn", "--recipes",
                          "fp32", "--backends", "xnnpack", "--quick", "--no-progress",
                          *cache_args], workdir)
    try:
        deadline = time.monotonic() + 60
        while not pids.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        holder_run = db(workdir).execute("SELECT id FROM runs").fetchone()[0]
        busy = run_bench(["run", "--devices", "second", "--models", "tiny_cnn", "--recipes",
                          "fp32", "--quick", "--no-progress", *cache_args], workdir)
        assert busy.returncode == 3
        line = next(x for x in busy.stderr.splitlines() if "could not be used" in x)
        assert f"run {holder_run} (pid {holder.pid} on " in line and "since " in line
        assert "--wait" in line
        waited = run_bench(["run", "--devices", "second", "--models", "tiny_cnn", "--recipes",
                            "fp32", "--quick", "--no-progress", "--wait", "1", *cache_args],
                           workdir)
        assert waited.returncode == 3 and "still busy after waiting 1 s" in waited.stderr
        assert "waiting for second" in waited.stderr
    finally:
        holder.send_signal(signal.SIGINT)
        holder.communicate(timeout=60)
    check = run_bench(["devices", "check", "second"], workdir)
    assert "lock" in check.stdout and "free" in check.stdout


def test_devices_clean_removes_only_what_bench_staged(workdir, cache_args):
    device(workdir, "here", backends=["xnnpack"])
    done = run_bench(["run", "--devices", "here", "--models", "tiny_cnn", "--recipes", "fp32",
                      "--quick", *cache_args], workdir)
    assert done.returncode == 0, done.stderr
    work = workdir / "here-work"
    (work / "models" / "mine.tflite").write_text("the user's own model")
    (work / "notes.txt").write_text("the user's own file")
    assert list((work / "models").glob("*.tflite")) and list((work / "runner").iterdir())
    cleaned = run_bench(["devices", "clean", "here"], workdir)
    assert cleaned.returncode == 0, cleaned.stdout + cleaned.stderr
    assert "removed the staged runner, models and jobs" in cleaned.stdout
    assert [p.name for p in (work / "models").iterdir()] == ["mine.tflite"]
    assert not (work / "runner").exists() and (work / "notes.txt").exists()
    # a directory bench did not create is left alone
    device(workdir, "foreign", work_dir=str(workdir / "foreign"))
    (workdir / "foreign" / "models").mkdir(parents=True)
    (workdir / "foreign" / "models" / ("ab" * 32 + ".tflite")).write_text("keep")
    refused = run_bench(["devices", "clean", "foreign"], workdir)
    assert refused.returncode == 3 and "was not created by bench" in refused.stdout
    assert (workdir / "foreign" / "models" / ("ab" * 32 + ".tflite")).exists()


def test_models_commands(workdir, tiny_variants, cache_args):
    listing = run_bench(["models", "list"], workdir)
    assert listing.returncode == 0
    for name in ("mobilenet_v1", "mobilenet_v2", "resnet50", "resnet50_v2", "inception_v3",
                 "nasnet_mobile", "int8-per-tensor", "int16x8"):
        assert name in listing.stdout
    shown = run_bench(["models", "inspect", tiny_variants["int8"].path], workdir)
    assert shown.returncode == 0 and "CONV_2D" in shown.stdout and "MACs" in shown.stdout
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


def test_report_of_an_empty_store_and_a_read_only_results_directory(workdir, cache_args):
    from tests.test_store import read_only

    empty = run_bench(["report"], workdir)
    assert empty.returncode == 2 and "no results store" in empty.stderr
    done = run_bench(["run", "--models", "tiny_cnn", "--recipes", "fp32", "--backends",
                      "xnnpack", "--quick", *cache_args], workdir)
    assert done.returncode == 0, done.stderr
    with read_only(workdir / "results"):
        listing = run_bench(["runs"], workdir)
        assert listing.returncode == 0 and "1/1 ok" in listing.stdout, listing.stderr
        shown = run_bench(["report", "--format", "md"], workdir)
        assert shown.returncode == 0 and "| tiny_cnn* | fp32 |" in shown.stdout, shown.stderr


def test_a_run_whose_harness_was_killed_is_shown_as_such(workdir, cache_args):
    import os

    pids = slow_device(workdir, pause=30)
    process = start_bench(["run", "--devices", "slow", "--models", "tiny_cnn", "--recipes",
                           "fp32", "--quick", "--no-progress", *cache_args], workdir)
    wait_for_store(workdir, "SELECT COUNT(*) FROM sessions", 1, timeout=120)
    assert "running" in run_bench(["runs"], workdir).stdout
    process.kill()  # SIGKILL: no handler runs, the store still says "running"
    process.wait()
    listing = run_bench(["runs"], workdir)
    assert "killed (resume it)" in listing.stdout
    for pid in map(int, pids.read_text().split()) if pids.exists() else ():
        os.killpg(pid, signal.SIGKILL)  # the orphaned runner's group (a real SIGKILL leaves it)


def test_dry_run_forecasts_rounds_and_intervals_from_history(workdir, cache_args):
    done = run_bench(["run", "--models", "tiny_cnn", "--recipes", "fp32,int8", "--rounds",
                      "4", "--runs", "5", "--min-seconds", "0.01", *cache_args], workdir)
    assert done.returncode == 0, done.stderr
    run_id = run_id_of(done.stdout.splitlines()[-1])
    plan = run_bench(["run", "--dry-run", "--models", "tiny_cnn,mobilenet_v2", "--recipes",
                      "fp32,int8", *cache_args], workdir)
    assert plan.returncode == 0, plan.stderr
    line = next(x for x in plan.stdout.splitlines() if x.startswith("  tiny_cnn on local"))
    assert f"in run {run_id}" in line and "round(s)" in line and "expect ±" in line
    assert "mobilenet_v2 on local/t1: no history" in plan.stdout
    assert len(db(workdir).execute("SELECT id FROM runs").fetchall()) == 1  # nothing stored


def test_models_build_takes_several_names(workdir, cache_args):
    done = run_bench(["models", "build", "tiny_cnn", "tiny_cnn,seed=1", "--recipes", "fp32",
                      "--cache", cache_args[1]], workdir)
    assert done.returncode == 0, done.stderr
    assert "tiny_cnn " in done.stdout and "tiny_cnn,seed=1 " in done.stdout
