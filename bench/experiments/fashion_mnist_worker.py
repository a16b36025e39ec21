"""The TensorFlow side of the Fashion-MNIST experiment: train the CNN, convert each recipe.

Run by `bench.experiments.fashion_mnist` as `python -m bench.experiments.fashion_mnist_worker
JOB.json`, in its own process, for the reason `bench.zoo.worker` gives: TensorFlow is heavy
and the harness process never imports it. The job names the training and calibration
images by their index in the train split; this process never reads the test split, so
nothing it does (training, calibration) can have seen an evaluation image.

Writes `model.keras`, `weights.npz` (the trained weights layer by layer, for the QAT worker:
see `save_layer_weights`), one `RECIPE.tflite` per recipe and the JSON result the job names;
progress goes to stdout as `BENCH-EXPERIMENT <json>` lines, TensorFlow's chatter to stderr.
It runs Keras 3: the harness removes TF_USE_LEGACY_KERAS from its environment (that
variable belongs to `qat_worker` alone) and the result records the Keras it used.

Determinism: `keras.utils.set_random_seed` seeds Python, NumPy and TensorFlow (initial
weights, Keras's per-epoch shuffling, dropout if there were any), and
`tf.config.experimental.enable_op_determinism` makes TensorFlow pick deterministic kernels
(or fail loudly where none exists). Training runs on the CPU only (CUDA hidden by the host),
so the same seed on the same machine, software versions and thread count gives the same
weights bit for bit (checked: two full runs here); the result records `weights_sha256` so
two runs can be compared. Across CPUs (other SIMD paths in oneDNN/Eigen), thread counts
(checked: TF_NUM_INTRAOP_THREADS=1 trains other weights than the default 2 here) or
TensorFlow versions the float arithmetic is ordered differently and the weights, hence
every figure, differ slightly. Conversion is a function of the weights and the
calibration images: the same weights give byte-identical .tflite files.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

PROGRESS_PREFIX = "BENCH-EXPERIMENT "
# Recorded with the result: they change TensorFlow's arithmetic order, hence the weights
# (a CI-sized run with TF_NUM_INTRAOP_THREADS=1 trains other weights than with the default).
THREAD_VARIABLES = ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "OMP_NUM_THREADS",
                    "TF_ENABLE_ONEDNN_OPTS")
INPUT_SHAPE = (28, 28, 1)
NUM_CLASSES = 10
# Adam with a cosine decay from 1e-2 to 0 over the whole run: chosen on 5,000 held-out
# *train* images (3 epochs: 87.1% there, against 85.1% from 3e-3 and 82.8% from a constant
# 1e-3); the test split never informed it. A 4k-parameter network trained for 3 epochs is
# far from converged, and a short schedule that ends at a small step is the usual remedy.
PEAK_LEARNING_RATE = 1e-2
# BatchNorm's moving statistics move 10% per step (PyTorch's default; Keras's 0.99 is 1%):
# a CI-sized run of a few dozen steps otherwise evaluates with statistics still near their
# initial values and predicts one class; over the full run's 1,400 steps it makes no odds.
BN_MOMENTUM = 0.9


def emit(event: str, **fields: Any) -> None:
    """One progress line for the host (it shows them; the log keeps TensorFlow's noise)."""
    print(PROGRESS_PREFIX + json.dumps({"event": event, **fields}), flush=True)


def build_model(keras: Any) -> Any:
    """The experiment's CNN, MobileNet-style: conv 3x3 16 -> [depthwise 3x3 stride 2 +
    pointwise 32] -> [depthwise 3x3 stride 2 + pointwise 64] -> global average pool ->
    dense 10 (logits). Every convolution is followed by BatchNorm and ReLU6, like MobileNet
    v1: the converter folds BatchNorm into the convolution weights, which is what spreads
    the per-channel weight ranges of depthwise layers that per-tensor quantization suffers
    from (the whitepaper's explanation for MobileNet's per-layer accuracy loss)."""
    layers = keras.layers

    def bn_relu6(x: Any, name: str) -> Any:
        x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_bn")(x)
        return layers.ReLU(6.0, name=f"{name}_relu6")(x)

    inputs = keras.Input(INPUT_SHAPE, name="image")
    x = layers.Conv2D(16, 3, padding="same", use_bias=False, name="conv1")(inputs)
    x = bn_relu6(x, "conv1")
    for block, filters in ((1, 32), (2, 64)):
        x = layers.DepthwiseConv2D(3, strides=2, padding="same", use_bias=False,
                                   name=f"dw{block}")(x)
        x = bn_relu6(x, f"dw{block}")
        x = layers.Conv2D(filters, 1, use_bias=False, name=f"pw{block}")(x)
        x = bn_relu6(x, f"pw{block}")
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = layers.Dense(NUM_CLASSES, name="logits")(x)
    return keras.Model(inputs, outputs, name="fashion_dwcnn")


# Train images whose logits travel with the weights, so the QAT worker can check that its
# tf_keras rebuild computes what this Keras 3 model computes.
CHECK_IMAGES = 8


def save_layer_weights(model: Any, path: Path, images: Any, indices: Any) -> None:
    """The trained weights as `weights.npz`, one array per `LAYER:i` (each layer's own
    `get_weights()` order: kernel; or gamma, beta, moving mean, moving variance), which
    tf_keras layers of the same names take back with `set_weights`. Why not the model's
    flat `get_weights()`: Keras 3 orders it layer by layer, tf_keras puts every trainable
    weight before every non-trainable one, so a flat list would put BatchNorm statistics
    where gammas belong. `check_indices` (train split) and `check_logits` are this model's
    logits on a few train images, for `qat_worker`'s equivalence check."""
    import numpy as np

    arrays = {f"{layer.name}:{i}": np.asarray(w)
              for layer in model.layers for i, w in enumerate(layer.get_weights())}
    logits = np.asarray(model(images, training=False))
    np.savez(path, check_indices=np.asarray(indices, dtype=np.int64),
             check_logits=logits.astype(np.float32), **arrays)


def epoch_progress(keras: Any, epochs: int, **fields: Any) -> Any:
    """A Keras callback class that emits an `epoch` line (loss, accuracy, seconds) after
    each epoch, with `fields` (e.g. the recipe) added."""

    class Progress(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            logs = logs or {}
            emit("epoch", **fields, epoch=epoch + 1, epochs=epochs,
                 loss=float(logs["loss"]), accuracy=float(logs["accuracy"]),
                 seconds=round(time.perf_counter() - self.started, 2))

    return Progress


def weights_sha256(model: Any) -> str:
    """A digest of the trained weights (the .keras file holds a save date, so it cannot be
    compared between runs)."""
    digest = hashlib.sha256()
    for array in model.get_weights():
        digest.update(str(array.shape).encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def short_error(exc: BaseException) -> str:
    from bench.zoo.worker import short_error as zoo_short_error

    return zoo_short_error(exc)


def train(job: dict, keras: Any, tf: Any, images: Any, labels: Any) -> tuple[Any, dict]:
    """Train on the job's training images with its seed; history per epoch."""
    keras.utils.set_random_seed(int(job["seed"]))
    tf.config.experimental.enable_op_determinism()
    model = build_model(keras)
    epochs = int(job["epochs"])
    steps = epochs * math.ceil(len(images) / int(job["batch_size"]))
    schedule = keras.optimizers.schedules.CosineDecay(PEAK_LEARNING_RATE, steps)
    model.compile(optimizer=keras.optimizers.Adam(schedule),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])

    Progress = epoch_progress(keras, epochs)
    started = time.perf_counter()
    history = model.fit(images, labels, batch_size=int(job["batch_size"]), epochs=epochs,
                        shuffle=True, verbose=0, callbacks=[Progress()])
    return model, {
        "seconds": round(time.perf_counter() - started, 2),
        "loss": [float(v) for v in history.history["loss"]],
        "train_accuracy": [float(v) for v in history.history["accuracy"]],
        "weights_sha256": weights_sha256(model),
        "parameters": int(model.count_params()),
        "optimizer": f"Adam, cosine decay from {PEAK_LEARNING_RATE} to 0 over {steps} steps",
    }


def convert(job: dict, model: Any, tf: Any, calibration: Any) -> dict[str, dict]:
    """Each recipe through `bench.zoo.recipes.configure` (the harness's own recipes), with
    one change: calibrated recipes get the job's Fashion-MNIST training images as their
    representative dataset instead of the zoo's uniform noise or photographs."""
    import numpy as np

    from bench.zoo.recipes import RECIPES, configure

    def representative() -> Any:
        for k in range(len(calibration)):
            yield [calibration[k:k + 1].astype(np.float32)]

    out_dir = Path(job["out_dir"])
    results: dict[str, dict] = {}
    for recipe in job["recipes"]:
        started = time.perf_counter()
        path = out_dir / f"{recipe}.tflite"
        try:
            converter = tf.lite.TFLiteConverter.from_keras_model(model)
            configure(converter, recipe, (1, *INPUT_SHAPE), len(calibration), False)
            if RECIPES[recipe].calibrated:
                converter.representative_dataset = representative
            data = converter.convert()
            partial = path.with_suffix(".partial")
            partial.write_bytes(data)
            partial.replace(path)
            outcome = {"status": "ok", "path": str(path), "size_bytes": path.stat().st_size,
                       "sha256": file_sha256(path)}
        except Exception as exc:  # one recipe failing leaves the others standing
            outcome = {"status": "failed", "error": f"conversion failed: {short_error(exc)}"}
        outcome["seconds"] = round(time.perf_counter() - started, 2)
        results[recipe] = outcome
        emit("converted", recipe=recipe, **outcome)
    return results


def run(job: dict) -> dict:
    import keras
    import numpy as np
    import tensorflow as tf

    from bench.data.datasets import fashion_mnist

    train_split = fashion_mnist("train")
    images, labels = train_split.take()
    train_index = np.asarray(job["train_indices"], dtype=np.int64)
    calibration_index = np.asarray(job["calibration_indices"], dtype=np.int64)
    emit("training", images=len(train_index), epochs=int(job["epochs"]),
         batch_size=int(job["batch_size"]))
    model, training = train(job, keras, tf, images[train_index], labels[train_index])
    out_dir = Path(job["out_dir"])
    model.save(out_dir / "model.keras")
    check_index = train_index[:CHECK_IMAGES]
    save_layer_weights(model, out_dir / "weights.npz", images[check_index], check_index)
    conversions = convert(job, model, tf, images[calibration_index])
    return {
        "training": training,
        "conversions": conversions,
        "versions": {"tensorflow": tf.__version__, "keras": keras.__version__,
                     "numpy": np.__version__},
        "threads": {"intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
                    "inter_op": tf.config.threading.get_inter_op_parallelism_threads(),
                    "cpu_count": os.cpu_count(),
                    **{name: os.environ.get(name) for name in THREAD_VARIABLES}},
        "determinism": "keras.utils.set_random_seed + tf.config.experimental."
                       "enable_op_determinism, CPU only",
        "legacy_keras": os.environ.get("TF_USE_LEGACY_KERAS"),
    }


def job_main(argv: list[str], module: str, work: Any) -> int:
    """A worker's command line: `python -m MODULE JOB.json`; the result of `work(job)`
    written atomically where the job says (the host reads it only once it is whole)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if len(argv) != 1:
        print(f"usage: python -m {module} JOB.json", file=sys.stderr)
        return 2
    job = json.loads(Path(argv[0]).read_text())
    result = work(job)
    target = Path(job["result_path"])
    partial = target.with_suffix(".partial")
    partial.write_text(json.dumps(result, indent=2))
    partial.replace(target)
    return 0


def main(argv: list[str]) -> int:
    return job_main(argv, "bench.experiments.fashion_mnist_worker", run)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
