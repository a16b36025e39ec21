"""How many distinct values each weight tensor of a .tflite file holds, read from its bytes.

Why: a weight tensor's dtype says how it is stored, not how many levels a recipe put into
it. A "4-bit" variant is 4-bit only if every weight tensor holds at most 16 values: the
converter may store such weights as INT4 (two per byte) or as int8 (one per byte, 16 of its
256 codes used), and may just as well have re-quantized a layer to 8 bits on the way (a
folded BatchNorm, a layer its quantizer did not recognise). Only the stored values can
tell, so this module counts them (`check_levels`) rather than trusting a recipe's name.

Weight tensors here are the filters of conv and fully-connected ops (traced back through
DEQUANTIZE, as `bench.zoo.inspect` does); biases are not counted: integer schemes keep them
in 32 bits whatever the weights' width (TFLite's kernels require it). The parse and its
error messages are `bench.zoo.inspect`'s: a file that is not a model is a `ModelError`.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.errors import ModelError
from bench.zoo.inspect import (
    _FILTER_OPS,
    _PASS_THROUGH_OPS,
    _dtype_names,
    _opcode_name,
    _schema,
    inspect_tflite,
)

FOUR_BIT_LEVELS = 16
# Stored dtypes whose buffer is one numpy value per element.
_NUMPY_DTYPES = {"float32": np.float32, "float16": np.float16, "float64": np.float64,
                 "int8": np.int8, "uint8": np.uint8, "int16": np.int16, "uint16": np.uint16,
                 "int32": np.int32, "uint32": np.uint32, "int64": np.int64}
_NIBBLE_DTYPES = frozenset({"int4", "uint4"})


@dataclass(frozen=True)
class TensorLevels:
    """One weight tensor: how it is stored and how many distinct values it holds."""

    tensor: str
    op: str
    dtype: str
    shape: tuple[int, ...]
    count: int  # elements
    stored_bytes: int  # bytes of its buffer in the file
    levels: int  # distinct stored values (integers for integer dtypes)
    low: float  # smallest and largest stored value
    high: float

    @property
    def packed_bytes(self) -> int:
        """Bytes at 4 bits per element, two per byte (what INT4 storage takes)."""
        return math.ceil(self.count / 2)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["shape"] = list(self.shape)
        return d


@dataclass(frozen=True)
class LevelCheck:
    """Every weight tensor of a file against a level budget (16 for 4-bit weights)."""

    path: str
    file_bytes: int
    max_levels: int
    tensors: tuple[TensorLevels, ...]

    @property
    def offending(self) -> TensorLevels | None:
        """The weight tensor with the most levels above the budget, if any."""
        over = [t for t in self.tensors if t.levels > self.max_levels]
        return max(over, key=lambda t: t.levels) if over else None

    @property
    def ok(self) -> bool:
        return bool(self.tensors) and self.offending is None

    @property
    def reason(self) -> str | None:
        """Why the file is not what the budget says, in one line; None when it is."""
        if not self.tensors:
            return "file holds no conv or fully-connected weight tensors to check"
        worst = self.offending
        if worst is None:
            return None
        return (f"file holds {bits_phrase(worst.dtype)} weights: tensor {worst.tensor} has "
                f"{worst.levels} levels (at most {self.max_levels} allowed)")

    @property
    def most_levels(self) -> int:
        return max((t.levels for t in self.tensors), default=0)

    @property
    def packed_bytes(self) -> int:
        """The file's size with every weight tensor of at most 16 levels stored at 4 bits
        (two per byte): file bytes minus those tensors' stored bytes plus ceil(count / 2)
        for each. Equal to the file size when the converter already wrote INT4; the
        flatbuffer's other bytes (graph, scales, biases, padding) are counted as they are."""
        saved = sum(t.stored_bytes - t.packed_bytes for t in self.tensors
                    if t.levels <= FOUR_BIT_LEVELS)
        return self.file_bytes - saved

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "file_bytes": self.file_bytes,
                "max_levels": self.max_levels, "ok": self.ok, "reason": self.reason,
                "most_levels": self.most_levels, "packed_bytes": self.packed_bytes,
                "tensors": [t.to_dict() for t in self.tensors]}


def bits_phrase(dtype: str) -> str:
    """"8-bit" for int8/uint8, "4-bit" for int4, the dtype itself for floats."""
    match = re.fullmatch(r"u?int(\d+)", dtype)
    return f"{match.group(1)}-bit" if match else dtype


def unpack_int4(raw: np.ndarray, count: int) -> np.ndarray:
    """Signed 4-bit values packed two per byte, the first element in the low nibble
    (TFLite's INT4 layout); an odd count leaves the last high nibble unused."""
    data = np.asarray(raw, dtype=np.uint8).reshape(-1)
    if len(data) != math.ceil(count / 2):
        raise ValueError(f"{count} int4 values need {math.ceil(count / 2)} bytes, "
                         f"the buffer has {len(data)}")
    nibbles = np.stack([data & 0x0F, data >> 4], axis=1).reshape(-1)[:count].astype(np.int8)
    return np.where(nibbles > 7, nibbles - 16, nibbles).astype(np.int8)


def _values(raw: np.ndarray, dtype: str, count: int) -> np.ndarray:
    if dtype == "int4":
        return unpack_int4(raw, count)
    if dtype == "uint4":
        data = np.asarray(raw, dtype=np.uint8).reshape(-1)
        return np.stack([data & 0x0F, data >> 4], axis=1).reshape(-1)[:count]
    if dtype not in _NUMPY_DTYPES:
        raise ValueError(f"cannot read weights stored as {dtype}")
    values = np.asarray(raw, dtype=np.uint8).view(_NUMPY_DTYPES[dtype])
    if len(values) != count:
        raise ValueError(f"buffer holds {len(values)} {dtype} values, the shape says {count}")
    return values


def _buffer_bytes(model: Any, index: int, buf: bytes) -> np.ndarray:
    """A buffer's bytes, inline or (models over 2 GB) after the flatbuffer."""
    buffer = model.Buffers(index)
    if buffer.DataLength() > 0:
        return buffer.DataAsNumpy()
    offset, size = buffer.Offset(), buffer.Size()
    if offset > 1 and size > 0:
        return np.frombuffer(buf, dtype=np.uint8, count=size, offset=offset)
    return np.zeros(0, dtype=np.uint8)


def _subgraph_weights(model: Any, graph: Any, op_names: list[str],
                      buf: bytes) -> list[TensorLevels]:
    producers: dict[int, tuple[str, list[int]]] = {}
    ops = []
    for i in range(graph.OperatorsLength()):
        op = graph.Operators(i)
        name = op_names[op.OpcodeIndex()]
        inputs = [int(k) for k in op.InputsAsNumpy()] if op.InputsLength() else []
        outputs = [int(k) for k in op.OutputsAsNumpy()] if op.OutputsLength() else []
        ops.append((name, inputs))
        for k in outputs:
            producers[k] = (name, inputs)

    found: dict[int, TensorLevels] = {}
    for name, inputs in ops:
        if name not in _FILTER_OPS or len(inputs) < 2 or inputs[1] < 0:
            continue
        index = inputs[1]
        for _ in range(4):  # bounded: a corrupt graph may loop
            raw = _buffer_bytes(model, graph.Tensors(index).Buffer(), buf)
            source = producers.get(index)
            if raw.size or source is None or source[0] not in _PASS_THROUGH_OPS:
                break
            if not source[1] or source[1][0] < 0:
                break
            index = source[1][0]
        if index in found:
            continue
        tensor = graph.Tensors(index)
        raw = _buffer_bytes(model, tensor.Buffer(), buf)
        if not raw.size:
            continue  # a computed filter is an activation, not a weight
        dtype = _dtype_names().get(tensor.Type(), f"type{tensor.Type()}")
        shape = tuple(int(d) for d in tensor.ShapeAsNumpy()) if tensor.ShapeLength() else ()
        count = math.prod(shape)
        values = _values(raw, dtype, count)
        found[index] = TensorLevels(
            tensor=(tensor.Name() or b"").decode("utf-8", "replace"), op=name, dtype=dtype,
            shape=shape, count=count, stored_bytes=int(raw.size),
            levels=int(np.unique(values).size),
            low=float(values.min()) if count else 0.0,
            high=float(values.max()) if count else 0.0)
    return list(found.values())


def weight_levels(path: str | os.PathLike[str]) -> list[TensorLevels]:
    """Every conv/FC weight tensor of the file with its distinct-value count; a
    `ModelError` for a missing or malformed file."""
    p = Path(path)
    inspect_tflite(p)  # validates the file (and words its errors) before we read buffers
    buf = p.read_bytes()
    try:
        model = _schema().Model.GetRootAs(buf, 0)
        op_names = [_opcode_name(model.OperatorCodes(i))
                    for i in range(model.OperatorCodesLength())]
        tensors: list[TensorLevels] = []
        for g in range(model.SubgraphsLength()):
            tensors += _subgraph_weights(model, model.Subgraphs(g), op_names, buf)
    except ValueError as exc:
        raise ModelError(f"cannot read the weights of {p}: {exc}") from None
    return tensors


def check_levels(path: str | os.PathLike[str],
                 max_levels: int = FOUR_BIT_LEVELS) -> LevelCheck:
    """The file's weight tensors against `max_levels` (16: 4-bit weights)."""
    p = Path(path)
    tensors = tuple(weight_levels(p))
    return LevelCheck(str(p), p.stat().st_size, max_levels, tensors)
