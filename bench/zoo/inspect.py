"""Static inspection of .tflite files: what was quantized, how, and how much work it is.

Reads the flatbuffer with the schema module shipped in ai-edge-litert, so it needs
neither TensorFlow nor an interpreter and works on models the local runtime cannot load.
Every parse failure becomes a one-line `ModelError`: the Python flatbuffers reader does
no verification, so garbage tends to surface as struct/Index errors deep inside it.
"""

from __future__ import annotations

import hashlib
import math
import os
import struct
from collections import Counter
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path
from typing import Any

from bench.errors import ModelError

# Ops whose input 1 is a filter/weight tensor.
_FILTER_OPS = frozenset({"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV"})
# Ops that only turn a stored constant into the float tensor an op consumes.
_PASS_THROUGH_OPS = frozenset({"DEQUANTIZE", "DENSIFY"})
_INT_DTYPES = frozenset({"int2", "int4", "uint4", "int8", "uint8", "int16", "uint16", "int32"})
_FILE_IDENTIFIER = b"TFL3"
_SCHEMA_VERSION = 3
# What the flatbuffers reader (and our own checks) raise on bytes that are not a model.
_CORRUPT = (struct.error, IndexError, ValueError, UnicodeDecodeError)


@dataclass(frozen=True)
class WeightInfo:
    """One constant weight tensor and how it is stored."""

    tensor: str
    op: str
    dtype: str
    shape: tuple[int, ...]
    n_scales: int
    quantized_dimension: int
    # The op consumes the integer tensor directly with float activations
    # (dynamic-range "hybrid" kernels), as opposed to full-integer or weight-only.
    hybrid: bool = False

    @property
    def label(self) -> str:
        """Storage summary used to group weights, e.g. "int8 per-channel"."""
        if self.n_scales == 0:
            return self.dtype
        return f"{self.dtype} {'per-channel' if self.n_scales > 1 else 'per-tensor'}"


@dataclass(frozen=True)
class ModelInfo:
    """What a .tflite file contains, as far as it can be told without running it."""

    path: str
    size_bytes: int
    sha256: str
    ops: dict[str, int]
    inputs: list[tuple[str, str, tuple[int, ...]]]
    outputs: list[tuple[str, str, tuple[int, ...]]]
    tensor_dtypes: dict[str, int]
    weights: list[WeightInfo]
    # Static count: every op of every subgraph once, from stored shapes (see _op_macs).
    macs: int

    @property
    def primary_weights(self) -> list[WeightInfo]:
        """Filters of conv/FC ops; other quantized constants only if there are none."""
        primary = [w for w in self.weights if w.op in _FILTER_OPS]
        return primary or list(self.weights)

    @property
    def weight_scheme(self) -> str:
        """One short phrase for how the weights are stored, for tables and reports."""
        weights = self.primary_weights
        if not weights:
            return "none"
        labels = Counter(w.label for w in weights)
        dtypes = {w.dtype for w in weights}
        if len(labels) == 1:
            scheme = next(iter(labels))
        elif len(dtypes) == 1:
            scheme = f"{next(iter(dtypes))} per-channel/per-tensor"
        else:
            scheme = "mixed (" + ", ".join(f"{k} x{n}" for k, n in labels.most_common()) + ")"
        if any(w.hybrid for w in weights):
            scheme += ", dynamic range"
        return scheme

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (tuples become lists) including the derived scheme."""
        d = asdict(self)
        d["inputs"] = [[n, t, list(s)] for n, t, s in self.inputs]
        d["outputs"] = [[n, t, list(s)] for n, t, s in self.outputs]
        d["weights"] = [{**asdict(w), "shape": list(w.shape)} for w in self.weights]
        d["weight_scheme"] = self.weight_scheme
        return d


@dataclass(frozen=True)
class _Tensor:
    name: str
    dtype: str
    shape: tuple[int, ...]
    constant: bool
    n_scales: int
    quantized_dimension: int


@dataclass(frozen=True)
class _Op:
    name: str
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    adj_x: bool = False  # BATCH_MATMUL only


def _schema() -> Any:
    from ai_edge_litert import schema_py_generated

    return schema_py_generated


def _enum_names(cls: type) -> dict[int, str]:
    return {v: k for k, v in vars(cls).items() if not k.startswith("_") and isinstance(v, int)}


@cache
def _dtype_names() -> dict[int, str]:
    """TensorType value -> numpy-style name, from the schema so new types show up."""
    return {k: v.lower() for k, v in _enum_names(_schema().TensorType).items()}


@cache
def _op_names() -> dict[int, str]:
    return _enum_names(_schema().BuiltinOperator)


def inspect_tflite(path: str | os.PathLike[str]) -> ModelInfo:
    """Read `path` and summarise it; raise ModelError if it is missing or not a model."""
    p = Path(path)
    _schema()  # a missing ai-edge-litert is an install problem, not a bad model
    try:
        buf = p.read_bytes()
    except FileNotFoundError:
        raise ModelError(f"model file not found: {p} (check the path)") from None
    except OSError as e:
        reason = e.strerror or str(e)
        raise ModelError(f"cannot read model file {p} ({reason}); check the path") from None
    try:
        return _parse(p, buf)
    except ModelError:
        raise
    except Exception as e:  # the flatbuffers reader fails in arbitrary ways on bad input
        kind = "truncated or corrupt" if isinstance(e, _CORRUPT) else type(e).__name__
        reason = f"{kind}: {e}".splitlines()[0][:200]
        raise _invalid(p, reason) from None


def _invalid(p: Path, reason: str) -> ModelError:
    return ModelError(f"not a valid .tflite model: {p} ({reason}); rebuild or re-download it")


def _checked_len(n: int, limit: int, what: str) -> int:
    """Guard loops against garbage vector lengths, which the reader does not check."""
    if not 0 <= n <= limit:
        raise ValueError(f"implausible {what} count {n}")
    return n


def _parse(p: Path, buf: bytes) -> ModelInfo:
    if len(buf) < 8:
        raise _invalid(p, f"file is only {len(buf)} bytes")
    if buf[4:8] != _FILE_IDENTIFIER:
        raise _invalid(p, f"file identifier is {buf[4:8]!r}, expected {_FILE_IDENTIFIER!r}")
    schema = _schema()
    model = schema.Model.GetRootAs(buf, 0)
    if model.Version() != _SCHEMA_VERSION:
        raise _invalid(p, f"schema version {model.Version()}, expected {_SCHEMA_VERSION}")
    limit = len(buf) // 4

    constant_buffers = _constant_buffers(model, len(buf), limit)
    op_names = [
        _opcode_name(model.OperatorCodes(i))
        for i in range(_checked_len(model.OperatorCodesLength(), limit, "opcode"))
    ]

    ops: Counter[str] = Counter()
    dtypes: Counter[str] = Counter()
    weights: list[WeightInfo] = []
    macs = 0
    inputs: list[tuple[str, str, tuple[int, ...]]] = []
    outputs: list[tuple[str, str, tuple[int, ...]]] = []
    n_subgraphs = _checked_len(model.SubgraphsLength(), limit, "subgraph")
    if n_subgraphs == 0:
        raise _invalid(p, "no subgraphs")
    for g in range(n_subgraphs):
        sg = model.Subgraphs(g)
        tensors = [
            _read_tensor(sg.Tensors(i), constant_buffers)
            for i in range(_checked_len(sg.TensorsLength(), limit, "tensor"))
        ]
        sg_ops = [
            _read_op(sg.Operators(i), op_names, len(tensors), schema)
            for i in range(_checked_len(sg.OperatorsLength(), limit, "operator"))
        ]
        ops.update(op.name for op in sg_ops)
        dtypes.update(t.dtype for t in tensors)
        weights.extend(_weights(tensors, sg_ops))
        macs += sum(_op_macs(op, tensors) for op in sg_ops)
        if g == 0:
            inputs = _io(sg.InputsAsNumpy(), sg.InputsLength(), tensors)
            outputs = _io(sg.OutputsAsNumpy(), sg.OutputsLength(), tensors)

    return ModelInfo(
        path=str(p),
        size_bytes=len(buf),
        sha256=hashlib.sha256(buf).hexdigest(),
        ops=dict(ops.most_common()),
        inputs=inputs,
        outputs=outputs,
        tensor_dtypes=dict(dtypes.most_common()),
        weights=weights,
        macs=macs,
    )


def _constant_buffers(model: Any, size: int, limit: int) -> list[bool]:
    """Which buffers hold data; also checks that the data lies inside the file."""
    out = []
    for i in range(_checked_len(model.BuffersLength(), limit, "buffer")):
        b = model.Buffers(i)
        has_data = b.DataLength() > 0
        if has_data:
            b.DataAsNumpy()  # numpy refuses a view that runs past the end: truncation
        offset, length = b.Offset(), b.Size()
        if offset > 1:  # >2 GB models keep data after the flatbuffer
            if offset + length > size:
                raise ValueError(f"buffer {i} runs past the end of the file")
            has_data = has_data or length > 0
        out.append(has_data)
    return out


def _opcode_name(code: Any) -> str:
    # Codes above 127 only fit the newer field; older files only fill the deprecated one.
    value = max(code.DeprecatedBuiltinCode(), code.BuiltinCode())
    name = _op_names().get(value, f"BUILTIN_{value}")
    if name == "CUSTOM":
        custom = code.CustomCode()
        return f"CUSTOM:{custom.decode('utf-8', 'replace') if custom else '?'}"
    return name


def _shape(table: Any) -> tuple[int, ...]:
    if table.ShapeLength() == 0:
        return ()
    return tuple(int(d) for d in table.ShapeAsNumpy())


def _read_tensor(t: Any, constant_buffers: list[bool]) -> _Tensor:
    dtype = _dtype_names().get(t.Type(), f"type{t.Type()}")
    buffer = t.Buffer()
    if buffer >= len(constant_buffers):
        raise ValueError(f"tensor refers to missing buffer {buffer}")
    q = t.Quantization()
    n_scales = q.ScaleLength() if q is not None else 0
    return _Tensor(
        name=(t.Name() or b"").decode("utf-8", "replace"),
        dtype=dtype,
        shape=_shape(t),
        constant=buffer > 0 and constant_buffers[buffer],
        n_scales=n_scales,
        quantized_dimension=q.QuantizedDimension() if q is not None else 0,
    )


def _indices(values: Any, length: int, n_tensors: int) -> tuple[int, ...]:
    if length == 0:
        return ()
    idx = tuple(int(i) for i in values)
    if any(i >= n_tensors or i < -1 for i in idx):
        raise ValueError(f"operator refers to tensor outside 0..{n_tensors - 1}")
    return idx


def _read_op(op: Any, op_names: list[str], n_tensors: int, schema: Any) -> _Op:
    index = op.OpcodeIndex()
    if index >= len(op_names):
        raise ValueError(f"operator uses missing opcode {index}")
    name = op_names[index]
    adj_x = False
    is_bmm_options = op.BuiltinOptionsType() == schema.BuiltinOptions.BatchMatMulOptions
    if name == "BATCH_MATMUL" and is_bmm_options:
        table = op.BuiltinOptions()
        options = schema.BatchMatMulOptions()
        options.Init(table.Bytes, table.Pos)
        adj_x = bool(options.AdjX())
    return _Op(
        name=name,
        inputs=_indices(op.InputsAsNumpy(), op.InputsLength(), n_tensors),
        outputs=_indices(op.OutputsAsNumpy(), op.OutputsLength(), n_tensors),
        adj_x=adj_x,
    )


def _io(values: Any, length: int, tensors: list[_Tensor]) -> list[tuple[str, str, tuple[int, ...]]]:
    out = []
    for i in _indices(values, length, len(tensors)):
        if i >= 0:
            t = tensors[i]
            out.append((t.name, t.dtype, t.shape))
    return out


def _weights(tensors: list[_Tensor], ops: list[_Op]) -> list[WeightInfo]:
    """Filters of conv/FC ops (traced back through DEQUANTIZE), then other quantized constants."""
    producer = {o: op for op in ops for o in op.outputs if o >= 0}
    seen: set[int] = set()
    out: list[WeightInfo] = []

    def add(index: int, op: _Op, hybrid: bool = False) -> None:
        if index in seen:
            return
        seen.add(index)
        t = tensors[index]
        out.append(
            WeightInfo(t.name, op.name, t.dtype, t.shape, t.n_scales, t.quantized_dimension, hybrid)
        )

    for op in ops:
        if op.name not in _FILTER_OPS or len(op.inputs) < 2 or op.inputs[1] < 0:
            continue
        index = op.inputs[1]
        # fp16 and weight-only models store the constant behind a DEQUANTIZE op.
        for _ in range(4):  # bounded: a corrupt graph may loop
            src = producer.get(index)
            if tensors[index].constant or src is None or src.name not in _PASS_THROUGH_OPS:
                break
            if not src.inputs or src.inputs[0] < 0:
                break
            index = src.inputs[0]
        if not tensors[index].constant:
            continue  # a computed filter is an activation, not a weight
        data = _data_input(op)
        hybrid = (
            index == op.inputs[1]
            and tensors[index].dtype in _INT_DTYPES
            and data is not None
            and tensors[data].dtype.startswith("float")
        )
        add(index, op, hybrid)

    for op in ops:
        if op.name in _FILTER_OPS:
            continue  # their remaining constants are biases
        for index in op.inputs:
            if index >= 0 and tensors[index].constant and tensors[index].n_scales > 0:
                add(index, op)
    return out


def _data_input(op: _Op) -> int | None:
    pos = 2 if op.name == "TRANSPOSE_CONV" else 0
    if len(op.inputs) > pos and op.inputs[pos] >= 0:
        return op.inputs[pos]
    return None


def _elements(shape: tuple[int, ...]) -> int:
    """Element count with unknown (-1) or zero dimensions counted as 1."""
    return math.prod(max(d, 1) for d in shape)


def _op_macs(op: _Op, tensors: list[_Tensor]) -> int:
    """Multiply-accumulates of one op from the shapes stored in the model; 0 if not counted.

    TRANSPOSE_CONV counts each input element scattered over a kh*kw*out_c window, i.e. the
    MACs of the conv it is the gradient of (zero-insertion padding is not counted).
    """
    if len(op.inputs) < 2 or not op.outputs or min(op.inputs[:2]) < 0 or op.outputs[0] < 0:
        return 0
    lhs, rhs = tensors[op.inputs[0]].shape, tensors[op.inputs[1]].shape
    out = _elements(tensors[op.outputs[0]].shape)
    if op.name == "CONV_2D" and len(rhs) == 4:  # filter [out_c, kh, kw, in_c/groups]
        return out * _elements(rhs[1:])
    if op.name == "DEPTHWISE_CONV_2D" and len(rhs) == 4:  # filter [1, kh, kw, out_c]
        return out * _elements(rhs[1:3])
    if op.name == "FULLY_CONNECTED" and len(rhs) == 2:  # weights [out, in]
        return out * max(rhs[1], 1)
    if op.name == "TRANSPOSE_CONV" and len(rhs) == 4:
        data = _data_input(op)
        return 0 if data is None else _elements(tensors[data].shape) * _elements(rhs[:3])
    if op.name == "BATCH_MATMUL" and len(lhs) >= 2 and len(rhs) >= 2:
        return out * max(lhs[-2] if op.adj_x else lhs[-1], 1)
    return 0


def _human(n: float, units: tuple[str, ...] = ("", " K", " M", " G", " T")) -> str:
    for unit in units[:-1]:
        if abs(n) < 1000:
            return f"{n:.1f}{unit}" if unit else f"{n:g}"
        n /= 1000
    return f"{n:.1f}{units[-1]}"


def _short(name: str, width: int = 64) -> str:
    """Converter-fused tensor names run to hundreds of characters; the start names the layer."""
    return name if len(name) <= width else name[: width - 3] + "..."


def _fmt_shape(shape: tuple[int, ...]) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def format_report(
    info: ModelInfo, fp32_size_bytes: int | None = None, max_weights: int = 10
) -> str:
    """Multi-line summary for `bench inspect`-style output."""
    lines = [
        f"model: {info.path}",
        f"size: {info.size_bytes / 1e6:.2f} MB ({info.size_bytes:,} bytes)",
        f"sha256: {info.sha256[:12]}",
    ]
    if fp32_size_bytes and info.size_bytes:
        ratio = fp32_size_bytes / info.size_bytes
        if ratio >= 1:
            lines.append(f"compression: {ratio:.2f}x smaller than fp32")
        else:
            lines.append(f"compression: {1 / ratio:.2f}x larger than fp32")
    for title, entries in (("inputs", info.inputs), ("outputs", info.outputs)):
        lines.append(f"{title}:")
        lines += [f"  {name} {dtype} {_fmt_shape(shape)}" for name, dtype, shape in entries]
    lines.append(f"ops ({sum(info.ops.values())} total):")
    ops = sorted(info.ops.items(), key=lambda kv: (-kv[1], kv[0]))
    lines += [f"  {name:<24} {count}" for name, count in ops]
    lines.append("tensor dtypes: " + ", ".join(f"{k} {v}" for k, v in info.tensor_dtypes.items()))
    lines.append(f"weights: {info.weight_scheme} ({len(info.weights)} tensors)")
    for w in info.weights[:max_weights]:
        lines.append(f"  {_short(w.tensor)} {w.dtype} {_fmt_shape(w.shape)} scales={w.n_scales}")
    if len(info.weights) > max_weights:
        lines.append(f"  ... and {len(info.weights) - max_weights} more")
    lines.append(f"MACs: {_human(info.macs)} MACs per inference")
    return "\n".join(lines)
