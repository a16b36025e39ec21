"""The variant cache: built .tflite files keyed by everything that changes their bytes.

A variant's key is a JSON document (architecture and options, weights and seed,
recipe and calibration, converter version); its directory under models/cache is
named by the key's hash and holds `model.tflite` plus `meta.json`. A second run
with the same key converts nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

DEFAULT_CACHE = Path("models") / "cache"


def key_hash(key: dict) -> str:
    text = json.dumps(key, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class Variant:
    """One model in one recipe, built (or failed to build)."""

    model: str
    recipe: str
    status: str  # ok | failed
    path: str | None = None
    sha256: str | None = None
    size_bytes: int | None = None
    random_weights: bool = False
    error: str | None = None
    build_seconds: float | None = None
    key: dict = field(default_factory=dict)
    check: dict | None = None  # output check against the model's fp32 variant
    cached: bool = False
    source: str | None = None  # the zoo name or the user's file path it was built from
    # From the built file (`bench.zoo.inspect`): builtin op counts, MACs, weight storage.
    ops: dict | None = None
    macs: int | None = None
    weight_scheme: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


class VariantCache:
    def __init__(self, root: Path = DEFAULT_CACHE):
        self.root = Path(root)

    def directory(self, key: dict) -> Path:
        return self.root / key_hash(key)

    def load(self, key: dict) -> Variant | None:
        """The cached variant for `key`, or None when absent or damaged."""
        directory = self.directory(key)
        meta_path, model_path = directory / "meta.json", directory / "model.tflite"
        try:
            variant = Variant(**json.loads(meta_path.read_text()))
        except (OSError, ValueError, TypeError):  # absent, damaged, or an older layout
            return None
        if variant.status != "ok":
            return None  # failures are retried: they may have been transient
        if not model_path.is_file() or file_sha256(model_path) != variant.sha256:
            return None  # damaged or edited by hand: rebuild
        variant.path = str(model_path)
        variant.cached = True
        if variant.check and variant.check.get("snr_db") == -999.0:
            variant.check["snr_db"] = None  # an older release's stand-in for "no signal"
        return variant

    def save(self, variant: Variant) -> None:
        """Write meta.json atomically (the model file is written by the builder)."""
        directory = self.directory(variant.key)
        directory.mkdir(parents=True, exist_ok=True)
        meta = variant.to_dict()
        meta.pop("cached", None)
        meta.pop("source", None)  # the same bytes may come from another path next time
        meta["path"] = None
        atomic_write(directory / "meta.json", json.dumps(meta, indent=1, sort_keys=True).encode())


def atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
