"""Turn model specs and recipe names into built variants, from the cache or the workers.

All conversions of a run happen here, before any measurement starts: the post-training
recipes in the conversion worker (`bench.zoo.worker`, Keras 3), then the QAT recipes
(fp32-ft, qat-int8, qat-w4) in the QAT worker (`bench.zoo.qat_worker`, the only process
run with TF_USE_LEGACY_KERAS=1), which fine-tunes the weights the conversion worker
exported on the user's labelled training folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from bench.errors import ModelError, UsageError
from bench.experiments.qat import with_baseline
from bench.zoo.cache import Variant, VariantCache, file_sha256
from bench.zoo.names import ModelSpec, UserModel, ZooModel
from bench.zoo.recipes import (
    CALIBRATION_SEED,
    DEFAULT_CALIBRATION_SIZE,
    DEFAULT_QAT_EPOCHS,
    FOLDER_PREFIX,
    NATURAL,
    UNIFORM,
    folder_of,
    is_training_recipe,
    qat_settings,
    recipe_key,
    training_data_error,
    training_needed,
)
from bench.zoo.worker import NOTE_PREFIX, PROGRESS_PREFIX

AS_IS = "file"  # the recipe name of a user's .tflite, benchmarked as it is


@dataclass(frozen=True)
class BuildOptions:
    calibration_size: int = DEFAULT_CALIBRATION_SIZE
    float_io: bool = False
    calibration: str = NATURAL  # trained models: skimage-natural, or FOLDER_PREFIX + a folder
    # QAT recipes: FOLDER_PREFIX + a labelled folder and its listing's digest
    # (`training_choice`), the epochs, and at most this many steps (None: every epoch).
    train_data: str | None = None
    qat_epochs: int = DEFAULT_QAT_EPOCHS
    qat_steps: int | None = None


EVALUATION_ONLY = ("foolbox-imagenet", "heldout", "fashion-mnist")
LEGACY_KERAS = "TF_USE_LEGACY_KERAS"


def calibration_choice(text: str | None) -> str:
    """`--calibration`: skimage-natural (default) or a folder of images, which is named
    in the cache key with a digest of its listing (another folder, another variant)."""
    if text is None or text == NATURAL:
        return NATURAL
    if text in EVALUATION_ONLY:
        raise UsageError(f"--calibration {text}: that is an evaluation set; calibrating on it "
                         "would let the quantizer see the images accuracy is measured on. Use "
                         "skimage-natural or a folder of your own images")
    from bench.data.datasets import image_folder

    folder = Path(text).expanduser().resolve()
    image_folder(folder)  # a usage error now if it is no image folder
    return _folder_source(folder)


def _folder_source(folder: Path) -> str:
    """FOLDER_PREFIX, the folder and a digest of its listing (names and sizes)."""
    listing = sorted(f"{p.relative_to(folder)}:{p.stat().st_size}"
                     for p in folder.rglob("*") if p.is_file())
    digest = hashlib.sha256("\n".join(listing).encode()).hexdigest()[:16]
    return f"{FOLDER_PREFIX}{folder}|{digest}"


def training_choice(text: str | None) -> str | None:
    """`--train-data FOLDER`: a labelled folder FOLDER/CLASS/IMAGE (class folders named by
    number are class indices, else sorted names 0..N-1), named in QAT variants' cache keys
    with a digest of its listing (another folder, or the folder changed: other variants)."""
    if text is None:
        return None
    from bench.data.datasets import KNOWN_DATASETS, image_folder

    if text in KNOWN_DATASETS:
        raise UsageError(f"--train-data {text}: that is a dataset bench evaluates or "
                         "calibrates on, not training data; give a labelled folder "
                         "FOLDER/CLASS/IMAGE.jpg")
    folder = Path(text).expanduser().resolve()
    try:
        found = image_folder(folder)
    except UsageError as exc:
        raise UsageError(f"--train-data: {exc}") from None
    if found.num_classes is None:
        raise UsageError(f"--train-data {folder}: no class folders")
    return _folder_source(folder)


def training_dataset(options: BuildOptions):
    """The labelled training images of QAT variants (None without --train-data)."""
    from bench.data.datasets import image_folder

    if options.train_data is None:
        return None
    return image_folder(folder_of(options.train_data))


def training_key(options: BuildOptions) -> dict | None:
    """The training part of a QAT variant's key: data (folder and digest), epochs, cap."""
    if options.train_data is None:
        return None
    return {"data": options.train_data, "epochs": options.qat_epochs,
            "steps": options.qat_steps}


def check_training(recipes: list[str], options: BuildOptions) -> None:
    """A QAT recipe without training data, or training data without a QAT recipe, is a
    usage error (said before anything is built)."""
    needing = training_needed(recipes)
    if needing is not None and options.train_data is None:
        raise UsageError(training_data_error(needing))
    if needing is None and options.train_data is not None:
        raise UsageError("--train-data is for the quantization-aware training recipes: add "
                         "--recipes qat-int8,qat-w4 (fp32-ft, their float baseline, comes "
                         "with them)")
    if options.qat_epochs < 1:
        raise UsageError(f"--qat-epochs must be at least 1, not {options.qat_epochs}")
    if options.qat_steps is not None and options.qat_steps < 1:
        raise UsageError(f"--qat-steps must be at least 1, not {options.qat_steps}")


def calibration_dataset(source: str, size: int, input_shape: tuple[int, ...]):
    """The images a variant calibrated on (`source` as in its cache key), for one input
    shape: to check that no evaluation image is among them. None for uniform noise."""
    from bench.data.datasets import dataset, skimage_natural

    if source.startswith(FOLDER_PREFIX):
        return dataset(folder_of(source), input_shape=input_shape)
    if source != NATURAL or int(input_shape[-1]) != 3:
        return None
    return skimage_natural(count=size, input_size=int(input_shape[1]), seed=CALIBRATION_SEED)


def converter_version() -> str:
    try:
        return metadata.version("tensorflow")
    except metadata.PackageNotFoundError:
        return "unknown"


def source_of(spec: ModelSpec) -> dict:
    if isinstance(spec, ZooModel):
        return {"kind": "zoo", "arch": spec.arch, "size": spec.size, "alpha": spec.alpha,
                "seed": spec.seed, "weights": spec.weights}
    return {"kind": spec.kind, "path": str(spec.path)}


def calibration_source(spec: ModelSpec, options: BuildOptions = BuildOptions()) -> str:
    """Trained ImageNet weights calibrate on photographs (or the user's folder); random
    weights on their input range; a user's model on the user's folder when given."""
    if isinstance(spec, ZooModel) and spec.weight_source is not None:
        return options.calibration
    if not isinstance(spec, ZooModel) and options.calibration.startswith(FOLDER_PREFIX):
        return options.calibration
    return UNIFORM


def preprocessing_of(spec: ModelSpec) -> str:
    """What a model's inputs are made like: its trained weights' preprocessing, else
    torchvision's ImageNet normalisation (also what user files are assumed to take)."""
    from bench.data.images import TORCHVISION

    if isinstance(spec, ZooModel) and spec.weight_source is not None:
        return spec.weight_source.preprocessing
    return TORCHVISION


def variant_key(spec: ModelSpec, recipe: str, options: BuildOptions) -> dict:
    if isinstance(spec, ZooModel):
        model_key = spec.key()
    else:  # a user's file: its content identifies it
        path = spec.path
        digest = file_sha256(path) if path.is_file() else _directory_digest(path)
        model_key = {"file": digest, "kind": spec.kind}
    return {
        "model": model_key,
        **recipe_key(recipe, options.calibration_size, options.float_io,
                     calibration_source(spec, options),
                     training_key(options) if is_training_recipe(recipe) else None),
        "converter": {"tensorflow": converter_version()},
    }


def _directory_digest(path: Path) -> str:
    entries = []
    for item in sorted(path.rglob("*")):
        if item.is_file():
            entries.append(f"{item.relative_to(path)}:{file_sha256(item)}")
    return hashlib.sha256("\n".join(entries).encode()).hexdigest()


def recipes_for(spec: ModelSpec, recipes: list[str]) -> list[str]:
    """The recipes a model is measured in: a .tflite file only as it is."""
    if isinstance(spec, UserModel) and spec.kind == "tflite":
        return [AS_IS]
    return list(recipes)


def user_tflite_variant(spec: UserModel) -> Variant:
    from bench.zoo.inspect import inspect_tflite

    try:
        info = inspect_tflite(spec.path)
    except ModelError as exc:
        return Variant(model=spec.name, recipe=AS_IS, status="failed", error=str(exc))
    return Variant(model=spec.name, recipe=AS_IS, status="ok", path=str(spec.path),
                   sha256=info.sha256, size_bytes=info.size_bytes, key={"file": info.sha256},
                   ops=dict(info.ops), macs=info.macs, weight_scheme=info.weight_scheme)


def add_inspection(variant: Variant) -> bool:
    """Record what the built file holds (ops, MACs, weight storage) with the variant, so
    reports need not find the file again; True when it was read now. A file the inspector
    cannot read keeps None."""
    from bench.zoo.inspect import inspect_tflite

    if variant.status != "ok" or variant.path is None or variant.ops is not None:
        return False
    try:
        info = inspect_tflite(variant.path)
    except ModelError:
        return False
    variant.ops, variant.macs, variant.weight_scheme = dict(info.ops), info.macs, \
        info.weight_scheme
    return True


class VariantBuilder:
    """Resolves every (model, recipe) of a run to a Variant, converting what is missing."""

    def __init__(self, cache: VariantCache, options: BuildOptions,
                 on_event: Callable[[str], None] = lambda line: None):
        self.cache = cache
        self.options = options
        self.on_event = on_event
        self.converted = 0
        self.exports: dict[str, dict] = {}  # export file -> the conversion worker's outcome

    def build(self, specs: list[ModelSpec], recipes: list[str]) -> dict:
        """{(model name, recipe): Variant}; fp32 is always built as the reference, and
        fp32-ft with any QAT recipe (their fair baseline)."""
        recipes = list(with_baseline(recipes))
        check_training(recipes, self.options)
        variants: dict[tuple[str, str], Variant] = {}
        missing: list[dict] = []
        training: list[dict] = []
        scratch = tempfile.TemporaryDirectory(prefix="bench-qat-")
        try:
            for spec in specs:
                if isinstance(spec, UserModel) and spec.kind == "tflite":
                    variants[spec.name, AS_IS] = user_tflite_variant(spec)
                    continue
                wanted = ["fp32"] + [r for r in recipes if r != "fp32"]
                reference = None
                trained_here: list[dict] = []
                for recipe in wanted:
                    key = variant_key(spec, recipe, self.options)
                    cached = self.cache.load(key)
                    if cached is not None:
                        variants[spec.name, recipe] = cached
                        if recipe == "fp32":
                            reference = cached.path
                        continue
                    variant = Variant(spec.name, recipe, "failed", key=key,
                                      random_weights=spec.random_weights)
                    variants[spec.name, recipe] = variant
                    request = {
                        "source": source_of(spec),
                        "variant": variant.to_dict(),
                        "out_dir": str(self.cache.directory(key)),
                        "cache_root": str(self.cache.root),
                        "reference": reference,
                        "calibration_size": self.options.calibration_size,
                        "calibration_source": calibration_source(spec, self.options),
                        "preprocessing": preprocessing_of(spec),
                        "float_io": self.options.float_io,
                    }
                    if not is_training_recipe(recipe):
                        missing.append({"id": len(missing), **request})
                    elif isinstance(spec, UserModel) and spec.kind == "saved_model":
                        variant.error = ("a SavedModel directory holds no Keras layers to "
                                         "fine-tune: give the model as a .keras or .h5 file")
                    else:
                        trained_here.append(request)
                if trained_here:
                    training += self._training_requests(spec, trained_here, variants,
                                                        missing, Path(scratch.name))
            if missing:
                self._run_worker(missing, variants)
            if training:
                self._run_qat_worker(training, variants)
        finally:
            scratch.cleanup()
        for spec in specs:
            source = spec.name if isinstance(spec, ZooModel) else str(spec.path)
            for (model, _), variant in variants.items():
                if model == spec.name:
                    variant.source = source
        for variant in variants.values():
            if add_inspection(variant) and variant.recipe != AS_IS:
                self.cache.save(variant)  # read once: the next run finds it in meta.json
        return variants

    def _training_requests(self, spec: ModelSpec, requests: list[dict], variants: dict,
                           missing: list[dict], scratch: Path) -> list[dict]:
        """The QAT worker's requests of one model, and the conversion worker's request to
        export that model's Keras 3 weights and logits for them (`bench.zoo.worker`)."""
        export = scratch / f"export-{len(missing)}.npz"
        train_folder = folder_of(self.options.train_data or "")
        missing.append({"id": len(missing), "export": str(export), "source": source_of(spec),
                        "train_data": train_folder, "preprocessing": preprocessing_of(spec)})
        if spec.random_weights:
            self.on_event(f"note: {spec.name} has random weights: fine-tuning them on "
                          f"{train_folder} measures latency and size, nothing of accuracy")
        baseline = variants.get((spec.name, "fp32-ft"))
        found = []
        for request in requests:
            recipe = request["variant"]["recipe"]
            found.append({**request, "export": str(export), "train_data": train_folder,
                          "qat_epochs": self.options.qat_epochs,
                          "qat_steps": self.options.qat_steps,
                          "settings": qat_settings(recipe),
                          "baseline": baseline.path if baseline is not None
                          and baseline.status == "ok" and baseline.cached else None})
        return found

    def _run_qat_worker(self, requests: list[dict], variants: dict) -> None:
        """The QAT variants, after the conversion worker made their fp32 references and
        exports: each request learns its reference's path now. A model whose export failed
        has its QAT variants failed with that reason, without starting the worker."""
        ready = []
        for request in requests:
            exported = self.exports.get(request["export"]) or {
                "status": "failed", "error": "the conversion worker exported nothing"}
            if exported.get("status") != "ok":
                variants[request["variant"]["model"], request["variant"]["recipe"]].error = \
                    f"not fine-tuned: {exported.get('error')}"
                continue
            fp32 = variants.get((request["variant"]["model"], "fp32"))
            ready.append({**request, "id": len(ready),
                          "reference": fp32.path if fp32 is not None and fp32.status == "ok"
                          else None})
        if ready:
            self._run_worker(ready, variants, module="bench.zoo.qat_worker",
                             legacy_keras=True, what="fine-tuning")

    def _run_worker(self, requests: list[dict], variants: dict, module: str = "bench.zoo.worker",
                    legacy_keras: bool = False, what: str = "converting") -> None:
        by_id = {r["id"]: variants[r["variant"]["model"], r["variant"]["recipe"]]
                 for r in requests if "variant" in r}
        self.cache.root.mkdir(parents=True, exist_ok=True)
        log_path = self.cache.root / ("qat-worker.log" if legacy_keras else "worker.log")
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
            json.dump(requests, handle)
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}
        # tf.keras is legacy Keras (tf_keras) only in the QAT worker, whatever the shell says.
        env.pop(LEGACY_KERAS, None)
        if legacy_keras:
            env[LEGACY_KERAS] = "1"
        exports = len(requests) - len(by_id)
        also = f", exporting {exports} model(s) for QAT" if exports else ""
        self.on_event(f"{what} {len(by_id)} variant(s){also} (TensorFlow "
                      f"{converter_version()}; log: {log_path})")
        try:
            with open(log_path, "w") as log:
                process = subprocess.Popen(
                    [sys.executable, "-m", module, handle.name],
                    stdout=subprocess.PIPE, stderr=log, text=True, env=env)
                assert process.stdout is not None
                for line in process.stdout:
                    if line.startswith(PROGRESS_PREFIX):
                        self._finish(json.loads(line[len(PROGRESS_PREFIX):]), by_id)
                    elif line.startswith(NOTE_PREFIX):
                        self.on_event("  " + line[len(NOTE_PREFIX):].rstrip())
                code = process.wait()
        finally:
            os.unlink(handle.name)
        for variant in by_id.values():
            if variant.status != "ok" and not variant.error:
                variant.error = (f"{'QAT' if legacy_keras else 'conversion'} worker exited with "
                                 f"code {code} before building this variant; see {log_path}")

    def _finish(self, outcome: dict, by_id: dict) -> None:
        identifier = outcome.pop("id")
        if identifier not in by_id:  # an export for the QAT worker
            self.exports[outcome.get("export", "")] = outcome
            return
        variant = by_id[identifier]
        for name, value in outcome.items():
            setattr(variant, name, value)
        if variant.status == "ok":
            variant.path = str(self.cache.directory(variant.key) / "model.tflite")
            self.converted += 1
            levels = (variant.check or {}).get("weight_levels") or {}
            packed = f"; packed 4-bit size {levels['packed_4bit_bytes'] / 1e6:.3f} MB" \
                if levels.get("packed_4bit_bytes") is not None else ""
            self.on_event(f"  built {variant.model} {variant.recipe}: "
                          f"{variant.size_bytes / 1e6:.2f} MB in {variant.build_seconds:.1f}s"
                          f"{packed}")
        else:
            self.on_event(f"  FAILED {variant.model} {variant.recipe}: {variant.error}")
