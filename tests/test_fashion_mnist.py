"""The Fashion-MNIST quantization experiment, CI-sized: 1 epoch on 8,192 train images (64
steps: a model well above chance, so the comparisons have discordant images), 64 calibration
images, 2,000 test images, and the QAT recipes fine-tuned 1 epoch on the same images: about
50 s (20 s of it the Keras 3 worker, 30 s the QAT worker, most of both TensorFlow starting
and converting), and as much again for the determinism check (marked slow), which runs it a
second time.

What must hold whatever the accuracy of so short a training: every recipe in the table with
proportions in [0, 1] and intervals around their estimates; paired counts that add up; the
int8 files really int8 and the qat-w4 file really 4-bit (read from the flatbuffer, not
trusted from the recipe name); QAT rows compared with fp32-ft as well as fp32; the tf_keras
rebuild computing what the Keras 3 model computes; calibration images from the train split
and none of them in the test split; results only under the caller's directory; no
TensorFlow and no TF_USE_LEGACY_KERAS in the harness process; and a missing data set stopped
with one clear line before anything is trained.
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import pytest

from bench.data import datasets as ds
from bench.errors import UsageError
from bench.experiments import fashion_mnist as fm
from bench.zoo.inspect import inspect_tflite
from bench.zoo.weight_levels import check_levels
from tests.conftest import IN_CI, REPO

FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
         "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
SMALL = {"epochs": 1, "train_size": 8192, "calibration_size": 64, "seed": 0, "threads": 1}
TEST_SIZE = 2000


def _require_fashion_mnist() -> None:
    if not all((ds.fashion_mnist_dir() / name).is_file() for name in FILES):
        reason = (f"no Fashion-MNIST in {ds.fashion_mnist_dir()}: "
                  "apt-get install dataset-fashion-mnist")
        if IN_CI:
            pytest.fail(reason)
        pytest.skip(reason)


@pytest.fixture(scope="module")
def tensorflow_was_loaded() -> bool:
    return "tensorflow" in sys.modules


@pytest.fixture(scope="module")
def small_run(tmp_path_factory, tensorflow_was_loaded) -> fm.ExperimentResult:
    _require_fashion_mnist()
    out = tmp_path_factory.mktemp("fashion") / "run"
    messages: list[str] = []
    result = fm.run_experiment(out_dir=out, test_size=TEST_SIZE, latency_runs=50,
                               progress=messages.append, **SMALL)
    assert any("epoch 1/1" in m for m in messages), messages
    return result


def test_every_recipe_has_a_row_with_sound_proportions(small_run):
    result = small_run
    assert result.recipes == fm.DEFAULT_RECIPES
    assert [v.recipe for v in result.variants] == list(fm.DEFAULT_RECIPES)
    table = fm.format_table(result)
    for variant in result.variants:
        assert variant.status == "ok", variant.error
        assert variant.recipe in table
        accuracy = variant.accuracy
        assert 0.0 <= accuracy.low <= accuracy.estimate <= accuracy.high <= 1.0
        assert accuracy.estimate == variant.correct / TEST_SIZE
        assert variant.size_bytes > 0 and variant.latency_ms > 0
        assert variant.compression == pytest.approx(
            result.variant("fp32").size_bytes / variant.size_bytes)
    assert result.variant("fp32").vs_fp32 is None
    assert "reference" in table and f"{TEST_SIZE:,} test images" in table


def test_paired_comparisons_add_up(small_run):
    fp32 = small_run.variant("fp32")
    for recipe in fm.DEFAULT_RECIPES[1:]:
        variant = small_run.variant(recipe)
        paired = variant.vs_fp32
        assert paired.both_right + paired.gained + paired.lost + paired.both_wrong == TEST_SIZE
        assert paired.gained - paired.lost == variant.correct - fp32.correct
        difference = paired.difference
        assert difference.estimate == pytest.approx(variant.accuracy.estimate
                                                    - fp32.accuracy.estimate)
        assert -1.0 <= difference.low <= difference.estimate <= difference.high <= 1.0
        assert 0.0 <= paired.mcnemar_p <= 1.0
        agreement = paired.agreement
        assert 0.0 <= agreement.low <= agreement.estimate <= agreement.high <= 1.0
    saved = np.load(small_run.out_dir / "predictions.npz")
    labels, predictions = saved["labels"], saved["int8_per_tensor"]
    assert len(labels) == TEST_SIZE
    assert int(np.sum(predictions == labels)) == small_run.variant("int8-per-tensor").correct


def test_int8_files_are_int8(small_run):
    schemes = {v.recipe: inspect_tflite(v.path).weight_scheme for v in small_run.variants}
    assert schemes["fp32"] == "float32"
    assert schemes["int8"] == "int8 per-channel"
    assert schemes["int8-per-tensor"] == "int8 per-tensor"
    assert schemes["dynamic"].endswith("dynamic range")
    assert schemes["fp32-ft"] == "float32"
    # tfmot quantizes convolutions per channel and the dense layer per tensor.
    assert schemes["qat-int8"] == "int8 per-channel/per-tensor"
    assert schemes["qat-w4"].startswith("int4")
    for recipe in ("int8", "int8-per-tensor", "qat-int8", "qat-w4"):
        info = inspect_tflite(small_run.variant(recipe).path)
        assert [dtype for _, dtype, _ in info.inputs + info.outputs] == ["int8", "int8"]
        assert small_run.variant(recipe).size_bytes < small_run.variant("fp32").size_bytes


def test_qat_rows_are_compared_with_fp32_ft(small_run):
    ft = small_run.variant("fp32-ft")
    assert ft.status == "ok" and ft.vs_fp32 is not None and ft.vs_fp32_ft is None
    for recipe in ("fp32", "dynamic", "int8", "int8-per-tensor"):
        assert small_run.variant(recipe).vs_fp32_ft is None
    table = fm.format_table(small_run)
    block = table[table.index("QAT rows vs fp32-ft"):table.index("weights as stored")]
    for recipe in ("qat-int8", "qat-w4"):
        variant = small_run.variant(recipe)
        paired = variant.vs_fp32_ft
        assert paired.both_right + paired.gained + paired.lost + paired.both_wrong == TEST_SIZE
        assert paired.gained - paired.lost == variant.correct - ft.correct
        assert paired.difference.estimate == pytest.approx(variant.accuracy.estimate
                                                           - ft.accuracy.estimate)
        assert paired.difference.low <= paired.difference.estimate <= paired.difference.high
        assert 0.0 <= paired.mcnemar_p <= 1.0
        # Against fp32 too, and the two baselines give different counts.
        assert variant.vs_fp32.gained - variant.vs_fp32.lost == (
            variant.correct - small_run.variant("fp32").correct)
        assert (paired.gained, paired.lost) != (variant.vs_fp32.gained, variant.vs_fp32.lost)
        row = next(line for line in block.splitlines() if line.startswith(recipe))
        d = paired.difference
        assert f"{100 * d.estimate:+.2f} [{100 * d.low:+.2f}, {100 * d.high:+.2f}]" in row
        assert f"+{paired.gained}/-{paired.lost}" in row
    stored = json.loads((small_run.out_dir / "experiment.json").read_text())
    by_recipe = {v["recipe"]: v for v in stored["variants"]}
    assert by_recipe["qat-w4"]["vs_fp32_ft"]["gained"] == small_run.variant(
        "qat-w4").vs_fp32_ft.gained


def test_qat_w4_file_holds_4_bit_weights(small_run):
    variant = small_run.variant("qat-w4")
    check = check_levels(variant.path)
    assert check.ok, check.reason
    # conv1, dw1, pw1, dw2, pw2 and the dense logits: every weight tensor was read.
    assert len(check.tensors) == 6
    assert all(t.levels <= 16 for t in check.tensors)
    assert variant.weight_levels == check.most_levels <= 16
    # The same weights at one byte each would be bigger by what packing saves.
    as_int8 = check.file_bytes - sum(t.stored_bytes - t.count for t in check.tensors)
    assert variant.packed_size_bytes == check.packed_bytes < as_int8
    assert variant.packed_size_bytes <= variant.size_bytes
    table = fm.format_table(small_run)
    assert f"packed 4-bit {variant.packed_size_bytes / 1024:.1f} KiB" in table
    assert f"file {variant.size_bytes / 1024:.1f} KiB" in table


def test_the_level_checker_fails_on_an_8_bit_file(small_run):
    int8 = small_run.variant("int8")
    check = check_levels(int8.path)
    assert not check.ok and check.offending.levels > 16
    assert check.reason.startswith(
        f"file holds 8-bit weights: tensor {check.offending.tensor} has "
        f"{check.offending.levels} levels")
    assert small_run.variant("qat-int8").weight_levels > 16
    # A qat-w4 row whose file holds 8-bit weights is a failed row, never a 4-bit one.
    outcome = {"status": "ok", "path": int8.path, "size_bytes": int8.size_bytes,
               "sha256": int8.sha256}
    row, levels = fm._variant_files("qat-w4", outcome, small_run.variant("fp32").size_bytes)
    assert row.status == "failed" and row.error == levels.reason
    assert "file holds 8-bit weights" in row.error


def test_qat_worker_rebuilt_the_trained_network(small_run):
    check = small_run.qat["rebuild_check"]
    assert check["ok"] and check["images"] == 8
    assert 0.0 <= check["max_abs_logit_diff"] <= 1e-5
    assert small_run.qat["epochs"] == small_run.qat_epochs == 1
    assert set(small_run.qat["recipes"]) == {"fp32-ft", "qat-int8", "qat-w4"}
    assert small_run.timings["qat_s"] > 0
    job = json.loads((small_run.out_dir / "qat-job.json").read_text())
    assert set(job) == {"seed", "qat_epochs", "batch_size", "recipes", "train_indices",
                        "weights_path", "out_dir", "result_path"}  # no test images
    assert job["train_indices"] == json.loads(
        (small_run.out_dir / "job.json").read_text())["train_indices"]


def test_legacy_keras_never_reaches_the_harness_or_the_keras_3_worker(
        small_run, tensorflow_was_loaded):
    assert fm.LEGACY_KERAS not in os.environ
    env = small_run.environment
    assert env[fm.LEGACY_KERAS] == {"training_worker": None, "qat_worker": "1"}
    assert env["keras"].startswith("3.")  # the training worker ran Keras 3
    assert env["tf_keras"].startswith("2.") and env["tensorflow_model_optimization"]
    if not tensorflow_was_loaded:
        assert not {"tensorflow", "tf_keras", "tensorflow_model_optimization"} & set(
            sys.modules)


def test_calibration_images_are_train_images_none_in_the_test_split(small_run):
    indices = small_run.calibration_indices
    assert len(indices) == len(set(indices)) == SMALL["calibration_size"]
    assert all(0 <= i < 60_000 for i in indices)
    calibration = fm.calibration_set(indices)
    assert calibration.split == "train"
    ds.assert_disjoint(calibration, ds.fashion_mnist("test"))
    # The check can fail: test images "calibrating" against the test split are refused.
    with pytest.raises(UsageError, match="share"):
        ds.assert_disjoint(fm.IndexedSubset(ds.fashion_mnist("test"), [5, 7]),
                           ds.fashion_mnist("test"))
    job = json.loads((small_run.out_dir / "job.json").read_text())
    assert job["calibration_indices"] == list(indices)
    assert set(job) == {"seed", "epochs", "batch_size", "recipes", "train_indices",
                        "calibration_indices", "out_dir", "result_path"}  # no test images


def test_results_stay_in_the_callers_directory(small_run, tmp_path_factory,
                                               tensorflow_was_loaded):
    out = small_run.out_dir
    assert REPO not in out.resolve().parents
    for name in ("experiment.json", "table.txt", "predictions.npz", "worker.log",
                 "model.keras", "weights.npz", "fp32.tflite", "int8.tflite",
                 "qat-worker.log", "fp32-ft.tflite", "qat-int8.tflite", "qat-w4.tflite",
                 "weight-levels.json"):
        assert (out / name).is_file(), name
    stored = json.loads((out / "experiment.json").read_text())
    assert stored["table"] == fm.format_table(small_run)
    assert stored["training"]["weights_sha256"] == small_run.training["weights_sha256"]
    if not tensorflow_was_loaded:
        assert "tensorflow" not in sys.modules  # training and conversion ran elsewhere


def test_missing_fashion_mnist_is_one_clear_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("BENCH_FASHION_MNIST_DIR", str(tmp_path / "nowhere"))
    out = tmp_path / "run"
    with pytest.raises(UsageError, match="Fashion-MNIST is not in .*dataset-fashion-mnist"):
        fm.run_experiment(out_dir=out, **SMALL)
    assert not out.exists()  # stopped before any directory, worker or training
    assert fm.main(["--epochs", "1", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("bench: Fashion-MNIST is not in"), err


@pytest.mark.parametrize(("changes", "message"), [
    ({"epochs": 0}, "epochs must be a positive integer"),
    ({"train_size": 60_001}, "more than the 60000 train images"),
    ({"calibration_size": 0}, "calibration size must be"),
    ({"recipes": ("int8",)}, "must include fp32"),
    ({"recipes": ("fp32", "int4")}, "unknown recipe"),
    ({"test_size": 10_001}, "test size must be 1 to 10000"),
    ({"qat_epochs": 0}, "QAT epochs must be a positive integer"),
    ({"recipes": ("fp32", "qat-w2")}, "unknown recipe"),
])
def test_bad_arguments_are_refused_before_training(tmp_path, changes, message):
    _require_fashion_mnist()
    out = tmp_path / "run"
    with pytest.raises(UsageError, match=message):
        fm.run_experiment(out_dir=out, **{**SMALL, **changes})
    assert not out.exists()


def test_host_module_does_not_import_tensorflow():
    import subprocess

    code = ("import sys, bench.experiments.fashion_mnist, bench.measure.proportions; "
            "print('tensorflow' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == "False"


@pytest.mark.slow
def test_same_seed_gives_the_same_weights_and_files(small_run, tmp_path):
    """Bit-reproducible on one machine and software stack (see the worker's docstring for
    what is not): the CI-sized run again, with its seed, trains identical weights and
    writes identical .tflite bytes, hence identical predictions. The full experiment was
    checked the same way by hand."""
    again = fm.run_experiment(out_dir=tmp_path / "again", test_size=TEST_SIZE,
                              latency_runs=5, **SMALL)
    assert again.training["weights_sha256"] == small_run.training["weights_sha256"]
    assert [v.sha256 for v in again.variants] == [v.sha256 for v in small_run.variants]
    assert [v.correct for v in again.variants] == [v.correct for v in small_run.variants]


def test_bench_experiment_passes_its_options_through(tmp_path, capsys):
    from bench.cli import main

    assert main(["experiment", "fashion-mnist", "--epochs", "0"]) == 2
    assert "epochs must be a positive integer" in capsys.readouterr().err
