"""Each recipe really produces what it claims, and conversions are byte-reproducible."""

from __future__ import annotations

import subprocess
import sys

import pytest

from bench.zoo.inspect import inspect_tflite
from tests.conftest import REPO


def conv_weights(info, op):
    return [w for w in info.weights if w.op == op]


def test_fp32_keeps_float_weights_and_io(tiny_variants):
    info = inspect_tflite(tiny_variants["fp32"].path)
    assert {w.dtype for w in info.weights} == {"float32"}
    assert [dtype for _, dtype, _ in info.inputs + info.outputs] == ["float32", "float32"]


def test_fp16_stores_float16_weights(tiny_variants):
    info = inspect_tflite(tiny_variants["fp16"].path)
    assert {w.dtype for w in info.weights} == {"float16"}
    assert "DEQUANTIZE" in info.ops
    assert info.inputs[0][1] == "float32"


def test_dynamic_quantizes_large_weights_and_keeps_float_activations(tiny_variants):
    info = inspect_tflite(tiny_variants["dynamic"].path)
    large = [w for w in info.weights if w.dtype == "int8"]
    assert large and all(w.hybrid for w in large)  # int8 weights feeding float ops
    assert info.inputs[0][1] == "float32" and info.outputs[0][1] == "float32"
    assert "QUANTIZE" not in info.ops  # activations never become integers


def test_int8_is_per_channel_with_int8_io(tiny_variants):
    info = inspect_tflite(tiny_variants["int8"].path)
    assert info.inputs[0][1] == "int8" and info.outputs[0][1] == "int8"
    convs = conv_weights(info, "CONV_2D")
    assert convs and all(w.dtype == "int8" for w in convs)
    for weight in convs:  # filter shape [out_channels, kh, kw, in]: one scale per out channel
        assert weight.n_scales == weight.shape[0] > 1
    assert info.weight_scheme.startswith("int8 per-channel")


def test_int8_per_tensor_has_one_scale_per_tensor(tiny_variants):
    info = inspect_tflite(tiny_variants["int8-per-tensor"].path)
    assert {w.dtype for w in info.weights} == {"int8"}
    assert {w.n_scales for w in info.weights} == {1}
    assert info.weight_scheme == "int8 per-tensor"


def test_int16x8_has_int16_activations_and_int8_weights(tiny_variants):
    info = inspect_tflite(tiny_variants["int16x8"].path)
    assert info.inputs[0][1] == "int16" and info.outputs[0][1] == "int16"
    assert {w.dtype for w in conv_weights(info, "CONV_2D")} == {"int8"}


def test_output_check_is_recorded_against_fp32(tiny_variants):
    assert tiny_variants["fp32"].check is None
    for recipe in ("fp16", "int8", "int8-per-tensor", "int16x8"):
        check = tiny_variants[recipe].check
        assert 0.0 <= check["top1_agreement"] <= 1.0 and check["snr_db"] > 10, (recipe, check)
    # fp16 is far closer to fp32 than int8 is: the check measures fidelity, not a constant
    assert tiny_variants["fp16"].check["snr_db"] > tiny_variants["int8"].check["snr_db"] + 10


def test_float_io_option_keeps_float_inputs(model_cache):
    from bench.zoo.build import BuildOptions, VariantBuilder
    from bench.zoo.cache import VariantCache
    from bench.zoo.names import parse_model

    built = VariantBuilder(VariantCache(model_cache), BuildOptions(8, float_io=True)).build(
        [parse_model("tiny_cnn")], ["int8"])
    info = inspect_tflite(built["tiny_cnn", "int8"].path)
    assert info.inputs[0][1] == "float32" and "QUANTIZE" in info.ops


def test_second_build_converts_nothing(model_cache, tiny_variants):
    from bench.zoo.build import BuildOptions, VariantBuilder
    from bench.zoo.cache import VariantCache
    from bench.zoo.names import parse_model

    builder = VariantBuilder(VariantCache(model_cache), BuildOptions(calibration_size=8))
    again = builder.build([parse_model("tiny_cnn")], list(tiny_variants))
    assert builder.converted == 0
    assert all(v.cached for v in again.values())
    assert {r: v.sha256 for (_, r), v in again.items()} == {
        r: v.sha256 for r, v in tiny_variants.items()}


BUILD_SCRIPT = """
import sys
from pathlib import Path
from bench.zoo.build import BuildOptions, VariantBuilder
from bench.zoo.cache import VariantCache
from bench.zoo.names import parse_model
built = VariantBuilder(VariantCache(Path(sys.argv[1])), BuildOptions(8)).build(
    [parse_model(sys.argv[2])], sys.argv[3].split(","))
for (model, recipe), v in sorted(built.items()):
    print(recipe, v.status, v.sha256)
"""


@pytest.mark.slow
@pytest.mark.parametrize("model", ["tiny_cnn", "mobilenet_v1@96,alpha=0.25"])
def test_same_name_gives_byte_identical_files(tmp_path, model):
    """Two independent processes, two empty caches: the same sha256 for every recipe."""
    outputs = []
    for attempt in ("a", "b"):
        done = subprocess.run(
            [sys.executable, "-c", BUILD_SCRIPT, str(tmp_path / attempt), model,
             "fp32,dynamic,int8,int8-per-tensor"],
            capture_output=True, text=True, cwd=REPO, timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]
        outputs.append(done.stdout)
    assert outputs[0] == outputs[1]
    assert outputs[0].count(" ok ") == 4


def test_each_variant_is_inspected_once_and_cached(tiny_variants, model_cache, monkeypatch):
    """The built file's ops, MACs and weight storage travel with the variant and its cache
    entry, so later runs (and reports) never read the file again."""
    import bench.zoo.inspect
    from bench.zoo.build import BuildOptions, VariantBuilder
    from bench.zoo.cache import VariantCache
    from bench.zoo.names import parse_model

    int8 = tiny_variants["int8"]
    assert int8.ops and int8.macs and int8.weight_scheme == "int8 per-channel"

    def refuse(path):
        raise AssertionError(f"{path} inspected again")

    monkeypatch.setattr(bench.zoo.inspect, "inspect_tflite", refuse)
    again = VariantBuilder(VariantCache(model_cache), BuildOptions(calibration_size=8)).build(
        [parse_model("tiny_cnn")], ["int8"])[("tiny_cnn", "int8")]
    assert again.cached and (again.ops, again.macs) == (int8.ops, int8.macs)
