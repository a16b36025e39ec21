"""Target: the Keras ports (torchvision's MobileNetV2, EfficientNet-Lite0) are proven.

1. On foolbox's 20 labelled ImageNet images, the Keras port's logits against an
   independent numpy forward pass written from PyTorch's semantics (tests/torch_reference.py)
   for the same weights: max abs difference, target <= 1e-4; the same for EfficientNet-Lite0
   against tests/efficientnet_reference.py.
2. The converted variants (bench's own conversions, cached): the fp32 .tflite's top-1 and
   top-5 on those 20 images (a smoke test: one image is 5 points), and each quantized
   variant's agreement with fp32's top-1 on the 20 images and on 1,000 held-out crops and
   flips of them (never used for calibration).

    .venv/bin/python benchmarks/port_check.py [--heldout 1000] [--cache models/cache]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from bench.data.datasets import foolbox_imagenet, heldout  # noqa: E402
from bench.zoo.build import BuildOptions, VariantBuilder  # noqa: E402
from bench.zoo.cache import VariantCache  # noqa: E402
from bench.zoo.check import run_on_inputs  # noqa: E402
from bench.zoo.names import parse_model  # noqa: E402

TOLERANCE = 1e-4
RECIPES = ["fp32", "dynamic", "int8", "int8-per-tensor"]


def logits(path: Path, inputs: np.ndarray) -> np.ndarray:
    outputs = run_on_inputs(path, [inputs[i:i + 1] for i in range(len(inputs))])
    return np.concatenate([o.reshape(1, -1) for o in outputs])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--heldout", type=int, default=1000)
    parser.add_argument("--cache", type=Path, default=REPO / "models" / "cache")
    args = parser.parse_args()

    from bench.zoo import torchvision_port
    from bench.zoo.assets import load_mobilenet_v2_state_dict
    from tests.torch_reference import mobilenet_v2_logits

    images, labels = foolbox_imagenet(224).take()
    state = load_mobilenet_v2_state_dict()
    started = time.perf_counter()
    reference = mobilenet_v2_logits(state, images.transpose(0, 3, 1, 2).astype(np.float64))
    reference_s = time.perf_counter() - started
    port = torchvision_port.build(state, 224).predict(images, verbose=0)
    difference = float(np.abs(port - reference).max())
    ok = difference <= TOLERANCE
    print(f"Keras port vs numpy reference (PyTorch semantics), {len(images)} images: max abs "
          f"logit difference {difference:.2e} (target <= {TOLERANCE:g}) "
          f"{'MET' if ok else 'MISSED'}; reference {reference_s / len(images):.2f} s/image")
    print(f"  top-1 of the reference {np.mean(reference.argmax(1) == labels) * 100:.0f}%, "
          f"of the port {np.mean(port.argmax(1) == labels) * 100:.0f}% "
          f"(foolbox's 20 images: a smoke test, one image = 5 points)")

    from bench.zoo import efficientnet_lite_port
    from bench.zoo.assets import load_efficientnet_lite0_state_dict
    from tests.efficientnet_reference import efficientnet_lite0_logits

    lite = load_efficientnet_lite0_state_dict()
    lite_reference = efficientnet_lite0_logits(lite,
                                               images.transpose(0, 3, 1, 2).astype(np.float64))
    lite_port = efficientnet_lite_port.build(lite, 224).predict(images, verbose=0)
    lite_difference = float(np.abs(lite_port - lite_reference).max())
    ok = ok and lite_difference <= TOLERANCE
    lite_top5 = np.argsort(-lite_port, axis=1)[:, :5]
    print(f"EfficientNet-Lite0 port vs numpy reference (efficientnet-lite-pytorch semantics): "
          f"max abs logit difference {lite_difference:.2e} (target <= {TOLERANCE:g}) "
          f"{'MET' if lite_difference <= TOLERANCE else 'MISSED'}; top-1 "
          f"{np.mean(lite_port.argmax(1) == labels) * 100:.0f}%, top-5 "
          f"{np.mean([lb in row for lb, row in zip(labels, lite_top5, strict=True)]) * 100:.0f}%"
          " (ImageNet mean/std inputs)")

    spec = parse_model("mobilenet_v2:imagenet")
    built = VariantBuilder(VariantCache(args.cache), BuildOptions(),
                           on_event=lambda line: print(line, file=sys.stderr)).build(
        [spec], RECIPES)
    extra, _ = heldout(count=args.heldout, input_size=224, seed=0).take()
    outputs = {}
    for recipe in RECIPES:
        variant = built[spec.name, recipe]
        if variant.status != "ok":
            print(f"  {recipe}: build failed: {variant.error}")
            continue
        path = Path(variant.path)
        outputs[recipe] = (logits(path, images), logits(path, extra), variant.size_bytes)
    fp32_images, fp32_extra, _ = outputs["fp32"]
    print(f"\n{'recipe':<16} {'MB':>6} {'top-1':>6} {'top-5':>6} {'agree (20)':>10} "
          f"{'agree (' + str(len(extra)) + ')':>12}")
    for recipe, (on_images, on_extra, size) in outputs.items():
        top5 = np.argsort(-on_images, axis=1)[:, :5]
        top1 = np.mean(on_images.argmax(1) == labels) * 100
        within5 = np.mean([label in row for label, row in zip(labels, top5, strict=True)]) * 100
        agree = np.mean(on_images.argmax(1) == fp32_images.argmax(1)) * 100
        agree_extra = np.mean(on_extra.argmax(1) == fp32_extra.argmax(1)) * 100
        print(f"{recipe:<16} {size / 1e6:6.2f} {top1:5.0f}% {within5:5.0f}% {agree:9.0f}% "
              f"{agree_extra:11.1f}%")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
