"""PyTorch's legacy checkpoint format (torch < 1.6, or `_use_new_zipfile_serialization=False`)
read into numpy arrays, without torch and without running code from the file.

A legacy `.pth` file is five things back to back: four pickles (the magic number, the
protocol version 1001, a dict about the writer's machine, then the saved object) and the
storages' raw bytes. The saved object rebuilds each tensor with
`torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks)`, and
names its storage by a persistent id, `('storage', torch.FloatStorage, key, location, numel,
view_metadata)`; the data follow the fifth pickle, the list of storage keys: for each key in
that order, an 8-byte little-endian element count, then the elements, little-endian.

`torch.load` unpickles with the full pickle machinery, so a weights file can run any code.
Here the unpickler knows only the handful of names a state dict uses and refuses the rest.
"""

from __future__ import annotations

import collections
import io
import pickle
import struct
from collections.abc import Callable
from typing import Any

import numpy as np

from bench.errors import ModelError

MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
PROTOCOL_VERSION = 1001
MAX_ELEMENTS = 1 << 32  # one tensor; guards against a size that would exhaust memory

STORAGE_DTYPES: dict[str, np.dtype] = {
    "FloatStorage": np.dtype(np.float32),
    "DoubleStorage": np.dtype(np.float64),
    "HalfStorage": np.dtype(np.float16),
    "LongStorage": np.dtype(np.int64),
    "IntStorage": np.dtype(np.int32),
    "ShortStorage": np.dtype(np.int16),
    "CharStorage": np.dtype(np.int8),
    "ByteStorage": np.dtype(np.uint8),
    "BoolStorage": np.dtype(np.bool_),
}


class _StorageType:
    """Stands for `torch.FloatStorage` and friends inside the pickle."""

    __slots__ = ("name", "dtype")

    def __init__(self, name: str, dtype: np.dtype) -> None:
        self.name = name
        self.dtype = dtype


class _Storage:
    """A storage named by the pickle; its elements arrive after the pickle ends."""

    __slots__ = ("key", "dtype", "numel", "data")

    def __init__(self, key: str, dtype: np.dtype, numel: int) -> None:
        self.key = key
        self.dtype = dtype
        self.numel = numel
        self.data: np.ndarray | None = None

    def elements(self) -> np.ndarray:
        assert self.data is not None
        return self.data


class _StorageView:
    """A slice of another storage (legacy `view_metadata`: key, offset, size)."""

    __slots__ = ("root", "offset", "numel")

    def __init__(self, root: _Storage, offset: int, numel: int) -> None:
        self.root = root
        self.offset = offset
        self.numel = numel

    @property
    def dtype(self) -> np.dtype:
        return self.root.dtype

    def elements(self) -> np.ndarray:
        return self.root.elements()[self.offset : self.offset + self.numel]


class _TensorRef:
    """A tensor waiting for its storage's data: storage, offset, size, stride."""

    __slots__ = ("storage", "offset", "size", "stride")

    def __init__(
        self, storage: _Storage | _StorageView, offset: int, size: tuple, stride: tuple
    ) -> None:
        self.storage = storage
        self.offset = offset
        self.size = size
        self.stride = stride


def _int_tuple(value: Any, what: str) -> tuple[int, ...]:
    if not isinstance(value, (tuple, list)) or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in value
    ):
        raise ModelError(f"tensor {what} is {value!r}, not a tuple of integers")
    return tuple(value)


def _rebuild_tensor(storage: Any, storage_offset: Any, size: Any, stride: Any) -> _TensorRef:
    if not isinstance(storage, (_Storage, _StorageView)):
        raise ModelError(f"a tensor's storage is {type(storage).__name__}, not a storage")
    if not isinstance(storage_offset, int) or storage_offset < 0:
        raise ModelError(f"a tensor's storage offset is {storage_offset!r}")
    size_t, stride_t = _int_tuple(size, "size"), _int_tuple(stride, "stride")
    if len(size_t) != len(stride_t):
        raise ModelError(f"a tensor's size {size_t} and stride {stride_t} differ in length")
    return _TensorRef(storage, storage_offset, size_t, stride_t)


def _rebuild_tensor_v2(
    storage: Any, storage_offset: Any, size: Any, stride: Any, *_ignored: Any
) -> _TensorRef:
    """requires_grad, backward hooks (and newer torch's metadata) do not matter to weights."""
    return _rebuild_tensor(storage, storage_offset, size, stride)


def _rebuild_parameter(data: Any, *_ignored: Any) -> _TensorRef:
    if not isinstance(data, _TensorRef):
        raise ModelError(f"a parameter holds {type(data).__name__}, not a tensor")
    return data


_ALLOWED: dict[tuple[str, str], Callable[..., Any]] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
}


def _decode(value: Any) -> Any:
    """Python 2 writers leave ASCII strings as bytes."""
    return value.decode("ascii") if isinstance(value, bytes) else value


class _RestrictedUnpickler(pickle.Unpickler):
    """Finds only what a state dict needs; any other global is refused, never imported."""

    def __init__(self, file: io.BytesIO, storages: dict[str, _Storage]) -> None:
        super().__init__(file, encoding="utf-8")
        self.storages = storages

    def find_class(self, module: str, name: str) -> Any:
        if module == "torch" and name in STORAGE_DTYPES:
            return _StorageType(name, STORAGE_DTYPES[name])
        found = _ALLOWED.get((module, name))
        if found is None:
            raise ModelError(
                f"refusing {module}.{name}: a weights file may only hold tensors in dicts "
                "(tensor types: " + ", ".join(f"torch.{n}" for n in STORAGE_DTYPES) + ")"
            )
        return found

    def persistent_load(self, pid: Any) -> Any:
        if not isinstance(pid, tuple) or not pid or _decode(pid[0]) != "storage":
            kind = _decode(pid[0]) if isinstance(pid, tuple) and pid else pid
            raise ModelError(f"refusing persistent id {kind!r}: only storages are allowed")
        if len(pid) not in (5, 6):
            raise ModelError(f"a storage id has {len(pid)} fields, not 5 or 6")
        storage_type, key, _location, numel = pid[1:5]
        view = pid[5] if len(pid) == 6 else None
        key = _decode(key)
        if not isinstance(storage_type, _StorageType):
            raise ModelError(f"storage {key!r} has type {storage_type!r}, not a torch storage")
        if not isinstance(key, str) or not isinstance(numel, int) or numel < 0:
            raise ModelError(f"storage id {pid[1:5]!r} is malformed")
        storage = self.storages.get(key)
        if storage is None:
            storage = self.storages[key] = _Storage(key, storage_type.dtype, numel)
        elif storage.dtype != storage_type.dtype or storage.numel != numel:
            raise ModelError(f"storage {key!r} is named twice with different types or sizes")
        if view is None:
            return storage
        if not isinstance(view, tuple) or len(view) != 3:
            raise ModelError(f"storage {key!r} has malformed view metadata {view!r}")
        _view_key, offset, view_numel = view
        ints = all(isinstance(v, int) for v in (offset, view_numel))
        if not ints or min(offset, view_numel) < 0 or offset + view_numel > numel:
            raise ModelError(f"storage {key!r} has a view {view!r} outside its {numel} elements")
        return _StorageView(storage, offset, view_numel)


def _materialize(ref: _TensorRef) -> np.ndarray:
    """A contiguous copy of the tensor: offset, size and stride into its storage's elements."""
    flat = ref.storage.elements()
    size, stride, offset = ref.size, ref.stride, ref.offset
    native = ref.storage.dtype.newbyteorder("=")
    count = 1
    for s in size:
        if s < 0:
            raise ModelError(f"a tensor has a negative size {size}")
        count *= s
    if count > MAX_ELEMENTS:
        raise ModelError(f"a tensor of size {size} is too large ({count} elements)")
    if count == 0:
        return np.zeros(size, dtype=native)
    if any(st < 0 for st in stride):
        raise ModelError(f"a tensor has a negative stride {stride}")
    last = offset + sum((s - 1) * st for s, st in zip(size, stride, strict=True))
    if last >= len(flat):
        raise ModelError(
            f"a tensor (offset {offset}, size {size}, stride {stride}) reaches element {last} "
            f"of a storage of {len(flat)}"
        )
    expected, step = [], 1
    for s in reversed(size):
        expected.append(step)
        step *= s
    expected.reverse()
    if all(s == 1 or st == e for s, st, e in zip(size, stride, expected, strict=True)):
        return flat[offset : offset + count].astype(native).reshape(size)
    index = np.array(offset, dtype=np.int64)
    for s, st in zip(size, stride, strict=True):
        index = index[..., None] + np.arange(s, dtype=np.int64) * st
    return np.array(flat[index], dtype=native)


def _resolve(obj: Any, depth: int = 0) -> Any:
    """The saved object with every tensor made an array (dicts stay in their order)."""
    if depth > 100:
        raise ModelError("the checkpoint nests containers more than 100 deep")
    if isinstance(obj, _TensorRef):
        return _materialize(obj)
    if isinstance(obj, dict):
        return {k: _resolve(v, depth + 1) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_resolve(v, depth + 1) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_resolve(v, depth + 1) for v in obj)
    if isinstance(obj, (_Storage, _StorageView, _StorageType)):
        raise ModelError("the checkpoint holds a bare storage, not a tensor")
    return obj


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, dict) and all(
        isinstance(k, str) and isinstance(v, np.ndarray) for k, v in obj.items()
    )


def _state_dict(obj: Any) -> dict[str, np.ndarray]:
    """The saved state dict: the object itself, or its one 'state_dict' / 'model' entry."""
    if _is_state_dict(obj):
        return dict(obj)
    if isinstance(obj, dict):
        inner = [k for k in ("state_dict", "model") if _is_state_dict(obj.get(k))]
        if len(inner) == 1:
            return dict(obj[inner[0]])
        keys = ", ".join(repr(k) for k in list(obj)[:8]) + (", ..." if len(obj) > 8 else "")
        raise ModelError(f"not a state dict (a dict of tensors); its keys are {keys}")
    raise ModelError(f"holds a {type(obj).__name__}, not a state dict")


def _load(data: bytes) -> dict[str, np.ndarray]:
    stream = io.BytesIO(data)
    storages: dict[str, _Storage] = {}

    def next_pickle() -> Any:
        return _RestrictedUnpickler(stream, storages).load()

    if next_pickle() != MAGIC_NUMBER:
        raise ModelError("not a legacy PyTorch checkpoint (no magic number)")
    version = next_pickle()
    if version != PROTOCOL_VERSION:
        raise ModelError(f"legacy checkpoint protocol {version!r}, not {PROTOCOL_VERSION}")
    next_pickle()  # sys info: byte order and type sizes; the data are little-endian anyway
    saved = next_pickle()
    keys = next_pickle()
    if not isinstance(keys, list):
        raise ModelError(f"the storage list is a {type(keys).__name__}")
    keys = [_decode(k) for k in keys]
    if len(keys) != len(set(keys)) or set(keys) != set(storages):
        raise ModelError("the storage list does not match the storages the tensors use")
    position = stream.tell()
    for key in keys:
        storage = storages[key]
        header = data[position : position + 8]
        if len(header) < 8:
            raise ModelError(f"truncated: storage {key!r} is missing")
        (numel,) = struct.unpack("<q", header)
        if numel != storage.numel:
            raise ModelError(
                f"storage {key!r} holds {numel} elements, the pickle says {storage.numel}"
            )
        position += 8
        nbytes = numel * storage.dtype.itemsize
        if position + nbytes > len(data):
            raise ModelError(f"truncated: storage {key!r} is incomplete")
        storage.data = np.frombuffer(
            data, dtype=storage.dtype.newbyteorder("<"), count=numel, offset=position
        )
        position += nbytes
    if position != len(data):
        raise ModelError(f"{len(data) - position} unexpected bytes after the last storage")
    return _state_dict(_resolve(saved))


def load_legacy_state_dict(data: bytes, what: str = "PyTorch checkpoint") -> dict[str, np.ndarray]:
    """The state dict in a legacy `.pth` file's bytes, in its order, as contiguous arrays.

    `what` names the file in messages. A dict holding the state dict under 'state_dict' or
    'model' (a training checkpoint) gives that inner dict."""
    if data[:2] == b"PK":
        raise ModelError(
            f"{what}: a zip-format checkpoint (torch >= 1.6 `torch.save`); only the legacy "
            "format is read here (save with `_use_new_zipfile_serialization=False`)"
        )
    try:
        return _load(bytes(data))
    except ModelError as exc:
        raise ModelError(f"{what}: {exc}") from None
    except (EOFError, pickle.UnpicklingError) as exc:
        raise ModelError(f"{what}: truncated or corrupt pickle ({exc})") from None
    except Exception as exc:  # anything else a damaged pickle provokes
        reason = f"{type(exc).__name__}: {exc}"
        raise ModelError(f"{what}: corrupt legacy checkpoint ({reason})") from None
