"""Inputs for quantization calibration and for accuracy / agreement evaluation.

A quantized model is calibrated on some images and judged on others; if the two shared
an image the judgement would flatter the calibration, so every source image has an
identity (`ImageRef`: where it came from and the sha256 of its bytes) and
`assert_disjoint` refuses any overlap. The split used here:

- calibration: `skimage-natural` (colour photographs from scikit-image's wheel), or
  Fashion-MNIST's train split for Fashion-MNIST models;
- evaluation: `foolbox-imagenet` (20 labelled ImageNet validation images), `heldout`
  (crops and flips of those same 20 images, for fp32-vs-quantized agreement), a user's
  ImageNet-style folder, or Fashion-MNIST's test split.

The wheels are downloaded by `make assets` and read in place (`bench.zoo.assets`);
Fashion-MNIST comes from Debian's `dataset-fashion-mnist` package.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import operator
import os
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image

from bench.data import images as img
from bench.errors import UsageError
from bench.zoo import assets

Kind = Literal["labelled", "unlabelled"]
Batch = tuple[np.ndarray, np.ndarray | None]

FOOLBOX = "foolbox"
FOOLBOX_PREFIX = "foolbox/data/"
SKIMAGE = "scikit-image"
SKIMAGE_PREFIX = "skimage/data/"

SKIMAGE_NATURAL = (
    "astronaut.png",
    "chelsea.png",
    "coffee.png",
    "rocket.jpg",
    "motorcycle_left.png",
    "motorcycle_right.png",
)
"""The calibration photographs: everyday colour scenes like ImageNet's (a person, a cat,
a cup, a launch pad, a motorcycle in a garage). motorcycle_left/right are one scene seen
by a stereo pair, so both stay on the calibration side. Left out of calibration *and*
evaluation: hubble_deep_field.jpg (mostly black sky) and retina.jpg (a fundus photograph
in a black disc), which are photographs but not scenes an ImageNet model is made for;
ihc.png (a microscope slide); the grey photographs (camera, coins, moon, grass, gravel,
brick, clock_motion, text, page, cell), which carry no colour statistics; and the
synthetic images (chessboards, color wheel, phantom, logo, horse silhouette)."""

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
FASHION_MNIST_SPLITS = {"train": "train", "test": "t10k"}

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
FOLDER_LAYOUT = (
    "FOLDER/CLASS_NAME/IMAGE.jpg|png (class index: the position in the sorted folder "
    "names, or the folder names themselves when all are integers)"
)
_FOOLBOX_WHAT = "foolbox's ImageNet images"
_SKIMAGE_WHAT = "scikit-image's photographs"
_FOOLBOX_IMAGENET = re.compile(r"imagenet_(\d+)_(\d+)\.jpg")


@dataclass(frozen=True)
class ImageRef:
    """A source image's identity: where it came from and the sha256 of its bytes (the
    encoded file, or the raw pixels for array datasets)."""

    origin: str
    sha256: str


class Dataset(ABC):
    """Named inputs in NHWC float32 batches, with int labels or None."""

    def __init__(
        self,
        name: str,
        kind: Kind,
        input_shape: tuple[int, int, int],
        num_classes: int | None = None,
        class_names: tuple[str, ...] | None = None,
        description: str = "",
        split: str | None = None,
    ) -> None:
        self.name = name
        self.kind: Kind = kind
        self.input_shape = input_shape
        self.num_classes = num_classes
        self.class_names = class_names
        self.description = description
        self.split = split

    @property
    def label(self) -> str:
        """The name with the split, if any (`fashion-mnist:train`), for messages."""
        return self.name if self.split is None else f"{self.name}:{self.split}"

    @abstractmethod
    def __len__(self) -> int:
        """Number of samples (inputs), not of source images."""

    @abstractmethod
    def _slice(self, start: int, stop: int) -> Batch:
        """Samples [start, stop) as one batch."""

    @abstractmethod
    def sources(self) -> tuple[ImageRef, ...]:
        """The distinct source images behind the samples (reads them to hash them)."""

    def batches(self, batch_size: int = 32, *, limit: int | None = None) -> Iterator[Batch]:
        """(inputs, labels) batches in order; made lazily, so large sets fit in memory."""
        if batch_size < 1:
            raise ValueError(f"batch size must be positive, not {batch_size}")
        stop = len(self) if limit is None else min(limit, len(self))
        for start in range(0, stop, batch_size):
            yield self._slice(start, min(start + batch_size, stop))

    def __iter__(self) -> Iterator[Batch]:
        return self.batches()

    def slice(self, start: int, stop: int) -> Batch:
        """Samples [start, stop) as one batch (a draw of a few from a large folder)."""
        return self._slice(max(start, 0), min(stop, len(self)))

    def take(self, count: int | None = None) -> Batch:
        """The first `count` samples (all by default) as one batch."""
        stop = len(self) if count is None else min(count, len(self))
        return self._slice(0, stop)

    def __repr__(self) -> str:
        return f"<Dataset {self.label} {self.kind} {len(self)} x {self.input_shape}>"


# ---------------------------------------------------------------- images from files


@dataclass(frozen=True)
class _Source:
    """One source image: where it is, how to read its bytes, its label if known."""

    origin: str
    read: Callable[[], bytes]
    label: int | None = None


class ImageDataset(Dataset):
    """Samples that are views of source images: the standard center crop (view None)
    or a planned random-resized-crop + flip (`images.View`)."""

    def __init__(
        self,
        name: str,
        kind: Kind,
        crop: int,
        sources: Sequence[_Source],
        views: Sequence[tuple[int, img.View | None]],
        *,
        num_classes: int | None = None,
        class_names: tuple[str, ...] | None = None,
        description: str = "",
        cache_decoded: bool = False,
        preprocessing: str = img.TORCHVISION,
    ) -> None:
        super().__init__(name, kind, (crop, crop, 3), num_classes, class_names, description)
        self.crop = crop
        self.preprocessing = preprocessing
        self._sources = tuple(sources)
        self._views = tuple(views)
        # Many views of few images: decode each once (a few MB); folders are read as needed.
        self._decoded: dict[int, Image.Image] | None = {} if cache_decoded else None

    def __len__(self) -> int:
        return len(self._views)

    def _image(self, index: int) -> Image.Image:
        if self._decoded is None:
            return img.decode(self._sources[index].read())
        if index not in self._decoded:
            self._decoded[index] = img.decode(self._sources[index].read())
        return self._decoded[index]

    def _slice(self, start: int, stop: int) -> Batch:
        crop = self.crop
        inputs = np.empty((max(stop - start, 0), crop, crop, 3), dtype=np.float32)
        labels = []
        for row, (source, view) in enumerate(self._views[start:stop]):
            image = self._image(source)
            if view is None:
                inputs[row] = img.preprocess(image, crop, preprocessing=self.preprocessing)
            else:
                inputs[row] = img.render_view(image, view, crop, self.preprocessing)
            labels.append(self._sources[source].label)
        if self.kind == "unlabelled":
            return inputs, None
        return inputs, np.asarray(labels, dtype=np.int64)

    def sources(self) -> tuple[ImageRef, ...]:
        return tuple(
            ImageRef(s.origin, hashlib.sha256(s.read()).hexdigest()) for s in self._sources
        )

    def source_of(self, index: int) -> str:
        """The origin of sample `index`'s source image (for reports and tests)."""
        return self._sources[self._views[index][0]].origin


def _wheel_source(package: str, member: str, what: str, label: int | None = None) -> _Source:
    """A wheel member read once now (these are small), kept as bytes."""
    data = assets.wheel_member(package, member, what=what)
    return _Source(f"{package}:{member}", lambda: data, label)


def _image_size(source: _Source) -> tuple[int, int]:
    """(width, height) from the header, without decoding the pixels."""
    with Image.open(io.BytesIO(source.read())) as image:
        return image.size


def _positive(what: str, value: int) -> None:
    if value < 1:
        raise UsageError(f"{what} must be at least 1, not {value}")


def _planned_views(
    sources: Sequence[_Source], count: int, seed: int
) -> list[tuple[int, img.View | None]]:
    """`count` views spread round-robin over the images (so any prefix covers them all);
    image k's views come from default_rng([seed, k]), independent of the others."""
    per_image = [len(range(k, count, len(sources))) for k in range(len(sources))]
    planned = []
    for k, source in enumerate(sources):
        width, height = _image_size(source)
        planned.append(img.plan_views(width, height, per_image[k], (seed, k)))
    return [(j % len(sources), planned[j % len(sources)][j // len(sources)]) for j in range(count)]


def _foolbox_sources() -> list[_Source]:
    found = []
    for member in assets.wheel_members(FOOLBOX, FOOLBOX_PREFIX + "imagenet_", what=_FOOLBOX_WHAT):
        basename = member.rsplit("/", 1)[-1]
        match = _FOOLBOX_IMAGENET.fullmatch(basename)
        if match:
            found.append((int(match.group(1)), basename, int(match.group(2))))
    if not found:
        raise UsageError(
            f"no {FOOLBOX_PREFIX}imagenet_NN_LABEL.jpg images in the {FOOLBOX} wheel; "
            "run `make assets` again"
        )
    return [
        _wheel_source(FOOLBOX, FOOLBOX_PREFIX + name, _FOOLBOX_WHAT, label)
        for _, name, label in sorted(found)
    ]


def foolbox_imagenet(input_size: int = 224, preprocessing: str = img.TORCHVISION) -> ImageDataset:
    """foolbox's 20 labelled ImageNet validation images, center-cropped."""
    sources = _foolbox_sources()
    return ImageDataset(
        "foolbox-imagenet",
        "labelled",
        input_size,
        sources,
        [(k, None) for k in range(len(sources))],
        num_classes=1000,
        description=(
            f"{len(sources)} labelled ImageNet validation images from the foolbox wheel: "
            "a smoke test of weights, labels and preprocessing, not ImageNet accuracy "
            "(one image is 5 points)"
        ),
        preprocessing=preprocessing,
    )


def skimage_natural(count: int = 100, input_size: int = 224, seed: int = 0,
                    preprocessing: str = img.TORCHVISION) -> ImageDataset:
    """`count` calibration inputs: crops and flips of scikit-image's colour photographs."""
    _positive("count", count)
    sources = [
        _wheel_source(SKIMAGE, SKIMAGE_PREFIX + name, _SKIMAGE_WHAT) for name in SKIMAGE_NATURAL
    ]
    return ImageDataset(
        "skimage-natural",
        "unlabelled",
        input_size,
        sources,
        _planned_views(sources, count, seed),
        description=(
            f"{count} random-resized crops and flips (seed {seed}) of {len(sources)} "
            "colour photographs from the scikit-image wheel, for calibration"
        ),
        cache_decoded=True,
        preprocessing=preprocessing,
    )


def heldout(count: int = 1000, input_size: int = 224, seed: int = 0,
            preprocessing: str = img.TORCHVISION) -> ImageDataset:
    """`count` inputs for fp32-vs-quantized agreement, never seen by calibration: crops
    and flips of foolbox's ImageNet images (in-distribution photographs; no skimage image
    is used, so nothing is shared with `skimage-natural`)."""
    _positive("count", count)
    sources = _foolbox_sources()
    sources = [_Source(s.origin, s.read) for s in sources]  # views may cut the object out
    return ImageDataset(
        "heldout",
        "unlabelled",
        input_size,
        sources,
        _planned_views(sources, count, seed),
        description=(
            f"{count} random-resized crops and flips (seed {seed}) of {len(sources)} "
            "ImageNet validation images from the foolbox wheel, for output agreement"
        ),
        cache_decoded=True,
        preprocessing=preprocessing,
    )


def image_folder(path: str | Path, input_size: int = 224,
                 preprocessing: str = img.TORCHVISION) -> ImageDataset:
    """A user's labelled images, FOLDER/CLASS/IMAGE, center-cropped like ImageNet."""
    root = Path(path).expanduser()
    if not root.exists():
        raise UsageError(f"dataset folder {root} does not exist; expected {FOLDER_LAYOUT}")
    if not root.is_dir():
        raise UsageError(f"dataset {root} is a file, not a folder; expected {FOLDER_LAYOUT}")
    entries = sorted(p for p in root.iterdir() if not p.name.startswith("."))
    if not entries:
        raise UsageError(f"dataset folder {root} is empty; expected {FOLDER_LAYOUT}")
    class_dirs = [p for p in entries if p.is_dir()]
    if not class_dirs:
        raise UsageError(
            f"dataset folder {root} has no class subfolders ({len(entries)} files directly "
            f"in it); expected {FOLDER_LAYOUT}"
        )
    names = [d.name for d in class_dirs]
    numeric = all(name.isascii() and name.isdigit() for name in names)
    if numeric:
        labels = [int(name) for name in names]
        if len(set(labels)) != len(labels):
            raise UsageError(f"dataset folder {root} has two class folders for one number")
        num_classes, class_names = max(labels) + 1, None
    else:
        labels, num_classes, class_names = list(range(len(names))), len(names), tuple(names)
    sources, empty = [], []
    for directory, label in zip(class_dirs, labels, strict=True):
        files = sorted(
            p
            for p in directory.iterdir()
            if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file() and not p.name.startswith(".")
        )
        if not files:
            empty.append(directory.name)
        sources.extend(_Source(str(p), p.read_bytes, label) for p in files)
    if empty:
        shown = ", ".join(empty[:5]) + (f" and {len(empty) - 5} more" if len(empty) > 5 else "")
        raise UsageError(
            f"dataset folder {root}: no .jpg/.jpeg/.png images in class folder(s) {shown}"
        )
    return ImageDataset(
        str(root),
        "labelled",
        input_size,
        sources,
        [(k, None) for k in range(len(sources))],
        num_classes=num_classes,
        class_names=class_names,
        description=f"{len(sources)} images in {len(names)} class folders of {root}",
        preprocessing=preprocessing,
    )


# ---------------------------------------------------------------- Fashion-MNIST


class ArrayDataset(Dataset):
    """Samples held as uint8 images (N, H, W), scaled to [0, 1] with a channel axis."""

    def __init__(
        self,
        name: str,
        pixels: np.ndarray,
        labels: np.ndarray,
        origin: str,
        *,
        num_classes: int,
        class_names: tuple[str, ...],
        description: str = "",
        split: str | None = None,
    ) -> None:
        shape = (int(pixels.shape[1]), int(pixels.shape[2]), 1)
        super().__init__(name, "labelled", shape, num_classes, class_names, description, split)
        self._pixels = pixels
        self._labels = labels
        self._origin = origin

    def __len__(self) -> int:
        return int(self._pixels.shape[0])

    def _slice(self, start: int, stop: int) -> Batch:
        inputs = self._pixels[start:stop, :, :, None].astype(np.float32) / np.float32(255.0)
        return inputs, self._labels[start:stop].astype(np.int64)

    def sources(self) -> tuple[ImageRef, ...]:
        return tuple(
            ImageRef(f"{self._origin}[{k}]", hashlib.sha256(image.tobytes()).hexdigest())
            for k, image in enumerate(self._pixels)
        )


def _read_idx(path: Path, magic: int, ndim: int) -> np.ndarray:
    """An IDX file (gzip): big-endian magic, ndim big-endian uint32 sizes, uint8 data."""
    try:
        data = gzip.decompress(path.read_bytes())
    except (OSError, EOFError) as err:
        raise UsageError(f"cannot read {path}: {err}") from err
    header = 4 + 4 * ndim
    if len(data) < header or int.from_bytes(data[:4], "big") != magic:
        raise UsageError(f"{path} is not an IDX file of {ndim} dimension(s)")
    dims = [int.from_bytes(data[4 + 4 * k : 8 + 4 * k], "big") for k in range(ndim)]
    if len(data) != header + int(np.prod(dims)):
        raise UsageError(f"{path} holds {len(data) - header} bytes, not {dims}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def fashion_mnist_dir() -> Path:
    """Where Fashion-MNIST is: $BENCH_FASHION_MNIST_DIR, else Debian's package path."""
    return Path(os.environ.get("BENCH_FASHION_MNIST_DIR") or FASHION_MNIST_DIR)


def fashion_mnist(split: str = "test") -> ArrayDataset:
    """Fashion-MNIST's train (60,000) or test (10,000) split: 28x28x1 in [0, 1]."""
    if split not in FASHION_MNIST_SPLITS:
        raise UsageError(
            f"fashion-mnist has splits {', '.join(FASHION_MNIST_SPLITS)}, not {split!r}"
        )
    root = fashion_mnist_dir()
    stem = FASHION_MNIST_SPLITS[split]
    images_path = root / f"{stem}-images-idx3-ubyte.gz"
    labels_path = root / f"{stem}-labels-idx1-ubyte.gz"
    if not images_path.is_file() or not labels_path.is_file():
        raise UsageError(
            f"Fashion-MNIST is not in {root}: install Debian's package "
            "(apt-get install dataset-fashion-mnist) or set BENCH_FASHION_MNIST_DIR"
        )
    pixels = _read_idx(images_path, 0x803, 3)
    labels = _read_idx(labels_path, 0x801, 1)
    if len(labels) != len(pixels):
        raise UsageError(f"{labels_path} has {len(labels)} labels for {len(pixels)} images")
    if len(labels) and int(labels.max()) >= len(FASHION_MNIST_CLASSES):
        raise UsageError(f"{labels_path} has a label above 9")
    return ArrayDataset(
        "fashion-mnist",
        pixels,
        labels,
        f"fashion-mnist:{split}",
        num_classes=len(FASHION_MNIST_CLASSES),
        class_names=FASHION_MNIST_CLASSES,
        description=f"Fashion-MNIST {split} split ({len(pixels)} images) from {root}",
        split=split,
    )


# ---------------------------------------------------------------- resolver


KNOWN_DATASETS = ("foolbox-imagenet", "skimage-natural", "heldout", "fashion-mnist")
_GENERATED = {"skimage-natural": 100, "heldout": 1000}


def _hwc(input_shape: Sequence[int | None]) -> tuple[int, int, int]:
    """(height, width, channels) from an HWC or NHWC shape."""
    dims = tuple(input_shape)
    if len(dims) == 4:
        dims = dims[1:]
    try:
        shape = tuple(operator.index(d) for d in dims)  # type: ignore[arg-type]
    except TypeError:
        shape = ()
    if len(shape) != 3 or min(shape) <= 0:
        raise UsageError(f"input shape {tuple(input_shape)} is not (height, width, channels)")
    return shape  # type: ignore[return-value]


def dataset(
    name_or_path: str,
    *,
    input_shape: Sequence[int | None],
    split: str | None = None,
    size: int | None = None,
    seed: int = 0,
    preprocessing: str = img.TORCHVISION,
) -> Dataset:
    """A dataset by name (KNOWN_DATASETS) or folder path, made for a model's input shape.

    `split` is Fashion-MNIST's (train/test, default test); `size` and `seed` set how many
    views skimage-natural (100) and heldout (1000) generate; `preprocessing` is what the
    model's weights expect of photographs (`bench.data.images.PREPROCESSING`).
    """
    height, width, channels = _hwc(input_shape)
    known = name_or_path in KNOWN_DATASETS
    if not known and not _looks_like_path(name_or_path):
        raise UsageError(
            f"unknown dataset {name_or_path!r}; known: {', '.join(KNOWN_DATASETS)}, "
            f"or a folder {FOLDER_LAYOUT}"
        )
    if split is not None and name_or_path != "fashion-mnist":
        raise UsageError(f"dataset {name_or_path} has no splits (only fashion-mnist has)")
    if size is not None and name_or_path not in _GENERATED:
        raise UsageError(
            f"dataset {name_or_path} has a fixed size; a size applies to {' and '.join(_GENERATED)}"
        )
    if name_or_path == "fashion-mnist":
        if (height, width, channels) != (28, 28, 1):
            raise UsageError(
                f"fashion-mnist images are 28x28x1; the model takes {height}x{width}x{channels}"
            )
        return fashion_mnist(split or "test")
    if channels != 3 or height != width:
        raise UsageError(
            f"dataset {name_or_path} makes square RGB inputs; the model takes "
            f"{height}x{width}x{channels}"
        )
    if name_or_path == "foolbox-imagenet":
        return foolbox_imagenet(height, preprocessing)
    count = _GENERATED.get(name_or_path, 0) if size is None else size
    if name_or_path == "skimage-natural":
        return skimage_natural(count, height, seed, preprocessing)
    if name_or_path == "heldout":
        return heldout(count, height, seed, preprocessing)
    return image_folder(name_or_path, height, preprocessing)


def _looks_like_path(text: str) -> bool:
    """A path rather than a misspelt name: it exists or is written like a path."""
    return "/" in text or os.sep in text or text.startswith(("~", ".")) or Path(text).exists()


def assert_disjoint(calibration: Dataset, evaluation: Dataset, what: str = "calibration") -> None:
    """Refuse calibration (or, `what`, training) and evaluation sets that share a source
    image, by origin or by content (sha256 of the bytes: the same file copied elsewhere
    counts)."""
    by_digest = {ref.sha256: ref.origin for ref in calibration.sources()}
    origins = set(by_digest.values())
    shared = [
        ref.origin
        if by_digest.get(ref.sha256, ref.origin) == ref.origin
        else f"{ref.origin} (= {by_digest[ref.sha256]})"
        for ref in evaluation.sources()
        if ref.sha256 in by_digest or ref.origin in origins
    ]
    if shared:
        more = f" and {len(shared) - 3} more" if len(shared) > 3 else ""
        raise UsageError(
            f"{what} set {calibration.label} and evaluation set {evaluation.label} share "
            f"{len(shared)} image(s): {'; '.join(shared[:3])}{more}"
        )
