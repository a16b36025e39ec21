"""Accuracy measured where the variant runs: staged batches, the runner's evaluate mode,
facts in the store, figures in the analysis, the table and the paper check.

Real parts: tiny_cnn variants converted by the real worker, the python runner on this
machine through the local transport, a labelled image folder written here, the held-out
crops from the foolbox wheel, a real SQLite store and `bench run` as a user runs it.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3

import numpy as np
import pytest
from PIL import Image

from bench.accuracy.evaluator import Evaluator, facts, parse_accuracy
from bench.accuracy.figures import accuracy_rows
from bench.accuracy.staging import batch_size_for, encode, stage
from bench.analysis import analyse
from bench.data.datasets import dataset
from bench.devices import load_device
from bench.errors import UsageError
from bench.measure.protocol import Protocol
from bench.measure.session import DeviceSession
from bench.plan import Cell
from bench.runners import pyrunner
from bench.runners.python import PythonRunner
from bench.store.sqlite import SQLiteStore
from bench.transports.local import LocalTransport
from tests.conftest import run_bench

CLASSES = (0, 37, 99)  # numeric class folders: labels are the numbers (tiny_cnn: 100 outputs)


def labelled_folder(root, per_class: int = 4, size: int = 40, seed: int = 0):
    rng = np.random.default_rng(seed)
    for label in CLASSES:
        (root / str(label)).mkdir(parents=True)
        for k in range(per_class):
            pixels = rng.integers(0, 256, size=(size, size + 8, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / str(label) / f"{k}.png")
    return root


# ---------------------------------------------------------------- staging


def test_photographs_stage_as_exact_uint8_pixels():
    inputs, _ = dataset("heldout", input_shape=(1, 64, 64, 3), size=6).take()
    pixels, spec = encode(inputs)
    assert pixels.dtype == np.uint8 and spec is not None and len(spec["mean"]) == 3
    assert np.array_equal(pyrunner.decode_inputs(np, pixels, spec), inputs)


def test_inputs_without_a_pixel_form_stay_float32():
    noise = np.random.default_rng(1).uniform(-1, 1, size=(3, 8, 8, 3)).astype(np.float32)
    data, spec = encode(noise)
    assert spec is None and data.dtype == np.float32 and np.array_equal(data, noise)


def test_batches_hold_about_sixteen_megabytes_and_the_digest_follows_the_content(tmp_path):
    assert batch_size_for((224, 224, 3)) == 111 and batch_size_for((28, 28, 1)) == 20_000
    folder = labelled_folder(tmp_path / "images")
    data = dataset(str(folder), input_shape=(1, 32, 32, 3))
    one = stage(data, "mine", tmp_path / "a", batch_size=5)
    assert [b.count for b in one.batches] == [5, 5, 2] and one.size == 12
    assert list(one.labels) == [0] * 4 + [37] * 4 + [99] * 4
    again = stage(data, "mine", tmp_path / "b", batch_size=5)
    assert again.sha256 == one.sha256
    Image.fromarray(np.zeros((40, 48, 3), np.uint8)).save(folder / "99" / "3.png")
    changed = stage(dataset(str(folder), input_shape=(1, 32, 32, 3)), "mine", tmp_path / "c",
                    batch_size=5)
    assert changed.sha256 != one.sha256


def test_facts_count_top1_and_top5_against_the_labels():
    outputs = np.array([[0.1, 0.9, 0, 0, 0, 0], [0.8, 0.1, 0.05, 0.03, 0.02, 0.0],
                        [0.0, 0.01, 0.02, 0.03, 0.1, 0.9]], dtype=np.float32)
    found = facts(outputs, np.array([1, 5, 0]))
    assert json.loads(found["predictions"]) == [1, 0, 5]
    assert found["top1"] == 1 and found["top5"] == 1  # labels 5 and 0 rank 6th
    assert facts(outputs, None)["top1"] is None


# ---------------------------------------------------------------- on a device


@pytest.fixture
def trained(tiny_variants):
    """tiny_cnn's variants standing in for a trained model (a user's file is treated as
    trained: its accuracy is what the user wants)."""
    return {r: dataclasses.replace(v, random_weights=False) for r, v in tiny_variants.items()}


def local_session(tmp_path) -> DeviceSession:
    path = tmp_path / "dev.toml"
    path.write_text(f'transport = "local"\nrunner = "python"\npython = "harness"\n'
                    f'backends = ["xnnpack"]\nwork_dir = "{tmp_path / "work"}"\n')
    device = load_device(path)
    session = DeviceSession(device, LocalTransport(), PythonRunner(device.interpreter, "auto"),
                            Protocol())
    session.prepare()
    return session


def evaluate(tmp_path, session, variants, datasets, agreement_inputs=0):
    evaluator = Evaluator(datasets, agreement_inputs, tmp_path / "staged")
    notes = evaluator.prepare(list(variants))
    rows: list[dict] = []
    cells = [Cell(v, "dev", "xnnpack", 1) for v in variants]
    evaluator.evaluate(session, cells, rows.append, lambda: False)
    return rows, notes


def test_variants_are_evaluated_on_the_device_with_fp32_as_reference(tmp_path, trained):
    folder = labelled_folder(tmp_path / "images")
    session = local_session(tmp_path)
    chosen = [trained["int8"], trained["fp32"], trained["dynamic"]]
    rows, notes = evaluate(tmp_path, session, chosen, (str(folder),), agreement_inputs=30)
    assert not notes
    by = {(r["recipe"], r["dataset"]): r for r in rows}
    assert len(rows) == 6 and {r["status"] for r in rows} == {"ok"}, rows
    assert [r["recipe"] for r in rows[:3]] == ["fp32", "int8", "dynamic"]  # fp32 first
    labelled = by[("int8", str(folder))]
    assert labelled["measured_on"] == "device" and labelled["n"] == 12
    assert json.loads(labelled["labels"]) == [0] * 4 + [37] * 4 + [99] * 4
    assert labelled["runtime_name"] == "ai-edge-litert" and labelled["delegated"] == "yes"
    assert labelled["reference_recipe"] == "fp32" and labelled["snr_db"] is not None
    assert by[("fp32", str(folder))].get("snr_db") is None
    assert by[("int8", "heldout")]["n"] == 30 and by[("int8", "heldout")]["top1"] is None
    # The device's outputs are the interpreter's: the same as this process computes.
    from bench.zoo.check import _dequantize, _interpreter, _quantize

    inputs, labels = dataset(str(folder), input_shape=(1, 32, 32, 3)).take()
    interpreter = _interpreter(trained["int8"].path)
    detail_in = interpreter.get_input_details()[0]
    detail_out = interpreter.get_output_details()[0]
    expected = []
    for k in range(len(inputs)):
        interpreter.set_tensor(detail_in["index"], _quantize(inputs[k:k + 1], detail_in))
        interpreter.invoke()
        expected.append(int(np.argmax(_dequantize(interpreter.get_tensor(detail_out["index"]),
                                                  detail_out))))
    assert json.loads(labelled["predictions"]) == expected
    assert labelled["top1"] == int(np.sum(np.array(expected) == labels))
    # Nothing is left in the device's job directory.
    assert not list((tmp_path / "work" / "jobs").glob("*"))


def test_random_weights_and_mismatched_classes_get_a_reason_not_a_figure(tmp_path,
                                                                         tiny_variants,
                                                                         trained):
    session = local_session(tmp_path)
    rows, notes = evaluate(tmp_path, session, [tiny_variants["fp32"]], ("foolbox-imagenet",))
    assert rows == [] and "random weights" in notes[0]
    rows, notes = evaluate(tmp_path / "b", session, [trained["fp32"]], ("foolbox-imagenet",))
    assert rows == [] and "1000 classes but the model has 100 outputs" in notes[0]


def test_a_runner_without_outputs_is_evaluated_on_the_host_and_says_so(tmp_path, trained):
    folder = labelled_folder(tmp_path / "images")

    class BenchmarkModelLike:
        evaluates = False

    rows, _ = evaluate(tmp_path, BenchmarkModelLike(), [trained["fp32"], trained["int8"]],
                       (str(folder),))
    assert {r["measured_on"] for r in rows} == {"host"} and {r["status"] for r in rows} == {"ok"}
    assert all("measured on the host" in r["reason"] for r in rows)
    assert rows[1]["snr_db"] is not None


def test_a_failing_variant_is_a_failed_row_and_the_others_go_on(tmp_path, trained):
    folder = labelled_folder(tmp_path / "images")
    broken = tmp_path / "broken.tflite"
    broken.write_bytes(b"\0" * 64)
    bad = dataclasses.replace(trained["int8"], path=str(broken), sha256="0" * 64)
    session = local_session(tmp_path)
    rows, _ = evaluate(tmp_path, session, [trained["fp32"], bad, trained["dynamic"]],
                       (str(folder),))
    status = {r["recipe"]: r for r in rows}
    assert status["int8"]["status"] == "failed" and "evaluation failed" in status["int8"]["reason"]
    assert status["fp32"]["status"] == status["dynamic"]["status"] == "ok"


def test_accuracy_figures_pair_variants_on_the_same_inputs():
    labels = [1, 2, 3, 4]
    base = {"model": "m", "device": "d", "backend": "xnnpack", "threads": 1, "dataset": "x",
            "dataset_sha256": "s", "dataset_size": 4, "labelled": 1, "measured_on": "device",
            "status": "ok", "n": 4, "labels": json.dumps(labels), "top5": None}
    rows = accuracy_rows([
        {**base, "recipe": "fp32", "predictions": json.dumps([1, 2, 3, 0]), "top1": 3},
        {**base, "recipe": "int8", "predictions": json.dumps([1, 2, 0, 4]), "top1": 3},
    ])
    int8 = rows[1]
    assert (int8["gained"], int8["lost"], int8["agreement"]) == (1, 1, 0.5)
    assert int8["top1_change"] == 0.0 and int8["mcnemar_p"] == 1.0
    assert int8["top1_change_low"] < 0 < int8["top1_change_high"]
    assert rows[0]["agreement"] is None  # fp32 is the reference


# ---------------------------------------------------------------- as a user runs it


def test_bench_run_accuracy_prints_and_stores_accuracy(workdir, trained):
    folder = labelled_folder(workdir / "images")
    model = trained["fp32"].path
    result = run_bench(["run", "--models", model, "--accuracy", str(folder),
                        "--agreement-inputs", "20", "--rounds", "1", "--quick",
                        "--no-dashboard", "--no-progress"], workdir)
    assert result.returncode == 0, result.stderr
    assert "accuracy (after the timed rounds" in result.stdout
    db = sqlite3.connect(workdir / "results" / "bench.sqlite")
    rows = db.execute("SELECT dataset, status, n, measured_on FROM evaluations "
                      "ORDER BY dataset").fetchall()
    assert sorted(rows) == sorted([("heldout", "ok", 20, "device"),
                                   (str(folder), "ok", 12, "device")])
    store = SQLiteStore(workdir / "results" / "bench.sqlite", readonly=True)
    analysis = analyse(store.facts(store.latest_run_id()))
    store.close()
    assert analysis.variants["accuracy_dataset"].tolist() == [str(folder)]


@pytest.mark.parametrize("args, message", [
    (["--accuracy", "skimage-natural"], "is the calibration set"),
    (["--calibration", "heldout"], "that is an evaluation set"),
    (["--agreement-inputs", "5"], "--agreement-inputs goes with --accuracy"),
    (["--accuracy", "imagenet-typo"], "unknown dataset 'imagenet-typo'"),
    (["--accuracy", "./no/such/folder"], "does not exist"),
])
def test_accuracy_usage_errors_say_what_to_do(workdir, args, message):
    result = run_bench(["run", "--models", "tiny_cnn", "--recipes", "fp32", "--rounds", "1",
                        *args], workdir, timeout=120)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert message in result.stderr
    assert not (workdir / "results" / "bench.sqlite").exists() or \
        not sqlite3.connect(workdir / "results" / "bench.sqlite").execute(
            "SELECT COUNT(*) FROM runs").fetchone()[0]


def test_parse_accuracy_refuses_calibration_data():
    assert parse_accuracy("foolbox-imagenet, heldout,foolbox-imagenet") == \
        ("foolbox-imagenet", "heldout")
    with pytest.raises(UsageError):
        parse_accuracy("skimage-natural")


def test_each_model_is_evaluated_with_its_weights_preprocessing(tmp_path, trained):
    folder = labelled_folder(tmp_path / "images")
    evaluator = Evaluator((str(folder),), 10, tmp_path / "staged")
    evaluator.prepare([trained["fp32"]], {"tiny_cnn": "keras-mobilenet"})
    specs = {s.name: s.batches[0].normalise for s in evaluator.models["tiny_cnn"].sets}
    assert specs == {str(folder): {"mean": [0.5] * 3, "std": [0.5] * 3},
                     "heldout": {"mean": [0.5] * 3, "std": [0.5] * 3}}
    torchvision = Evaluator((str(folder),), 0, tmp_path / "staged2")
    torchvision.prepare([trained["fp32"]])
    (only,) = torchvision.models["tiny_cnn"].sets
    assert only.batches[0].normalise["mean"] == [0.485, 0.456, 0.406]


def test_a_resume_evaluates_what_the_first_session_did_not(workdir, trained):
    """A run stopped after its rounds but before its accuracy (here: its evaluations
    removed) gets them on --resume without measuring a round again."""
    folder = labelled_folder(workdir / "images")
    args = ["run", "--models", trained["fp32"].path, "--accuracy", str(folder),
            "--agreement-inputs", "0", "--rounds", "1", "--quick", "--no-dashboard",
            "--no-progress"]
    first = run_bench(args, workdir)
    assert first.returncode == 0, first.stderr
    path = workdir / "results" / "bench.sqlite"
    db = sqlite3.connect(path)
    run_id, rounds = db.execute("SELECT run_id, COUNT(*) FROM rounds").fetchone()
    db.execute("DELETE FROM evaluations")
    db.execute("UPDATE runs SET status = 'interrupted'")
    db.commit()
    db.close()
    resumed = run_bench(["run", "--resume", run_id, "--no-dashboard", "--no-progress"],
                        workdir)
    assert resumed.returncode == 0, resumed.stderr
    db = sqlite3.connect(path)
    assert db.execute("SELECT COUNT(*) FROM rounds").fetchone()[0] == rounds
    assert db.execute("SELECT dataset, status, n FROM evaluations").fetchall() == \
        [(str(folder), "ok", 12)]
