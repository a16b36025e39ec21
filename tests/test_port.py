"""The Keras port of torchvision's MobileNetV2 against an independent numpy forward pass
written from PyTorch's semantics (tests/torch_reference.py), on real weights and images.
`benchmarks/port_check.py` runs the same on all 20 images and on the converted variants."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import IN_CI

IMAGES = 4
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def weights_and_images():
    from bench.data.datasets import foolbox_imagenet
    from bench.errors import BenchError
    from bench.zoo.assets import load_mobilenet_v2_state_dict

    try:
        state = load_mobilenet_v2_state_dict()
        images, labels = foolbox_imagenet(224).take(IMAGES)
    except BenchError as exc:
        if IN_CI:
            pytest.fail(str(exc))
        pytest.skip(str(exc))
    return state, images, labels


@pytest.mark.slow
def test_the_keras_port_computes_what_pytorch_would(weights_and_images):
    from bench.zoo import torchvision_port
    from tests.torch_reference import mobilenet_v2_logits

    state, images, labels = weights_and_images
    reference = mobilenet_v2_logits(state, images.transpose(0, 3, 1, 2).astype(np.float64))
    port = torchvision_port.build(state, 224).predict(images, verbose=0)
    assert np.abs(port - reference).max() <= TOLERANCE
    top5 = np.argsort(-port, axis=1)[:, :5]
    assert all(label in row for label, row in zip(labels, top5, strict=True))  # trained


def test_weights_that_are_not_torchvisions_are_refused(weights_and_images):
    from bench.zoo import torchvision_port

    state = dict(weights_and_images[0])
    del state["features.5.conv.1.0.weight"]
    with pytest.raises(ValueError, match="features.5.conv.1.0.weight"):
        torchvision_port.build(state, 224)
    state = {**weights_and_images[0], "extra.weight": np.zeros(1, np.float32)}
    with pytest.raises(ValueError, match="not used by the port: extra.weight"):
        torchvision_port.build(state, 224)
