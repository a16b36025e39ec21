"""The QAT recipes' pieces that need no training: recipe resolution (a QAT recipe brings its
fp32-ft baseline), the level checker's arithmetic and INT4 unpacking on hand-made data,
the workers' environments (TF_USE_LEGACY_KERAS for the QAT worker only), and the QAT
worker's weight loading by layer name. The trained run's QAT rows are checked in
`tests/test_fashion_mnist.py`, on the one CI-sized run both share.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys

import numpy as np
import pytest

from bench.errors import UsageError
from bench.experiments import fashion_mnist as fm
from bench.experiments import qat
from bench.zoo.recipes import RECIPES
from bench.zoo.weight_levels import LevelCheck, TensorLevels, bits_phrase, unpack_int4


def test_a_qat_recipe_brings_its_baseline():
    assert qat.with_baseline(["fp32", "qat-w4"]) == ("fp32", "fp32-ft", "qat-w4")
    assert qat.with_baseline(["fp32", "qat-int8", "int8"]) == ("fp32", "fp32-ft", "qat-int8",
                                                               "int8")
    assert qat.with_baseline(["fp32", "qat-w4", "fp32-ft"]) == ("fp32", "qat-w4", "fp32-ft")
    assert qat.with_baseline(["fp32", "int8", "int8"]) == ("fp32", "int8")
    assert qat.with_baseline(["fp32", "fp32-ft"]) == ("fp32", "fp32-ft")


def test_qat_recipes_are_the_experiments_not_the_zoos():
    assert not set(qat.QAT_RECIPES) & set(RECIPES)
    assert set(fm.KNOWN_RECIPES) == set(RECIPES) | set(qat.QAT_RECIPES)
    assert qat.QUANTIZED == ("qat-int8", "qat-w4")
    assert qat.max_weight_levels("qat-w4") == 16
    assert qat.max_weight_levels("qat-int8") is None  # 8 bits: nothing to count against
    assert qat.max_weight_levels("int8") is None


def test_qat_arguments_are_checked_before_anything_runs():
    check = dict(epochs=1, train_size=10, calibration_size=10, threads=1, batch_size=8,
                 test_size=None, total_train=60_000, total_test=10_000)
    fm._check_arguments(**check, recipes=("fp32", "fp32-ft", "qat-int8", "qat-w4"))
    with pytest.raises(UsageError, match="unknown recipe.*qat-w2.*known: .*qat-w4"):
        fm._check_arguments(**check, recipes=("fp32", "qat-w2"))
    with pytest.raises(UsageError, match="QAT epochs must be a positive integer"):
        fm._check_arguments(**check, recipes=("fp32", "qat-int8"), qat_epochs=0)
    assert fm.build_parser().parse_args([]).qat_epochs == fm.DEFAULT_QAT_EPOCHS == 1
    assert fm.build_parser().parse_args(["--qat-epochs", "2"]).qat_epochs == 2


def _pack_int4(values: list[int]) -> np.ndarray:
    """TFLite's INT4 layout, written independently of the reader: element 2k in the low
    nibble of byte k, element 2k+1 in the high nibble, two's complement."""
    nibbles = [v & 0x0F for v in values] + [0] * (len(values) % 2)
    return np.array([lo | (hi << 4) for lo, hi in zip(nibbles[::2], nibbles[1::2],
                                                       strict=True)], dtype=np.uint8)


@pytest.mark.parametrize("values", [list(range(-8, 8)), [3, -1, 7], [-8], [0, 0, 5, -5, 1]])
def test_int4_unpacking(values):
    packed = _pack_int4(values)
    assert len(packed) == math.ceil(len(values) / 2)
    assert unpack_int4(packed, len(values)).tolist() == values
    with pytest.raises(ValueError, match="need"):
        unpack_int4(packed, len(values) + 2)


def _tensor(name: str, dtype: str, count: int, levels: int) -> TensorLevels:
    stored = math.ceil(count / 2) if dtype == "int4" else count * (4 if dtype == "float32"
                                                                   else 1)
    return TensorLevels(name, "CONV_2D", dtype, (count,), count, stored, levels, -7.0, 7.0)


def test_packed_size_counts_4_bit_tensors_stored_as_int8_at_half_a_byte():
    tensors = (_tensor("a", "int8", 1000, 15), _tensor("b", "int8", 101, 16))
    check = LevelCheck("m.tflite", 5000, 16, tensors)
    assert check.ok and check.reason is None and check.most_levels == 16
    assert check.packed_bytes == 5000 - 1000 - 101 + 500 + 51
    assert check.packed_bytes < check.file_bytes
    # Already INT4 in the file: nothing left to pack.
    stored = LevelCheck("m.tflite", 3000, 16, (_tensor("a", "int4", 1000, 15),))
    assert stored.ok and stored.packed_bytes == stored.file_bytes


def test_a_tensor_over_budget_fails_the_check_with_its_name():
    tensors = (_tensor("fine", "int8", 100, 15), _tensor("conv/kernel", "int8", 900, 200),
               _tensor("dense", "int8", 640, 31))
    check = LevelCheck("m.tflite", 5000, 16, tensors)
    assert not check.ok and check.offending is tensors[1]
    assert check.reason == ("file holds 8-bit weights: tensor conv/kernel has 200 levels "
                            "(at most 16 allowed)")
    assert "32-bit" not in check.reason
    floats = LevelCheck("f.tflite", 9000, 16, (_tensor("w", "float32", 500, 480),))
    assert floats.reason.startswith("file holds float32 weights: tensor w has 480 levels")
    assert not LevelCheck("empty.tflite", 100, 16, ()).ok  # nothing checked is not a pass
    assert [bits_phrase(d) for d in ("int8", "uint8", "int4", "float16")] == [
        "8-bit", "8-bit", "4-bit", "float16"]


def test_legacy_keras_is_set_for_the_qat_worker_only(monkeypatch):
    monkeypatch.setenv(fm.LEGACY_KERAS, "1")  # as if the user's shell had it
    keras3 = fm.worker_environment(legacy_keras=False)
    legacy = fm.worker_environment(legacy_keras=True)
    assert fm.LEGACY_KERAS not in keras3
    assert legacy[fm.LEGACY_KERAS] == "1"
    assert os.environ[fm.LEGACY_KERAS] == "1"  # the caller's environment untouched
    monkeypatch.delenv(fm.LEGACY_KERAS)
    fm.worker_environment(legacy_keras=True)
    assert fm.LEGACY_KERAS not in os.environ


def test_qat_modules_do_not_import_tensorflow():
    code = ("import sys, bench.experiments.qat, bench.experiments.qat_worker, "
            "bench.zoo.weight_levels, bench.experiments.fashion_mnist; "
            "print(sorted(m for m in ('tensorflow', 'tf_keras', 'keras', "
            "'tensorflow_model_optimization') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == "[]"


class _Layer:
    def __init__(self, name: str, shapes: list[tuple[int, ...]]) -> None:
        self.name = name
        self.weights = [np.zeros(s, dtype=np.float32) for s in shapes]

    def get_weights(self) -> list[np.ndarray]:
        return list(self.weights)

    def set_weights(self, arrays: list[np.ndarray]) -> None:
        self.weights = list(arrays)


class _Model:
    def __init__(self, layers: list[_Layer]) -> None:
        self.layers = layers


class _Saved(dict):
    @property
    def files(self) -> list[str]:
        return list(self)


def test_weights_are_loaded_by_layer_name_in_each_layers_order():
    from bench.experiments.qat_worker import load_layer_weights

    def model() -> _Model:
        return _Model([_Layer("image", []), _Layer("conv", [(3, 3, 1, 2)]),
                       _Layer("bn", [(2,), (2,), (2,), (2,)])])

    saved = _Saved({"conv:0": np.ones((3, 3, 1, 2), np.float32),
                    **{f"bn:{i}": np.full(2, i, np.float32) for i in range(4)},
                    "check_indices": np.arange(2), "check_logits": np.zeros((2, 10))})
    loaded = model()
    load_layer_weights(loaded, saved)
    assert [w[0] for w in loaded.layers[2].weights] == [0, 1, 2, 3]  # gamma, beta, mean, var
    assert loaded.layers[1].weights[0].sum() == 18
    with pytest.raises(ValueError, match="layer conv: shape"):
        load_layer_weights(model(), _Saved({**saved, "conv:0": np.ones((3, 3, 2, 1))}))
    with pytest.raises(ValueError, match="layer bn has 4 weights, the trained model saved 3"):
        load_layer_weights(model(), _Saved({k: v for k, v in saved.items() if k != "bn:3"}))
    with pytest.raises(ValueError, match="not in the model: extra"):
        load_layer_weights(model(), _Saved({**saved, "extra:0": np.ones(1)}))
