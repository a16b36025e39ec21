"""A user's own Keras file or SavedModel goes through the recipes like a zoo model."""

from __future__ import annotations

import os

import pytest

from bench.zoo.build import BuildOptions, VariantBuilder
from bench.zoo.cache import VariantCache
from bench.zoo.inspect import inspect_tflite
from bench.zoo.names import parse_model


@pytest.fixture(scope="module")
def user_files(tmp_path_factory):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import tensorflow as tf

    from bench.zoo.architectures import ARCHITECTURES

    folder = tmp_path_factory.mktemp("user")
    model = ARCHITECTURES["tiny_cnn"].build(16, None, seed=7)
    keras_path = folder / "mine.keras"
    model.save(keras_path)
    saved = folder / "mine_saved"
    tf.saved_model.save(model, str(saved))
    broken = folder / "broken.keras"
    broken.write_bytes(b"not a zip archive")
    del keras
    return keras_path, saved, broken


def build(tmp_path, path, recipes):
    builder = VariantBuilder(VariantCache(tmp_path / "cache"), BuildOptions(calibration_size=4))
    return builder.build([parse_model(str(path))], recipes)


def test_keras_file_through_recipes(tmp_path, user_files):
    keras_path, _, _ = user_files
    built = build(tmp_path, keras_path, ["fp32", "int8"])
    assert {v.status for v in built.values()} == {"ok"}
    info = inspect_tflite(built["mine", "int8"].path)
    assert info.inputs[0] == (info.inputs[0][0], "int8", (1, 16, 16, 3))
    check = built["mine", "int8"].check
    agreeing = check["top1_agreement"] * check["inputs"]
    assert check["inputs"] == 8 and agreeing == round(agreeing)  # a count of 8 inputs
    assert check["snr_db"] > 10  # int8 reproduces this float model's outputs, roughly
    assert not built["mine", "fp32"].random_weights
    assert built["mine", "fp32"].source == str(keras_path.resolve())


def test_saved_model_directory_through_recipes(tmp_path, user_files):
    _, saved, _ = user_files
    built = build(tmp_path, saved, ["fp32", "dynamic"])
    assert {v.status for v in built.values()} == {"ok"}, {k: v.error for k, v in built.items()}
    assert inspect_tflite(built["mine_saved", "dynamic"].path).inputs[0][1] == "float32"


def test_broken_keras_file_fails_its_variants_with_a_reason(tmp_path, user_files):
    _, _, broken = user_files
    built = build(tmp_path, broken, ["fp32", "int8"])
    assert {v.status for v in built.values()} == {"failed"}
    assert all("cannot load the model" in v.error for v in built.values())
