"""The QAT worker: fine-tune a model on the user's labelled folder, with and without fake
quantization, and convert it (`bench run --recipes qat-int8,qat-w4 --train-data FOLDER`).

Protocol as `bench.zoo.worker`'s: `python -m bench.zoo.qat_worker REQUESTS.json`, one line
`BENCH-BUILD <json>` per finished variant and `BENCH-NOTE <text>` lines for the harness to
show (the rebuild check, each epoch). Why a process of its own: tensorflow-model-optimization
wraps only legacy Keras (tf_keras) models, and TF_USE_LEGACY_KERAS=1 turns `tf.keras` into
tf_keras for the whole process. The harness sets that variable for this process alone (and
this module sets it again before TensorFlow is imported, for a run by hand); the harness
never imports TensorFlow, tfmot or tf_keras, and the conversion worker runs Keras 3.

Same weights, checked. The conversion worker exported the Keras 3 model (the one every
post-training variant of the run was converted from): its weights layer by layer, a few
inputs (training images) and its logits on them. Here the model is rebuilt with tf_keras:
trained zoo weights from the same state dict through the same port (`keras=tf_keras`), a
random-weight zoo model with the same builder and the exported weights carried over layer by
layer, a user's Keras file from its described graph (`bench.zoo.qat_graph`) with its weights
carried over. The rebuild's logits on the exported inputs must match within
REBUILD_TOLERANCE; the largest difference is recorded in every variant's check, and above
the tolerance the model's QAT variants fail with it (fine-tuning another network would
compare nothing).

Then three copies of those weights, fine-tuned alike (one seed, one batch order, Adam with
a cosine decay to 0, the request's epochs or step cap, the model's preprocessing, no
augmentation): `fp32-ft` without fake quantization (converted as float: the fair baseline of
the QAT rows), `qat-int8` (tfmot `quantize_model`) and `qat-w4` (tfmot
`DefaultNBitQuantizeScheme(num_bits_weight=4, num_bits_activation=8)`), both converted with
`Optimize.DEFAULT` and int8 input and output (float with --float-io) like the experiment's
(`bench.experiments.qat_worker`). No representative dataset: the ranges learned in training
are the calibration. A layer tfmot cannot wrap fails that variant with tfmot's reason.

Activation ranges start where the float model's activations are (`initialise_ranges`), not
at tfmot's ±6: tfmot moves each range by an exponential moving average with decay 0.999,
so from ±6 it needs thousands of steps to reach the real range, and a short fine-tuning (a
small folder, --qat-steps) would measure unsettled ranges (clipped logits, a coarse input
scale), not quantization. Before fine-tuning, each range is set to the mean per-batch
minimum and maximum (with 0 inside) of the matching float layer's output on the first
training batches (inference mode), which is what the moving average converges to; training
then moves them as tfmot does. The variant's check records how many ranges were set.

One addition to tfmot, in this process only (`allow_relu6`): a layer's `relu6` activation is
fake-quantized after the activation, as tfmot does for `relu`. TFLite fuses relu6 into the
convolution before it exactly as it fuses relu, so that is where the quantization is;
tfmot 0.8.1 knows activations by name and lists relu, not relu6 (its source notes that
others "should just work on inclusion"). Without it the tiny CNN (convolutions with
`activation="relu6"`) cannot be wrapped; writing relu6 as a separate ReLU layer instead is
no way out: tfmot then drops the convolution's weight quantization (its LayerReLUQuantize
transform), and qat-w4 files come out with 8-bit convolutions. The
`qat-w4` file is read, not trusted (`bench.zoo.weight_levels`): a weight tensor with more
than 16 distinct values fails it ("file holds 8-bit weights ..."); its packed 4-bit size is
recorded in the variant's check.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

from bench.zoo.worker import NOTE_PREFIX, PROGRESS_PREFIX, short_error

LEGACY_KERAS = "TF_USE_LEGACY_KERAS"
# Float32 logits of the same weights in Keras 3 and tf_keras agree to rounding (about 1e-6
# for the tiny CNN, a few 1e-6 for MobileNetV2); a layer out of place gives O(1).
REBUILD_TOLERANCE = 1e-4
# Training images are decoded once and kept when they fit in this many bytes (as float32);
# a larger folder is read again for each variant.
IN_MEMORY_BYTES = 1 << 30
ORDER = ("fp32-ft", "qat-int8", "qat-w4")  # the baseline first: the others compare with it


def note(text: str) -> None:
    print(NOTE_PREFIX + text, flush=True)


def allow_relu6() -> None:
    """Let tfmot fake-quantize `relu6` activations after the activation, like `relu`."""
    from tensorflow_model_optimization.python.core.quantization.keras import (
        quantize_aware_activation as activations,
    )

    wrapper = activations.QuantizeAwareActivation
    wrapper._POST_QUANT_ACTIVATIONS = frozenset(wrapper._POST_QUANT_ACTIVATIONS | {"relu6"})


# ------------------------------------------------------------------- the float model


def carry_weights(model: Any, saved: Any) -> None:
    """Set the tf_keras model's weights from the Keras 3 export, weighted layer by weighted
    layer in model order; refuse another class, count or shape."""
    names = [str(n) for n in saved["layer_names"]]
    classes = [str(c) for c in saved["layer_classes"]]
    counts = [int(c) for c in saved["layer_counts"]]
    targets = [layer for layer in model.layers if layer.weights]
    if len(targets) != len(names):
        raise ValueError(f"the tf_keras rebuild has {len(targets)} layers with weights, the "
                         f"Keras 3 model {len(names)}")
    for index, layer in enumerate(targets):
        if type(layer).__name__ != classes[index]:
            raise ValueError(f"layer {index} with weights is a {type(layer).__name__} in "
                             f"tf_keras, a {classes[index]} ({names[index]}) in Keras 3")
        current = layer.get_weights()
        if len(current) != counts[index]:
            raise ValueError(f"layer {names[index]} has {len(current)} weights in tf_keras, "
                             f"{counts[index]} in Keras 3")
        arrays = [saved[f"w{index}:{j}"] for j in range(counts[index])]
        for now, new in zip(current, arrays, strict=True):
            if now.shape != new.shape:
                raise ValueError(f"layer {names[index]}: shape {new.shape} in Keras 3, "
                                 f"{now.shape} in tf_keras")
        layer.set_weights(arrays)


def float_model(source: dict, saved: Any, keras: Any) -> tuple[Any, str]:
    """The model rebuilt with tf_keras holding the exported weights, and how."""
    if source["kind"] == "zoo":
        from bench.zoo.architectures import ARCHITECTURES

        arch = ARCHITECTURES[source["arch"]]
        weights = source.get("weights", "random")
        if weights != "random":
            model = arch.weights(weights).build_fn(source["size"], source.get("alpha"),
                                                   keras=keras)
            return model, f"the {weights} weights, built with tf_keras"
        model = arch.build_fn(source["size"], source.get("alpha"), keras=keras)
        carry_weights(model, saved)
        return model, "the Keras 3 model's random weights, carried over layer by layer"
    if source["kind"] == "keras":
        from bench.zoo.qat_graph import build_graph

        model = build_graph(json.loads(str(saved["graph"])), keras)
        carry_weights(model, saved)
        return model, "the file's graph rebuilt in tf_keras, its weights carried over"
    raise ValueError("a SavedModel holds no Keras layers to fine-tune")


def rebuild_check(model: Any, saved: Any) -> dict[str, Any]:
    """The largest |logit difference| between the tf_keras rebuild and the Keras 3 model on
    the exported inputs."""
    import numpy as np

    inputs, expected = saved["check_inputs"], saved["check_logits"]
    logits = np.asarray(model(inputs, training=False), dtype=np.float32)
    if logits.shape != expected.shape:
        raise ValueError(f"the tf_keras rebuild outputs {logits.shape}, the Keras 3 model "
                         f"{expected.shape}")
    difference = float(np.max(np.abs(logits - expected)))
    return {"inputs": int(len(inputs)), "max_abs_logit_diff": difference,
            "tolerance": REBUILD_TOLERANCE, "ok": difference <= REBUILD_TOLERANCE}


def outputs_are_probabilities(logits: Any) -> bool:
    """A model ending in softmax (a user's file may): train on probabilities, not logits."""
    import numpy as np

    return bool(np.all(logits >= 0) and np.allclose(logits.sum(axis=-1), 1.0, atol=1e-3))


# ------------------------------------------------------------------- the training data


class TrainingData:
    """The labelled folder at the model's input size and preprocessing, read in batches."""

    def __init__(self, folder: str, shape: tuple[int, ...], preprocessing: str,
                 classes: int):
        from bench.data.datasets import dataset

        self.images = dataset(folder, input_shape=shape, preprocessing=preprocessing)
        if self.images.num_classes is not None and self.images.num_classes > classes:
            raise ValueError(f"the training folder has class indices up to "
                             f"{self.images.num_classes - 1} but the model has {classes} "
                             "outputs")
        per_image = 4 * math.prod(shape)
        self.memory: dict[int, tuple[Any, Any]] | None = \
            {} if len(self.images) * per_image <= IN_MEMORY_BYTES else None

    def __len__(self) -> int:
        return len(self.images)

    def sample(self, index: int) -> tuple[Any, Any]:
        if self.memory is not None and index in self.memory:
            return self.memory[index]
        found = self.images.slice(index, index + 1)
        if self.memory is not None:
            self.memory[index] = found
        return found

    def batch(self, indices: Any) -> tuple[Any, Any]:
        import numpy as np

        pairs = [self.sample(int(i)) for i in indices]
        return np.concatenate([p[0] for p in pairs]), np.concatenate([p[1] for p in pairs])


def batch_plan(count: int, batch_size: int, epochs: int, steps: int | None,
               seed: int) -> list[list[Any]]:
    """Each epoch's batches of image indices (a seeded permutation per epoch), cut at
    `steps` in all: every variant of a model trains on exactly these batches."""
    import numpy as np

    plan: list[list[Any]] = []
    total = 0
    for epoch in range(epochs):
        order = np.random.default_rng([seed, epoch]).permutation(count)
        batches = [order[start:start + batch_size] for start in range(0, count, batch_size)]
        if steps is not None:
            batches = batches[:max(steps - total, 0)]
        if batches:
            plan.append(batches)
        total += len(batches)
    return plan


# ------------------------------------------------------------------- one variant


def quantize(model: Any, recipe: str, tfmot: Any) -> Any:
    """The float model wrapped for fake quantization as `recipe` says."""
    from bench.experiments.qat import QAT_RECIPES

    spec = QAT_RECIPES[recipe]
    keras_qat = tfmot.quantization.keras
    try:
        if spec.weight_bits == 8 and spec.activation_bits == 8:
            return keras_qat.quantize_model(model)
        from tensorflow_model_optimization.quantization.keras.experimental.default_n_bit import (
            DefaultNBitQuantizeScheme,
        )

        scheme = DefaultNBitQuantizeScheme(num_bits_weight=spec.weight_bits,
                                           num_bits_activation=spec.activation_bits)
        return keras_qat.quantize_apply(keras_qat.quantize_annotate_model(model),
                                        scheme=scheme)
    except Exception as exc:
        raise RuntimeError(f"tfmot cannot quantize this model: {short_error(exc)}") from None


RANGE_BATCHES = 4  # training batches whose float activations set the initial ranges
RANGE_CHUNK = 8  # images per forward pass of the float model while measuring them


def initialise_ranges(quantized: Any, model: Any, data: TrainingData, plan: list[list[Any]],
                      keras: Any) -> dict[str, Any]:
    """Set each activation range of the fake-quantized model (tfmot's `output`,
    `post_activation` and input `quantize_layer` min/max variables) from the float model's
    outputs of the same layer on the first RANGE_BATCHES training batches."""
    import numpy as np

    targets: dict[str, list[tuple[Any, Any]]] = {}
    for layer in quantized.layers:
        found = {v.name.split("/")[-1].split(":")[0]: v for v in layer.non_trainable_weights}
        inner = getattr(layer, "layer", None)
        for prefix in ("output", "post_activation", "quantize_layer"):
            if f"{prefix}_min" not in found or f"{prefix}_max" not in found:
                continue
            name = "" if prefix == "quantize_layer" or inner is None else inner.name
            targets.setdefault(name, []).append((found[f"{prefix}_min"],
                                                 found[f"{prefix}_max"]))
    names = sorted(n for n in targets if n)
    layers = [model.get_layer(n) for n in names if n in {x.name for x in model.layers}]
    probe = keras.Model(model.inputs, [layer.output for layer in layers]) if layers else None
    lows: dict[str, list[float]] = {}
    highs: dict[str, list[float]] = {}
    batches = [b for epoch in plan for b in epoch][:RANGE_BATCHES]
    for indices in batches:
        inputs, _ = data.batch(indices)
        found = {"": [inputs]}
        for start in range(0, len(inputs), RANGE_CHUNK):
            chunk = inputs[start:start + RANGE_CHUNK]
            outputs = probe(chunk, training=False) if probe is not None else []
            outputs = outputs if isinstance(outputs, list | tuple) else [outputs]
            for layer, value in zip(layers, outputs, strict=True):
                found.setdefault(layer.name, []).append(np.asarray(value))
        for name, values in found.items():
            lows.setdefault(name, []).append(min(float(min(v.min() for v in values)), 0.0))
            highs.setdefault(name, []).append(max(float(max(v.max() for v in values)), 0.0))
    count = 0
    for name, pairs in targets.items():
        if name not in lows:
            continue
        low, high = float(np.mean(lows[name])), float(np.mean(highs[name]))
        for minimum, maximum in pairs:
            minimum.assign(np.full(minimum.shape, low, dtype=np.float32))
            maximum.assign(np.full(maximum.shape, high, dtype=np.float32))
            count += 1
    return {"ranges_set": count, "ranges": sum(len(p) for p in targets.values()),
            "range_images": int(sum(len(b) for b in batches))}


def fine_tune(model: Any, recipe: str, request: dict, keras: Any, data: TrainingData,
              plan: list[list[Any]], probabilities: bool) -> dict[str, Any]:
    """The plan's batches with Adam and a cosine decay to 0, the seed set afresh first."""
    import numpy as np

    settings = request["settings"]
    keras.utils.set_random_seed(int(settings["seed"]))
    steps = sum(len(batches) for batches in plan)
    schedule = keras.optimizers.schedules.CosineDecay(float(settings["learning_rate"]),
                                                      max(steps, 1))
    model.compile(optimizer=keras.optimizers.Adam(schedule),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=not probabilities))
    started = time.perf_counter()
    epoch_losses = []
    for epoch, batches in enumerate(plan):
        losses = []
        for indices in batches:
            inputs, labels = data.batch(indices)
            losses.append(float(model.train_on_batch(inputs, labels)))
        epoch_losses.append(round(float(np.mean(losses)), 5))
        note(f"{request['variant']['model']} {recipe}: epoch {epoch + 1}/{len(plan)}, "
             f"{len(batches)} step(s), loss {epoch_losses[-1]:.4f} "
             f"({time.perf_counter() - started:.1f}s)")
    return {"steps": steps, "epochs": len(plan), "loss": epoch_losses,
            "seconds": round(time.perf_counter() - started, 2)}


def convert(model: Any, recipe: str, float_io: bool, tf: Any, out: Path) -> None:
    """fp32-ft as float; QAT models with Optimize.DEFAULT and int8 input and output."""
    from bench.experiments.qat import QAT_RECIPES
    from bench.zoo.cache import atomic_write

    spec = QAT_RECIPES[recipe]
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if spec.weight_bits is not None:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if spec.integer_io and not float_io:
            converter.inference_input_type = getattr(tf, spec.integer_io)
            converter.inference_output_type = getattr(tf, spec.integer_io)
    atomic_write(out, converter.convert())


def level_check(recipe: str, out: Path) -> tuple[dict, str | None]:
    """Distinct values per weight tensor, read from the file; for qat-w4 the packed 4-bit
    size, and the reason it fails when a tensor holds more than 16 levels."""
    from bench.experiments.qat import QAT_RECIPES, max_weight_levels
    from bench.zoo.weight_levels import check_levels

    if QAT_RECIPES[recipe].weight_bits is None:
        return {}, None
    budget = max_weight_levels(recipe)
    found = check_levels(out, budget or 256)
    levels = {"tensors": len(found.tensors), "most_levels": found.most_levels,
              "max_levels": budget}
    if budget is None:
        return levels, None
    levels["packed_4bit_bytes"] = found.packed_bytes
    return levels, found.reason


def build_one(request: dict, model: Any, keras: Any, tf: Any, tfmot: Any, data: TrainingData,
              plan: list[list[Any]], context: dict) -> dict:
    """Fine-tune a copy of `model` as the request's recipe says, convert it, check it."""
    from bench.experiments.qat import QAT_RECIPES
    from bench.zoo.cache import file_sha256
    from bench.zoo.check import compare_outputs

    recipe = request["variant"]["recipe"]
    started = time.perf_counter()
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    ranges: dict[str, Any] = {}
    if QAT_RECIPES[recipe].weight_bits is not None:
        copy = quantize(copy, recipe, tfmot)
        ranges = initialise_ranges(copy, model, data, plan, keras)
    training = fine_tune(copy, recipe, request, keras, data, plan, context["probabilities"])
    out = Path(request["out_dir"]) / "model.tflite"
    convert(copy, recipe, bool(request.get("float_io")), tf, out)
    levels, failure = level_check(recipe, out)
    check: dict[str, Any] = {}
    photos = request.get("calibration_source", "uniform[-1,1]") != "uniform[-1,1]"
    for name, reference in (("fp32", request.get("reference")),
                            ("fp32-ft", context.get("baseline"))):
        if not reference or name == recipe:
            continue
        try:
            found = compare_outputs(Path(reference), out, photos=photos,
                                    preprocessing=request.get("preprocessing"))
        except Exception as exc:  # a kernel that cannot prepare this variant
            found = {"error": short_error(exc)}
        if name == "fp32":
            check.update(found)
        else:
            check["vs_fp32_ft"] = {k: found.get(k) for k in ("top1_agreement", "snr_db",
                                                              "error") if k in found}
    check["qat"] = {"train_data": request["train_data"], "images": len(data),
                    "batch_size": request["settings"]["batch_size"],
                    "rebuild": context["rebuild"], "weights_from": context["weights_from"],
                    "outputs": "probabilities" if context["probabilities"] else "logits",
                    "legacy_keras": os.environ.get(LEGACY_KERAS),
                    "software": {"tf_keras": keras.__version__,
                                 "tensorflow_model_optimization": tfmot.__version__},
                    **ranges, **training}
    if levels:
        check["weight_levels"] = levels
    result = {"status": "ok", "sha256": file_sha256(out), "size_bytes": out.stat().st_size,
              "build_seconds": round(time.perf_counter() - started, 3), "check": check}
    if failure:
        result.update(status="failed", error=failure)
    return result


# ------------------------------------------------------------------- the worker


def _prepare(group: list[dict], keras: Any) -> tuple[Any, TrainingData, list, dict]:
    """The model's tf_keras rebuild (checked), its training data and batch plan."""
    import numpy as np

    first = group[0]
    saved = np.load(first["export"])
    model, weights_from = float_model(first["source"], saved, keras)
    rebuild = rebuild_check(model, saved)
    name = first["variant"]["model"]
    note(f"{name}: tf_keras rebuild ({weights_from}): max |logit difference| from the Keras 3 "
         f"model {rebuild['max_abs_logit_diff']:.3g} on {rebuild['inputs']} inputs "
         f"(tolerance {REBUILD_TOLERANCE:g})")
    if not rebuild["ok"]:
        raise RuntimeError(f"not fine-tuned: the tf_keras rebuild's logits differ from the "
                           f"Keras 3 model's by {rebuild['max_abs_logit_diff']:.3g} (tolerance "
                           f"{REBUILD_TOLERANCE:g})")
    shape = tuple(int(d) for d in model.inputs[0].shape[1:])
    classes = int(model.outputs[0].shape[-1])
    data = TrainingData(first["train_data"], shape, first["preprocessing"], classes)
    settings = first["settings"]
    plan = batch_plan(len(data), int(settings["batch_size"]), int(first["qat_epochs"]),
                      first.get("qat_steps"), int(settings["seed"]))
    context = {"rebuild": rebuild, "weights_from": weights_from,
               "probabilities": outputs_are_probabilities(saved["check_logits"]),
               "baseline": None}
    return model, data, plan, context


def run(requests: list[dict]) -> None:
    os.environ[LEGACY_KERAS] = "1"  # before TensorFlow: tf.keras must be tf_keras here
    import tensorflow as tf
    import tensorflow_model_optimization as tfmot
    import tf_keras as keras

    from bench.zoo.cache import Variant, VariantCache

    tf.config.experimental.enable_op_determinism()
    allow_relu6()
    by_source: dict[str, list[dict]] = {}
    for request in requests:
        by_source.setdefault(json.dumps(request["source"], sort_keys=True), []).append(request)
    for group in by_source.values():
        group.sort(key=lambda r: ORDER.index(r["variant"]["recipe"]))
        try:
            model, data, plan, context = _prepare(group, keras)
            failure = None
        except Exception as exc:
            failure = str(exc) if str(exc).startswith("not fine-tuned") else \
                f"not fine-tuned: {short_error(exc)}"
        for request in group:
            variant = Variant(**request["variant"])
            if failure:
                outcome = {"status": "failed", "error": failure}
            else:
                if context["baseline"] is None:
                    context["baseline"] = request.get("baseline")
                try:
                    outcome = build_one(request, model, keras, tf, tfmot, data, plan, context)
                except Exception as exc:  # one variant failing leaves the others standing
                    reason = str(exc) if str(exc).startswith("tfmot cannot") else \
                        short_error(exc)
                    outcome = {"status": "failed", "error": f"QAT failed: {reason}"}
            for name, value in outcome.items():
                setattr(variant, name, value)
            VariantCache(Path(request["cache_root"])).save(variant)
            if variant.recipe == "fp32-ft" and variant.status == "ok":
                context["baseline"] = str(Path(request["out_dir"]) / "model.tflite")
            print(PROGRESS_PREFIX + json.dumps({"id": request["id"], **outcome}), flush=True)


def main(argv: list[str]) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ[LEGACY_KERAS] = "1"
    run(json.loads(Path(argv[0]).read_text()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
