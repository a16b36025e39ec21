"""A dataset as the batches a device evaluates: .npy files, uint8 wherever that is exact.

Photographs preprocessed for ImageNet are 602 KB per input as float32; the pixels they
come from are a quarter of that. A batch is staged as uint8 pixels with the normalisation
(`(p / 255 - mean) / std`) the runner applies in float32, only when that gives back every
float input bit for bit (checked here with the runner's own code); otherwise as float32.
Either way the device sees exactly the inputs the host made.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench.data.datasets import Dataset
from bench.data.images import PREPROCESSING
from bench.runners import pyrunner

BATCH_BYTES = 16 * 2**20  # staged bytes per runner process: ~100 224x224 photographs
MAX_BATCH = 20_000
NORMALISATIONS = (
    *({"mean": list(mean), "std": list(std)} for mean, std in PREPROCESSING.values()),
    {"mean": [0.0], "std": [1.0]},  # pixels / 255 (Fashion-MNIST)
)


@dataclass(frozen=True)
class StagedBatch:
    path: Path
    sha256: str
    normalise: dict | None  # None: the file holds float32 inputs
    count: int


@dataclass
class EvaluationSet:
    """One dataset made for one input shape, staged in batches."""

    name: str  # as asked (foolbox-imagenet, heldout, a folder path)
    description: str
    input_shape: tuple[int, int, int]
    labels: np.ndarray | None  # None: unlabelled (agreement and SNR only)
    num_classes: int | None
    batches: list[StagedBatch] = field(default_factory=list)
    sha256: str = ""

    @property
    def size(self) -> int:
        return sum(b.count for b in self.batches)

    @property
    def labelled(self) -> bool:
        return self.labels is not None


def encode(inputs: np.ndarray) -> tuple[np.ndarray, dict | None]:
    """uint8 pixels and their normalisation when they reproduce `inputs` exactly, else
    the float32 inputs themselves."""
    inputs = np.asarray(inputs, dtype=np.float32)
    for spec in NORMALISATIONS:
        mean = np.asarray(spec["mean"], dtype=np.float32)
        std = np.asarray(spec["std"], dtype=np.float32)
        if inputs.shape[-1] != len(mean) and len(mean) != 1:
            continue
        pixels = np.clip(np.rint((inputs * std + mean) * 255.0), 0, 255).astype(np.uint8)
        if np.array_equal(pyrunner.decode_inputs(np, pixels, spec), inputs):
            return pixels, spec
    return inputs, None


def batch_size_for(input_shape: tuple[int, ...]) -> int:
    """Inputs per batch: about BATCH_BYTES of uint8 pixels (one runner process each)."""
    per_input = max(int(np.prod(input_shape)), 1)
    return int(min(max(BATCH_BYTES // per_input, 1), MAX_BATCH))


def stage(dataset: Dataset, name: str, directory: Path,
          batch_size: int | None = None) -> EvaluationSet:
    """Write `dataset` as batch files under `directory`; the set's digest covers every
    batch and the labels, so two runs on the same inputs can be told apart from others."""
    directory.mkdir(parents=True, exist_ok=True)
    batch_size = batch_size or batch_size_for(tuple(dataset.input_shape))
    digest = hashlib.sha256()
    batches, labels = [], []
    for index, (inputs, batch_labels) in enumerate(dataset.batches(batch_size)):
        data, spec = encode(inputs)
        path = directory / f"batch-{index:04d}.npy"
        with open(path, "wb") as handle:
            np.save(handle, data, allow_pickle=False)
        sha = hashlib.sha256(path.read_bytes()).hexdigest()
        digest.update(sha.encode())
        batches.append(StagedBatch(path, sha, spec, len(data)))
        if batch_labels is not None:
            labels.append(np.asarray(batch_labels, dtype=np.int64))
    label_array = np.concatenate(labels) if labels else None
    if label_array is not None:
        digest.update(label_array.tobytes())
    return EvaluationSet(name=name, description=dataset.description,
                         input_shape=tuple(dataset.input_shape), labels=label_array,
                         num_classes=dataset.num_classes, batches=batches,
                         sha256=digest.hexdigest())
