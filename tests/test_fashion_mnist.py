"""The Fashion-MNIST quantization experiment, CI-sized: 1 epoch on 8,192 train images (64
steps: a model well above chance, so the comparisons have discordant images), 64 calibration
images, 2,000 test images: about 20 s, most of it TensorFlow starting, and as much again for
the determinism check (marked slow), which runs it a second time.

What must hold whatever the accuracy of so short a training: every recipe in the table with
proportions in [0, 1] and intervals around their estimates; paired counts that add up; the
int8 files really int8 (read from the flatbuffer, not trusted from the recipe name);
calibration images from the train split and none of them in the test split; results only
under the caller's directory; no TensorFlow in the harness process; and a missing data set
stopped with one clear line before anything is trained.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from bench.data import datasets as ds
from bench.errors import UsageError
from bench.experiments import fashion_mnist as fm
from bench.zoo.inspect import inspect_tflite
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
    for recipe in ("int8", "int8-per-tensor"):
        info = inspect_tflite(small_run.variant(recipe).path)
        assert [dtype for _, dtype, _ in info.inputs + info.outputs] == ["int8", "int8"]
        assert small_run.variant(recipe).size_bytes < small_run.variant("fp32").size_bytes


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
                 "model.keras", "fp32.tflite", "int8.tflite"):
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
