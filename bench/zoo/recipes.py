"""Quantization recipes: how a float model becomes each variant the paper studies.

Each recipe is a configuration of TFLiteConverter. The descriptions quote what the
whitepaper (Krishnamoorthi 2018, arXiv 1806.08342) says about the scheme, so the
table a user reads can be checked against the claim it tests.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from bench.errors import UsageError

RECIPES_VERSION = 1
DEFAULT_CALIBRATION_SIZE = 32
CALIBRATION_SEED = 1806  # the paper's arXiv number; any fixed value would do


@dataclass(frozen=True)
class Recipe:
    name: str
    summary: str
    paper: str
    calibrated: bool  # needs a representative dataset
    integer_io: str | None  # dtype of inputs/outputs when not kept float, e.g. "int8"


RECIPES: dict[str, Recipe] = {
    r.name: r
    for r in (
        Recipe("fp32", "float32 weights and activations (the reference)",
               "baseline for every accuracy, size and speed comparison", False, None),
        Recipe("fp16", "float16 weights, float32 compute",
               "not studied in the paper; halves the size, the usual GPU format", False, None),
        Recipe("dynamic", "int8 weights (per-channel), float activations; weights dequantized "
               "or int8 kernels with on-the-fly activation quantization",
               "claim 2: weight-only int8 makes models 4x smaller without int8 arithmetic",
               False, None),
        Recipe("int8", "int8 per-channel weights, int8 per-tensor activations, int8 in/out",
               "claims 1, 3, 5: the recommended post-training scheme, within 2% of float, "
               "2-3x faster on CPUs", True, "int8"),
        Recipe("int8-per-tensor", "int8 per-tensor (per-layer) weights and activations",
               "the paper's comparison point: per-layer weights lose more accuracy than "
               "per-channel, most on depthwise convolutions (MobileNets)", True, "int8"),
        Recipe("int16x8", "16-bit activations, 8-bit weights",
               "claim 5: 16 bits matter; closes most of the gap left by 8-bit activations",
               True, "int16"),
    )
}
ALL_RECIPES = tuple(RECIPES)


def parse_recipes(text: str | Iterable[str]) -> list[str]:
    names = [n.strip() for n in (text.split(",") if isinstance(text, str) else text)]
    names = [n for n in names if n]
    unknown = [n for n in names if n not in RECIPES]
    if unknown:
        raise UsageError(f"unknown recipe(s) {', '.join(unknown)}; known: {', '.join(RECIPES)}")
    if not names:
        raise UsageError("no recipe given; known: " + ", ".join(RECIPES))
    return list(dict.fromkeys(names))


UNIFORM = "uniform[-1,1]"  # random-weight models: their input range, nothing to learn from
NATURAL = "skimage-natural"  # trained ImageNet models: real photographs (bench.data)
FOLDER_PREFIX = "folder:"  # then the user's folder and a digest of its listing: "PATH|DIGEST"


def folder_of(source: str) -> str:
    """The folder path of a FOLDER_PREFIX calibration source."""
    return source[len(FOLDER_PREFIX):].rsplit("|", 1)[0]


def recipe_key(name: str, calibration_size: int, float_io: bool,
               calibration_data: str = UNIFORM) -> dict:
    """The recipe's part of a variant's cache key: only options that change its bytes."""
    recipe = RECIPES[name]
    key: dict[str, Any] = {"recipe": name, "recipes_version": RECIPES_VERSION}
    if recipe.calibrated:
        key["calibration"] = {"size": calibration_size, "seed": CALIBRATION_SEED,
                              "data": calibration_data}
    if recipe.integer_io:
        key["float_io"] = float_io
    return key


def calibration_data(input_shape: tuple[int, ...], size: int, source: str = UNIFORM,
                     preprocessing: str | None = None) -> Callable[[], Iterable]:
    """A seeded representative dataset: uniform [-1, 1] (the random-weight models' input
    range) or, for trained weights, deterministic crops of natural photographs that no
    evaluation ever uses (`bench.data.datasets`), or a seeded draw from the user's folder."""
    import numpy as np

    shape = tuple(1 if (d is None or d < 1) else int(d) for d in input_shape)
    if source.startswith(FOLDER_PREFIX):
        from bench.data.datasets import dataset

        images = dataset(folder_of(source), input_shape=shape,
                         **({"preprocessing": preprocessing} if preprocessing else {}))
        picks = np.sort(np.random.default_rng(CALIBRATION_SEED).choice(
            len(images), size=min(size, len(images)), replace=False))

        def folder():
            for index in picks:
                inputs, _ = images.slice(int(index), int(index) + 1)
                yield [inputs.astype(np.float32)]

        return folder
    if source == NATURAL:
        from bench.data.datasets import skimage_natural

        images = skimage_natural(count=size, input_size=shape[1], seed=CALIBRATION_SEED,
                                 **({"preprocessing": preprocessing} if preprocessing else {}))

        def natural():
            for inputs, _ in images.batches(1):
                yield [inputs.astype(np.float32)]

        return natural

    def generate():
        rng = np.random.default_rng(CALIBRATION_SEED)
        for _ in range(size):
            yield [rng.uniform(-1.0, 1.0, size=shape).astype(np.float32)]

    return generate


def configure(converter, name: str, input_shape, calibration_size: int, float_io: bool,
              calibration_source: str = UNIFORM, preprocessing: str | None = None) -> None:
    """Apply recipe `name` to a tf.lite.TFLiteConverter."""
    import tensorflow as tf

    recipe = RECIPES[name]
    if name == "fp32":
        return
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if name == "fp16":
        converter.target_spec.supported_types = [tf.float16]
        return
    if name == "dynamic":
        return
    converter.representative_dataset = calibration_data(input_shape, calibration_size,
                                                        calibration_source, preprocessing)
    if name == "int16x8":
        converter.target_spec.supported_ops = [
            tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8
        ]
    else:
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if name == "int8-per-tensor":
        converter._experimental_disable_per_channel = True
    if not float_io and recipe.integer_io:
        io_type = getattr(tf, recipe.integer_io)
        converter.inference_input_type = io_type
        converter.inference_output_type = io_type
