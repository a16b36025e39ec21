"""The runner: a real interpreter in a real subprocess, JSON in and out."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench.runners.pyrunner import PROBE_PREFIX
from bench.runners.python import RUNNER_FILE, from_document

QUICK = {"warmup_runs": 1, "warmup_min_s": 0.0, "min_runs": 5, "min_s": 0.0, "max_s": 5.0}


def run_runner(tmp_path: Path, python: str, model: str, *, isolated: bool = True,
               runner: Path = RUNNER_FILE, **job) -> dict:
    job = {"schema_version": 1, "model_path": model, "backend": "xnnpack", "threads": 1,
           "tflite_module": "auto", **QUICK, **job}
    job_path, result_path = tmp_path / "job.json", tmp_path / "result.json"
    job_path.write_text(json.dumps(job))
    command = [python, *(["-I"] if isolated else []), str(runner), str(job_path),
               str(result_path)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(result_path.read_text())


def test_measures_real_model_with_xnnpack(tmp_path, tiny_variants):
    result = run_runner(tmp_path, sys.executable, tiny_variants["fp32"].path, min_runs=20)
    assert result["status"] == "ok", result["error"]
    assert result["schema_version"] == 2
    assert len(result["latencies_us"]) >= 20 and min(result["latencies_us"]) > 0
    assert result["runtime"]["name"] == "ai-edge-litert"
    assert result["runtime"]["version"] == "2.3.0"
    assert result["delegation"]["delegated"] == "yes"
    assert result["delegation"]["delegate_nodes"] >= 1
    assert result["init_us"] > 0 and result["first_inference_us"] > 0
    assert result["peak_memory_bytes"] > 0  # loading a model costs memory
    assert result["cpu_model"] and isinstance(result["cpu_flags"], list)
    assert len(result["loadavg_before"]) == 3
    typed = from_document(result)  # the harness's typed view of the same document
    assert typed.ok and typed.aggregate.count == len(result["latencies_us"])
    assert typed.init_us == result["init_us"] and typed.delegation.delegated == "yes"
    assert typed.runtime_version == "2.3.0" and typed.environment.cpus_available >= 1


def test_cpu_backend_has_no_delegate(tmp_path, tiny_variants):
    result = run_runner(tmp_path, sys.executable, tiny_variants["int8"].path, backend="cpu")
    assert result["status"] == "ok", result["error"]
    assert result["delegation"]["delegated"] == "no"
    assert result["delegation"]["delegate_nodes"] == 0


def test_timed_loop_stops_at_min_runs_and_min_seconds(tmp_path, tiny_variants):
    by_time = run_runner(tmp_path, sys.executable, tiny_variants["fp32"].path,
                         min_runs=1, min_s=0.3)
    timed = sum(by_time["latencies_us"]) / 1e6  # inference time inside the loop only
    assert 0.2 <= timed <= 0.35, timed  # the loop ran ~0.3 s, minus the clock reads
    by_count = run_runner(tmp_path, sys.executable, tiny_variants["fp32"].path,
                          min_runs=7, min_s=0.0)
    assert len(by_count["latencies_us"]) == 7


def test_runner_imports_nothing_from_the_project(tmp_path, tiny_variants):
    """Copied alone into an empty directory, run isolated: it still works."""
    lonely = tmp_path / "device"
    lonely.mkdir()
    copy = lonely / "pyrunner.py"
    shutil.copy(RUNNER_FILE, copy)
    result = run_runner(lonely, sys.executable, tiny_variants["fp32"].path, runner=copy)
    assert result["status"] == "ok"
    source = RUNNER_FILE.read_text()
    assert "import bench" not in source and "from bench" not in source


def test_old_board_stack_tflite_runtime_numpy1(tmp_path, tiny_variants, old_python):
    """Python 3.8-era board: tflite-runtime 2.14 and numpy<2, run with -I."""
    result = run_runner(tmp_path, old_python, tiny_variants["fp32"].path)
    assert result["status"] == "ok", result["error"]
    assert result["runtime"]["name"] == "tflite-runtime"
    assert result["numpy_version"].startswith("1.")
    # tflite-runtime 2.14 does not hand int8 graphs to XNNPACK: the evidence says so
    int8 = run_runner(tmp_path, old_python, tiny_variants["int8"].path)
    assert int8["status"] == "ok" and int8["delegation"]["delegated"] == "no"


def test_old_runtime_lacking_an_op_version_fails_with_its_own_message(
        tmp_path, tiny_variants, old_python):
    result = run_runner(tmp_path, old_python, tiny_variants["dynamic"].path)
    assert result["status"] == "failed"
    assert "Didn't find op for builtin opcode 'FULLY_CONNECTED'" in result["error"]


@pytest.mark.parametrize("content", [b"", b"garbage" * 100])
def test_corrupt_model_is_a_failed_result(tmp_path, content):
    model = tmp_path / "bad.tflite"
    model.write_bytes(content)
    result = run_runner(tmp_path, sys.executable, str(model))
    assert result["status"] == "failed" and result["error"]
    assert "latencies_us" not in result


def test_missing_model_and_wrong_schema(tmp_path, tiny_variants):
    missing = run_runner(tmp_path, sys.executable, str(tmp_path / "nope.tflite"))
    assert "model file not found on the device" in missing["error"]
    wrong = run_runner(tmp_path, sys.executable, tiny_variants["fp32"].path, schema_version=99)
    assert wrong["status"] == "failed" and "job schema 99" in wrong["error"]


def test_unavailable_module_is_explained(tmp_path, tiny_variants):
    result = run_runner(tmp_path, sys.executable, tiny_variants["fp32"].path,
                        tflite_module="tflite_runtime.interpreter")
    assert result["status"] == "failed"
    assert "no TFLite interpreter module could be imported" in result["error"]


def test_cpu_pinning_applies_and_a_missing_cpu_is_explained(tmp_path, tiny_variants):
    result = run_runner(tmp_path, sys.executable, tiny_variants["fp32"].path, cpus=[0])
    assert result["status"] == "ok" and result["affinity"] == [0]
    assert result["environment"]["affinity"] == [0]
    missing = run_runner(tmp_path, sys.executable, tiny_variants["fp32"].path, cpus=[4096])
    assert missing["status"] == "failed"
    assert "cannot pin to CPU(s) 4096" in missing["error"] and "fix `cpus`" in missing["error"]


@pytest.mark.parametrize("which", ["harness", "old"])
def test_probe_reports_python_numpy_runtimes_and_cpu(request, which):
    python = sys.executable if which == "harness" else request.getfixturevalue("old_python")
    done = subprocess.run([python, "-I", str(RUNNER_FILE), "--probe"], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    line = next(x for x in done.stdout.splitlines() if x.startswith(PROBE_PREFIX))
    facts = json.loads(line[len(PROBE_PREFIX):])
    module = "ai_edge_litert.interpreter" if which == "harness" else "tflite_runtime.interpreter"
    version = "2.3.0" if which == "harness" else "2.14.0"
    assert facts["runtimes"][module] == {"version": version}
    assert facts["numpy"] and facts["python"].startswith("3.") and facts["cpu_count"] >= 1
    if which == "old":
        assert facts["runtimes"]["ai_edge_litert.interpreter"] is None
        assert facts["runtime_errors"]["ai_edge_litert.interpreter"]


def test_usage_error_without_arguments():
    done = subprocess.run([sys.executable, str(RUNNER_FILE)], capture_output=True, text=True)
    assert done.returncode == 2 and "usage" in done.stderr


def test_a_tiny_model_is_timed_in_batches_when_the_loop_costs_too_much(tmp_path, tiny_variants):
    """The loop's own cost per sample is measured; over the limit, samples time batches."""
    plain = run_runner(tmp_path, sys.executable, tiny_variants["fp32"].path, min_runs=20)
    assert plain["batch"] == 1 and 0 < plain["loop_overhead_us"] < 5
    batched = run_runner(tmp_path, sys.executable, tiny_variants["fp32"].path, min_runs=20,
                         overhead_limit=1e-5)  # as if one invoke were 100000x cheaper
    assert batched["batch"] > 1 and len(batched["latencies_us"]) >= 20
    per_invoke = sorted(plain["latencies_us"])[len(plain["latencies_us"]) // 2]
    batch_mean = sorted(batched["latencies_us"])[len(batched["latencies_us"]) // 2]
    assert 0.3 < batch_mean / per_invoke < 3  # still the time of one inference
    typed = from_document(batched)
    assert typed.batch == batched["batch"] and typed.loop_overhead_us > 0
