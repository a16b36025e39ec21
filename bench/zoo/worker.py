"""Conversion worker: builds variants in its own process, one after another.

TensorFlow is heavy (seconds to import, a gigabyte of memory, idle threads), so the
harness never imports it itself: `bench` starts this worker for the variants
missing from the cache, waits for it, and only then measures. A conversion that
crashes takes down the worker, not the sweep.

Protocol: `python -m bench.zoo.worker REQUESTS.json`; for each finished request one
line `BENCH-BUILD <json>` on stdout. TensorFlow's own chatter goes to stderr.

A request with `export` converts nothing: it writes the Keras 3 model's weights (layer by
layer), a few inputs and the model's logits on them to that .npz file, for the QAT worker
(`bench.zoo.qat_worker`), which rebuilds the model with tf_keras, loads those weights and
checks it computes the same logits before fine-tuning anything.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from pathlib import Path

PROGRESS_PREFIX = "BENCH-BUILD "
NOTE_PREFIX = "BENCH-NOTE "  # a line the harness shows as it is (the QAT worker's progress)
EXPORT_CHECK_INPUTS = 4  # inputs on which the tf_keras rebuild must give the same logits


def short_error(exc: BaseException) -> str:
    """One readable line out of a converter exception (they can run to pages)."""
    text = str(exc)
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    errors = [ln for ln in lines if re.search(r"\berror:", ln)]
    line = errors[0] if errors else (lines[0] if lines else type(exc).__name__)
    line = re.sub(r"^.*?error:\s*", "", line) if errors else line
    return f"{type(exc).__name__}: {line}"[:400]


def load_source(source: dict):
    """A Keras model for the source, or None for a SavedModel (converted from disk)."""
    from bench.zoo.architectures import ARCHITECTURES

    kind = source["kind"]
    if kind == "zoo":
        arch = ARCHITECTURES[source["arch"]]
        weights = source.get("weights", "random")
        if weights != "random":
            return arch.weights(weights).build_fn(source["size"], source.get("alpha"))
        return arch.build(source["size"], source["alpha"], source["seed"])
    if kind == "keras":
        import keras

        return keras.models.load_model(source["path"], compile=False)
    return None


def make_converter(source: dict, keras_model):
    import tensorflow as tf

    if keras_model is not None:
        return tf.lite.TFLiteConverter.from_keras_model(keras_model)
    return tf.lite.TFLiteConverter.from_saved_model(source["path"])


def input_shape_of(tflite_path: Path) -> tuple[int, ...]:
    from ai_edge_litert.interpreter import Interpreter

    detail = Interpreter(model_path=str(tflite_path)).get_input_details()[0]
    return tuple(int(d) for d in detail["shape"])


def build_one(request: dict, keras_model, reference: Path | None) -> dict:
    from bench.zoo.cache import atomic_write, file_sha256
    from bench.zoo.check import compare_outputs
    from bench.zoo.recipes import configure

    source, recipe = request["source"], request["variant"]["recipe"]
    out = Path(request["out_dir"]) / "model.tflite"
    started = time.perf_counter()
    converter = make_converter(source, keras_model)
    shape = input_shape_of(reference) if reference else None
    if recipe != "fp32" and shape is None:
        raise RuntimeError("the fp32 conversion failed, so there is no input shape to calibrate")
    configure(converter, recipe, shape, request["calibration_size"], request["float_io"],
              request.get("calibration_source", "uniform[-1,1]"), request.get("preprocessing"))
    atomic_write(out, converter.convert())
    result = {
        "status": "ok",
        "sha256": file_sha256(out),
        "size_bytes": out.stat().st_size,
        "build_seconds": round(time.perf_counter() - started, 3),
    }
    if reference is not None and recipe != "fp32":
        try:
            photos = request.get("calibration_source", "uniform[-1,1]") != "uniform[-1,1]"
            result["check"] = compare_outputs(reference, out, photos=photos,
                                              preprocessing=request.get("preprocessing"))
        except Exception as exc:  # e.g. a kernel that cannot prepare this variant
            result["check"] = {"error": short_error(exc)}
    return result


def check_inputs(request: dict, shape: tuple[int, ...]):
    """EXPORT_CHECK_INPUTS inputs for the rebuild check: images spread over the training
    folder, made as the model's weights expect; seeded uniform [-1, 1] noise when the
    folder cannot feed this model (then the QAT worker says why it cannot train either)."""
    import numpy as np

    from bench.errors import UsageError

    try:
        from bench.data.datasets import dataset

        images = dataset(request["train_data"], input_shape=shape,
                         preprocessing=request["preprocessing"])
        picks = np.unique(np.linspace(0, len(images) - 1, EXPORT_CHECK_INPUTS).astype(int))
        return np.concatenate([images.slice(int(i), int(i) + 1)[0] for i in picks])
    except (UsageError, OSError, ValueError):
        rng = np.random.default_rng(2018)
        return rng.uniform(-1.0, 1.0, (EXPORT_CHECK_INPUTS, *shape)).astype(np.float32)


def export_one(request: dict, keras_model) -> dict:
    """The Keras 3 model's weights, layer by layer (each weighted layer's `get_weights()`,
    in the model's layer order), its logits on a few inputs, and for a user's Keras file its
    graph (`bench.zoo.qat_graph`), into the request's .npz file."""
    import numpy as np

    from bench.zoo.qat_graph import describe_graph

    if keras_model is None:
        raise ValueError("a SavedModel has no Keras layers to fine-tune")
    if len(keras_model.inputs) != 1 or len(keras_model.outputs) != 1:
        raise ValueError("QAT takes models with one input and one output")
    shape = tuple(int(d) for d in keras_model.inputs[0].shape[1:])
    inputs = check_inputs(request, shape)
    logits = np.asarray(keras_model(inputs, training=False), dtype=np.float32)
    arrays, names, classes, counts = {}, [], [], []
    for layer in keras_model.layers:
        weights = layer.get_weights()
        if not weights:
            continue
        index = len(names)
        names.append(layer.name)
        classes.append(type(layer).__name__)
        counts.append(len(weights))
        arrays.update({f"w{index}:{j}": np.asarray(w) for j, w in enumerate(weights)})
    graph = json.dumps(describe_graph(keras_model)) if request["source"]["kind"] == "keras" \
        else ""
    out = Path(request["export"])
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out, check_inputs=inputs, check_logits=logits, layer_names=np.array(names),
             layer_classes=np.array(classes), layer_counts=np.array(counts, dtype=np.int64),
             graph=np.array(graph), **arrays)
    return {"status": "ok", "export": str(out)}


def run(requests: list[dict]) -> None:
    from bench.zoo.cache import Variant, VariantCache

    by_source: dict[str, list[dict]] = {}
    for request in requests:
        by_source.setdefault(json.dumps(request["source"], sort_keys=True), []).append(request)
    # Models only exported (every variant cached) last: building a Keras model moves the
    # process's layer-name counters, which the names in later conversions' files follow.
    for group in sorted(by_source.values(), key=lambda g: all("export" in r for r in g)):
        exports = [r for r in group if "export" in r]
        group = [r for r in group if "export" not in r]
        group.sort(key=lambda r: r["variant"]["recipe"] != "fp32")
        if not group:
            _exports(exports)
            continue
        try:
            keras_model = load_source(group[0]["source"])
            load_error = None
        except Exception as exc:
            keras_model, load_error = None, f"cannot load the model: {short_error(exc)}"
        reference = Path(group[0]["reference"]) if group[0].get("reference") else None
        for request in group:
            variant = Variant(**request["variant"])
            if load_error:
                outcome = {"status": "failed", "error": load_error}
            else:
                try:
                    outcome = build_one(request, keras_model, reference)
                except Exception as exc:
                    outcome = {"status": "failed", "error": f"conversion failed: "
                               f"{short_error(exc)}"}
            for name, value in outcome.items():
                setattr(variant, name, value)
            VariantCache(Path(request["cache_root"])).save(variant)
            if variant.recipe == "fp32" and variant.status == "ok":
                reference = Path(request["out_dir"]) / "model.tflite"
            print(PROGRESS_PREFIX + json.dumps({"id": request["id"], **outcome}), flush=True)
        _exports(exports, keras_model, load_error)


def _exports(requests: list[dict], keras_model=None, load_error: str | None = None) -> None:
    """Write each export request's file (the model loaded here if not given)."""
    if not requests:
        return
    if keras_model is None and load_error is None:
        try:
            keras_model = load_source(requests[0]["source"])
        except Exception as exc:
            load_error = f"cannot load the model: {short_error(exc)}"
    for request in requests:
        if load_error:
            outcome = {"status": "failed", "error": load_error}
        else:
            try:
                outcome = export_one(request, keras_model)
            except Exception as exc:
                outcome = {"status": "failed", "error": f"cannot export the Keras 3 model for "
                           f"QAT: {short_error(exc)}"}
        outcome["export"] = request["export"]
        print(PROGRESS_PREFIX + json.dumps({"id": request["id"], **outcome}), flush=True)


def main(argv: list[str]) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    requests = json.loads(Path(argv[0]).read_text())
    run(requests)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
