"""Unit tests of the independent numpy MobileNetV2 reference (tests/torch_reference.py).

The reference's conv2d is checked against a naive loop written straight from the definition
of PyTorch's Conv2d (zero padding by bounds checks, no np.pad, no im2col), on small random
inputs, including stride 2 with symmetric padding and grouped / depthwise convolutions.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.torch_reference import (
    BN_EPS,
    BlockSpec,
    batchnorm,
    block_specs,
    conv2d,
    expected_shapes,
    inverted_residual,
    linear,
    mobilenet_v2_logits,
    relu6,
    uses_residual,
)


def naive_conv2d(x, weight, stride, padding, groups):
    """out[n, o, i, j] = sum over the group's input channels c and kernel offsets (di, dj) of
    weight[o, c, di, dj] * x[n, g*C/G + c, i*s + di - p, j*s + dj - p], zero outside x."""
    n, c, h, w = x.shape
    o, cg, kh, kw = weight.shape
    og = o // groups
    ho = (h + 2 * padding - kh) // stride + 1
    wo = (w + 2 * padding - kw) // stride + 1
    out = np.zeros((n, o, ho, wo))
    for b in range(n):
        for oc in range(o):
            g = oc // og
            for i in range(ho):
                for j in range(wo):
                    total = 0.0
                    for ci in range(cg):
                        for di in range(kh):
                            for dj in range(kw):
                                r = i * stride + di - padding
                                q = j * stride + dj - padding
                                if 0 <= r < h and 0 <= q < w:
                                    total += weight[oc, ci, di, dj] * x[b, g * cg + ci, r, q]
                    out[b, oc, i, j] = total
    return out


CONV_CASES = [
    # (N, C, H, W, O, k, stride, padding, groups)
    (2, 3, 7, 7, 4, 3, 1, 1, 1),
    (2, 3, 8, 8, 5, 3, 2, 1, 1),  # stride 2, even input: symmetric padding matters
    (1, 3, 9, 7, 4, 3, 2, 1, 1),  # stride 2, odd / non-square input
    (2, 4, 6, 6, 6, 1, 1, 0, 1),  # pointwise
    (1, 4, 6, 6, 6, 1, 2, 0, 1),  # strided pointwise
    (2, 4, 6, 5, 6, 3, 1, 1, 2),  # two groups, 2 in / 3 out channels each
    (2, 5, 8, 8, 5, 3, 1, 1, 5),  # depthwise
    (2, 5, 8, 8, 5, 3, 2, 1, 5),  # depthwise, stride 2
    (1, 3, 7, 7, 6, 3, 2, 1, 3),  # depthwise with channel multiplier 2
    (1, 2, 5, 5, 3, 5, 1, 2, 1),  # 5x5 kernel, padding 2
    (1, 2, 6, 6, 3, 3, 1, 0, 1),  # no padding
]


@pytest.mark.parametrize("case", CONV_CASES, ids=[str(c) for c in CONV_CASES])
def test_conv2d_matches_naive_loop(case):
    n, c, h, w, o, k, stride, padding, groups = case
    rng = np.random.default_rng(sum(case))
    x = rng.standard_normal((n, c, h, w))
    weight = rng.standard_normal((o, c // groups, k, k))
    got = conv2d(x, weight, stride=stride, padding=padding, groups=groups)
    want = naive_conv2d(x, weight, stride, padding, groups)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_stride2_padding_is_symmetric_not_tf_same():
    """PyTorch pads a 3x3 stride-2 conv by 1 on every side: on a 4x4 input the first output
    sees padded row/column -1 and the last sees rows/columns 1..3. TensorFlow's 'same' would
    instead pad only after (0 before, 1 after), so its first output sees rows 0..2."""
    x = np.arange(16.0).reshape(1, 1, 4, 4)
    ones = np.ones((1, 1, 3, 3))
    out = conv2d(x, ones, stride=2, padding=1)
    assert out.shape == (1, 1, 2, 2)
    assert out[0, 0, 0, 0] == x[0, 0, 0:2, 0:2].sum()  # rows/cols -1..1, -1 is zero padding
    assert out[0, 0, 1, 1] == x[0, 0, 1:4, 1:4].sum()  # rows/cols 1..3
    tf_same_first = x[0, 0, 0:3, 0:3].sum()
    assert out[0, 0, 0, 0] != tf_same_first


def test_conv2d_rejects_inconsistent_groups():
    with pytest.raises(ValueError):
        conv2d(np.zeros((1, 4, 5, 5)), np.zeros((4, 4, 3, 3)), padding=1, groups=2)


def test_batchnorm_formula():
    x = np.array([1.0, 2.0, -3.0, 0.5]).reshape(1, 2, 1, 2)
    weight, bias = np.array([2.0, -1.0]), np.array([0.5, 3.0])
    mean, var = np.array([1.0, -2.0]), np.array([4.0, 0.0])
    got = batchnorm(x, weight, bias, mean, var)
    # channel 0: (x - 1) / sqrt(4 + 1e-5) * 2 + 0.5; channel 1: (x + 2) / sqrt(1e-5) * -1 + 3
    want = np.array(
        [
            (1.0 - 1.0) / np.sqrt(4.0 + 1e-5) * 2.0 + 0.5,
            (2.0 - 1.0) / np.sqrt(4.0 + 1e-5) * 2.0 + 0.5,
            (-3.0 + 2.0) / np.sqrt(1e-5) * -1.0 + 3.0,
            (0.5 + 2.0) / np.sqrt(1e-5) * -1.0 + 3.0,
        ]
    ).reshape(1, 2, 1, 2)
    np.testing.assert_allclose(got, want, rtol=1e-14)
    assert BN_EPS == 1e-5  # torch's default, not Keras's 1e-3


def test_batchnorm_normalises_per_channel_on_axis_1():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 4, 5, 6)) * 3 + 7
    mean, var = x.mean(axis=(0, 2, 3)), x.var(axis=(0, 2, 3))
    y = batchnorm(x, np.ones(4), np.zeros(4), mean, var, eps=0.0)
    np.testing.assert_allclose(y.mean(axis=(0, 2, 3)), 0.0, atol=1e-12)
    np.testing.assert_allclose(y.var(axis=(0, 2, 3)), 1.0, rtol=1e-12)


def test_relu6_and_linear():
    np.testing.assert_array_equal(relu6(np.array([-1.0, 0.0, 3.0, 6.0, 7.5])), [0, 0, 3, 6, 6])
    x = np.array([[1.0, 2.0, 3.0]])
    weight = np.array([[1.0, 0.0, -1.0], [0.5, 0.5, 0.5]])  # (out, in), torch's layout
    np.testing.assert_allclose(linear(x, weight, np.array([10.0, 0.0])), [[8.0, 3.0]])


def test_residual_rule():
    assert uses_residual(1, 24, 24)
    assert not uses_residual(2, 24, 24)
    assert not uses_residual(1, 64, 96)
    blocks = list(block_specs())
    assert [b.index for b in blocks] == list(range(1, 18))
    # torchvision's blocks with use_res_connect: the repeats after the first of each stage.
    assert [b.index for b in blocks if b.residual] == [3, 5, 6, 8, 9, 10, 12, 13, 15, 16]
    assert [b.index for b in blocks if b.stride == 2] == [2, 4, 7, 14]


@pytest.mark.parametrize("stride, in_c, out_c", [(1, 8, 8), (2, 8, 8), (1, 8, 16)])
def test_inverted_residual_adds_input_only_when_residual(stride, in_c, out_c):
    """With the projection BatchNorm zeroed (weight = bias = 0) the block's branch is zero,
    so its output is exactly its input when it has a residual and zero when it has not."""
    block = BlockSpec(index=5, in_channels=in_c, out_channels=out_c, stride=stride, expand_ratio=6)
    rng = np.random.default_rng(1)
    params = {}
    for key, shape in _block_shapes(block).items():
        is_var = key.endswith("running_var")
        params[key] = rng.uniform(0.5, 1.5, shape) if is_var else rng.standard_normal(shape)
    params[f"{block.layer_keys()['project_bn']}.weight"][:] = 0.0
    params[f"{block.layer_keys()['project_bn']}.bias"][:] = 0.0
    x = rng.standard_normal((2, in_c, 6, 6))
    y = inverted_residual(params, block, x)
    if block.residual:
        np.testing.assert_array_equal(y, x)
    else:
        assert y.shape == (2, out_c, 6 // stride, 6 // stride)
        np.testing.assert_array_equal(y, 0.0)


def _block_shapes(block):
    """The parameter shapes of one block with expansion (expected_shapes() only knows the
    real network's blocks)."""
    keys = block.layer_keys()
    shapes = {
        f"{keys['expand']}.0.weight": (block.hidden, block.in_channels, 1, 1),
        f"{keys['depthwise']}.0.weight": (block.hidden, 1, 3, 3),
        f"{keys['project']}.weight": (block.out_channels, block.hidden, 1, 1),
    }
    for bn, ch in [
        (f"{keys['expand']}.1", block.hidden),
        (f"{keys['depthwise']}.1", block.hidden),
        (keys["project_bn"], block.out_channels),
    ]:
        for suffix in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{bn}.{suffix}"] = (ch,)
    return shapes


def test_state_dict_keys_follow_torchvision():
    shapes = expected_shapes()
    # Spot checks against torchvision's mobilenet_v2 state dict.
    assert shapes["features.0.0.weight"] == (32, 3, 3, 3)
    assert shapes["features.0.1.running_var"] == (32,)
    # features.1 has t = 1: no expansion, so depthwise is conv.0, projection conv.1 / conv.2.
    assert shapes["features.1.conv.0.0.weight"] == (32, 1, 3, 3)
    assert shapes["features.1.conv.1.weight"] == (16, 32, 1, 1)
    assert shapes["features.1.conv.2.bias"] == (16,)
    assert "features.1.conv.3.weight" not in shapes
    # features.2 has t = 6: expansion conv.0, depthwise conv.1, projection conv.2 / conv.3.
    assert shapes["features.2.conv.0.0.weight"] == (96, 16, 1, 1)
    assert shapes["features.2.conv.1.0.weight"] == (96, 1, 3, 3)
    assert shapes["features.2.conv.2.weight"] == (24, 96, 1, 1)
    assert shapes["features.2.conv.3.running_mean"] == (24,)
    assert shapes["features.17.conv.2.weight"] == (320, 960, 1, 1)
    assert shapes["features.18.0.weight"] == (1280, 320, 1, 1)
    assert shapes["classifier.1.weight"] == (1000, 1280)
    assert len(shapes) == 262  # 314 entries in the .pth, less its 52 num_batches_tracked
    # torchvision publishes 3,504,872 parameters for mobilenet_v2 (running stats aside).
    learnable = [s for k, s in shapes.items() if not k.endswith(("running_mean", "running_var"))]
    assert sum(int(np.prod(s)) for s in learnable) == 3_504_872


def _random_state_dict(seed=0):
    rng = np.random.default_rng(seed)
    sd = {}
    for key, shape in expected_shapes().items():
        if key.endswith("running_var"):
            sd[key] = rng.uniform(0.5, 2.0, shape).astype(np.float32)
        elif key.endswith(".weight") and len(shape) == 4:
            fan_in = shape[1] * shape[2] * shape[3]
            sd[key] = (rng.standard_normal(shape) / np.sqrt(fan_in)).astype(np.float32)
        else:
            sd[key] = (0.1 * rng.standard_normal(shape)).astype(np.float32)
        if key.endswith("running_var"):
            sd[key.replace("running_var", "num_batches_tracked")] = np.array(0, dtype=np.int64)
    return sd


def test_full_forward_shapes_and_batch_independence():
    sd = _random_state_dict()
    x = np.random.default_rng(2).standard_normal((3, 3, 64, 64)).astype(np.float32)
    logits = mobilenet_v2_logits(sd, x, chunk=2)
    assert logits.shape == (3, 1000) and logits.dtype == np.float64
    assert np.isfinite(logits).all()
    one = mobilenet_v2_logits(sd, x[1:2])
    np.testing.assert_allclose(one[0], logits[1], rtol=0, atol=1e-12)


def test_state_dict_mismatches_fail_loudly():
    sd = _random_state_dict()
    x = np.zeros((1, 3, 32, 32))
    missing = dict(sd)
    del missing["features.2.conv.3.running_mean"]
    with pytest.raises(KeyError):
        mobilenet_v2_logits(missing, x)
    extra = dict(sd, **{"features.1.conv.3.weight": np.zeros((16,))})
    with pytest.raises(KeyError):
        mobilenet_v2_logits(extra, x)
    wrong = dict(sd, **{"classifier.1.weight": np.zeros((1280, 1000))})
    with pytest.raises(ValueError):
        mobilenet_v2_logits(wrong, x)
