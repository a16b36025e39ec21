"""An independent numpy forward pass of torchvision's MobileNetV2, used to check the Keras port.

This module is written from PyTorch's semantics, separately from (and without reading) the
Keras port in `bench.zoo`, so that agreement between the two is evidence that the port is
right rather than a shared mistake repeated twice. It follows PyTorch's conventions
literally rather than translating them:

* layout NCHW, convolution weights OIHW (out, in / groups, kernel height, kernel width);
* `nn.Conv2d` with explicit symmetric zero padding: `padding=(k - 1) // 2` on every side,
  including the stride-2 3x3 convolutions (Keras/TensorFlow 'same' pads those
  asymmetrically, 0 before and 1 after on even inputs, so a port must pad by hand);
* `groups`: the input channels split into `groups` equal parts, each convolved with its own
  `out / groups` filters (depthwise when groups == in channels);
* `nn.BatchNorm2d` in eval mode: `(x - running_mean) / sqrt(running_var + eps) * weight + bias`
  with torch's default `eps = 1e-5`, evaluated in that order, not folded;
* `nn.ReLU6`, `adaptive_avg_pool2d(x, 1)` (the mean over H and W), `nn.Dropout` (identity in
  eval), `nn.Linear` (`x @ weight.T + bias`).

The architecture and the state-dict key names are those of torchvision's
`torchvision/models/mobilenetv2.py` (width 1.0, 1000 classes): `features.0` is
Conv-BN-ReLU6 (3 -> 32, stride 2), `features.1` .. `features.17` are the inverted residual
blocks of the (t, c, n, s) table, `features.18` is the 1x1 Conv-BN-ReLU6 to 1280 channels
and `classifier.1` is the Linear layer (`classifier.0` is the Dropout). Each
Conv-BN-ReLU6 (torchvision's `ConvNormActivation`) is a Sequential whose conv is `.0` and
whose BatchNorm is `.1`; the convolutions have no bias. Inside a block (`features.i.conv`)
the expansion Conv-BN-ReLU6 comes first when t != 1, then the depthwise Conv-BN-ReLU6, then
the linear 1x1 projection conv and its BatchNorm as two separate entries; so the projection
is `conv.2` / `conv.3` with expansion and `conv.1` / `conv.2` without. A block adds its input
back when its stride is 1 and its input and output channel counts are equal.

Everything is computed in float64. The parameter count (3,504,872 without the running
statistics) matches torchvision's published figure for these weights.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

BN_EPS = 1e-5  # torch.nn.BatchNorm2d's default

# torchvision's inverted_residual_setting: expand ratio t, output channels c, repeats n,
# stride s of the first repeat (the others have stride 1).
INVERTED_RESIDUAL_SETTING: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
FIRST_CHANNELS = 32
LAST_CHANNELS = 1280
NUM_CLASSES = 1000
_BN_SUFFIXES = ("weight", "bias", "running_mean", "running_var")


# --------------------------------------------------------------------------- layers


def conv2d(
    x: np.ndarray, weight: np.ndarray, *, stride: int = 1, padding: int = 0, groups: int = 1
) -> np.ndarray:
    """`torch.nn.functional.conv2d(x, weight, None, stride, padding, dilation=1, groups)`.

    `x` is (N, C, H, W), `weight` is (O, C / groups, kh, kw). The input is zero-padded by
    `padding` on all four sides, then each output position (i, j) sees the window of padded
    rows `i*stride .. i*stride + kh - 1` and columns likewise; output size is
    `(H + 2*padding - kh) // stride + 1`. Implemented as im2col + a batched matmul per group.
    """
    n, c, h, w = x.shape
    o, cg, kh, kw = weight.shape
    if c % groups or o % groups or cg != c // groups:
        raise ValueError(f"conv2d: input {x.shape}, weight {weight.shape}, groups {groups}")
    og = o // groups
    ho = (h + 2 * padding - kh) // stride + 1
    wo = (w + 2 * padding - kw) // stride + 1
    if padding:
        x = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    if kh == kw == stride == 1:
        cols = x  # a 1x1 stride-1 convolution needs no patches
    else:
        # cols[n, c, di*kw + dj, i, j] = x_padded[n, c, i*stride + di, j*stride + dj]
        span_h, span_w = stride * (ho - 1) + 1, stride * (wo - 1) + 1
        cols = np.stack(
            [
                x[:, :, di : di + span_h : stride, dj : dj + span_w : stride]
                for di in range(kh)
                for dj in range(kw)
            ],
            axis=2,
        )
    # Row order (channel, di, dj) matches weight.reshape(O, C/groups * kh * kw) for OIHW.
    cols = cols.reshape(n, groups, cg * kh * kw, ho * wo)
    wmat = weight.reshape(groups, og, cg * kh * kw)
    if groups == 1:
        out = wmat[0] @ cols[:, 0]  # (N, O, Ho*Wo), one BLAS matmul per image
    elif cg == 1 and og == 1:
        # Depthwise: out[n, g, p] = sum_k w[g, k] * cols[n, g, k, p], without tiny matmuls.
        out = np.einsum("ngkp,gk->ngp", cols, wmat[:, 0, :])
    else:
        out = np.matmul(wmat[None], cols)  # (N, G, O/G, Ho*Wo)
    return out.reshape(n, o, ho, wo)


def batchnorm(
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray,
    running_mean: np.ndarray,
    running_var: np.ndarray,
    eps: float = BN_EPS,
) -> np.ndarray:
    """`nn.BatchNorm2d` in eval mode over the channel axis (1) of an NCHW tensor."""

    def per_channel(v: np.ndarray) -> np.ndarray:
        return np.asarray(v, dtype=np.float64).reshape(1, -1, 1, 1)

    return (x - per_channel(running_mean)) / np.sqrt(per_channel(running_var) + eps) * per_channel(
        weight
    ) + per_channel(bias)


def relu6(x: np.ndarray) -> np.ndarray:
    """`nn.ReLU6`: min(max(x, 0), 6)."""
    return np.minimum(np.maximum(x, 0.0), 6.0)


def linear(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """`nn.Linear`: x @ weight.T + bias, weight is (out_features, in_features)."""
    return x @ weight.T + bias


def uses_residual(stride: int, in_channels: int, out_channels: int) -> bool:
    """torchvision's `use_res_connect`: stride 1 and the channel count unchanged."""
    return stride == 1 and in_channels == out_channels


# --------------------------------------------------------------------------- structure


@dataclass(frozen=True)
class BlockSpec:
    """One `InvertedResidual`, `features.<index>`."""

    index: int
    in_channels: int
    out_channels: int
    stride: int
    expand_ratio: int

    @property
    def hidden(self) -> int:
        return int(round(self.in_channels * self.expand_ratio))

    @property
    def residual(self) -> bool:
        return uses_residual(self.stride, self.in_channels, self.out_channels)

    @property
    def prefix(self) -> str:
        return f"features.{self.index}.conv"

    def layer_keys(self) -> dict[str, str]:
        """Key prefixes of this block's Sequential: 'expand' (Conv-BN-ReLU6, only when
        t != 1), 'depthwise' (Conv-BN-ReLU6), 'project' (Conv) and 'project_bn'."""
        p = self.prefix
        keys: dict[str, str] = {}
        i = 0
        if self.expand_ratio != 1:
            keys["expand"] = f"{p}.{i}"
            i += 1
        keys["depthwise"] = f"{p}.{i}"
        keys["project"] = f"{p}.{i + 1}"
        keys["project_bn"] = f"{p}.{i + 2}"
        return keys


def block_specs() -> Iterator[BlockSpec]:
    """The 17 inverted residual blocks, features.1 .. features.17 (width 1.0: every channel
    count of the table is already a multiple of 8, so `_make_divisible` changes nothing)."""
    in_channels = FIRST_CHANNELS
    index = 1
    for t, c, n, s in INVERTED_RESIDUAL_SETTING:
        for i in range(n):
            yield BlockSpec(index, in_channels, c, s if i == 0 else 1, t)
            in_channels = c
            index += 1


def _bn_shapes(prefix: str, channels: int) -> dict[str, tuple[int, ...]]:
    return {f"{prefix}.{suffix}": (channels,) for suffix in _BN_SUFFIXES}


def expected_shapes() -> dict[str, tuple[int, ...]]:
    """Every float tensor of torchvision's mobilenet_v2 state dict (the BatchNorms'
    `num_batches_tracked` counters aside) with its shape, in the module order."""
    shapes: dict[str, tuple[int, ...]] = {"features.0.0.weight": (FIRST_CHANNELS, 3, 3, 3)}
    shapes.update(_bn_shapes("features.0.1", FIRST_CHANNELS))
    last_in = FIRST_CHANNELS
    for b in block_specs():
        keys = b.layer_keys()
        if "expand" in keys:
            shapes[f"{keys['expand']}.0.weight"] = (b.hidden, b.in_channels, 1, 1)
            shapes.update(_bn_shapes(f"{keys['expand']}.1", b.hidden))
        shapes[f"{keys['depthwise']}.0.weight"] = (b.hidden, 1, 3, 3)
        shapes.update(_bn_shapes(f"{keys['depthwise']}.1", b.hidden))
        shapes[f"{keys['project']}.weight"] = (b.out_channels, b.hidden, 1, 1)
        shapes.update(_bn_shapes(keys["project_bn"], b.out_channels))
        last_in = b.out_channels
    last = len(list(block_specs())) + 1
    shapes[f"features.{last}.0.weight"] = (LAST_CHANNELS, last_in, 1, 1)
    shapes.update(_bn_shapes(f"features.{last}.1", LAST_CHANNELS))
    shapes["classifier.1.weight"] = (NUM_CLASSES, LAST_CHANNELS)
    shapes["classifier.1.bias"] = (NUM_CLASSES,)
    return shapes


def _checked_float64(state_dict: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The state dict's tensors as float64, after checking that its keys and shapes are
    exactly torchvision's (so a wrong key structure fails loudly instead of silently)."""
    expected = expected_shapes()
    present = {k for k in state_dict if not k.endswith(".num_batches_tracked")}
    missing = sorted(set(expected) - present)
    unexpected = sorted(present - set(expected))
    if missing or unexpected:
        raise KeyError(f"state dict mismatch: missing {missing[:5]}, unexpected {unexpected[:5]}")
    params: dict[str, np.ndarray] = {}
    for key, shape in expected.items():
        value = np.asarray(state_dict[key], dtype=np.float64)
        if value.shape != shape:
            raise ValueError(f"{key}: shape {value.shape}, expected {shape}")
        params[key] = value
    return params


# --------------------------------------------------------------------------- forward


def conv_bn(
    params: dict[str, np.ndarray],
    conv_key: str,
    bn_prefix: str,
    x: np.ndarray,
    *,
    stride: int = 1,
    groups: int = 1,
) -> np.ndarray:
    """A bias-free Conv2d with torchvision's padding ((k - 1) // 2) then BatchNorm2d."""
    weight = params[conv_key]
    padding = (weight.shape[-1] - 1) // 2
    y = conv2d(x, weight, stride=stride, padding=padding, groups=groups)
    return batchnorm(y, *(params[f"{bn_prefix}.{s}"] for s in _BN_SUFFIXES))


def inverted_residual(params: dict[str, np.ndarray], block: BlockSpec, x: np.ndarray) -> np.ndarray:
    """torchvision's `InvertedResidual.forward` for one block."""
    keys = block.layer_keys()
    y = x
    if "expand" in keys:
        y = relu6(conv_bn(params, f"{keys['expand']}.0.weight", f"{keys['expand']}.1", y))
    y = relu6(
        conv_bn(
            params,
            f"{keys['depthwise']}.0.weight",
            f"{keys['depthwise']}.1",
            y,
            stride=block.stride,
            groups=block.hidden,
        )
    )
    y = conv_bn(params, f"{keys['project']}.weight", keys["project_bn"], y)  # linear: no ReLU6
    return x + y if block.residual else y


def _forward(params: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    x = relu6(conv_bn(params, "features.0.0.weight", "features.0.1", x, stride=2))
    blocks = list(block_specs())
    for block in blocks:
        x = inverted_residual(params, block, x)
    last = len(blocks) + 1
    x = relu6(conv_bn(params, f"features.{last}.0.weight", f"features.{last}.1", x))
    pooled = x.mean(axis=(2, 3))  # adaptive_avg_pool2d to 1x1, then flatten
    # classifier.0 is Dropout(0.2): the identity in eval mode.
    return linear(pooled, params["classifier.1.weight"], params["classifier.1.bias"])


def mobilenet_v2_logits(
    state_dict: dict[str, np.ndarray], images_nchw: np.ndarray, *, chunk: int = 4
) -> np.ndarray:
    """Logits (N, 1000), float64, of torchvision's mobilenet_v2 in eval mode.

    `state_dict` maps torchvision's key names to arrays (any float dtype; the
    `num_batches_tracked` entries are ignored); `images_nchw` is (N, 3, H, W), already
    normalised the torchvision way. Images are processed `chunk` at a time to bound memory.
    """
    params = _checked_float64(state_dict)
    images = np.asarray(images_nchw, dtype=np.float64)
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be (N, 3, H, W), got {images.shape}")
    outputs = [_forward(params, images[i : i + chunk]) for i in range(0, len(images), chunk)]
    if not outputs:
        return np.zeros((0, NUM_CLASSES))
    return np.concatenate(outputs, axis=0)
