"""PyTorch tensors in Keras's layout: the one place the kernel transposes live.

PyTorch convolution kernels are OIHW (depthwise: (C, 1, H, W)) and Linear weights
(out, in); Keras wants HWIO, (H, W, C, 1) and (in, out).
"""

from __future__ import annotations

import numpy as np


def conv_kernel(weight: np.ndarray) -> np.ndarray:
    return np.transpose(weight, (2, 3, 1, 0))  # OIHW -> HWIO


def depthwise_kernel(weight: np.ndarray) -> np.ndarray:
    return np.transpose(weight, (2, 3, 0, 1))  # (C, 1, H, W) -> (H, W, C, 1)


def dense_kernel(weight: np.ndarray) -> np.ndarray:
    return np.transpose(weight)  # (out, in) -> (in, out)


class StateDict:
    """Weights taken by key, so a port can prove it used every one and nothing else."""

    def __init__(self, state: dict[str, np.ndarray], what: str):
        self.state = state
        self.what = what
        self.used: set[str] = set()

    def take(self, key: str) -> np.ndarray:
        if key not in self.state:
            raise ValueError(f"the weights have no {key!r}: not {self.what}")
        self.used.add(key)
        return np.asarray(self.state[key], dtype=np.float32)

    def skip(self, key: str) -> None:
        """A training-only entry (BatchNorm's num_batches_tracked): known, not needed."""
        self.used.add(key)

    def check_all_used(self) -> None:
        unused = sorted(set(self.state) - self.used)
        if unused:
            raise ValueError(f"weights not used by the port: {', '.join(unused[:5])}")


def batch_norm(layers, weights: StateDict, x, prefix: str, epsilon: float):
    """PyTorch's BatchNorm2d in eval mode: a Keras layer holding its running statistics."""
    norm = layers.BatchNormalization(epsilon=epsilon)
    x = norm(x)
    norm.set_weights([weights.take(f"{prefix}.{name}")
                      for name in ("weight", "bias", "running_mean", "running_var")])
    weights.skip(f"{prefix}.num_batches_tracked")
    return x
