"""Unit tests of the independent numpy EfficientNet-Lite0 reference
(tests/efficientnet_reference.py): the package's static SAME padding, the skip rule and the
block structure."""

from __future__ import annotations

import numpy as np
import pytest

from tests.efficientnet_reference import (
    EPS,
    INPUT_SIZE,
    block_specs,
    conv_same,
    efficientnet_lite0_logits,
    expected_shapes,
    pad_static_same,
    same_output_size,
    same_padding,
    uses_skip,
)


@pytest.mark.parametrize(
    ("size", "kernel", "stride", "expected"),
    [
        # stride 1: pad k - 1 split evenly, whatever the size
        (224, 3, 1, (1, 1)),
        (7, 3, 1, (1, 1)),
        (14, 5, 1, (2, 2)),
        (7, 5, 1, (2, 2)),
        (5, 1, 1, (0, 0)),
        # stride 2, even size: o = i / 2, pad = (o - 1) * 2 + k - i = k - 2, extra one after
        (224, 3, 2, (0, 1)),
        (112, 3, 2, (0, 1)),
        (56, 5, 2, (1, 2)),
        (14, 5, 2, (1, 2)),
        (4, 3, 2, (0, 1)),
        # stride 2, odd size: o = (i + 1) / 2, pad = k - 1, symmetric
        (7, 3, 2, (1, 1)),
        (15, 5, 2, (2, 2)),
        (5, 1, 2, (0, 0)),
    ],
)
def test_same_padding_amounts(size, kernel, stride, expected):
    assert same_padding(size, kernel, stride) == expected
    before, after = expected
    # the padded size gives exactly ceil(size / stride) outputs
    assert (size + before + after - kernel) // stride + 1 == same_output_size(size, stride)


def test_same_padding_hand_worked_stride2():
    """4x4 input 0..15, 3x3 kernel of ones, stride 2: pad 0 top/left, 1 bottom/right.

    Windows: rows 0-2 / 2-4 (row 4 is padding), columns likewise, so
    out = [[0+1+2+4+5+6+8+9+10, 2+3+6+7+10+11], [8+9+10+12+13+14, 10+11+14+15]].
    (torch's symmetric padding=1 would instead start at -1: out[0, 0] = 0+1+4+5 = 10.)
    """
    x = np.arange(16, dtype=np.float64).reshape(1, 1, 4, 4)
    w = np.ones((1, 1, 3, 3))
    padded = pad_static_same(x, (4, 4), 3, 2)
    assert padded.shape == (1, 1, 5, 5)
    np.testing.assert_array_equal(padded[0, 0, :4, :4], x[0, 0])
    assert not padded[0, 0, 4, :].any() and not padded[0, 0, :, 4].any()
    out = conv_same(x, w, (4, 4), 2)
    np.testing.assert_array_equal(out[0, 0], [[45.0, 39.0], [66.0, 50.0]])


def test_same_padding_hand_worked_stride1_kernel5():
    """3x3 input 1..9, stride 1. A 5x5 ones kernel pads 2 on every side, and a 5-wide window
    centred anywhere on a 3-wide input covers all of it, so every output is 45. A 3x3 ones
    kernel pads 1: the centre sees all 45, corner (0, 0) sees 1+2+4+5 = 12, (2, 2) 5+6+8+9."""
    x = np.arange(1, 10, dtype=np.float64).reshape(1, 1, 3, 3)
    out = conv_same(x, np.ones((1, 1, 5, 5)), (3, 3), 1)
    np.testing.assert_array_equal(out[0, 0], np.full((3, 3), 45.0))
    out3 = conv_same(x, np.ones((1, 1, 3, 3)), (3, 3), 1)
    assert out3[0, 0, 1, 1] == 45.0 and out3[0, 0, 0, 0] == 12.0 and out3[0, 0, 2, 2] == 28.0


def test_same_padding_odd_stride2_kernel5_against_loop():
    """conv_same == a loop over TF-SAME windows (offset -before, zero outside) on 7x9."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 2, 7, 8))
    w = rng.standard_normal((2, 1, 5, 5))
    out = conv_same(x, w, (7, 8), 2, groups=2)
    (top, _), (left, _) = same_padding(7, 5, 2), same_padding(8, 5, 2)
    assert (top, left) == (2, 1)
    expected = np.zeros((1, 2, 4, 4))
    for c in range(2):
        for i in range(4):
            for j in range(4):
                for di in range(5):
                    for dj in range(5):
                        r, s = i * 2 + di - top, j * 2 + dj - left
                        if 0 <= r < 7 and 0 <= s < 8:
                            expected[0, c, i, j] += w[c, 0, di, dj] * x[0, c, r, s]
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-12)


def test_skip_rule():
    assert uses_skip(True, 1, 24, 24)
    assert not uses_skip(True, 2, 24, 24)  # stride 2
    assert not uses_skip(True, 1, 16, 24)  # channel change
    assert not uses_skip(False, 1, 24, 24)  # noskip
    # BlockDecoder's stride is a one-element list: `[1] == 1` is False in the package
    assert not uses_skip(True, (1,), 24, 24)
    assert not uses_skip(True, [1], 24, 24)


def test_block_structure():
    blocks = list(block_specs())
    assert len(blocks) == 16
    skipped = [
        b.index for b in blocks if uses_skip(b.id_skip, b.stride, b.in_channels, b.out_channels)
    ]
    assert skipped == [2, 4, 6, 7, 9, 10, 12, 13, 14]
    sizes = [112] * 2 + [56] * 2 + [28] * 2 + [14] * 6 + [7] * 4
    assert [b.image_hw[0] for b in blocks] == sizes
    assert [b.stride_value for b in blocks] == [1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1, 1, 1, 1]
    assert [b.kernel for b in blocks] == [3, 3, 3, 5, 5, 3, 3, 3, 5, 5, 5, 5, 5, 5, 5, 3]
    assert blocks[0].expand_ratio == 1 and all(b.expand_ratio == 6 for b in blocks[1:])
    assert EPS == 1e-3 and INPUT_SIZE == 224
    shapes = expected_shapes()
    assert "_blocks.0._expand_conv.weight" not in shapes
    params = sum(int(np.prod(s)) for k, s in shapes.items() if "running" not in k)
    assert params == 4_652_008  # EfficientNet-Lite0's published 4.65M parameters


def test_forward_shape_and_bn_eps():
    """Random weights: logits are (N, 1000) float64; other input sizes are refused because
    the padding is static, built for INPUT_SIZE."""
    rng = np.random.default_rng(1)
    sd = {k: rng.standard_normal(s) * 0.1 for k, s in expected_shapes().items()}
    for k in sd:
        if k.endswith("running_var"):
            sd[k] = np.abs(sd[k]) + 0.5
    x = rng.standard_normal((1, 3, INPUT_SIZE, INPUT_SIZE))
    out = efficientnet_lite0_logits(sd, x)
    assert out.shape == (1, 1000) and out.dtype == np.float64
    with pytest.raises(ValueError):
        efficientnet_lite0_logits(sd, x[:, :, :200, :200])
