"""Output check: does a variant compute what its fp32 model computes?

A conversion that silently breaks a model is fast and useless; this makes it
visible. Both models run on the same fixed inputs (seeded, uniform [-1, 1], the zoo
models' input range); integer inputs are quantized and integer outputs dequantized
with the tensors' own scales, so every variant is compared in float.

Reported: top-1 agreement (share of inputs whose arg-max class matches) and the
signal-to-noise ratio of the outputs in dB, 10*log10(sum(ref^2) / sum((ref-out)^2)).
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

CHECK_INPUTS = 8
CHECK_SEED = 2018


def _interpreter(path: Path):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path), num_threads=1)
    interpreter.allocate_tensors()
    return interpreter


def _quantize(value: np.ndarray, detail: dict) -> np.ndarray:
    dtype = np.dtype(detail["dtype"])
    if dtype.kind == "f":
        return value.astype(dtype)
    scale, zero_point = detail["quantization"]
    if not scale:
        raise ValueError(f"integer input {detail['name']!r} has no quantization scale")
    info = np.iinfo(dtype)
    return np.clip(np.round(value / scale + zero_point), info.min, info.max).astype(dtype)


def _dequantize(value: np.ndarray, detail: dict) -> np.ndarray:
    if np.dtype(detail["dtype"]).kind == "f":
        return value.astype(np.float64)
    scale, zero_point = detail["quantization"]
    return (value.astype(np.float64) - zero_point) * scale


def run_on_inputs(path: Path, inputs: list[np.ndarray]) -> list[np.ndarray]:
    interpreter = _interpreter(path)
    in_detail = interpreter.get_input_details()[0]
    out_detail = interpreter.get_output_details()[0]
    outputs = []
    for value in inputs:
        interpreter.set_tensor(in_detail["index"], _quantize(value, in_detail))
        interpreter.invoke()
        outputs.append(_dequantize(interpreter.get_tensor(out_detail["index"]), out_detail))
    return outputs


def fixed_inputs(path: Path, count: int = CHECK_INPUTS) -> list[np.ndarray]:
    detail = _interpreter(path).get_input_details()[0]
    shape = [max(int(d), 1) for d in detail["shape"]]
    rng = np.random.default_rng(CHECK_SEED)
    return [rng.uniform(-1.0, 1.0, size=shape).astype(np.float32) for _ in range(count)]


def snr_db(reference: np.ndarray, output: np.ndarray) -> float | None:
    """SNR in dB; None when it has no finite value: identical outputs (infinite SNR,
    which `identical` reports) or an all-zero reference (no signal to compare)."""
    noise = float(np.sum((reference - output) ** 2))
    signal = float(np.sum(reference**2))
    if noise == 0.0 or signal == 0.0:
        return None
    return float(10.0 * np.log10(signal / noise))


def photo_inputs(path: Path, count: int = CHECK_INPUTS,
                 preprocessing: str | None = None) -> list[np.ndarray]:
    """Held-out photographs (never used for calibration), for trained ImageNet models:
    noise says little about how a trained network's decisions survive quantization."""
    detail = _interpreter(path).get_input_details()[0]
    inputs = _photos(int(detail["shape"][1]), count, preprocessing)
    return [inputs[i:i + 1].astype(np.float32) for i in range(len(inputs))]


@functools.cache
def _photos(size: int, count: int, preprocessing: str | None = None) -> np.ndarray:
    """Decoded once per worker: every recipe of a model is checked on the same photos."""
    from bench.data.datasets import heldout

    extra = {"preprocessing": preprocessing} if preprocessing else {}
    inputs, _ = heldout(count=count, input_size=size, seed=CHECK_SEED, **extra).take()
    inputs.setflags(write=False)
    return inputs


def compare_outputs(reference: Path, candidate: Path, count: int = CHECK_INPUTS,
                    photos: bool = False, preprocessing: str | None = None) -> dict:
    """Top-1 agreement and SNR of `candidate` against `reference` on fixed inputs (seeded
    noise, or held-out photographs for trained models)."""
    inputs = photo_inputs(reference, count, preprocessing) if photos else \
        fixed_inputs(reference, count)
    ref_out = run_on_inputs(reference, inputs)
    cand_out = run_on_inputs(candidate, inputs)
    agree = [
        int(np.argmax(r.reshape(r.shape[0], -1), -1)[0] == np.argmax(c.reshape(c.shape[0], -1),
                                                                      -1)[0])
        for r, c in zip(ref_out, cand_out, strict=True)
    ]
    ref_all = np.concatenate([r.ravel() for r in ref_out])
    cand_all = np.concatenate([c.ravel() for c in cand_out])
    return {
        "inputs": count,
        "seed": CHECK_SEED,
        "data": "heldout photographs" if photos else "uniform[-1,1]",
        "top1_agreement": sum(agree) / len(agree),
        "snr_db": snr_db(ref_all, cand_all),
        "reference_is_zero": not bool(np.any(ref_all)),
        "identical": bool(np.array_equal(ref_all, cand_all)),
    }
