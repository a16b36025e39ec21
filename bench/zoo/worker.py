"""Conversion worker: builds variants in its own process, one after another.

TensorFlow is heavy (seconds to import, a gigabyte of memory, idle threads), so the
harness never imports it itself: `bench` starts this worker for the variants
missing from the cache, waits for it, and only then measures. A conversion that
crashes takes down the worker, not the sweep.

Protocol: `python -m bench.zoo.worker REQUESTS.json`; for each finished request one
line `BENCH-BUILD <json>` on stdout. TensorFlow's own chatter goes to stderr.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from pathlib import Path

PROGRESS_PREFIX = "BENCH-BUILD "


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


def run(requests: list[dict]) -> None:
    from bench.zoo.cache import Variant, VariantCache

    by_source: dict[str, list[dict]] = {}
    for request in requests:
        by_source.setdefault(json.dumps(request["source"], sort_keys=True), []).append(request)
    for group in by_source.values():
        group.sort(key=lambda r: r["variant"]["recipe"] != "fp32")
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


def main(argv: list[str]) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    requests = json.loads(Path(argv[0]).read_text())
    run(requests)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
