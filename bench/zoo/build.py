"""Turn model specs and recipe names into built variants, from the cache or the worker.

All conversions of a run happen here, before any measurement starts.
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
from bench.zoo.cache import Variant, VariantCache, file_sha256
from bench.zoo.names import ModelSpec, UserModel, ZooModel
from bench.zoo.recipes import (
    CALIBRATION_SEED,
    DEFAULT_CALIBRATION_SIZE,
    FOLDER_PREFIX,
    NATURAL,
    UNIFORM,
    folder_of,
    recipe_key,
)
from bench.zoo.worker import PROGRESS_PREFIX

AS_IS = "file"  # the recipe name of a user's .tflite, benchmarked as it is


@dataclass(frozen=True)
class BuildOptions:
    calibration_size: int = DEFAULT_CALIBRATION_SIZE
    float_io: bool = False
    calibration: str = NATURAL  # trained models: skimage-natural, or FOLDER_PREFIX + a folder


EVALUATION_ONLY = ("foolbox-imagenet", "heldout", "fashion-mnist")


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
    listing = sorted(f"{p.relative_to(folder)}:{p.stat().st_size}"
                     for p in folder.rglob("*") if p.is_file())
    digest = hashlib.sha256("\n".join(listing).encode()).hexdigest()[:16]
    return f"{FOLDER_PREFIX}{folder}|{digest}"


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
                     calibration_source(spec, options)),
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

    def build(self, specs: list[ModelSpec], recipes: list[str]) -> dict:
        """{(model name, recipe): Variant}; fp32 is always built as the reference."""
        variants: dict[tuple[str, str], Variant] = {}
        missing: list[dict] = []
        for spec in specs:
            if isinstance(spec, UserModel) and spec.kind == "tflite":
                variants[spec.name, AS_IS] = user_tflite_variant(spec)
                continue
            wanted = ["fp32"] + [r for r in recipes if r != "fp32"]
            reference = None
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
                missing.append({
                    "id": len(missing),
                    "source": source_of(spec),
                    "variant": variant.to_dict(),
                    "out_dir": str(self.cache.directory(key)),
                    "cache_root": str(self.cache.root),
                    "reference": reference,
                    "calibration_size": self.options.calibration_size,
                    "calibration_source": calibration_source(spec, self.options),
                    "preprocessing": preprocessing_of(spec),
                    "float_io": self.options.float_io,
                })
        if missing:
            self._run_worker(missing, variants)
        for spec in specs:
            source = spec.name if isinstance(spec, ZooModel) else str(spec.path)
            for (model, _), variant in variants.items():
                if model == spec.name:
                    variant.source = source
        for variant in variants.values():
            if add_inspection(variant) and variant.recipe != AS_IS:
                self.cache.save(variant)  # read once: the next run finds it in meta.json
        return variants

    def _run_worker(self, requests: list[dict], variants: dict) -> None:
        by_id = {r["id"]: variants[r["variant"]["model"], r["variant"]["recipe"]]
                 for r in requests}
        self.cache.root.mkdir(parents=True, exist_ok=True)
        log_path = self.cache.root / "worker.log"
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
            json.dump(requests, handle)
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}
        self.on_event(f"converting {len(requests)} variant(s) (TensorFlow "
                      f"{converter_version()}; log: {log_path})")
        try:
            with open(log_path, "w") as log:
                process = subprocess.Popen(
                    [sys.executable, "-m", "bench.zoo.worker", handle.name],
                    stdout=subprocess.PIPE, stderr=log, text=True, env=env)
                assert process.stdout is not None
                for line in process.stdout:
                    if line.startswith(PROGRESS_PREFIX):
                        self._finish(json.loads(line[len(PROGRESS_PREFIX):]), by_id)
                code = process.wait()
        finally:
            os.unlink(handle.name)
        for variant in by_id.values():
            if variant.status != "ok" and not variant.error:
                variant.error = (f"conversion worker exited with code {code} before building "
                                 f"this variant; see {log_path}")

    def _finish(self, outcome: dict, by_id: dict) -> None:
        variant = by_id[outcome.pop("id")]
        for name, value in outcome.items():
            setattr(variant, name, value)
        if variant.status == "ok":
            variant.path = str(self.cache.directory(variant.key) / "model.tflite")
            self.converted += 1
            self.on_event(f"  built {variant.model} {variant.recipe}: "
                          f"{variant.size_bytes / 1e6:.2f} MB in {variant.build_seconds:.1f}s")
        else:
            self.on_event(f"  FAILED {variant.model} {variant.recipe}: {variant.error}")
