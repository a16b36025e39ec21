"""torchvision's ImageNet preprocessing, with Pillow and numpy only.

The converted models expect what their PyTorch training saw, so accuracy numbers mean
something only if the inputs are made the same way: `Resize(256)` (shorter side,
bilinear), `CenterCrop(224)`, `ToTensor()` ([0, 1]), `Normalize(mean, std)`. On PIL
images torchvision resizes with PIL's own `Image.resize`, so calling PIL here gives the
same pixels; the rest is float32 arithmetic (equal to torchvision up to float rounding).
Outputs are HWC (NHWC batches), the TFLite layout, not torchvision's CHW.

Augmented views (`variants`) follow `RandomResizedCrop` + `RandomHorizontalFlip`, drawn
from a numpy Generator so a seed always gives the same views on every machine.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CROP_FRACTION = 0.875  # 224 / 256, the usual ImageNet evaluation ratio
# Views keep at least a quarter of the image: torchvision's training range (0.08, 1)
# gives texture close-ups, whose statistics are far from what an evaluated model sees.
VIEW_SCALE = (0.25, 1.0)
VIEW_RATIO = (3.0 / 4.0, 4.0 / 3.0)

# What trained weights expect after ToTensor ([0, 1]): (x - mean) / std per channel.
TORCHVISION = "torchvision-imagenet"  # torchvision's models (and the ports of them)
KERAS_MOBILENET = "keras-mobilenet"  # Keras applications' MobileNets: [-1, 1]
PREPROCESSING = {
    TORCHVISION: (IMAGENET_MEAN, IMAGENET_STD),
    KERAS_MOBILENET: ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
}
_BILINEAR = Image.Resampling.BILINEAR


def resize_for(crop: int) -> int:
    """The shorter-side resize that goes with a center crop (224 -> 256, 299 -> 342)."""
    return int(round(crop / CROP_FRACTION))


def decode(data: bytes) -> Image.Image:
    """An encoded image as RGB, as torchvision's ImageFolder loader does (grey repeated,
    alpha dropped), fully loaded so the bytes can go."""
    with Image.open(io.BytesIO(data)) as image:
        return image.convert("RGB")


def resized_size(width: int, height: int, size: int) -> tuple[int, int]:
    """(width, height) after torchvision's Resize(size): shorter side to `size`, the
    longer one scaled and truncated to an int."""
    if width <= height:
        return size, int(size * height / width)
    return int(size * width / height), size


def resize_shorter(image: Image.Image, size: int) -> Image.Image:
    """torchvision's Resize(size) on a PIL image: PIL bilinear (antialiased)."""
    target = resized_size(image.width, image.height, size)
    if target == image.size:
        return image
    return image.resize(target, _BILINEAR)


def center_crop_origin(width: int, height: int, crop: int) -> tuple[int, int]:
    """(left, top) of torchvision's center_crop: int(round(...)), so halves round to even."""
    if crop > width or crop > height:
        raise ValueError(f"crop {crop} is larger than the {width}x{height} image")
    return int(round((width - crop) / 2.0)), int(round((height - crop) / 2.0))


def center_crop(image: Image.Image, crop: int) -> Image.Image:
    """torchvision's CenterCrop(crop) on an image at least `crop` on each side."""
    left, top = center_crop_origin(image.width, image.height, crop)
    return image.crop((left, top, left + crop, top + crop))


def normalise(image: Image.Image, preprocessing: str = TORCHVISION) -> np.ndarray:
    """ToTensor + Normalize, kept HWC: float32 (x / 255 - mean) / std."""
    if preprocessing not in PREPROCESSING:
        raise ValueError(f"unknown preprocessing {preprocessing!r}; known: "
                         f"{', '.join(PREPROCESSING)}")
    mean, std = (np.asarray(v, dtype=np.float32) for v in PREPROCESSING[preprocessing])
    pixels = np.asarray(image.convert("RGB"), dtype=np.uint8).astype(np.float32)
    return ((pixels / np.float32(255.0) - mean) / std).astype(np.float32, copy=False)


def preprocess(
    image: Image.Image | bytes, crop: int = 224, resize: int | None = None,
    preprocessing: str = TORCHVISION,
) -> np.ndarray:
    """The evaluation view: Resize(resize), CenterCrop(crop), normalised; (crop, crop, 3)."""
    if isinstance(image, bytes):
        image = decode(image)
    resize = resize_for(crop) if resize is None else resize
    if resize < crop:
        raise ValueError(f"resize {resize} is smaller than crop {crop}")
    return normalise(center_crop(resize_shorter(image.convert("RGB"), resize), crop),
                     preprocessing)


@dataclass(frozen=True)
class View:
    """One augmented view of an image: a crop box in its pixels and a horizontal flip."""

    left: int
    top: int
    width: int
    height: int
    flip: bool


def random_resized_crop_box(
    width: int,
    height: int,
    rng: np.random.Generator,
    scale: Sequence[float] = VIEW_SCALE,
    ratio: Sequence[float] = VIEW_RATIO,
) -> tuple[int, int, int, int]:
    """(left, top, width, height) by RandomResizedCrop.get_params' algorithm: ten tries
    at a random area and aspect ratio, then a central crop of the closest allowed ratio."""
    area = width * height
    log_low, log_high = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(10):
        target_area = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(log_low, log_high))
        w = int(round(math.sqrt(target_area * aspect)))
        h = int(round(math.sqrt(target_area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = int(rng.integers(0, height - h + 1))
            left = int(rng.integers(0, width - w + 1))
            return left, top, w, h
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        w, h = int(round(height * max(ratio))), height
    else:
        w, h = width, height
    return (width - w) // 2, (height - h) // 2, w, h


def plan_views(
    width: int,
    height: int,
    count: int,
    seed: int | Sequence[int],
    scale: Sequence[float] = VIEW_SCALE,
    ratio: Sequence[float] = VIEW_RATIO,
) -> list[View]:
    """`count` views of a width x height image, drawn from default_rng(seed): the views
    depend only on the size and the seed, so they can be planned before decoding."""
    rng = np.random.default_rng(seed)
    views = []
    for _ in range(count):
        left, top, w, h = random_resized_crop_box(width, height, rng, scale, ratio)
        views.append(View(left, top, w, h, flip=bool(rng.random() < 0.5)))
    return views


def render_view(image: Image.Image, view: View, crop: int = 224,
                preprocessing: str = TORCHVISION) -> np.ndarray:
    """A view cropped, resized to crop x crop (bilinear), maybe flipped, normalised."""
    box = (view.left, view.top, view.left + view.width, view.top + view.height)
    region = image.convert("RGB").crop(box).resize((crop, crop), _BILINEAR)
    if view.flip:
        region = region.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return normalise(region, preprocessing)


def variants(
    image: Image.Image | bytes,
    count: int,
    seed: int | Sequence[int],
    crop: int = 224,
    scale: Sequence[float] = VIEW_SCALE,
    ratio: Sequence[float] = VIEW_RATIO,
) -> np.ndarray:
    """`count` random-resized-crop + flip views of one image, (count, crop, crop, 3),
    the same for the same seed: extra inputs from few images, reproducibly."""
    if isinstance(image, bytes):
        image = decode(image)
    views = plan_views(image.width, image.height, count, seed, scale, ratio)
    out = np.empty((count, crop, crop, 3), dtype=np.float32)
    for k, view in enumerate(views):
        out[k] = render_view(image, view, crop)
    return out
