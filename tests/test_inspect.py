"""Tests for bench.zoo.inspect on a tiny CNN converted with each quantization recipe."""

from __future__ import annotations

import contextlib
import json
import os
import random
from collections.abc import Iterator
from pathlib import Path

os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from bench.errors import ModelError  # noqa: E402
from bench.zoo.inspect import ModelInfo, WeightInfo, format_report, inspect_tflite  # noqa: E402

RECIPES = ("fp32", "fp16", "dynamic", "int8", "int8_per_tensor")
CONV_OPS = {"CONV_2D", "DEPTHWISE_CONV_2D"}

# The tiny model, layer by layer: output shape and MACs per output element.
#   conv 3x3/2, 16 ch    -> 16x16x16, 3*3*3 = 27
#   depthwise 3x3        -> 16x16x16, 3*3 = 9
#   conv 1x1, 32 ch      -> 16x16x32, 16
#   conv 3x3/2, 32 ch    -> 8x8x32,   3*3*32 = 288
#   mean -> dense 64     -> 64,       32
#   dense 10             -> 10,       64
EXPECTED_MACS = (
    16 * 16 * 16 * 27 + 16 * 16 * 16 * 9 + 16 * 16 * 32 * 16 + 8 * 8 * 32 * 288 + 64 * 32 + 10 * 64
)
CORRUPT_CASES = (
    "empty",
    "short",
    "random",
    "random_with_identifier",
    "truncated_header",
    "truncated_half",
    "truncated_tail",
)
# The dynamic-range recipe leaves tensors below this many elements in float32.
DYNAMIC_RANGE_MIN_ELEMENTS = 1024


def _tiny_model() -> keras.Model:
    keras.utils.set_random_seed(0)
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(16, 3, strides=2, padding="same", activation="relu")(inputs)
    x = keras.layers.DepthwiseConv2D(3, padding="same", activation="relu")(x)
    x = keras.layers.Conv2D(32, 1, activation="relu")(x)
    x = keras.layers.Conv2D(32, 3, strides=2, padding="same", activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dense(64, activation="relu")(x)
    return keras.Model(inputs, keras.layers.Dense(10)(x))


def _representative() -> Iterator[list[np.ndarray]]:
    rng = np.random.default_rng(0)
    for _ in range(4):
        yield [rng.uniform(-1, 1, (1, 32, 32, 3)).astype(np.float32)]


def _convert(model: keras.Model, recipe: str) -> bytes:
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if recipe != "fp32":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if recipe == "fp16":
        converter.target_spec.supported_types = [tf.float16]
    if recipe.startswith("int8"):
        converter.representative_dataset = _representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    if recipe == "int8_per_tensor":
        converter._experimental_disable_per_channel = True
    return converter.convert()


@pytest.fixture(scope="module")
def paths(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Convert once per module: conversion dominates the run time."""
    model = _tiny_model()
    root = tmp_path_factory.mktemp("inspect")
    out = {}
    for recipe in RECIPES:
        out[recipe] = root / f"tiny_{recipe}.tflite"
        out[recipe].write_bytes(_convert(model, recipe))
    return out


@pytest.fixture(scope="module")
def infos(paths: dict[str, Path]) -> dict[str, ModelInfo]:
    return {recipe: inspect_tflite(path) for recipe, path in paths.items()}


def _conv_weights(info: ModelInfo) -> list[WeightInfo]:
    return [w for w in info.weights if w.op == "CONV_2D"]


def test_fp32(infos: dict[str, ModelInfo], paths: dict[str, Path]) -> None:
    info = infos["fp32"]
    assert info.size_bytes == paths["fp32"].stat().st_size
    assert len(info.sha256) == 64
    assert info.ops["CONV_2D"] == 3
    assert info.ops["DEPTHWISE_CONV_2D"] == 1
    assert info.ops["FULLY_CONNECTED"] == 2
    assert len(info.weights) == 6
    assert all(w.dtype == "float32" and w.n_scales == 0 for w in info.weights)
    assert info.inputs == [(info.inputs[0][0], "float32", (1, 32, 32, 3))]
    assert [(dtype, shape) for _, dtype, shape in info.outputs] == [("float32", (1, 10))]
    assert info.weight_scheme == "float32"


def test_fp16_weights_are_traced_through_dequantize(infos: dict[str, ModelInfo]) -> None:
    info = infos["fp16"]
    assert "DEQUANTIZE" in info.ops
    assert len(info.weights) == 6
    assert all(w.dtype == "float16" and w.n_scales == 0 for w in info.weights)
    assert info.tensor_dtypes["float16"] >= 6
    assert info.inputs[0][1] == "float32"
    assert info.weight_scheme == "float16"


def test_dynamic_range(infos: dict[str, ModelInfo]) -> None:
    info = infos["dynamic"]
    large = [w for w in info.weights if np.prod(w.shape) >= DYNAMIC_RANGE_MIN_ELEMENTS]
    assert len(large) >= 2  # the 3x3x32 conv and the first dense layer
    assert all(w.dtype == "int8" and w.n_scales >= 1 and w.hybrid for w in large)
    assert info.inputs[0][1] == "float32"
    assert info.outputs[0][1] == "float32"
    assert "dynamic range" in info.weight_scheme


def test_full_int8_per_channel(infos: dict[str, ModelInfo]) -> None:
    info = infos["int8"]
    convs = _conv_weights(info)
    assert len(convs) == 3
    for w in convs:
        assert w.dtype == "int8"
        assert w.n_scales == w.shape[0]  # filter [out_c, kh, kw, in_c]
        assert w.quantized_dimension == 0
        assert not w.hybrid
    assert info.inputs[0][1] == "int8"
    assert info.outputs[0][1] == "int8"
    assert info.weight_scheme == "int8 per-channel"


def test_full_int8_per_tensor(infos: dict[str, ModelInfo]) -> None:
    info = infos["int8_per_tensor"]
    assert all(w.dtype == "int8" and w.n_scales == 1 for w in _conv_weights(info))
    assert info.inputs[0][1] == "int8"
    assert info.weight_scheme == "int8 per-tensor"


def test_schemes_are_distinct(infos: dict[str, ModelInfo]) -> None:
    schemes = [info.weight_scheme for info in infos.values()]
    assert len(set(schemes)) == len(schemes), schemes


def test_macs_match_hand_count(infos: dict[str, ModelInfo]) -> None:
    # Quantization must not change the arithmetic count.
    assert {info.macs for info in infos.values()} == {EXPECTED_MACS}


def test_to_dict_is_json(infos: dict[str, ModelInfo]) -> None:
    d = json.loads(json.dumps(infos["int8"].to_dict()))
    assert d["weight_scheme"] == "int8 per-channel"
    assert d["macs"] == EXPECTED_MACS
    assert d["inputs"][0][2] == [1, 32, 32, 3]


def test_format_report(infos: dict[str, ModelInfo]) -> None:
    fp32 = infos["fp32"]
    info = infos["int8"]
    text = format_report(info, fp32_size_bytes=fp32.size_bytes)
    ratio = fp32.size_bytes / info.size_bytes
    assert f"{ratio:.2f}x smaller than fp32" in text
    assert f"{info.size_bytes:,} bytes" in text
    assert info.sha256[:12] in text
    assert "int8 per-channel" in text
    assert "CONV_2D" in text and "[1, 32, 32, 3]" in text
    assert "871.0 K MACs per inference" in text
    assert "smaller than fp32" not in format_report(info)


def test_format_report_caps_weight_lines(infos: dict[str, ModelInfo]) -> None:
    text = format_report(infos["fp32"], max_weights=2)
    assert "... and 4 more" in text


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.tflite"
    with pytest.raises(ModelError, match="not found") as e:
        inspect_tflite(path)
    assert str(path) in str(e.value)


def test_directory_is_not_a_model(tmp_path: Path) -> None:
    with pytest.raises(ModelError) as e:
        inspect_tflite(tmp_path)
    assert str(tmp_path) in str(e.value)


def _corrupt_cases(real: bytes) -> dict[str, bytes]:
    rng = random.Random(0)
    garbage_with_id = bytearray(rng.randbytes(4096))
    garbage_with_id[4:8] = b"TFL3"
    return {
        "empty": b"",
        "short": b"TFL",
        "random": rng.randbytes(4096),
        "random_with_identifier": bytes(garbage_with_id),
        "truncated_header": real[:64],
        "truncated_half": real[: len(real) // 2],
        "truncated_tail": real[:-1],
    }


@pytest.mark.parametrize("case", CORRUPT_CASES)
def test_corrupt_file(case: str, paths: dict[str, Path], tmp_path: Path) -> None:
    data = _corrupt_cases(paths["fp32"].read_bytes())[case]
    path = tmp_path / f"{case}.tflite"
    path.write_bytes(data)
    with pytest.raises(ModelError, match="not a valid .tflite model") as e:
        inspect_tflite(path)
    message = str(e.value)
    assert str(path) in message
    assert "\n" not in message


def test_bit_flips_never_escape_as_raw_errors(paths: dict[str, Path], tmp_path: Path) -> None:
    """Flipped bytes may still parse, but must never raise anything but ModelError."""
    real = paths["int8"].read_bytes()
    rng = random.Random(1)
    path = tmp_path / "flipped.tflite"
    for _ in range(200):
        data = bytearray(real)
        for _ in range(4):
            data[rng.randrange(len(data))] = rng.randrange(256)
        path.write_bytes(bytes(data))
        with contextlib.suppress(ModelError):
            inspect_tflite(path)
