"""The quantization-aware-training side of the Fashion-MNIST experiment: fine-tune the trained
float network with fake quantization (tfmot), convert it.

Run by `bench.experiments.fashion_mnist` as `python -m bench.experiments.qat_worker JOB.json`
after `fashion_mnist_worker` has trained. Why a third process: tensorflow-model-optimization
works only on legacy Keras (tf_keras) models and sets TF_USE_LEGACY_KERAS=1 when imported,
which turns `tf.keras` into legacy Keras for the rest of that process. The harness imports no
TensorFlow and `fashion_mnist_worker` runs Keras 3; this process runs with
TF_USE_LEGACY_KERAS=1 (set by the harness for this process only, and here again before
TensorFlow is imported, for a run by hand), so the variable reaches neither of them.

Same weights: `fashion_mnist_worker` saves its trained weights layer by layer (`weights.npz`)
with its logits on a few train images. This worker rebuilds the same network with tf_keras
from the one definition (`fashion_mnist_worker.build_model`), loads those weights and checks
its logits against the saved ones; the largest difference is recorded, and above
REBUILD_TOLERANCE every recipe fails with it (fine-tuning another network compares nothing).

Recipes (`bench.experiments.qat`), each from those same loaded weights, fine-tuned for the
job's `qat_epochs` on the job's training images (train split only; this process never reads
the test split), with one optimizer and schedule (Adam, cosine decay from
FINE_TUNE_LEARNING_RATE to 0) and the seed set again before each fit:

- `fp32-ft`: no fake quantization; converted as float (the fair baseline of the QAT rows);
- `qat-int8`: `tfmot.quantization.keras.quantize_model` (the default 8-bit scheme);
- `qat-w4`: `quantize_apply` with `DefaultNBitQuantizeScheme(num_bits_weight=4,
  num_bits_activation=8)`.

The quantized ones are converted with `tf.lite.Optimize.DEFAULT` and int8 input and output,
like the harness's `int8` recipe, so the rows compare like with like (a float-io file adds a
QUANTIZE and a DEQUANTIZE op, and nothing else). No representative dataset: the fake-quant
ranges learned in training are the calibration. BatchNorm stays a layer during QAT (tfmot's
transforms do not fold it) and the converter folds it into the per-channel scales; the
harness reads the written file to check what the weights became (`bench.zoo.weight_levels`).

Determinism as in `fashion_mnist_worker`: seeded, `enable_op_determinism`, CPU only; the
result records each fine-tuned model's weight digest.
"""

from __future__ import annotations

import math
import os
import sys
import time
from pathlib import Path
from typing import Any

from bench.experiments.fashion_mnist_worker import (
    THREAD_VARIABLES,
    build_model,
    emit,
    epoch_progress,
    file_sha256,
    job_main,
    short_error,
    weights_sha256,
)
from bench.experiments.qat import QAT_RECIPES

# Adam with a cosine decay from 1e-3 to 0 over the fine-tuning run: a tenth of the float
# training's peak, the usual fine-tuning step. Checked on 5,000 held-out *train* images
# (float model: 3 epochs on the other 55,000, seed 0; then 1 fine-tuning epoch): peaks of
# 3e-4 / 1e-3 / 3e-3 gave fp32-ft 86.72 / 87.00 / 86.98%, qat-int8 86.62 / 86.80 / 86.70%,
# qat-w4 85.94 / 86.08 / 86.46%, differences within that set's noise, so the usual value
# stayed. The test split never informed it.
FINE_TUNE_LEARNING_RATE = 1e-3
# Float32 logits of the same weights in two Keras implementations agree to rounding
# (measured: about 1e-6); a mismatch in layer order or BatchNorm epsilon gives O(1).
REBUILD_TOLERANCE = 1e-4
LEGACY_KERAS = "TF_USE_LEGACY_KERAS"


def load_layer_weights(model: Any, saved: Any) -> None:
    """Set every layer's weights from `fashion_mnist_worker.save_layer_weights`' arrays,
    by layer name; refuse a layer missing, left over or of another shape."""
    by_layer: dict[str, dict[int, Any]] = {}
    for key in saved.files:
        if ":" in key:
            name, index = key.rsplit(":", 1)
            by_layer.setdefault(name, {})[int(index)] = saved[key]
    for layer in model.layers:
        current = layer.get_weights()
        stored = by_layer.pop(layer.name, {})
        if len(stored) != len(current):
            raise ValueError(f"layer {layer.name} has {len(current)} weights, the trained "
                             f"model saved {len(stored)}")
        arrays = [stored[i] for i in range(len(current))]
        for now, new in zip(current, arrays, strict=True):
            if now.shape != new.shape:
                raise ValueError(f"layer {layer.name}: shape {new.shape} saved, "
                                 f"{now.shape} here")
        if arrays:
            layer.set_weights(arrays)
    if by_layer:
        raise ValueError(f"saved weights of layers not in the model: {', '.join(by_layer)}")


def float_model(keras: Any, saved: Any) -> Any:
    """The trained network rebuilt with tf_keras, the Keras 3 worker's weights loaded."""
    model = build_model(keras)
    load_layer_weights(model, saved)
    return model


def rebuild_check(model: Any, saved: Any, images: Any) -> dict[str, Any]:
    """The largest |logit difference| between this rebuild and the Keras 3 model on the
    saved train images."""
    import numpy as np

    indices = saved["check_indices"]
    logits = np.asarray(model(images[indices], training=False))
    difference = float(np.max(np.abs(logits - saved["check_logits"])))
    return {"images": len(indices), "max_abs_logit_diff": difference,
            "tolerance": REBUILD_TOLERANCE, "ok": difference <= REBUILD_TOLERANCE}


def quantize(model: Any, recipe: str, tfmot: Any) -> Any:
    """The float model wrapped for fake quantization as `recipe` says (a copy: the weights
    are copied into the wrapped layers)."""
    spec = QAT_RECIPES[recipe]
    keras_qat = tfmot.quantization.keras
    if spec.weight_bits == 8 and spec.activation_bits == 8:
        return keras_qat.quantize_model(model)
    from tensorflow_model_optimization.quantization.keras.experimental.default_n_bit import (
        DefaultNBitQuantizeScheme,
    )

    scheme = DefaultNBitQuantizeScheme(num_bits_weight=spec.weight_bits,
                                       num_bits_activation=spec.activation_bits)
    return keras_qat.quantize_apply(keras_qat.quantize_annotate_model(model), scheme=scheme)


def fine_tune(model: Any, recipe: str, job: dict, keras: Any, images: Any,
              labels: Any) -> dict[str, Any]:
    """The job's epochs of Adam with a cosine decay, the seed set afresh just before, so
    every recipe's fit starts its random streams (Keras's per-epoch shuffling) alike."""
    keras.utils.set_random_seed(int(job["seed"]))
    epochs, batch_size = int(job["qat_epochs"]), int(job["batch_size"])
    learning_rate = float(job.get("learning_rate", FINE_TUNE_LEARNING_RATE))
    steps = epochs * math.ceil(len(images) / batch_size)
    schedule = keras.optimizers.schedules.CosineDecay(learning_rate, steps)
    model.compile(optimizer=keras.optimizers.Adam(schedule),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])

    Progress = epoch_progress(keras, epochs, recipe=recipe)
    started = time.perf_counter()
    history = model.fit(images, labels, batch_size=batch_size, epochs=epochs, shuffle=True,
                        verbose=0, callbacks=[Progress()])
    return {
        "seconds": round(time.perf_counter() - started, 2),
        "loss": [float(v) for v in history.history["loss"]],
        "train_accuracy": [float(v) for v in history.history["accuracy"]],
        "weights_sha256": weights_sha256(model),
        "optimizer": f"Adam, cosine decay from {learning_rate} to 0 over {steps} steps",
    }


def convert(model: Any, recipe: str, tf: Any, path: Path) -> dict[str, Any]:
    """fp32-ft as float; QAT models with Optimize.DEFAULT (the fake-quant ranges are the
    calibration) and the recipe's integer input and output."""
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    spec = QAT_RECIPES[recipe]
    if spec.weight_bits is not None:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if spec.integer_io:
            converter.inference_input_type = getattr(tf, spec.integer_io)
            converter.inference_output_type = getattr(tf, spec.integer_io)
    data = converter.convert()
    partial = path.with_suffix(".partial")
    partial.write_bytes(data)
    partial.replace(path)
    return {"status": "ok", "path": str(path), "size_bytes": path.stat().st_size,
            "sha256": file_sha256(path)}


def run(job: dict) -> dict:
    os.environ[LEGACY_KERAS] = "1"  # before TensorFlow: tf.keras must be tf_keras here
    import numpy as np
    import tensorflow as tf
    import tensorflow_model_optimization as tfmot
    import tf_keras as keras

    from bench.data.datasets import fashion_mnist

    tf.config.experimental.enable_op_determinism()
    images, labels = fashion_mnist("train").take()
    train_index = np.asarray(job["train_indices"], dtype=np.int64)
    train_images, train_labels = images[train_index], labels[train_index]
    saved = np.load(job["weights_path"])
    recipes = list(job["recipes"])
    emit("qat", images=len(train_index), epochs=int(job["qat_epochs"]), recipes=recipes)
    try:
        check = rebuild_check(float_model(keras, saved), saved, images)
    except Exception as exc:
        check = {"ok": False, "error": short_error(exc)}
    emit("rebuild", **check)
    out_dir = Path(job["out_dir"])
    conversions: dict[str, dict] = {}
    fine_tuning: dict[str, dict] = {}
    for recipe in recipes:
        started = time.perf_counter()
        if not check["ok"]:
            reason = check.get("error") or (
                f"the tf_keras rebuild's logits differ from the trained Keras 3 model's by "
                f"{check['max_abs_logit_diff']:.3g} (tolerance {REBUILD_TOLERANCE:g})")
            outcome = {"status": "failed", "error": f"not fine-tuned: {reason}"}
        else:
            try:
                model = float_model(keras, saved)
                if QAT_RECIPES[recipe].weight_bits is not None:
                    model = quantize(model, recipe, tfmot)
                fine_tuning[recipe] = fine_tune(model, recipe, job, keras, train_images,
                                                train_labels)
                started = time.perf_counter()  # a row's seconds are its conversion's
                outcome = convert(model, recipe, tf, out_dir / f"{recipe}.tflite")
            except Exception as exc:  # one recipe failing leaves the others standing
                outcome = {"status": "failed", "error": f"QAT failed: {short_error(exc)}"}
        outcome["seconds"] = round(time.perf_counter() - started, 2)
        conversions[recipe] = outcome
        emit("converted", recipe=recipe, **outcome)
    return {
        "qat": {
            "epochs": int(job["qat_epochs"]),
            "images": len(train_index),
            "rebuild_check": check,
            "recipes": fine_tuning,
            "seconds": round(sum(f["seconds"] for f in fine_tuning.values()), 2),
        },
        "conversions": conversions,
        "versions": {"tensorflow": tf.__version__, "tf_keras": keras.__version__,
                     "tensorflow_model_optimization": tfmot.__version__,
                     "numpy": np.__version__},
        "threads": {"intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
                    "inter_op": tf.config.threading.get_inter_op_parallelism_threads(),
                    **{name: os.environ.get(name) for name in THREAD_VARIABLES}},
        "legacy_keras": os.environ.get(LEGACY_KERAS),
    }


def main(argv: list[str]) -> int:
    return job_main(argv, "bench.experiments.qat_worker", run)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
