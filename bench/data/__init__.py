"""Calibration and evaluation inputs: ImageNet preprocessing and the datasets.

`images` makes model inputs from pictures the way torchvision does; `datasets` names the
sources (wheels from `make assets`, Debian's Fashion-MNIST, a user's folder) and keeps
calibration and evaluation images apart.
"""

from __future__ import annotations

from bench.data.datasets import (
    KNOWN_DATASETS,
    SKIMAGE_NATURAL,
    Dataset,
    ImageRef,
    assert_disjoint,
    dataset,
    fashion_mnist,
    foolbox_imagenet,
    heldout,
    image_folder,
    skimage_natural,
)
from bench.data.images import preprocess, variants

__all__ = [
    "KNOWN_DATASETS",
    "SKIMAGE_NATURAL",
    "Dataset",
    "ImageRef",
    "assert_disjoint",
    "dataset",
    "fashion_mnist",
    "foolbox_imagenet",
    "heldout",
    "image_folder",
    "preprocess",
    "skimage_natural",
    "variants",
]
