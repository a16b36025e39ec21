"""Quantization recipes: how a float model becomes each variant the paper studies.

Each recipe is a configuration of TFLiteConverter. The descriptions quote what the
whitepaper (Krishnamoorthi 2018, arXiv 1806.08342) says about the scheme, so the
table a user reads can be checked against the claim it tests.

The quantization-aware-training recipes (`fp32-ft`, `qat-int8`, `qat-w4`: defined once in
`bench.experiments.qat`) are `bench run` recipes too, but no converter setting: they need
labelled training data (`--train-data`) and a training loop, which `bench.zoo.qat_worker`
runs. They are never in the default run (DEFAULT_RECIPES: post-training only).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from bench.errors import UsageError
from bench.experiments.qat import QAT_RECIPES, with_baseline

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
DEFAULT_RECIPES = tuple(RECIPES)  # post-training only: what a run without --recipes builds
TRAINING_RECIPES = tuple(QAT_RECIPES)  # need --train-data: fine-tuned, then converted
ALL_RECIPES = DEFAULT_RECIPES + TRAINING_RECIPES  # every recipe `bench run` knows

# The quantization-aware training of `bench run` (bench.zoo.qat_worker): part of each QAT
# variant's cache key with QAT_VERSION, which changes whenever the fine-tuning or the
# conversion changes what a file holds. Adam with a cosine decay from QAT_LEARNING_RATE to 0
# over the run: a tenth of the Fashion-MNIST experiment's step, since a trained ImageNet
# network fine-tuned on a small folder is easily pulled away from its weights.
QAT_VERSION = 1
QAT_SEED = 1806
QAT_BATCH_SIZE = 32
QAT_LEARNING_RATE = 1e-4
QAT_OPTIMIZER = "adam-cosine"
DEFAULT_QAT_EPOCHS = 1


def is_training_recipe(name: str) -> bool:
    """A recipe made by fine-tuning on labelled data (fp32-ft, qat-int8, qat-w4)."""
    return name in QAT_RECIPES


def parse_recipes(text: str | Iterable[str]) -> list[str]:
    """Recipe names, each once; asking for qat-int8 or qat-w4 brings fp32-ft, their fair
    float baseline (fine-tuned the same way, no fake quantization)."""
    names = [n.strip() for n in (text.split(",") if isinstance(text, str) else text)]
    names = [n for n in names if n]
    unknown = [n for n in names if n not in ALL_RECIPES]
    if unknown:
        raise UsageError(f"unknown recipe(s) {', '.join(unknown)}; known: "
                         f"{', '.join(ALL_RECIPES)}")
    if not names:
        raise UsageError("no recipe given; known: " + ", ".join(ALL_RECIPES))
    return list(with_baseline(names))


def training_needed(recipes: Iterable[str]) -> str | None:
    """The recipe to name when saying that training data is needed: the first QAT recipe
    (not the fp32-ft it brought), else fp32-ft; None when none needs it."""
    needing = [r for r in recipes if is_training_recipe(r)]
    return next((r for r in needing if QAT_RECIPES[r].weight_bits is not None),
                needing[0] if needing else None)


def qat_settings(name: str) -> dict:
    """What a QAT recipe does, as its cache key says it (bits, optimizer, seed, version)."""
    recipe = QAT_RECIPES[name]
    return {"version": QAT_VERSION, "weight_bits": recipe.weight_bits,
            "activation_bits": recipe.activation_bits, "optimizer": QAT_OPTIMIZER,
            "learning_rate": QAT_LEARNING_RATE, "batch_size": QAT_BATCH_SIZE,
            "seed": QAT_SEED}


UNIFORM = "uniform[-1,1]"  # random-weight models: their input range, nothing to learn from
NATURAL = "skimage-natural"  # trained ImageNet models: real photographs (bench.data)
FOLDER_PREFIX = "folder:"  # then the user's folder and a digest of its listing: "PATH|DIGEST"


def folder_of(source: str) -> str:
    """The folder path of a FOLDER_PREFIX calibration source."""
    return source[len(FOLDER_PREFIX):].rsplit("|", 1)[0]


def recipe_key(name: str, calibration_size: int, float_io: bool,
               calibration_data: str = UNIFORM, training: dict | None = None) -> dict:
    """The recipe's part of a variant's cache key: only options that change its bytes.
    A QAT recipe's key holds its training (`training`: the data folder with a digest of its
    listing, epochs, step cap), its settings and QAT_VERSION, plus the versions of what
    trains it (tf_keras, tensorflow-model-optimization)."""
    key: dict[str, Any] = {"recipe": name, "recipes_version": RECIPES_VERSION}
    if is_training_recipe(name):
        if not training or not training.get("data"):
            raise UsageError(training_data_error(name))
        key["qat"] = {**qat_settings(name), "training": dict(training),
                      "software": _qat_software()}
        if QAT_RECIPES[name].integer_io:
            key["float_io"] = float_io
        return key
    recipe = RECIPES[name]
    if recipe.calibrated:
        key["calibration"] = {"size": calibration_size, "seed": CALIBRATION_SEED,
                              "data": calibration_data}
    if recipe.integer_io:
        key["float_io"] = float_io
    return key


def training_data_error(recipe: str) -> str:
    return (f"{recipe} needs labelled training data: --train-data FOLDER (CLASS/IMAGE.jpg); "
            "none exists here for ImageNet, see `bench experiment fashion-mnist` for QAT "
            "measured on Fashion-MNIST")


def _qat_software() -> dict:
    """The versions of the packages that fine-tune and fake-quantize (read from their
    metadata: nothing is imported)."""
    from importlib import metadata

    found = {}
    for package in ("tf-keras", "tensorflow-model-optimization"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = None  # not installed: the key says so, no stand-in
    return found


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
